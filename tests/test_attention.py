"""ocrformer.attend: backends agree with the matmul reference; refusals and overrides say what they do."""

import dataclasses

import pytest
import torch

import ocrformer
from ocrformer import attend, attention, attention_backend, available_backends
from ocrformer.attention import BACKENDS, ENV_VAR, choose_backend, key_chunks, unsupported_reasons

from .helpers.numerics import cuda, relative_error

# (B, heads, Lq, Lk, D, Dv): the decoder shape (few queries, many keys, Dv != D), the encoder shape (many
# queries, few keys, several heads), and the edge cases of a single query or a single key.
SHAPES = [
    (2, 1, 19, 300, 40, 24),
    (2, 4, 300, 19, 8, 8),
    (1, 2, 1, 50, 16, 16),
    (3, 1, 7, 1, 5, 9),
]


def qkv(shape, dtype=torch.float64, device="cpu", requires_grad=False, seed=0):
    b, h, lq, lk, d, dv = shape
    g = torch.Generator().manual_seed(seed)
    tensors = [
        torch.randn(*s, generator=g, dtype=torch.float64) for s in ((b, h, lq, d), (b, h, lk, d), (b, h, lk, dv))
    ]
    return [t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for t in tensors]


def explicit_attention(q, k, v, scale):
    """Independent of the library: a loop over (batch, head) with the softmax written out."""
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            logits = scale * q[b, h] @ k[b, h].T
            weights = torch.exp(logits - logits.max(dim=-1, keepdim=True).values)
            out[b, h] = (weights / weights.sum(dim=-1, keepdim=True)) @ v[b, h]
    return out


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matmul_is_the_written_out_formula(shape):
    q, k, v = qkv(shape)
    expected = explicit_attention(q, k, v, shape[4] ** -0.5)
    assert relative_error(attend(q, k, v, backend="matmul"), expected) <= 1e-12


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("backend", ["sdpa", "auto"])
def test_backends_agree_with_matmul_in_float64(shape, backend):
    q, k, v = qkv(shape, requires_grad=True)
    out = attend(q, k, v, backend=backend, scale=0.37)
    assert out.shape == (*shape[:3], shape[5])
    cotangent = torch.randn_like(out)
    grads = torch.autograd.grad((out * cotangent).sum(), (q, k, v))

    ref = attend(q, k, v, backend="matmul", scale=0.37)
    ref_grads = torch.autograd.grad((ref * cotangent).sum(), (q, k, v))
    assert relative_error(out, ref) <= 1e-12
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        assert relative_error(grad, ref_grad) <= 1e-10


@pytest.mark.parametrize(
    ("num_keys", "chunks"),
    [(1, 1), (300, 1), (2048, 1), (4096, 2), (6144, 3), (32768, 16), (100_000, 50), (7919, 1), (97 * 131, 1)],
)
def test_key_chunks_divide_the_keys_near_the_chunk_length(num_keys, chunks):
    # 7919 is prime and 97 * 131 has no divisor near 2048: one chunk, i.e. plain matmul.
    assert key_chunks(num_keys) == chunks


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_split_keys_is_matmul_when_the_keys_do_not_split(shape):
    """At the default chunk length these shapes stay whole: split_keys runs the matmul backend itself."""
    q, k, v = qkv(shape)
    assert key_chunks(shape[3]) == 1
    assert torch.equal(attend(q, k, v, backend="split_keys"), attend(q, k, v, backend="matmul"))


@pytest.mark.parametrize("shape", [(2, 1, 19, 300, 40, 24), (1, 2, 5, 50, 16, 16), (2, 3, 7, 96, 8, 8)], ids=str)
def test_split_keys_agrees_with_matmul_when_it_really_splits(shape, monkeypatch):
    """Small shapes split only with a small chunk length (the default 2048 leaves them whole)."""
    monkeypatch.setattr(attention, "KEY_CHUNK", 8)
    assert key_chunks(shape[3]) > 1
    q, k, v = qkv(shape)
    out = attend(q, k, v, backend="split_keys", scale=0.37)
    assert relative_error(out, explicit_attention(q, k, v, 0.37)) <= 1e-12


def test_split_keys_float32_at_a_decoder_size_matches_float64():
    """19 queries over 8192 keys (4 chunks): float32 against the float64 reference."""
    q, k, v = qkv((1, 1, 19, 8192, 64, 48), dtype=torch.float32)
    assert key_chunks(8192) == 4
    out = attend(q, k, v, backend="split_keys", scale=1.0)
    ref = explicit_attention(*(t.double() for t in (q, k, v)), 1.0)
    assert relative_error(out.double(), ref) <= 1e-5


def test_split_keys_is_for_inference_only():
    q, k, v = qkv((1, 1, 19, 8192, 64, 48), dtype=torch.float32, requires_grad=True)
    assert "split_keys" not in available_backends(q, k, v)
    with pytest.raises(ValueError, match="split_keys is an inference kernel"):
        attend(q, k, v, backend="split_keys")
    with torch.no_grad():
        assert "split_keys" in available_backends(q, k, v)


def test_default_scale_is_inverse_sqrt_of_key_dim():
    q, k, v = qkv(SHAPES[0])
    assert torch.equal(attend(q, k, v, backend="matmul"), attend(q, k, v, backend="matmul", scale=40**-0.5))


