"""What every benchmark here shares: the machine description, round-robin timing, and output comparison.

Timing: the variants of one case run round-robin (every variant once per round, the first one rotating), so that
a shared machine's noise hits them alike; warm-up rounds first; median, min and max of the repeats. Compare
milliseconds only within one run: this machine's speed drifts between runs.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

__all__ = ["machine_description", "relative_error", "round_robin", "summarize", "time_round_robin"]


def machine_description(device: str = "cpu") -> str:
    """CPU model, threads and torch version (plus the GPU's name on CUDA)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # no /proc on this OS: keep platform's description
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    text = f"{cpu}, {torch.get_num_threads()} torch threads ({os.cpu_count()} cores), torch {torch.__version__}"
    if device == "cuda":
        text += f", {torch.cuda.get_device_name()}"
    return text


def round_robin(names: list[str], warmup: int, repeats: int) -> Iterator[tuple[int, str]]:
    """(round, name) pairs: every name once per round, the starting name rotating from round to round, so no
    variant always runs right after the same neighbour. Rounds < 0 are warm-up."""
    for r in range(-warmup, repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            yield r, name


def summarize(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def time_round_robin(calls: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, dict]:
    """``{name: {"median", "min", "max"}}`` in milliseconds of each call, timed round-robin."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for r, name in round_robin(list(calls), warmup, repeats):
        start = time.perf_counter()
        calls[name]()
        if r >= 0:
            times[name].append(1e3 * (time.perf_counter() - start))
    return {name: summarize(values) for name, values in times.items()}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|, in float64."""
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-300)).item()
