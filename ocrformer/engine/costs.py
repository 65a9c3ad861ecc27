"""What a model costs at inference: parameters, FLOPs, time and peak memory of one forward.

Used by the semantic experiment's comparison of context heads (one row per head). All of it measures the model
as given, in eval mode and without gradients, on an input the caller chooses (the experiment: one validation
image at its own size). Compare times only within one run: a shared machine drifts.

    parameters  ``sum(p.numel())`` over the model's parameters (buffers such as BN statistics are not counted).
    GFLOPs      ``torch.utils.flop_counter.FlopCounterMode``: a multiply-add counts 2, only matmuls and convs
                are counted (softmax, normalisation, pooling and resizing are not), as the usual tables count.
    time        median [min, max] of ``repeats`` forwards after ``warmup`` untimed ones, synchronised on CUDA.
    memory      the peak of tensor memory over one forward above the weights (the output and every
                temporary tensor are in); see ``peak_forward_mb``.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..inference import _eval_mode as _eval

__all__ = [
    "MB",
    "count_gflops",
    "count_parameters",
    "inference_costs",
    "peak_forward_mb",
    "time_forward_ms",
]

MB = 2**20


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_gflops(model: nn.Module, images: torch.Tensor, **forward_kwargs) -> float:
    """GFLOPs of ``model(images, **forward_kwargs)`` (eval, no grad), multiply-add = 2."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), _eval(model), counter:
        model(images, **forward_kwargs)
    return counter.get_total_flops() / 1e9


def time_forward_ms(
    model: nn.Module, images: torch.Tensor, *, warmup: int = 2, repeats: int = 5, **forward_kwargs
) -> dict:
    """``{"median", "min", "max"}`` milliseconds of ``model(images, **forward_kwargs)`` (eval, no grad)."""
    times = []
    with torch.no_grad(), _eval(model):
        for step in range(warmup + repeats):
            _synchronize(images.device)
            start = time.perf_counter()
            model(images, **forward_kwargs)
            _synchronize(images.device)
            if step >= warmup:
                times.append(1e3 * (time.perf_counter() - start))
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def peak_forward_mb(model: nn.Module, images: torch.Tensor, **forward_kwargs) -> float | None:
    """Peak tensor memory of one ``model(images, **forward_kwargs)`` (eval, no grad) above the weights, in MB.

    CUDA: the caching allocator's ``max_memory_allocated`` above what was allocated before. CPU: PyTorch's
    ``MemTracker`` (``torch.distributed._tools``), which follows every tensor storage created inside the block;
    its peak without the parameters and buffers. Unlike a process's resident size this does not depend on what
    the process allocated and freed before (a long training run leaves glibc's heap full of reusable blocks), but
    it sees tensors only, not a library's private scratch buffers. ``None`` if the tracker is unavailable.
    """
    with torch.no_grad(), _eval(model):
        model(images, **forward_kwargs)  # one-off initialisation (lazy buffers, autotuning) stays out of the peak
        if images.device.type == "cuda":
            torch.cuda.synchronize(images.device)
            torch.cuda.reset_peak_memory_stats(images.device)
            base = torch.cuda.memory_allocated(images.device)
            model(images, **forward_kwargs)
            return (torch.cuda.max_memory_allocated(images.device) - base) / MB
        try:
            from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType
        except ImportError:  # a PyTorch build without it
            return None
        tracker = MemTracker()
        with tracker:
            model(images, **forward_kwargs)
    peak = tracker.get_tracker_snapshot("peak")[images.device]
    return (peak["Total"] - peak[_MemRefType.PARAM] - peak[_MemRefType.BUFFER]) / MB


def inference_costs(
    model: nn.Module, images: torch.Tensor, *, warmup: int = 2, repeats: int = 5, **forward_kwargs
) -> dict:
    """``{"params_m", "gflops", "ms" (median), "ms_min", "ms_max", "peak_mb", "input"}`` of
    ``model(images, **forward_kwargs)`` (e.g. ``oracle_labels=`` for the GT-OCR oracle)."""
    timing = time_forward_ms(model, images, warmup=warmup, repeats=repeats, **forward_kwargs)
    return {
        "params_m": count_parameters(model) / 1e6,
        "gflops": count_gflops(model, images, **forward_kwargs),
        "ms": timing["median"],
        "ms_min": timing["min"],
        "ms_max": timing["max"],
        "peak_mb": peak_forward_mb(model, images, **forward_kwargs),
        "input": list(images.shape),
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
