"""FusedOCRHead (ocrformer/fused_head.py) == the classic head and OCRHead's modules; the Winograd conv."""

import pytest
import torch
import torch.nn.functional as F

from ocrformer import FusedOCRHead, OCRHead, fused_head
from ocrformer.convert import convert_checkpoint
from ocrformer.winograd import padded_nhwc, winograd_conv3x3, winograd_weight

from .helpers.numerics import classic_and_ocrformer, head_state_dict, relative_error

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
CONVS = ["winograd", "direct"]


def outputs_close(actual: dict, expected: dict, dtype: torch.dtype) -> None:
    for name in ("logits", "aux_logits"):
        assert actual[name].shape == expected[name].shape, name
        assert relative_error(actual[name], expected[name]) <= TOLERANCE[dtype], name


@pytest.fixture
def attend_calls(monkeypatch):
    """The backends the fused head's attention steps ran through ``ocrformer.attend``."""
    used = []
    original = fused_head.attend
    monkeypatch.setattr(fused_head, "attend", lambda *a, **k: used.append(k["backend"]) or original(*a, **k))
    return used


# (batch, in_channels, classes, height, width, mid, key, heads): odd and even sizes, a 1x1 map, K = 1, many
# classes (K > Dk takes the un-reassociated encoder), several heads.
CASES = [
    (2, 24, 3, 5, 7, 32, 16, 1),
    (1, 16, 19, 13, 6, 24, 8, 1),
    (2, 12, 4, 1, 1, 16, 8, 1),
    (1, 20, 1, 8, 8, 16, 8, 2),
    (2, 16, 5, 6, 9, 16, 8, 4),
    (1, 32, 150, 9, 11, 32, 16, 1),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}-cin{}-k{}-{}x{}-h{}".format(*c[:5], c[7]))
def test_matches_the_classic_head_and_the_modules(case, conv, dtype, rng, attend_calls):
    batch, in_channels, classes, height, width, mid, key, heads = case
    classic, _ = classic_and_ocrformer(in_channels, classes, dtype=dtype, mid_channels=mid, key_channels=key)
    head = OCRHead(in_channels, classes, mid_channels=mid, key_channels=key, num_heads=heads).to(dtype)
    head.load_state_dict(head_state_dict(convert_checkpoint(classic.state_dict())), strict=True)
    classic.eval(), head.eval()
    fused = FusedOCRHead(head, conv=conv)
    feats = torch.randn(batch, in_channels, height, width, generator=rng, dtype=torch.float64).to(dtype)
    with torch.no_grad():
        actual, modules = fused(feats), head(feats)
        expected = classic(feats) if heads == 1 else modules
    outputs_close(actual, expected, dtype)
    outputs_close(actual, modules, dtype)
    assert attend_calls == ["auto", "auto"]  # the decoder and the encoder step, both through attend


@pytest.mark.parametrize("backend", ["matmul", "sdpa"])
@pytest.mark.parametrize("heads", [1, 4])
def test_the_head_backend_reaches_attend(backend, heads, rng, attend_calls):
    torch.manual_seed(0)
    head = OCRHead(16, 5, mid_channels=16, key_channels=8, num_heads=heads, backend=backend).double().eval()
    feats = torch.randn(2, 16, 7, 6, generator=rng, dtype=torch.float64)
    with torch.no_grad():
        outputs_close(FusedOCRHead(head)(feats), head(feats), torch.float64)
    assert attend_calls == [backend, backend]


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("kernel", [1, 3])
def test_region_feats_and_the_3x3_region_conv(conv, kernel, rng):
    """Separate region features (the dilated ResNets) and openseg's 3x3 region conv, on feats and on them."""
    torch.manual_seed(0)
    for region_in in (None, 6):
        head = OCRHead(8, 3, mid_channels=16, key_channels=8, region_in_channels=region_in, region_channels=5,
                       region_kernel_size=kernel).double().eval()
        feats = torch.randn(2, 8, 5, 7, generator=rng, dtype=torch.float64)
        region_feats = None if region_in is None else torch.randn(2, 6, 5, 7, generator=rng, dtype=torch.float64)
        with torch.no_grad():
            outputs_close(FusedOCRHead(head, conv=conv)(feats, region_feats), head(feats, region_feats), torch.float64)


def test_a_snapshot_for_inference_only(rng):
    torch.manual_seed(0)
    head = OCRHead(16, 5, mid_channels=16, key_channels=8).eval()
    fused = FusedOCRHead(head)
    feats = torch.randn(1, 16, 6, 6, generator=rng)
    with torch.no_grad():
        before = fused(feats)
        head.classifier.bias.add_(1.0)  # the snapshot does not follow (rebuild it)
        outputs_close(fused(feats), before, torch.float32)
        outputs_close(FusedOCRHead(head)(feats), head(feats), torch.float32)
    with pytest.raises(RuntimeError, match="inference snapshot"):
        fused.train()(feats)
    with pytest.raises(RuntimeError, match="inference snapshot"):
        fused.eval()(feats.requires_grad_())
    with pytest.raises(ValueError, match="feats has 12 channels"):
        fused(torch.randn(1, 12, 6, 6))
    with pytest.raises(ValueError, match="conv must be one of"):
        FusedOCRHead(head, conv="fft")
    with pytest.raises(TypeError, match="needs an OCRHead"):
        FusedOCRHead(torch.nn.Conv2d(1, 1, 1))
    assert not list(fused.parameters())  # buffers: nothing to train


