"""ocrformer.context: the context heads the OCR paper compares with, built by name like OCR and FCN.

Every head: shapes, finite gradients for every parameter, odd sizes in train and eval mode, the aux branch of
the layout; ``create_model`` by every name on the tiny backbone and back from its own weights; each attention
against its formula written out in float64; parameter counts (and FLOPs) at the paper's 2048 -> 512 against the
OCR paper's table; ``optimize_for_inference``; the GT-OCR oracle refused.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ocrformer import OCRHead, attention_backend, create_model, list_models, optimize_for_inference
from ocrformer.context import (
    ASPP,
    CONTEXT_MODULES,
    OCR_PAPER_COMPLEXITY,
    BaseObjectContext,
    ChannelAttention,
    ContextHead,
    CrissCrossAttention,
    DoubleAttention,
    DualAttention,
    InterlacedSparseSelfAttention,
    PositionAttention,
    PyramidPooling,
    RecurrentCrissCross,
    SelfAttentionBlock,
    build_context,
)
from ocrformer.models import HEAD_PREFIXES, OCRNet
from ocrformer.models.ocrnet import HEADS, FCNHead

from .helpers.numerics import relative_error

CONTEXT_KEYS = list(CONTEXT_MODULES)
NEW_PREFIXES = [HEAD_PREFIXES[key] for key in CONTEXT_KEYS]
by_context = pytest.mark.parametrize("key", CONTEXT_KEYS)


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random parameters (none zero: the zero-initialised gammas and OCNet's output conv would hide the attention)
    and random BatchNorm statistics, in place."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            fan_in = param[0].numel() if param.dim() > 1 else 1
            param.copy_((torch.rand(param.shape, generator=generator) - 0.5) * 3 / fan_in**0.5)
        for sub in module.modules():
            if isinstance(sub, nn.BatchNorm2d):
                sub.weight.copy_(0.5 + torch.rand(sub.num_features, generator=generator))
                sub.running_mean.copy_(0.2 * torch.randn(sub.num_features, generator=generator))
                sub.running_var.copy_(0.5 + torch.rand(sub.num_features, generator=generator))
    return module


def numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def small_head(key: str) -> ContextHead:
    """A context head on 12 channels, width 16, with a 3x3 region branch on 10-channel region features."""
    context = build_context(key, 12, 16, key_channels=8)
    region = {"region_in_channels": 10, "region_channels": 6, "region_kernel_size": 3, "region_dropout": 0.1}
    return ContextHead(12, 3, context, **region)


# ---------------------------------------------------------------------------------------------- names
def test_every_head_has_a_prefix_and_every_name_is_listed():
    assert set(HEAD_PREFIXES) == set(HEADS) == {"ocr", "fcn", *CONTEXT_KEYS}
    prefixes = list(HEAD_PREFIXES.values())
    assert len(set(prefixes)) == len(prefixes) and not any("_" in p for p in prefixes)  # names split at "_"
    assert (HEAD_PREFIXES["ocr"], HEAD_PREFIXES["ppm"], HEAD_PREFIXES["aspp"]) == ("ocrnet", "pspnet", "deeplabv3")
    names = list_models()
    assert names[0] == "ocrnet_hrnet_w48"  # OCR first, as before
    for prefix in prefixes:
        assert f"{prefix}_tiny" in names and f"{prefix}_resnet101_d8" in names
    with pytest.raises(ValueError, match=r"head must be one of \['ocr', 'fcn', 'ppm'.*got 'psp'"):
        OCRNet("resnet10t", 3, head="psp")
    with pytest.raises(ValueError, match=r"unknown context module 'ocr'"):
        build_context("ocr", 8, 8)


# ---------------------------------------------------------------------------------------------- heads
@by_context
def test_head_trains_with_finite_gradients_at_an_odd_size(key):
    torch.manual_seed(0)
    head = randomize(small_head(key)).train()
    feats, region_feats = torch.randn(2, 12, 13, 17), torch.randn(2, 10, 13, 17)
    out = head(feats, region_feats)
    assert set(out) == {"logits", "aux_logits"}
    assert out["logits"].shape == out["aux_logits"].shape == (2, 3, 13, 17)
    (out["logits"].square().mean() + 0.4 * out["aux_logits"].square().mean()).backward()
    for name, param in head.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"{name} gets no gradient"


@by_context
@pytest.mark.parametrize("size", [(13, 17), (5, 3), (1, 1)])
def test_head_in_eval_mode_at_odd_sizes(key, size):
    head = randomize(small_head(key)).eval()
    feats = torch.randn(1, 12, *size)
    with torch.no_grad():
        out = head(feats, torch.randn(1, 10, *size))
        again = head(feats, torch.randn(1, 10, *size))
    assert out["logits"].shape == (1, 3, *size) and torch.isfinite(out["logits"]).all()
    assert torch.equal(out["logits"], again["logits"])  # deterministic; the logits do not read region_feats


def test_context_head_errors():
    with pytest.raises(ValueError, match=r"context must be an nn.Module with an int out_channels"):
        ContextHead(8, 3, nn.ReLU())
    head = small_head("ppm")
    with pytest.raises(ValueError, match=r"feats has 6 channels but the module was built with in_channels=12"):
        head(torch.zeros(1, 6, 4, 4))
    with pytest.raises(ValueError, match=r"region_feats \(1, 10, 3, 4\) must match feats \(1, 12, 4, 4\)"):
        head.eval()(torch.zeros(1, 12, 4, 4), torch.zeros(1, 10, 3, 4))
    with pytest.raises(ValueError, match=r"query_channels must be a positive int, got 0"):
        DualAttention(8, 4)  # C / 8 = 0


def test_fcn_head_keeps_its_state_dict_keys():
    """Released and saved FCN models load by these names: FCNHead is now a ContextHead, its context ``pixels``."""
    keys = list(FCNHead(8, 3, mid_channels=4, region_channels=5).state_dict())
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert keys == [
        "aux.0.conv.weight", *(f"aux.0.bn.{k}" for k in bn), "aux.2.weight", "aux.2.bias",
        "pixels.conv.weight", *(f"pixels.bn.{k}" for k in bn), "classifier.weight", "classifier.bias",
    ]


@by_context
def test_the_aux_branch_is_fcns_and_follows_the_layout(key):
    settings = {"region_kernel_size": 3, "region_channels": 8, "region_dropout": 0.1, "dropout": 0.2}
    model, fcn = create_model(f"{HEAD_PREFIXES[key]}_tiny", 3, **settings), create_model("fcn_tiny", 3, **settings)
    aux = {k: v.shape for k, v in model.head.state_dict().items() if k.startswith("aux.")}
    assert aux == {k: v.shape for k, v in fcn.head.state_dict().items() if k.startswith("aux.")}
    assert aux["aux.0.conv.weight"] == (8, 64, 3, 3)  # the tiny backbone's 64 channels -> 8, 3x3
    assert model.head.aux[1].p == 0.1 and model.head.dropout.p == 0.2


# ------------------------------------------------------------------------------------------- by name
@pytest.mark.parametrize("prefix", NEW_PREFIXES)
def test_create_model_by_name_on_the_tiny_backbone(prefix):
    torch.manual_seed(0)
    key_width = {"ocnet": 8, "isanet": 8}.get(prefix)  # read back from the weights below
    overrides = {"key_channels": key_width} if key_width else {}
    model = create_model(f"{prefix}_tiny", 5, **overrides).train()
    head = model.head
    assert type(head) is ContextHead and head.context.out_channels == 32  # the tiny preset's mid_channels
    assert numel(head) < 100_000  # tiny stays tiny (PPM, the widest, has 69k)
    images = torch.randn(2, 3, 37, 29)
    out = model(images)
    assert all(v.shape == (2, 5, 37, 29) for v in out.values())
    sum(v.mean() for v in out.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    reloaded = create_model(f"{prefix}_tiny", weights=model.state_dict()).eval()  # widths from the weights
    with torch.no_grad():
        assert torch.equal(reloaded(images)["logits"], model(images)["logits"])


@pytest.mark.parametrize("prefix", NEW_PREFIXES)
def test_the_oracle_stays_ocr_only(prefix):
    model = create_model(f"{prefix}_tiny", 3).eval()
    head = next(key for key, p in HEAD_PREFIXES.items() if p == prefix)
    with pytest.raises(ValueError, match=rf"need an OCRHead: the '{head}' head has no object regions to replace"):
        model(torch.randn(1, 3, 16, 16), oracle_labels=torch.zeros(1, 16, 16, dtype=torch.long))


# ---------------------------------------------------------------------- attentions, written out in float64
def test_position_attention_is_danets_pam():
    pam = randomize(PositionAttention(8, 2)).double()
    x = torch.randn(2, 8, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        q, k, v = pam.query(x).flatten(2), pam.key(x).flatten(2), pam.value(x).flatten(2)  # (B, D, N), (B, C, N)
        weights = (q.transpose(1, 2) @ k).softmax(-1)  # (B, N, N): query rows, softmax over the keys, unscaled
        expected = pam.gamma * (v @ weights.transpose(1, 2)).view_as(x) + x
        for backend in ("matmul", "sdpa"):
            with attention_backend(backend):
                torch.testing.assert_close(pam(x), expected, rtol=1e-12, atol=1e-12)


def test_channel_attention_is_danets_max_minus_energy_softmax():
    cam = ChannelAttention().double()
    with torch.no_grad():
        cam.gamma.fill_(0.7)
        x = torch.randn(2, 8, 4, 5, dtype=torch.float64)
        flat = x.flatten(2)
        energy = flat @ flat.transpose(1, 2)
        weights = (energy.amax(-1, keepdim=True) - energy).softmax(-1)
        torch.testing.assert_close(cam(x), 0.7 * (weights @ flat).view_as(x) + x)


def test_criss_cross_attention_is_one_softmax_over_row_and_column():
    cca = randomize(CrissCrossAttention(16), seed=1).double().eval()
    x = torch.randn(1, 16, 3, 5, dtype=torch.float64)
    height, width = x.shape[2:]
    with torch.no_grad():
        q, k, v = cca.query(x)[0], cca.key(x)[0], cca.value(x)[0]
        expected = torch.empty_like(x[0])
        for i in range(height):
            for j in range(width):
                # the row (itself included) and the column without itself: H + W - 1 positions
                keys = [(i, w) for w in range(width)] + [(h, j) for h in range(height) if h != i]
                weights = torch.stack([q[:, i, j] @ k[:, a, b] for a, b in keys]).softmax(0)
                expected[:, i, j] = sum(w * v[:, a, b] for w, (a, b) in zip(weights, keys, strict=True))
        actual = cca(x)[0]
    torch.testing.assert_close(actual, cca.gamma * expected + x[0])


def test_recurrence_applies_one_shared_attention_twice():
    rcca = randomize(RecurrentCrissCross(6, 16, full_head=False)).double().eval()
    x = torch.randn(1, 6, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(rcca(x), rcca.attention(rcca.attention(rcca.front(x))))
    assert rcca.recurrence == 2 and len(list(rcca.children())) == 2  # front and one attention: shared weights


@pytest.mark.parametrize("norm_out", [False, True])
def test_self_attention_block_is_scaled_dot_product_over_all_positions(norm_out):
    block = randomize(SelfAttentionBlock(8, key_channels=4, value_channels=6, norm_out=norm_out)).double().eval()
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        q, k, v = block.query(x).flatten(2), block.key(x).flatten(2), block.value(x).flatten(2)
        weights = (q.transpose(1, 2) @ k / 2.0).softmax(-1)  # scale Dk ** -0.5 = 1/2
        expected = block.out((v @ weights.transpose(1, 2)).view(2, 6, 3, 4))
        for backend in ("matmul", "sdpa"):
            with attention_backend(backend):
                torch.testing.assert_close(block(x), expected)


def test_interlaced_groups_are_strided_then_local():
    isa = randomize(InterlacedSparseSelfAttention(8, 16, key_channels=4, groups=(2, 3)), seed=2).double().eval()
    feats = torch.randn(2, 16, 4, 6, dtype=torch.float64)
    with torch.no_grad(), attention_backend("matmul"):
        long_range = torch.empty_like(feats)
        for r in range(2):  # each long-range group: every 2nd row and 3rd column, from offset (r, s)
            for s in range(3):
                long_range[:, :, r::2, s::3] = isa.long_range(feats[:, :, r::2, s::3])
        expected = torch.empty_like(feats)
        for a in range(2):  # each short-range group: one 2 x 3 block
            for b in range(2):
                block = (slice(None), slice(None), slice(2 * a, 2 * a + 2), slice(3 * b, 3 * b + 3))
                expected[block] = isa.short_range(long_range[block])
        torch.testing.assert_close(isa.interlaced(feats), expected)


def test_double_attention_is_a2nets_gather_and_distribute():
    """Both steps run through ``attend`` with the 1x1 convs' weights as queries/keys; written out, they are the
    A2-Net block: softmax over positions of B = conv(x) pools A = conv(x), softmax over n of V = conv(x) mixes."""
    a2 = randomize(DoubleAttention(6, 8, descriptors=3, descriptor_channels=5)).double().eval()
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        feats = a2.front(x)
        features = a2.features(feats).flatten(2)  # (B, m, N)
        gather = a2.gather(feats).flatten(2).softmax(-1)  # (B, n, N): each map over the positions
        distribute = a2.distribute(feats).flatten(2).softmax(1)  # (B, n, N): each position over the n
        descriptors = gather @ features.transpose(1, 2)  # (B, n, m)
        context = (descriptors.transpose(1, 2) @ distribute).view(2, 5, 3, 4)  # (B, m, H, W)
        expected = a2.fuse(torch.cat([a2.up(context), feats], dim=1))
        for backend in ("matmul", "sdpa"):
            with attention_backend(backend):
                torch.testing.assert_close(a2(x), expected)


def test_pyramid_pooling_and_aspp_branches():
    ppm = randomize(PyramidPooling(4, 6, align_corners=True)).double().eval()
    x = torch.randn(1, 4, 7, 9, dtype=torch.float64)
    with torch.no_grad():
        levels = [stage(x) for stage in ppm.stages]
        assert [tuple(level.shape[2:]) for level in levels] == [(1, 1), (2, 2), (3, 3), (6, 6)]
        up = [nn.functional.interpolate(level, (7, 9), mode="bilinear", align_corners=True) for level in levels]
        torch.testing.assert_close(ppm(x), ppm.bottleneck(torch.cat([x, *up], 1)))
    aspp = ASPP(4, 6)
    assert [b.conv.dilation for b in aspp.branches] == [(1, 1), (12, 12), (24, 24), (36, 36)]
    assert aspp.project.conv.in_channels == 5 * 6


# ------------------------------------------------------------------------ against the OCR paper's table
def conv(cin: int, cout: int, k: int = 1, bias: bool = False) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def conv_bn(cin: int, cout: int, k: int = 1) -> int:
    return conv(cin, cout, k) + 2 * cout  # bias-free conv + BN affine


CIN, C = 2048, 512
FRONT = conv_bn(CIN, C, 3)
QKV_REDUCED = 2 * conv(C, C // 8, bias=True) + conv(C, C, bias=True) + 1  # DANet/CCNet q, k, v and gamma
KEY_QUERY = 2 * (conv_bn(C, 256) + conv_bn(256, 256))  # OCNet/ISA: 2-layer transforms, Dk = 256
FUSE = conv_bn(2 * C, C)
# key -> (module at the table's widths, its parameters from the upstream layer lists, the table's row)
LAYER_COUNTS = {
    "ppm": (lambda: PyramidPooling(CIN, C), 4 * conv_bn(CIN, C) + conv_bn(CIN + 4 * C, C, 3), "ppm"),
    "aspp": (lambda: ASPP(CIN, 256), 2 * conv_bn(CIN, 256) + 3 * conv_bn(CIN, 256, 3) + conv_bn(5 * 256, 256), "aspp"),
    "danet": (lambda: DualAttention(CIN, C), 2 * FRONT + QKV_REDUCED + 1 + 2 * conv_bn(C, C, 3), "danet"),
    "danet core": (lambda: DualAttention(CIN, C, full_head=False), FRONT + QKV_REDUCED + 1, "danet"),
    "ccnet": (
        lambda: RecurrentCrissCross(CIN, C), FRONT + QKV_REDUCED + conv_bn(C, C, 3) + conv_bn(CIN + C, C, 3), "cc"
    ),
    "ccnet core": (lambda: RecurrentCrissCross(CIN, C, full_head=False), FRONT + QKV_REDUCED, "cc"),
    "self_attention": (
        lambda: BaseObjectContext(CIN, C), FRONT + KEY_QUERY + conv(C, 256) + conv(256, C, bias=True) + FUSE,
        "self_attention",
    ),
    "isa": (
        lambda: InterlacedSparseSelfAttention(CIN, C), FRONT + 2 * (KEY_QUERY + conv(C, C) + conv_bn(C, C)) + FUSE, None
    ),
    "double_attention": (
        lambda: DoubleAttention(CIN, C),
        FRONT + conv(C, 128, bias=True) + conv(C, 128) + conv(C, 128, bias=True) + conv(128, C, bias=True) + FUSE,
        "double_attention",
    ),
}


def meta(build) -> nn.Module:
    with torch.device("meta"):
        return build().eval()


@pytest.mark.parametrize("name", list(LAYER_COUNTS))
def test_parameters_are_the_upstream_layers(name):
    """Every module at Cin = 2048, C = 512 (ASPP 256) has exactly the parameters of the layers its docstring
    lists (widths, kernels, shared weights); the tests below compare these with the paper."""
    build, expected, _ = LAYER_COUNTS[name]
    assert numel(meta(build)) == expected


def paper_params(row: str) -> float:
    return OCR_PAPER_COMPLEXITY[row][0]


@pytest.mark.parametrize("name", ["ppm", "aspp", "double_attention"])
def test_parameters_match_the_papers_table(name):
    build, _, row = LAYER_COUNTS[name]
    # The table's precision is 0.1M. PPM 23.07 (23.1), ASPP 15.54 (15.5), A2-Net 10.23 (10.2).
    assert abs(numel(meta(build)) / 1e6 - paper_params(row)) <= 0.05


def test_self_attention_and_ocr_are_what_opensegs_scripts_count_not_the_table():
    """The table's 10.5M for Self-Attention and for OCR is 0.12M below what the same layouts have, counted as
    openseg's own complexity scripts count them (base_oc_block.py and spatial_ocr_block.py ``__main__``: the 3x3
    front conv + the module, conv biases included; the OCR run takes the soft regions as given). Both modules are
    the same arrangement -- 2-layer key/query transforms to 256, values to 256, back to 512, a 1024 -> 512
    fusion -- and come out alike; what the table left out is not recoverable from the paper, so the gap is
    asserted rather than hidden."""
    openseg_biases = 512 + 4 * 256 + 256 + 512  # front conv, key/query convs, value conv, fusion conv
    self_attention = numel(meta(LAYER_COUNTS["self_attention"][0]))
    assert self_attention + openseg_biases == 10_623_744  # openseg base_oc run: conv_3x3 + BaseOC_Module
    assert round(self_attention / 1e6 - paper_params("self_attention"), 2) == 0.12
    with torch.device("meta"):
        ocr = OCRHead(CIN, 19)
    regions_given = numel(ocr) - numel(ocr.classifier) - numel(ocr.decoder.key_proj) - 19 * CIN - 19
    assert round(regions_given / 1e6 - paper_params("ocr"), 2) == 0.12


@pytest.mark.parametrize("name", ["danet", "danet core", "ccnet", "ccnet core"])
def test_danet_and_ccnet_parameters_fit_neither_layout(name):
    """The table's 10.6M for DANet and for CC-Attention is neither their attention cores' count (9.77M) nor their
    full heads' (23.9M) -- while its FLOPs are exactly the full heads' (next test). Asserted, not fitted: no
    layout in DANet's, CCNet's or mmsegmentation's code gives 10.6M at 2048 -> 512."""
    build, _, row = LAYER_COUNTS[name]
    params = numel(meta(build)) / 1e6
    assert abs(params - paper_params(row)) > 0.5
    assert round(params, 2) == (9.77 if name.endswith("core") else {"danet": 23.93, "ccnet": 23.92}[name])


