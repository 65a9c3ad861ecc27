"""OCRDecoder / OCREncoder / OCRHead: the attention view, multi-head, input errors, compile and export."""

import copy

import pytest
import torch
import torch.nn.functional as F

from ocrformer import OCRDecoder, OCREncoder, OCRHead

from .helpers.numerics import cuda, relative_error


def small_head(**kwargs):
    torch.manual_seed(0)
    return OCRHead(16, 5, mid_channels=16, key_channels=8, **kwargs).eval()


# ---------------------------------------------------------------------------------------- the decoder
def test_regions_are_spatial_softmax_weighted_means_of_pixels():
    torch.manual_seed(0)
    decoder = OCRDecoder(6, 3, mid_channels=4).double().eval()
    feats = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        out = decoder(feats)
    assert out.regions.shape == (2, 3, 4)
    assert out.region_logits.shape == (2, 3, 5, 7)
    assert out.pixels.shape == (2, 4, 5, 7)
    weights = F.softmax(out.region_logits.flatten(2), dim=-1)  # (B, K, N), sums to 1 over pixels
    expected = torch.einsum("bkn,bcn->bkc", weights, out.pixels.flatten(2))
    assert relative_error(out.regions, expected) <= 1e-12


def test_query_bias_moves_the_logits_but_not_the_regions():
    torch.manual_seed(0)
    decoder = OCRDecoder(6, 3, mid_channels=4).double().eval()
    feats = torch.randn(1, 6, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        before = decoder(feats)
        decoder.query_bias += torch.tensor([5.0, -3.0, 0.5], dtype=torch.float64)
        after = decoder(feats)
    assert not torch.allclose(before.region_logits, after.region_logits)
    assert relative_error(after.regions, before.regions) <= 1e-14


def test_regions_from_separate_features():
    torch.manual_seed(0)
    decoder = OCRDecoder(8, 3, mid_channels=4, region_in_channels=6).eval()
    out = decoder(torch.randn(2, 8, 5, 5), torch.randn(2, 6, 5, 5))
    assert out.regions.shape == (2, 3, 4) and out.region_logits.shape == (2, 3, 5, 5)
    with pytest.raises(ValueError, match="must match feats"):
        decoder(torch.randn(2, 8, 5, 5), torch.randn(2, 6, 4, 5))


# ---------------------------------------------------------------------------------------- the encoder
def written_out_multihead_encoder(encoder: OCREncoder, pixels, regions):
    """The encoder with the per-head attention spelled out channel group by channel group."""
    heads, (batch, _, height, width) = encoder.num_heads, pixels.shape
    region_map = regions.transpose(1, 2)[..., None]  # (B, C, K, 1)
    q = encoder.query_proj(pixels).flatten(2)  # (B, Dk, N)
    k = encoder.key_proj(region_map).flatten(2)  # (B, Dk, K)
    v = encoder.value_proj(region_map).flatten(2)  # (B, Dk, K)
    d = q.shape[1] // heads
    context = []
    for h in range(heads):
        group = slice(h * d, (h + 1) * d)
        sim = torch.einsum("bdn,bdk->bnk", q[:, group], k[:, group]) * d**-0.5
        context.append(torch.einsum("bnk,bdk->bdn", sim.softmax(dim=-1), v[:, group]))
    context = torch.cat(context, dim=1).reshape(batch, -1, height, width)
    return encoder.fuse(torch.cat([encoder.out_proj(context), pixels], dim=1))


@pytest.mark.parametrize("num_heads", [1, 2, 4, 8])
def test_multihead_encoder_matches_written_out_heads(num_heads):
    torch.manual_seed(num_heads)
    encoder = OCREncoder(12, key_channels=16, num_heads=num_heads).double().eval()
    pixels, regions = torch.randn(2, 12, 5, 6, dtype=torch.float64), torch.randn(2, 7, 12, dtype=torch.float64)
    with torch.no_grad():
        expected = written_out_multihead_encoder(encoder, pixels, regions)
        assert relative_error(encoder(pixels, regions), expected) <= 1e-12


def test_heads_change_the_result():
    torch.manual_seed(0)
    one = OCREncoder(12, key_channels=16, num_heads=1).eval()
    four = OCREncoder(12, key_channels=16, num_heads=4).eval()
    four.load_state_dict(one.state_dict())  # same weights, only the softmax grouping differs
    pixels, regions = torch.randn(1, 12, 4, 4), torch.randn(1, 5, 12)
    with torch.no_grad():
        assert not torch.allclose(one(pixels, regions), four(pixels, regions))


def test_multihead_head_runs_and_trains():
    head = small_head(num_heads=4).train()
    out = head(torch.randn(2, 16, 6, 7))
    (out["logits"].sum() + out["aux_logits"].sum()).backward()
    assert all(p.grad is not None for p in head.parameters())


# -------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("feats", "message"),
    [
        (torch.randn(16, 6, 6), r"feats must be a 4-D tensor \(B, in_channels, H, W\), got \(16, 6, 6\)"),
        (torch.randn(1, 12, 6, 6), r"feats has 12 channels but the module was built with in_channels=16"),
        ([1.0], r"feats must be a 4-D tensor .* got list"),
    ],
)
def test_bad_feats_are_named(feats, message):
    with pytest.raises(ValueError, match=message):
        small_head()(feats)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key_channels": 10, "num_heads": 3}, r"key_channels \(10\) must be divisible by num_heads \(3\)"),
        ({"num_heads": 0}, "num_heads must be a positive int"),
        ({"mid_channels": 2.5}, "mid_channels must be a positive int"),
        ({"dropout": 1.5}, r"dropout must be in \[0, 1\)"),
        ({"backend": "flash"}, "unknown attention backend 'flash'"),
    ],
)
def test_bad_construction_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OCRHead(16, 5, **kwargs)


