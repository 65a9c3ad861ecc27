"""FusedOCRHead (ocrformer/fused_head.py) == the classic head and OCRHead's modules; the Winograd conv."""

import pytest
import torch
import torch.nn.functional as F

from ocrformer import FusedOCRHead, OCRHead, fused_head
from ocrformer.convert import convert_checkpoint
from ocrformer.winograd import WINOGRAD, padded_nhwc, winograd_conv3x3, winograd_weight

from .helpers.numerics import classic_and_ocrformer, head_state_dict, relative_error

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
CONVS = ["direct", "winograd2", "winograd4", "auto"]


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
@pytest.mark.parametrize("m", sorted(WINOGRAD))
def test_winograd_matrices_are_exact_minimal_filtering(m):
    """A^T [(G g) * (B^T d)] == correlate(d, g) for F(m, 3), in exact rational arithmetic, for every unit g and d
    (hence for all, by linearity); and every transform row starts from a coefficient 1, as the adds expect."""
    tiles = WINOGRAD[m]
    n = tiles.n
    for k in range(3):
        for s in range(n):
            for p in range(m):
                value = sum(tiles.at[p][i] * tiles.g[i][k] * tiles.bt[i][s] for i in range(n))
                assert value == (1 if s == p + k else 0), (p, k, s)
    assert all(1 in row for row in (*tiles.at, *tiles.bt))
    assert all(row[tiles.bias_position] == 1 for row in tiles.at)


def test_the_transforms_adds_are_the_matrix_product(rng):
    """``_combine`` (the transforms' chains of adds) == the matrix product, single-term rows included."""
    from fractions import Fraction

    from ocrformer.winograd import _combine

    matrix = [[Fraction(1), Fraction(-3, 2), 0], [0, Fraction(1), 0], [Fraction(2), Fraction(4), Fraction(1)]]
    inputs = torch.randn(3, 4, 5, generator=rng, dtype=torch.float64)
    out = torch.empty_like(inputs)
    _combine(matrix, inputs, out)
    expected = torch.tensor([[float(c) for c in row] for row in matrix], dtype=torch.float64) @ inputs.view(3, -1)
    assert relative_error(out.view(3, -1), expected) <= 1e-15


@pytest.mark.parametrize("m", sorted(WINOGRAD))
@pytest.mark.parametrize("band_tiles", [1, 4, 8, 256])
@pytest.mark.parametrize(
    ("batch", "height", "width"), [(1, 1, 1), (2, 5, 7), (3, 8, 6), (1, 2, 11), (1, 10, 4), (2, 10, 3), (1, 9, 13)]
)
def test_winograd_conv3x3_is_the_conv(m, batch, height, width, band_tiles, rng, monkeypatch):
    """float64 against F.conv2d, in bands of one or more tile rows (each spanning the batch), the last one
    partial where the tile rows do not divide evenly (5 tile rows in bands of 2)."""
    from ocrformer import winograd

    tiles = WINOGRAD[m]
    monkeypatch.setattr(winograd, "_BAND_POSITIONS", band_tiles * tiles.n**2)
    x = torch.randn(batch, 5, height, width, generator=rng, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, generator=rng, dtype=torch.float64)
    bias = torch.randn(4, generator=rng, dtype=torch.float64)
    expected = F.conv2d(x, weight, bias, padding=1)
    for relu in (False, True):
        padded = padded_nhwc(x, tiles)
        out = winograd_conv3x3(padded, winograd_weight(weight, tiles), bias, relu=relu, tiles=tiles)
        out = out[:, :height, :width].permute(0, 3, 1, 2)
        assert relative_error(out, expected.relu() if relu else expected) <= 1e-12


# F(m, 3)'s float32 error against float64, as a multiple of the direct float32 conv's (measured at 720 -> 512
# channels: ~1x for F(2x2), ~8x for F(4x4) at its points 0, 1, -1, 1/2, -2; the usual 0, +-1, +-2 gave ~20x).
ROUNDING_BOUND = {2: 3.0, 4: 15.0}