@pytest.mark.parametrize(
    ("name", "tolerance"),
    # The four full-size layouts that match: within 0.1%. OCNet 622.8 vs 619 and A2-Net 336.1 vs 338: within 1%.
    [("ppm", 1e-3), ("aspp", 1e-3), ("danet", 1e-3), ("ccnet", 1e-3), ("self_attention", 1e-2),
     ("double_attention", 1e-2)],
)
def test_flops_match_the_papers_table(name, tolerance):
    build, _, row = LAYER_COUNTS[name]
    model = meta(build)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.empty(1, CIN, 128, 128, device="meta"))
    gflops = counter.get_total_flops() / 1e9  # a multiply-add = 2 FLOPs, as the table counts
    assert abs(gflops / OCR_PAPER_COMPLEXITY[row][1] - 1) <= tolerance, gflops


# ----------------------------------------------------------------------------------- optimize_for_inference
@pytest.mark.parametrize("prefix", NEW_PREFIXES)
def test_optimize_for_inference_folds_every_head_batch_norm_and_keeps_the_function(prefix):
    torch.manual_seed(0)
    model = create_model(f"{prefix}_tiny", 5).eval()
    randomize(model.head)
    optimized = optimize_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in optimized.head.modules())
    for size in [(45, 61), (33, 31)]:
        images = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected, actual = model(images), optimized(images)
        for key in ("logits", "aux_logits"):
            assert relative_error(actual[key], expected[key]) <= 1e-5, (size, key)