def test_every_backend_declares_itself():
    q, k, v = qkv(SHAPES[0], dtype=torch.float32)
    reasons = unsupported_reasons(q, k, v)
    assert set(reasons) == set(BACKENDS) == {"matmul", "sdpa", "split_keys", "xformers"}
    assert available_backends(q, k, v) == [name for name, why in reasons.items() if not why]
    assert {"matmul", "sdpa", "split_keys"} <= set(available_backends(q, k, v))
    assert all(name == backend.name for name, backend in BACKENDS.items())  # the registry is keyed by name


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_forcing_xformers_on_cpu_says_why():
    q, k, v = qkv(SHAPES[0], dtype=torch.float32)
    assert "xformers" not in available_backends(q, k, v)
    usable = r"Usable here: \['matmul', 'sdpa', 'split_keys'\]"
    with pytest.raises(ValueError, match=r"'xformers' cannot run .*CUDA only.*" + usable):
        attend(q, k, v, backend="xformers")


def test_xformers_refuses_float64_naming_the_dtype():
    q, k, v = qkv(SHAPES[0])
    assert any("torch.float64" in reason for reason in unsupported_reasons(q, k, v)["xformers"])


def test_unknown_backend_lists_the_known_ones():
    q, k, v = qkv(SHAPES[0])
    known = r"'matmul', 'sdpa', 'split_keys', 'xformers'"
    with pytest.raises(ValueError, match=r"unknown attention backend 'flash'.*" + known):
        attend(q, k, v, backend="flash")
    with pytest.raises(ValueError, match="attention_backend"):
        with attention_backend("flash"):
            pass


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (((2, 1, 3, 4), (2, 1, 5, 4), (2, 5, 6)), r"v must be 4-D \(B, heads, L, D\), got shape \(2, 5, 6\)"),
        (((2, 1, 3, 4), (2, 1, 5, 8), (2, 1, 5, 6)), r"q and k must have the same last dim D"),
        (((2, 1, 3, 4), (2, 1, 5, 4), (2, 1, 6, 6)), r"k and v must have the same length Lk"),
        (((2, 1, 3, 4), (1, 1, 5, 4), (1, 1, 5, 6)), r"q, k and v must share \(B, heads\)"),
        (((2, 1, 3, 4), (2, 1, 0, 4), (2, 1, 0, 6)), r"k has no keys"),
    ],
)
def test_shapes_that_do_not_fit_are_named(shapes, message):
    tensors = [torch.randn(*s) for s in shapes]
    with pytest.raises(ValueError, match=message):
        attend(*tensors)


def test_integer_and_mixed_inputs_are_refused():
    q, k, v = (torch.ones(1, 1, 2, 2, dtype=torch.long) for _ in range(3))
    with pytest.raises(ValueError, match="floating point"):
        attend(q, k, v)
    q, k, v = qkv(SHAPES[0])
    with pytest.raises(ValueError, match="share a dtype"):
        attend(q.float(), k, v)


@pytest.fixture
def spies(monkeypatch):
    """Replace each backend's kernel with a recording wrapper; returns the list of names that ran."""
    calls = []
    for name, backend in BACKENDS.items():

        def spy(q, k, v, scale, _run=backend.run, _name=name):
            calls.append(_name)
            return _run(q, k, v, scale)

        monkeypatch.setitem(BACKENDS, name, dataclasses.replace(backend, run=spy))
    return calls


def test_context_manager_forces_and_nests(spies):
    q, k, v = qkv(SHAPES[0])
    with attention_backend("matmul"):
        attend(q, k, v)
        with attention_backend("sdpa"):
            attend(q, k, v)
        attend(q, k, v)
        attend(q, k, v, backend="sdpa")  # an explicit argument wins over the context
    assert spies == ["matmul", "sdpa", "matmul", "sdpa"]


def test_environment_variable_forces(spies, monkeypatch):
    q, k, v = qkv(SHAPES[1])
    monkeypatch.setenv(ENV_VAR, "matmul")
    attend(q, k, v)
    monkeypatch.setenv(ENV_VAR, "sdpa")
    attend(q, k, v)
    with attention_backend("matmul"):  # the context wins over the environment
        attend(q, k, v)
    assert spies == ["matmul", "sdpa", "matmul"]
    monkeypatch.setenv(ENV_VAR, "cudnn")
    with pytest.raises(ValueError, match=f"environment variable {ENV_VAR}"):
        attend(q, k, v)


def test_forced_backend_that_cannot_run_is_refused_not_skipped(monkeypatch):
    q, k, v = qkv(SHAPES[0])  # float64: xformers refuses it on every device
    with attention_backend("xformers"), pytest.raises(ValueError, match="float64"):
        attend(q, k, v)


def test_auto_picks_a_usable_backend(spies):
    for shape in SHAPES:
        q, k, v = qkv(shape, dtype=torch.float32)
        choice = choose_backend(q, k, v)
        assert choice in available_backends(q, k, v)
        attend(q, k, v)
        assert spies[-1] == choice


def test_public_api():
    for name in ("attend", "available_backends", "attention_backend", "OCRDecoder", "OCREncoder", "OCRHead"):
        assert name in ocrformer.__all__ and hasattr(ocrformer, name)


# ------------------------------------------------------------------------------------------------ GPU
@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("backend", ["xformers", "sdpa", "matmul"])
def test_cuda_backends_match_float64_reference(shape, dtype, backend):
    q, k, v = qkv(shape, dtype=dtype, device="cuda", requires_grad=True)
    if backend not in available_backends(q, k, v):
        pytest.skip(f"{backend} unavailable: {unsupported_reasons(q, k, v)[backend]}")
    out = attend(q, k, v, backend=backend)
    cotangent = torch.randn_like(out)
    (out * cotangent).sum().backward()
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = attend(q64, k64, v64, backend="matmul")
    (ref * cotangent.double()).sum().backward()
    tol = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}[dtype]
    assert relative_error(out.double(), ref) <= tol
    for t, t64 in ((q, q64), (k, k64), (v, v64)):
        assert relative_error(t.grad.double(), t64.grad) <= tol * 4