def test_bad_regions_for_encoder():
    encoder = OCREncoder(8, key_channels=4)
    with pytest.raises(ValueError, match=r"regions must be \(B, K, channels\) = \(2, K, 8\), got \(2, 3, 7\)"):
        encoder(torch.randn(2, 8, 4, 4), torch.randn(2, 3, 7))


def test_backend_property_reaches_both_attentions():
    head = small_head()
    head.backend = "matmul"
    assert head.decoder.backend == head.encoder.backend == "matmul"
    with pytest.raises(ValueError, match="OCRHead.backend"):
        head.backend = "nope"


# --------------------------------------------------------------------------------- compile and export
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_torch_compile_matches_eager(mode):
    head = small_head(num_heads=2, dropout=0.0).train(mode == "train")
    twin = copy.deepcopy(head)  # training forwards update BatchNorm statistics: one copy each
    feats = torch.randn(2, 16, 9, 11)
    expected, actual = head(feats), torch.compile(twin)(feats)
    for name in ("logits", "aux_logits"):
        assert relative_error(actual[name], expected[name]) <= 1e-5
    if mode == "train":
        grads = torch.autograd.grad(actual["logits"].sum(), twin.decoder.queries)[0]
        expected_grads = torch.autograd.grad(expected["logits"].sum(), head.decoder.queries)[0]
        assert relative_error(grads, expected_grads) <= 1e-4


def test_torch_export_matches_eager():
    head = small_head(num_heads=2)
    feats = torch.randn(2, 16, 9, 11)
    program = torch.export.export(head, (feats,))
    with torch.no_grad():
        expected, actual = head(feats), program.module()(feats)
    for name in ("logits", "aux_logits"):
        assert relative_error(actual[name], expected[name]) <= 1e-6


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    head = small_head()
    feats = torch.randn(1, 16, 12, 10)
    path = tmp_path / "ocr_head.onnx"
    torch.onnx.export(head, (feats,), path, dynamo=True, input_names=["feats"], output_names=["logits", "aux_logits"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, aux_logits = session.run(["logits", "aux_logits"], {"feats": feats.numpy()})
    with torch.no_grad():
        expected = head(feats)
    assert relative_error(torch.from_numpy(logits), expected["logits"]) <= 1e-5
    assert relative_error(torch.from_numpy(aux_logits), expected["aux_logits"]) <= 1e-5


# ------------------------------------------------------------------------------------------------ GPU
@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["auto", "xformers", "sdpa", "matmul"])
def test_head_on_cuda_in_bf16_autocast_tracks_float64(backend):
    from .helpers.numerics import classic_and_ocrformer

    classic, head = classic_and_ocrformer(48, 19, dtype=torch.float64, mid_channels=64, key_channels=32)
    classic.eval(), head.eval()
    feats = torch.randn(2, 48, 32, 40, dtype=torch.float64)
    with torch.no_grad():
        expected = classic(feats)
    head = head.float().cuda()
    head.backend = backend
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        actual = head(feats.float().cuda())
    for name in ("logits", "aux_logits"):
        assert relative_error(actual[name].double().cpu(), expected[name]) <= 5e-2


def test_the_decoder_layer_is_a_parameter_free_seam(rng):
    """OCRDecoder runs one OCRDecoderLayer: softmax over the pixels of the query-key products, times the values;
    it adds no state-dict keys (released checkpoints keep loading) and follows the head's backend."""
    from ocrformer import OCRDecoderLayer

    layer = OCRDecoderLayer(scale=0.5, backend="matmul")
    queries = torch.randn(3, 4, generator=rng, dtype=torch.float64)
    keys = torch.randn(2, 7, 4, generator=rng, dtype=torch.float64)
    values = torch.randn(2, 7, 5, generator=rng, dtype=torch.float64)
    expected = torch.softmax(0.5 * queries @ keys.transpose(1, 2), dim=-1) @ values
    assert relative_error(layer(queries, keys, values), expected) <= 1e-12
    assert relative_error(layer(queries.expand(2, 3, 4), keys, values), expected) <= 1e-12
    assert not list(layer.parameters()) and not layer.state_dict()
    head = OCRHead(8, 3, mid_channels=8, key_channels=4)
    assert not any("layer" in key for key in head.state_dict())
    head.backend = "sdpa"
    assert head.decoder.layer.backend == "sdpa" == head.decoder.backend
