"""What every benchmark here shares: the machine description, round-robin timing, and output comparison.

Timing: the variants of one case run round-robin (every variant once per round, the first one rotating), so that
a shared machine's noise hits them alike; warm-up rounds first; median, min and max of the repeats. Compare
milliseconds only within one run: this machine's speed drifts between runs.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import multiprocessing.forkserver
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

__all__ = [
    "MB",
    "PeakMemory",
    "forkserver",
    "fresh_process_with_env",
    "machine_description",
    "relative_error",
    "round_robin",
    "summarize",
    "time_round_robin",
]

MB = 2**20


def machine_description(device: str = "cpu", threads: int | None = None) -> str:
    """CPU model, torch threads (``threads``, default: this process's) and torch version (and the GPU on CUDA)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # no /proc on this OS: keep platform's description
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    threads = torch.get_num_threads() if threads is None else threads
    text = f"{cpu}, {threads} torch threads ({os.cpu_count()} cores), torch {torch.__version__}"
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


# ---------------------------------------------------------------------------------------------- memory
class PeakMemory:
    """Peak memory over a block of forwards, above what was in use when the block began.

    CUDA: the caching allocator's ``max_memory_allocated``. CPU (Linux): the process's peak RSS (``VmHWM``),
    reset by writing 5 to ``/proc/self/clear_refs``; glibc is told to serve every allocation of 64 KiB or more
    with its own mmap (``MALLOC_MMAP_THRESHOLD_``, set for the worker processes), so freed tensors leave the
    RSS at once instead of lingering in the heap, where the next forward would reuse them unseen.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base = 0

    @staticmethod
    def _status_bytes(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
        raise KeyError(f"/proc/self/status has no {field}")

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: VmHWM := VmRSS
            self.base = self._status_bytes("VmRSS")

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = self._status_bytes("VmHWM")
        return (peak - self.base) / MB


@functools.cache
def forkserver() -> multiprocessing.context.BaseContext:
    """A process context whose children fork from one server that has imported torch and ocrformer (a fresh
    interpreter per case would spend seconds on imports; the default preload, ``__main__``, re-imports them)
    and that runs with glibc's mmap threshold fixed at 64 KiB (see ``PeakMemory``)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "ocrformer", "einops", "tqdm"])
    with _environment({"MALLOC_MMAP_THRESHOLD_": "65536"}):  # read by glibc when the server process starts
        multiprocessing.forkserver.ensure_running()
    return context


@contextlib.contextmanager
def fresh_process_with_env(env: dict[str, str]) -> Iterator[ProcessPoolExecutor]:
    """A one-worker pool whose worker is a fresh interpreter started with ``env`` added to the environment: for
    settings a process reads once, when it starts (glibc's ``MALLOC_*`` variables). The worker is started before
    this process's environment is restored."""
    with _environment(env):
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        pool.submit(int).result()  # workers start lazily: start this one now, while env holds
    with pool:
        yield pool


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` added to ``os.environ`` inside the block (for the processes started there); restored after it."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
