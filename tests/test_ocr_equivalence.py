"""OCRHead == the classic HRNet-OCR head, through convert_checkpoint: outputs, gradients, BN statistics."""

import pytest
import torch

from benchmarks.classic_ocr import ClassicOCRHead, randomize_
from ocrformer.convert import convert_checkpoint

from .helpers.numerics import classic_and_ocrformer, relative_error

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}

# (in_channels, num_classes, height, width, mid_channels, key_channels): K = 1 and K = 150, odd sizes,
# a 1x1 map, and the real HRNet-W48 widths.
CASES = [
    (24, 1, 5, 7, 32, 16),
    (32, 150, 9, 11, 32, 16),
    (16, 19, 13, 6, 24, 8),
    (12, 4, 1, 1, 16, 8),
    (720, 19, 12, 17, 512, 256),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "cin{}-k{}-{}x{}".format(*c[:4]))
@pytest.mark.parametrize("backend", ["auto", "matmul", "sdpa"])
def test_eval_outputs_match_classic(case, dtype, backend, rng):
    in_channels, num_classes, height, width, mid, key = case
    classic, head = classic_and_ocrformer(
        in_channels, num_classes, dtype=dtype, mid_channels=mid, key_channels=key, backend=backend
    )
    classic.eval(), head.eval()
    feats = torch.randn(2, in_channels, height, width, generator=rng, dtype=torch.float64).to(dtype)
    with torch.no_grad():
        expected, actual = classic(feats), head(feats)
    for name in ("logits", "aux_logits"):
        assert actual[name].shape == (2, num_classes, height, width)
        assert relative_error(actual[name], expected[name]) <= TOLERANCE[dtype], name


def _classic_grads_as_ocrformer(classic: ClassicOCRHead) -> dict:
    """The classic head's parameter gradients under ocrformer names (convert_checkpoint applied to a state
    dict whose parameters are replaced by their gradients; buffers ride along and are ignored)."""
    state = classic.state_dict()
    state.update({name: p.grad for name, p in classic.named_parameters()})
    return {k.removeprefix("head."): v for k, v in convert_checkpoint(state).items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_heads_case", [(19, 7, 9), (3, 8, 8), (150, 5, 6)], ids=str)
def test_train_mode_outputs_gradients_and_running_stats_match(num_heads_case, dtype, rng):
    num_classes, height, width = num_heads_case
    classic, head = classic_and_ocrformer(20, num_classes, dtype=dtype, mid_channels=24, key_channels=12, dropout=0.0)
    classic.train(), head.train()
    feats = torch.randn(2, 20, height, width, generator=rng, dtype=torch.float64).to(dtype)
    cotangent = {
        name: torch.randn(2, num_classes, height, width, generator=rng, dtype=torch.float64).to(dtype)
        for name in ("logits", "aux_logits")
    }
    feats_classic = feats.clone().requires_grad_()
    feats_ours = feats.clone().requires_grad_()
    expected, actual = classic(feats_classic), head(feats_ours)
    tol = TOLERANCE[dtype]
    for name in ("logits", "aux_logits"):
        assert relative_error(actual[name], expected[name]) <= tol, name
    sum((expected[n] * cotangent[n]).sum() for n in cotangent).backward()
    sum((actual[n] * cotangent[n]).sum() for n in cotangent).backward()

    # Gradients: a few orders looser than the forward, since backward sums over many more terms. Float64 shows
    # the two are the same computation (agreement ~1e-14). In float32 with K = 150 (3600 ReLU inputs in the
    # encoder's value_proj), one pre-activation of ocrformer lands on the other side of 0 than in float64 (the
    # classic head's rounding happens not to flip it): the ReLU's kink switches that entry's gradient on, about
    # 2% of the largest value_proj gradient. The gradients reaching value_proj agree to ~2e-6 in both heads; it
    # is a kink, not an accumulated precision loss (measured 2026-11-25, see the issue notes).
    grad_tol = tol * 100 if (dtype == torch.float64 or num_classes <= 19) else 3e-2
    assert relative_error(feats_ours.grad, feats_classic.grad) <= grad_tol
    expected_grads = _classic_grads_as_ocrformer(classic)
    for name, param in head.named_parameters():
        assert param.grad is not None, name
        assert relative_error(param.grad, expected_grads[name]) <= grad_tol, name
    # The classic pre-BatchNorm conv biases (folded away in ocrformer) get no gradient in training.
    for name in ("conv3x3_ocr.0.bias", "aux_head.0.bias"):
        grad = dict(classic.named_parameters())[name].grad
        assert grad.abs().max() <= tol * 10 * expected_grads["decoder.query_bias"].abs().max(), name

    # BatchNorm running statistics moved the same way (the folded biases stay consistent).
    converted_after = {k.removeprefix("head."): v for k, v in convert_checkpoint(classic.state_dict()).items()}
    for name, buffer in head.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            assert relative_error(buffer, converted_after[name]) <= tol, name


def test_dropout_is_the_classic_dropout2d():
    classic, head = classic_and_ocrformer(8, 3, mid_channels=8, key_channels=4, dropout=0.3)
    assert head.encoder.dropout.p == classic.ocr_distri_head.conv_bn_dropout[2].p == 0.3
    assert type(head.encoder.dropout) is type(classic.ocr_distri_head.conv_bn_dropout[2])


def test_random_weights_are_not_trivial():
    """Guard the guard: the randomised classic head gives outputs that depend on every module."""
    classic = randomize_(ClassicOCRHead(8, 3, mid_channels=8, key_channels=4)).eval()
    feats = torch.randn(1, 8, 5, 5)
    base = classic(feats)["logits"]
    with torch.no_grad():
        classic.ocr_distri_head.object_context_block.f_object[1][0].running_mean += 1.0
    assert not torch.allclose(classic(feats)["logits"], base)