def test_follows_dtype_moves(rng):
    """``.double()`` moves the folded buffers (folded in float32 here: float32 rounding stays); folded from a
    float64 head it is float64-exact."""
    _, head = classic_and_ocrformer(12, 3, mid_channels=16, key_channels=8)
    head.eval()
    moved = FusedOCRHead(head).double()
    feats = torch.randn(1, 12, 6, 5, generator=rng, dtype=torch.float64)
    with torch.no_grad():
        outputs_close(moved(feats), head.double()(feats), torch.float32)
        outputs_close(FusedOCRHead(head)(feats), head(feats), torch.float64)
    with pytest.raises(ValueError, match="feats must be a floating-point tensor of the module's dtype torch.float64"):
        moved(feats.float())


def test_oracle_is_not_computed_by_it():
    """OCRHead always runs its modules, oracle included; the fused head has no oracle argument."""
    with pytest.raises(TypeError):
        FusedOCRHead(OCRHead(8, 3, mid_channels=8, key_channels=4).eval())(
            torch.randn(1, 8, 4, 4), oracle_labels=torch.zeros(1, 4, 4, dtype=torch.long)
        )


# ------------------------------------------------------------------------------------ the Winograd conv
@pytest.mark.parametrize("band_tiles", [1, 4, 8, 256])
@pytest.mark.parametrize(
    ("batch", "height", "width"), [(1, 1, 1), (2, 5, 7), (3, 8, 6), (1, 2, 11), (1, 10, 4), (2, 10, 3)]
)
def test_winograd_conv3x3_is_the_conv(batch, height, width, band_tiles, rng, monkeypatch):
    """float64 against F.conv2d, in bands of one or more tile rows (each spanning the batch), the last one
    partial where the tile rows do not divide evenly (5 tile rows in bands of 2)."""
    from ocrformer import winograd

    monkeypatch.setattr(winograd, "_BAND_TILES", band_tiles)
    monkeypatch.setattr(winograd, "_MIN_BANDS", 1)
    x = torch.randn(batch, 5, height, width, generator=rng, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, generator=rng, dtype=torch.float64)
    bias = torch.randn(4, generator=rng, dtype=torch.float64)
    expected = F.conv2d(x, weight, bias, padding=1)
    for relu in (False, True):
        padded = padded_nhwc(x, height + 2 + height % 2, width + 2 + width % 2)
        out = winograd_conv3x3(padded, winograd_weight(weight), bias, relu=relu)[:, :height, :width]
        assert relative_error(out.permute(0, 3, 1, 2), expected.relu() if relu else expected) <= 1e-12


def test_winograd_float32_rounding_is_the_direct_convs(rng):
    """At HRNet-OCR's widths (720 -> 512), float32 Winograd F(2x2, 3x3) stays as close to the float64 conv as
    the direct float32 conv does (measured ~4e-7 for both; the bound leaves room)."""
    x = torch.randn(1, 720, 12, 17, generator=rng, dtype=torch.float64)
    weight = (torch.rand(512, 720, 3, 3, generator=rng, dtype=torch.float64) * 2 - 1) * 1.5 / (720 * 9) ** 0.5
    bias = torch.rand(512, generator=rng, dtype=torch.float64) - 0.5
    truth = F.conv2d(x, weight, bias, padding=1)
    padded = padded_nhwc(x.float(), 14, 20)
    out = winograd_conv3x3(padded, winograd_weight(weight.float()), bias.float(), relu=False)[:, :12, :17]
    direct = F.conv2d(x.float(), weight.float(), bias.float(), padding=1)
    bound = max(3 * relative_error(direct.double(), truth), 2e-6)
    assert relative_error(out.permute(0, 3, 1, 2).double(), truth) <= bound


@pytest.mark.parametrize("conv", CONVS)
def test_channels_last_input_is_read_as_it_is(conv, rng):
    """In an optimized model the head gets channels-last features (no transpose then): the same outputs."""
    torch.manual_seed(0)
    head = OCRHead(16, 5, mid_channels=16, key_channels=8).double().eval()
    feats = torch.randn(2, 16, 7, 9, generator=rng, dtype=torch.float64)
    fused = FusedOCRHead(head, conv=conv)
    with torch.no_grad():
        outputs_close(fused(feats.contiguous(memory_format=torch.channels_last)), head(feats), torch.float64)
