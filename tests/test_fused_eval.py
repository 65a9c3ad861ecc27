"""OCRHead's fused inference path (ocrformer/fused_eval.py) == the classic head and the module path."""

import copy

import pytest
import torch
import torch.nn.functional as F

from ocrformer import OCRHead, fused_eval
from ocrformer.fused_eval import _padded_nhwc, fused_eval_applies, winograd_conv3x3

from .conftest import classic_and_ocrformer, head_state_dict, relative_error

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
MODES = ["winograd", "direct"]


def outputs_close(actual: dict, expected: dict, dtype: torch.dtype) -> None:
    for name in ("logits", "aux_logits"):
        assert actual[name].shape == expected[name].shape, name
        assert relative_error(actual[name], expected[name]) <= TOLERANCE[dtype], name


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts calls of the fused forward, so each test can assert that it ran (or did not)."""
    calls = []
    original = fused_eval.fused_eval_forward

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr("ocrformer.ocr.fused_eval_forward", spy)
    return calls


# (batch, in_channels, classes, height, width, mid, key, heads): odd and even sizes, a 1x1 map, K = 1, many
# classes, several heads (h * K <= Dk takes the reassociated encoder, h * K > Dk the attend one).
CASES = [
    (2, 24, 3, 5, 7, 32, 16, 1),
    (1, 16, 19, 13, 6, 24, 8, 1),
    (2, 12, 4, 1, 1, 16, 8, 1),
    (1, 20, 1, 8, 8, 16, 8, 2),
    (2, 16, 5, 6, 9, 16, 8, 4),
    (1, 32, 150, 9, 11, 32, 16, 1),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}-cin{}-k{}-{}x{}-h{}".format(*c[:5], c[7]))
def test_fused_eval_matches_classic(case, mode, dtype, rng, fused_calls):
    batch, in_channels, classes, height, width, mid, key, heads = case
    classic, _ = classic_and_ocrformer(in_channels, classes, dtype=dtype, mid_channels=mid, key_channels=key)
    head = OCRHead(in_channels, classes, mid_channels=mid, key_channels=key, num_heads=heads).to(dtype)
    head.load_state_dict(head_state_dict_of(classic), strict=True)
    classic.eval(), head.eval()
    head.fused_eval = mode
    feats = torch.randn(batch, in_channels, height, width, generator=rng, dtype=torch.float64).to(dtype)
    with torch.no_grad():
        actual = head(feats)
        head.fused_eval = None
        modules = head(feats)
        expected = classic(feats) if heads == 1 else modules
    assert len(fused_calls) == 1
    outputs_close(actual, expected, dtype)
    outputs_close(actual, modules, dtype)


def head_state_dict_of(classic):
    from ocrformer.convert import convert_checkpoint

    return head_state_dict(convert_checkpoint(classic.state_dict()))


@pytest.mark.parametrize("backend", ["matmul", "sdpa"])
@pytest.mark.parametrize("heads", [1, 4])
def test_explicit_backends_go_through_attend(backend, heads, rng, fused_calls, monkeypatch):
    used = []
    original = fused_eval.attend
    monkeypatch.setattr(fused_eval, "attend", lambda *a, **k: used.append(k["backend"]) or original(*a, **k))
    torch.manual_seed(0)
    head = OCRHead(16, 5, mid_channels=16, key_channels=8, num_heads=heads, backend=backend).double().eval()
    feats = torch.randn(2, 16, 7, 6, generator=rng, dtype=torch.float64)
    with torch.no_grad():
        actual = head(feats)
        head.fused_eval = None
        expected = head(feats)
    assert used == [backend, backend] and len(fused_calls) == 1
    outputs_close(actual, expected, torch.float64)


def test_region_feats(rng, fused_calls):
    torch.manual_seed(0)
    head = OCRHead(8, 3, mid_channels=16, key_channels=8, region_in_channels=6).double().eval()
    feats = torch.randn(2, 8, 5, 7, generator=rng, dtype=torch.float64)
    region_feats = torch.randn(2, 6, 5, 7, generator=rng, dtype=torch.float64)
    with torch.no_grad():
        actual = head(feats, region_feats)
        head.fused_eval = None
        expected = head(feats, region_feats)
    assert len(fused_calls) == 1
    outputs_close(actual, expected, torch.float64)


def test_input_errors_read_the_same(fused_calls):
    head = OCRHead(16, 5, mid_channels=16, key_channels=8).eval()
    with torch.no_grad(), pytest.raises(ValueError, match="feats has 12 channels"):
        head(torch.randn(1, 12, 6, 6))


# ------------------------------------------------------------------------------------ when it runs
def test_runs_only_where_nothing_needs_the_modules(fused_calls):
    torch.manual_seed(0)
    head = OCRHead(16, 5, mid_channels=16, key_channels=8).eval()
    feats = torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        head(feats)
    assert len(fused_calls) == 1
    head(feats)  # grad mode with trainable parameters: the modules (autograd needs them)
    with torch.no_grad():
        head.train()(feats)  # training: batch statistics
        head.eval()
        head(feats, oracle_labels=torch.zeros(1, 6, 6, dtype=torch.long))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            head(feats)
        head.fused_eval = None
        head(feats)
    assert len(fused_calls) == 1
    head.fused_eval = "winograd"
    head.requires_grad_(False)
    head(feats)  # frozen parameters, input without grad: nothing to record, so the fused path runs
    assert len(fused_calls) == 2
    head.requires_grad_(True)
    with torch.inference_mode():
        head(feats)
    assert len(fused_calls) == 3
    assert not fused_eval_applies(head, feats.requires_grad_(), None)
    assert not fused_eval_applies(head.half(), feats.half(), None)


def test_bad_mode_is_named():
    head = OCRHead(16, 5, mid_channels=16, key_channels=8).eval()
    head.fused_eval = "fft"
    with torch.no_grad(), pytest.raises(ValueError, match="fused_eval must be one of"):
        head(torch.randn(1, 16, 4, 4))


# ------------------------------------------------------------------------------------ no stale weights
def test_follows_load_state_dict_parameter_updates_and_data_writes(rng, fused_calls):
    """Nothing is cached: every way of changing weights or BatchNorm statistics shows up in the next call."""
    classic_a, head = classic_and_ocrformer(16, 5, mid_channels=16, key_channels=8, seed=0)
    classic_b, _ = classic_and_ocrformer(16, 5, mid_channels=16, key_channels=8, seed=1)
    feats = torch.randn(2, 16, 7, 9, generator=rng)
    head.eval(), classic_a.eval(), classic_b.eval()
    with torch.no_grad():
        outputs_close(head(feats), classic_a(feats), torch.float32)
        head.load_state_dict(head_state_dict_of(classic_b))
        outputs_close(head(feats), classic_b(feats), torch.float32)

    # An optimizer step and a training forward (which moves the BatchNorm running statistics).
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5, momentum=0.9)
    out = head.train()(feats)
    (out["logits"].square().mean() + out["aux_logits"].square().mean()).backward()
    optimizer.step()
    head.eval()
    with torch.no_grad():
        fused = head(feats)
        moved = relative_error(fused["logits"], classic_b(feats)["logits"])
        reference = copy.deepcopy(head)
        reference.fused_eval = None
        outputs_close(fused, reference(feats), torch.float32)
        assert moved > 1e-3  # the step changed the function, and the fused path saw it

        # Writes through .data bypass autograd's version counters: a cache keyed on them would miss this.
        head.encoder.fuse.bn.running_var.data.mul_(3.0)
        head.decoder.value_proj.conv.weight.data.mul_(0.5)
        reference.load_state_dict(head.state_dict())
        outputs_close(head(feats), reference(feats), torch.float32)
    assert len(fused_calls) == 4


def test_follows_dtype_changes(rng, fused_calls):
    _, head = classic_and_ocrformer(12, 3, mid_channels=16, key_channels=8)
    head.eval()
    feats = torch.randn(1, 12, 6, 5, generator=rng, dtype=torch.float64)
    with torch.no_grad():
        head(feats.float())
        head.double()
        reference = copy.deepcopy(head)
        reference.fused_eval = None
        outputs_close(head(feats), reference(feats), torch.float64)
    assert len(fused_calls) == 2


# ------------------------------------------------------------------------------------ the Winograd conv
@pytest.mark.parametrize("band_tiles", [1, 4, 8, 256])
@pytest.mark.parametrize(
    ("batch", "height", "width"), [(1, 1, 1), (2, 5, 7), (3, 8, 6), (1, 2, 11), (1, 10, 4), (2, 10, 3)]
)
def test_winograd_conv3x3_is_the_conv(batch, height, width, band_tiles, rng, monkeypatch):
    """float64 against F.conv2d, in bands of one or more tile rows (each spanning the batch), the last one
    partial where the tile rows do not divide evenly (5 tile rows in bands of 2)."""
    monkeypatch.setattr(fused_eval, "_BAND_TILES", band_tiles)
    monkeypatch.setattr(fused_eval, "_MIN_BANDS", 1)
    x = torch.randn(batch, 5, height, width, generator=rng, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, generator=rng, dtype=torch.float64)
    bias = torch.randn(4, generator=rng, dtype=torch.float64)
    expected = F.conv2d(x, weight, bias, padding=1)
    for relu in (False, True):
        padded = _padded_nhwc(x, height + 2 + height % 2, width + 2 + width % 2)
        out = winograd_conv3x3(padded, weight, bias, relu=relu)[:, :height, :width].permute(0, 3, 1, 2)
        assert relative_error(out, expected.relu() if relu else expected) <= 1e-12


def test_winograd_float32_rounding_is_the_direct_convs(rng):
    """At HRNet-OCR's widths (720 -> 512), float32 Winograd F(2x2, 3x3) stays as close to the float64 conv as
    the direct float32 conv does (measured ~4e-7 for both; the bound leaves room)."""
    x = torch.randn(1, 720, 12, 17, generator=rng, dtype=torch.float64)
    weight = (torch.rand(512, 720, 3, 3, generator=rng, dtype=torch.float64) * 2 - 1) * 1.5 / (720 * 9) ** 0.5
    bias = torch.rand(512, generator=rng, dtype=torch.float64) - 0.5
    truth = F.conv2d(x, weight, bias, padding=1)
    padded = _padded_nhwc(x.float(), 14, 20)
    out = winograd_conv3x3(padded, weight.float(), bias.float(), relu=False)[:, :12, :17].permute(0, 3, 1, 2)
    direct = F.conv2d(x.float(), weight.float(), bias.float(), padding=1)
    assert relative_error(out.double(), truth) <= max(3 * relative_error(direct.double(), truth), 2e-6)


def test_export_under_no_grad_traces_the_modules(fused_calls):
    torch.manual_seed(0)
    head = OCRHead(16, 5, mid_channels=16, key_channels=8).eval()
    feats = torch.randn(1, 16, 6, 7)
    with torch.no_grad():
        program = torch.export.export(head, (feats,))
        assert not fused_calls  # the exported graph holds the modules' ops, not the eager fast path
        expected = head(feats)
        actual = program.module()(feats)
    outputs_close(actual, expected, torch.float32)
