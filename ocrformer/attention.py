"""``attend(q, k, v)``: scaled dot-product attention with a choice of kernels.

Shape legend (batch-first everywhere):
    B   batch            h   heads
    Lq  query length     Lk  key/value length
    D   query/key dim    Dv  value dim (may differ from D)

Both OCR steps are this one function: the decoder's K category queries over the N = H*W pixel keys
(few queries, many keys), and the encoder's N pixel queries over the K region keys (many queries, few
keys). Which kernel is fastest differs between those two shapes, so the choice lives here, in one place.

Backends
    ``matmul``    explicit ``softmax(scale * q @ k^T) @ v``; the reference; any device and dtype.
    ``sdpa``      ``torch.nn.functional.scaled_dot_product_attention``.
    ``split_keys`` ``matmul`` with the keys cut into ~2048-key chunks and both products batched over them
                  (split-KV): for few queries over many keys, where one thin GEMM leaves the CPU idle.
    ``xformers``  ``xformers.ops.memory_efficient_attention``; CUDA only (xformers has no CPU kernels).
    ``auto``      the fastest usable backend for these inputs, looked up in the measured decision table
                  ``ocrformer/attention_table.json`` (written by ``benchmarks/attention_speed.py``).

Precedence of the choice: an explicit ``backend=`` other than ``"auto"`` > the innermost
``attention_backend(name)`` context > the ``OCRFORMER_ATTENTION`` environment variable > the table.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "attend",
    "attention_backend",
    "available_backends",
    "choose_backend",
    "reload_table",
    "unsupported_reasons",
]

ENV_VAR = "OCRFORMER_ATTENTION"
TABLE_PATH = Path(__file__).with_name("attention_table.json")


# --------------------------------------------------------------------------------------------- backends
@dataclass(frozen=True)
class Backend:
    """One attention kernel: what it can run (``why_not``) and how to run it (``run``).

    ``why_not(q, k, v, scale)`` returns the reasons the backend cannot run these inputs (empty: it can);
    ``run(q, k, v, scale)`` takes and returns ``(B, h, L, D)`` tensors.
    """

    name: str
    description: str
    why_not: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], list[str]]
    run: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _matmul_why_not(q, k, v, scale) -> list[str]:
    return []


def _matmul_run(q, k, v, scale):
    # (B, h, Lq, D) @ (B, h, D, Lk) -> (B, h, Lq, Lk); softmax over the keys; @ (B, h, Lk, Dv)
    weights = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, dim=-1)
    return torch.matmul(weights, v)


# Keys per chunk of the ``split_keys`` backend: 2048 keys of up to 720 float32 channels are 5.9 MB, the
# size that ran fastest for the decoder on the 2-core benchmark machine (1024-4096 were within noise).
KEY_CHUNK = 2048


def key_chunks(num_keys: int, chunk: int | None = None) -> int:
    """How many equal chunks ``split_keys`` cuts ``num_keys`` keys into: the divisor of ``num_keys`` whose
    chunk length is nearest to ``chunk`` (default ``KEY_CHUNK``; log scale), among chunks of ``chunk / 4``
    to ``4 * chunk`` keys; 1 (no split) when the keys are few or no divisor gives such a chunk."""
    chunk = KEY_CHUNK if chunk is None else chunk
    best, best_distance = 1, math.inf
    for count in range(1, num_keys // max(chunk // 4, 1) + 1):
        length = num_keys / count
        if num_keys % count or not chunk / 4 <= length <= 4 * chunk:
            continue
        distance = abs(math.log2(length / chunk))
        if distance < best_distance:
            best, best_distance = count, distance
    return best


def _split_keys_why_not(q, k, v, scale) -> list[str]:
    if _needs_grad(q, k, v):
        # Measured: in the OCR head's training step (B=2, 64x128) the chunked products' backward raised the
        # peak by 78 MB -- copies of the key and value chunks -- and made the step 0.95x the classic head's.
        return ["split_keys is an inference kernel: with gradients its backward copies the key and value chunks"]
    return []


def _split_keys_run(q, k, v, scale):
    # Few queries over many keys (the decoder: 19-150 regions over 4k-33k pixels) make two thin GEMMs
    # (M = Lq) that CPU BLAS runs at a fraction of its rate. Cutting the keys into n chunks turns each into
    # a batch of n GEMMs over cache-sized pieces, parallel over the batch -- split-KV, as flash-decoding
    # does on GPUs. The scores are small (Lq x Lk), so one softmax runs over all keys at once (no running
    # max to merge) and the chunks' partial outputs are summed.
    b, h, lq, d = q.shape
    lk, dv = k.shape[2], v.shape[3]
    n = key_chunks(lk)
    if n == 1:  # too few keys (the encoder's K regions) or no even split: the plain products
        return _matmul_run(q, k, v, scale)
    keys = k.reshape(b * h, n, lk // n, d)
    values = v.reshape(b * h, n, lk // n, dv)
    logits = torch.matmul(q.reshape(b * h, 1, lq, d), keys.transpose(-1, -2))  # (bh, n, Lq, Lk/n)
    weights = torch.softmax(logits.transpose(1, 2).reshape(b * h, lq, lk) * scale, dim=-1)  # small: Lq x Lk
    out = torch.matmul(weights.view(b * h, lq, n, lk // n).transpose(1, 2), values).sum(dim=1)  # (bh, Lq, Dv)
    return out.reshape(b, h, lq, dv)


_SDPA_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _sdpa_why_not(q, k, v, scale) -> list[str]:
    reasons = []
    if q.dtype not in _SDPA_DTYPES:
        reasons.append(f"dtype {q.dtype} is not one of {[str(d) for d in _SDPA_DTYPES]}")
    return reasons


def _sdpa_run(q, k, v, scale):
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


_XFORMERS_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@functools.lru_cache(maxsize=1)
def _import_xformers():
    """Import ``xformers.ops`` once, only when a CUDA tensor asks for it (so CPU users never see its
    import-time warnings). Returns ``(module, None)`` or ``(None, reason)``."""
    try:
        import xformers.ops as xops  # lazy: xformers is optional
    except Exception as error:  # ImportError, or a broken build raising anything at import
        return None, f"xformers cannot be imported ({type(error).__name__}: {error})"
    return xops, None


def _xformers_why_not(q, k, v, scale) -> list[str]:
    reasons = []
    if q.device.type != "cuda":
        reasons.append(f"device is {q.device.type!r}; xformers has kernels for CUDA only")
    if q.dtype not in _XFORMERS_DTYPES:
        reasons.append(f"dtype {q.dtype} is not one of {[str(d) for d in _XFORMERS_DTYPES]}")
    if reasons:
        return reasons
    xops, import_reason = _import_xformers()
    if xops is None:
        return [import_reason]
    # Ask xformers' own dispatcher: it knows its operators' limits (head dims, alignment, grads).
    try:
        from xformers.ops.fmha import dispatch as xdispatch
        from xformers.ops.fmha.common import Inputs

        q4, k4, v4 = (t.transpose(1, 2) for t in (q, k, v))
        xdispatch._dispatch_fw(Inputs(query=q4, key=k4, value=v4, scale=scale), _needs_grad(q, k, v))
    except NotImplementedError as error:
        reasons.append("no xformers operator accepts these inputs: " + " ".join(str(error).split()))
    except (ImportError, AttributeError):
        pass  # private dispatch API moved; memory_efficient_attention itself will still say why
    return reasons


def _xformers_run(q, k, v, scale):
    xops, _ = _import_xformers()
    # xformers is sequence-major: (B, L, h, D).
    out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=scale)
    return out.transpose(1, 2)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("matmul", "explicit softmax(scale q k^T) v; the reference", _matmul_why_not, _matmul_run),
        Backend("sdpa", "torch.nn.functional.scaled_dot_product_attention", _sdpa_why_not, _sdpa_run),
        Backend(
            "split_keys",
            "matmul with the keys cut into chunks, both products batched over them (split-KV)",
            _split_keys_why_not,
            _split_keys_run,
        ),
        Backend("xformers", "xformers.ops.memory_efficient_attention (CUDA)", _xformers_why_not, _xformers_run),
    )
}
# Order of preference when the decision table has nothing to say about an input.
_FALLBACK_ORDER = {"cuda": ("xformers", "sdpa", "matmul")}
_DEFAULT_FALLBACK = ("sdpa", "matmul")  # split_keys only where the table measured it faster


# ------------------------------------------------------------------------------------------ validation
def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"attend: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"attend: {name} must be 4-D (B, heads, L, D), got shape {tuple(t.shape)}")
    if q.shape[:2] != k.shape[:2] or k.shape[:2] != v.shape[:2]:
        raise ValueError(
            f"attend: q, k and v must share (B, heads); got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"attend: q and k must have the same last dim D; got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    if q.shape[-1] == 0:
        raise ValueError(
            f"attend: q and k must have a head dim D >= 1, got D = 0 (q {tuple(q.shape)}, k {tuple(k.shape)})"
        )
    if k.shape[2] != v.shape[2]:
        raise ValueError(
            f"attend: k and v must have the same length Lk (dim 2); got k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    if k.shape[2] == 0:
        raise ValueError(f"attend: k has no keys (Lk = 0, shape {tuple(k.shape)}); softmax over nothing")
    if not q.is_floating_point():
        raise ValueError(f"attend: q, k, v must be floating point, got {q.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"attend: q, k, v must share a dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"attend: q, k, v must be on one device; got {q.device}, {k.device}, {v.device}")


def unsupported_reasons(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> dict:
    """``{backend name: [reasons it cannot run these inputs]}`` for every registered backend."""
    _check_inputs(q, k, v)
    return _reasons(q, k, v, q.shape[-1] ** -0.5 if scale is None else scale)


def available_backends(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[str]:
    """Names of the backends that can run ``attend(q, k, v)`` here (device, dtype, shapes, gradients)."""
    _check_inputs(q, k, v)
    return _usable(q, k, v, q.shape[-1] ** -0.5)


def _reasons(q, k, v, scale: float) -> dict:
    # Inputs already checked: attend() validates once and does not pay for it again per lookup.
    return {name: b.why_not(q, k, v, scale) for name, b in BACKENDS.items()}


def _usable(q, k, v, scale: float) -> list[str]:
    return [name for name, reasons in _reasons(q, k, v, scale).items() if not reasons]


# ------------------------------------------------------------------------------------- global override
_override = threading.local()


@contextlib.contextmanager
def attention_backend(name: str) -> Iterator[None]:
    """Force ``name`` for every ``attend(..., backend="auto")`` inside the block (thread-local, nestable)."""
    _validate_name(name, "attention_backend(name)")
    stack = _override.__dict__.setdefault("stack", [])
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


def _validate_name(name: str, where: str) -> None:
    if not isinstance(name, str) or (name != "auto" and name not in BACKENDS):
        raise ValueError(f"{where}: unknown attention backend {name!r}; expected one of {['auto', *BACKENDS]}")


def _forced_backend() -> str:
    stack = getattr(_override, "stack", None)
    if stack:
        return stack[-1]
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        _validate_name(env, f"environment variable {ENV_VAR}")
        return env
    return "auto"


# -------------------------------------------------------------------------------------- decision table
def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _load_table(path: Path = TABLE_PATH) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        return json.load(f)["entries"]


# Read once at import, so that no file I/O happens inside attend() (torch.compile traces through it).
_TABLE: list[dict] = _load_table()


def reload_table(path: Path = TABLE_PATH) -> None:
    """Re-read the decision table (after ``benchmarks/attention_speed.py --write-table``)."""
    global _TABLE
    _TABLE = _load_table(path)
    _table_choice.cache_clear()


def _shape_distance(entry: dict, shape: dict) -> float:
    # Cost scales roughly multiplicatively in each size, so compare sizes on a log scale.
    return sum(abs(math.log2(max(entry[key], 1)) - math.log2(max(shape[key], 1))) for key in shape)


@functools.lru_cache(maxsize=4096)
def _table_choice(device: str, dtype: str, grad: bool, shape_items: tuple, usable: tuple) -> str | None:
    shape = dict(shape_items)
    entries = [e for e in _TABLE if e["device"] == device and e["dtype"] == dtype]
    with_grad = [e for e in entries if e["grad"] == grad]
    entries = with_grad or entries
    best = None
    for entry in sorted(entries, key=lambda e: _shape_distance(e, shape)):
        timed = {name: ms for name, ms in entry["median_ms"].items() if name in usable}
        if timed:
            best = min(timed, key=timed.get)
            break
    return best


def choose_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """The backend ``auto`` picks: the fastest usable one in the nearest measured case of the table
    (same device type, dtype and gradient mode; nearest (B*h, Lq, Lk, D, Dv) on a log scale)."""
    _check_inputs(q, k, v)
    return _choose(q, k, v, q.shape[-1] ** -0.5)


def _choose(q, k, v, scale: float) -> str:
    usable = _usable(q, k, v, scale)
    shape = {"bh": q.shape[0] * q.shape[1], "lq": q.shape[2], "lk": k.shape[2], "d": q.shape[3], "dv": v.shape[3]}
    # The memo is for eager calls; torch.compile traces the lookup itself (and warns about caches).
    lookup = _table_choice.__wrapped__ if torch.compiler.is_compiling() else _table_choice
    choice = lookup(q.device.type, _dtype_name(q.dtype), _needs_grad(q, k, v), tuple(shape.items()), tuple(usable))
    if choice is not None:
        return choice
    for name in _FALLBACK_ORDER.get(q.device.type, _DEFAULT_FALLBACK):
        if name in usable:
            return name
    return "matmul"


# ------------------------------------------------------------------------------------------------ attend
def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Scaled dot-product attention ``softmax(scale * q k^T) v`` over the last two dims.

    Args:
        q: queries ``(B, h, Lq, D)``.
        k: keys ``(B, h, Lk, D)``.
        v: values ``(B, h, Lk, Dv)``; ``Dv`` may differ from ``D``.
        scale: multiplies the logits; defaults to ``D ** -0.5``.
        backend: ``"auto"`` (default), ``"matmul"``, ``"sdpa"``, ``"split_keys"`` or ``"xformers"``.

    Returns:
        ``(B, h, Lq, Dv)``.

    Raises:
        ValueError: shapes/dtypes/devices that do not fit (a head dim D = 0 or no keys included), a
            non-finite ``scale``, an unknown backend, or a forced backend that cannot run these inputs (the
            message lists why).
    """
    _validate_name(backend, "attend(backend=...)")
    _check_inputs(q, k, v)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"attend: scale must be a finite number, got {scale}")
    name = backend if backend != "auto" else _forced_backend()
    if name == "auto":
        name = _choose(q, k, v, scale)
    else:
        reasons = BACKENDS[name].why_not(q, k, v, scale)
        if reasons:
            raise ValueError(
                f"attention backend {name!r} cannot run q {tuple(q.shape)}, k {tuple(k.shape)}, "
                f"v {tuple(v.shape)} ({q.dtype}, {q.device}): "
                + "; ".join(reasons)
                + f". Usable here: {available_backends(q, k, v)}"
            )
    return BACKENDS[name].run(q, k, v, scale)