@pytest.mark.parametrize("m", sorted(WINOGRAD))
def test_winograd_float32_rounding(m, rng):
    """At HRNet-OCR's widths (720 -> 512), float32 Winograd stays within ROUNDING_BOUND times the direct float32
    conv's distance to the float64 conv."""
    tiles = WINOGRAD[m]
    x = torch.randn(1, 720, 12, 17, generator=rng, dtype=torch.float64).relu()
    weight = (torch.rand(512, 720, 3, 3, generator=rng, dtype=torch.float64) * 2 - 1) * 1.5 / (720 * 9) ** 0.5
    bias = torch.rand(512, generator=rng, dtype=torch.float64) - 0.5
    truth = F.conv2d(x, weight, bias, padding=1)
    padded = padded_nhwc(x.float(), tiles)
    out = winograd_conv3x3(padded, winograd_weight(weight.float(), tiles), bias.float(), relu=False, tiles=tiles)
    direct = F.conv2d(x.float(), weight.float(), bias.float(), padding=1)
    error = relative_error(out[:, :12, :17].permute(0, 3, 1, 2).double(), truth)
    assert error <= ROUNDING_BOUND[m] * relative_error(direct.double(), truth)


def test_auto_conv_by_the_maps_size():
    head = OCRHead(8, 3, mid_channels=8, key_channels=4).eval()
    auto = FusedOCRHead(head)
    assert auto.conv == "auto"
    assert auto.conv_for(1, 128, 256) == auto.conv_for(1, 32, 64) == "winograd4"
    assert auto.conv_for(1, 16, 32) == auto.conv_for(1, 31, 64) == "winograd2"
    assert auto.conv_for(1, 8, 16) == auto.conv_for(1, 15, 32) == "direct"
    assert auto.conv_for(4, 16, 32) == "winograd4"  # pixels of the whole batch
    assert auto.conv_for(1, 128, 256, "cuda") == "direct"  # AUTO_CONV was measured on the CPU, in float32
    assert FusedOCRHead(head).to(torch.bfloat16).conv_for(1, 128, 256) == "direct"
    assert FusedOCRHead(head).double().conv_for(1, 128, 256) == "winograd4"
    assert FusedOCRHead(head, conv="winograd2").conv_for(1, 64, 128) == "winograd2"
    assert FusedOCRHead(head, conv="direct").conv_for(1, 128, 256) == "direct"


def test_under_autocast_it_computes_in_its_own_dtype(rng):
    """Features that autocast made bfloat16 are cast back: the float32 snapshot's outputs on those values, not an
    error from mixed dtypes (as before)."""
    torch.manual_seed(0)
    fused = FusedOCRHead(OCRHead(16, 5, mid_channels=16, key_channels=8).eval())
    feats = torch.randn(1, 16, 6, 7, generator=rng).bfloat16()
    with torch.no_grad():
        expected = fused(feats.float())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual = fused(feats)
    for name in ("logits", "aux_logits"):
        assert actual[name].dtype == torch.float32
        assert torch.equal(actual[name], expected[name]), name


def test_auto_conv_runs_what_it_chooses(monkeypatch, rng):
    """The auto head really runs the conv chosen for the size, and computes the head with each (float64)."""
    from ocrformer import fused_head as module

    monkeypatch.setattr(module, "AUTO_CONV", ((30, "winograd4"), (20, "winograd2")))
    calls = []
    original = module.winograd_conv3x3
    monkeypatch.setattr(module, "winograd_conv3x3", lambda *a, **k: calls.append(k["tiles"].m) or original(*a, **k))
    torch.manual_seed(0)
    head = OCRHead(8, 3, mid_channels=8, key_channels=4).double().eval()
    fused = FusedOCRHead(head)
    with torch.no_grad():
        for size in ((3, 5), (5, 5), (5, 7)):
            feats = torch.randn(1, 8, *size, generator=rng, dtype=torch.float64)
            outputs_close(fused(feats), head(feats), torch.float64)
    assert calls == [2, 4]  # 15 pixels: direct; 25: F(2x2); 35: F(4x4)


@pytest.mark.parametrize("conv", CONVS)
def test_channels_last_input_is_read_as_it_is(conv, rng):
    """In an optimized model the head gets channels-last features (no transpose then): the same outputs."""
    torch.manual_seed(0)
    head = OCRHead(16, 5, mid_channels=16, key_channels=8).double().eval()
    feats = torch.randn(2, 16, 7, 9, generator=rng, dtype=torch.float64)
    fused = FusedOCRHead(head, conv=conv)
    with torch.no_grad():
        outputs_close(fused(feats.contiguous(memory_format=torch.channels_last)), head(feats), torch.float64)
