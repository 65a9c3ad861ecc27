"""Time ocrformer.attend's backends on the OCR head's two attention shapes, against the machine's floor.

The OCR head attends in two shapes (B = 1 here; ``bh`` = B * heads is what the decision table keys on):
    decoder   K category queries over N pixel keys:  q (1, 1, K, D), k (1, 1, N, D), v (1, 1, N, 512),
              scale 1.0, D = backbone channels (720 for HRNet-W48; 256 also measured).
    encoder   N pixel queries over K region keys:    q (1, h, N, 256/h), k, v (1, h, K, 256/h), scale D^-0.5.
with K in {19, 54, 150} classes and N in {64x64, 128x128, 128x256} pixels.

Every backend in ``ocrformer.available_backends`` plus ``auto`` is timed per case, round-robin (A, B, auto,
B, auto, A, ...) so that the noise of a shared machine hits all of them alike; ratios are within one run.
Each figure sits beside its floor, measured in the same run: max(FLOPs / measured matmul rate,
minimum bytes / measured copy bandwidth). ``--write-table`` turns the medians into the decision table
``ocrformer/attention_table.json`` that ``attend(..., backend="auto")`` reads. Every run then checks, per
case, that the backend ``auto`` picks from the table file is within 10% of the fastest (trivially true right
after ``--write-table``; a real test against a table from another run), and the same with each case left
out of the table (how the nearest-neighbour lookup does on shapes it has not measured).

On a shared CPU, other processes' load is measured during every case and, within ``--quiet-budget``
seconds, waited out and disturbed cases re-timed; ``--from-json`` re-reports (or tabulates) a saved run,
so the cleanest of several runs can be kept.

Run from the repository root:  python benchmarks/attention_speed.py [--quick] [--write-table]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script without installing the package
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import ocrformer  # noqa: E402
from benchmarks._common import machine_description, round_robin, summarize  # noqa: E402
from ocrformer import attention  # noqa: E402
from ocrformer._atomic import atomic_write_text  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "outputs" / "attention_speed"
TOLERANCE = 1.10  # auto passes when its choice's median is within 10% of the fastest backend's
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
KINDS = ("decoder", "encoder")
PASSES = ("fwd", "fwdbwd")

# The full grid: 3 K x 3 N x (2 decoder D + 4 encoder heads) = 54 shapes, x 2 dtypes x 2 passes = 216 cases.
# K = 133 (PASCAL-Context-ish) is left out: it is 0.17 log2-units from 150, which the table covers.
FULL_REGIONS = (19, 54, 150)
FULL_PIXELS = ((64, 64), (128, 128), (128, 256))
FULL_DECODER_D = (720, 256)
FULL_ENCODER_HEADS = (1, 2, 4, 8)
DECODER_DV = 512
ENCODER_WIDTH = 256  # encoder D = Dv = 256 / heads


# ------------------------------------------------------------------------------------------------ cases
@dataclass(frozen=True)
class Case:
    """One timed configuration: a shape, a dtype and a pass (forward only, or forward + backward)."""

    kind: str  # "decoder" | "encoder"
    regions: int  # K
    hw: tuple[int, int]  # pixel grid; N = H * W
    heads: int
    d: int
    dv: int
    dtype: str
    grad: bool  # True: forward + backward

    @property
    def pixels(self) -> int:
        return self.hw[0] * self.hw[1]

    @property
    def lq(self) -> int:
        return self.regions if self.kind == "decoder" else self.pixels

    @property
    def lk(self) -> int:
        return self.pixels if self.kind == "decoder" else self.regions

    @property
    def scale(self) -> float:
        # The OCR decoder (spatial gather) uses unscaled logits; the encoder is ordinary d^-1/2 attention.
        return 1.0 if self.kind == "decoder" else self.d**-0.5

    def shape(self) -> dict[str, int]:
        """The decision table's shape key (B = 1, so bh = heads)."""
        return {"bh": self.heads, "lq": self.lq, "lk": self.lk, "d": self.d, "dv": self.dv}

    def label(self) -> str:
        grid = f"N={self.hw[0]}x{self.hw[1]}"
        if self.kind == "decoder":
            return f"decoder K={self.regions} {grid} D={self.d}"
        return f"encoder h={self.heads} K={self.regions} {grid} D={self.d}"

    def mode(self) -> str:
        return f"{self.dtype} {'fwd+bwd' if self.grad else 'fwd'}"

    def report_key(self) -> tuple:
        """Reports group by kind and mode, then D (largest first) or heads, then K, then N."""
        return (KINDS.index(self.kind), list(DTYPES).index(self.dtype), self.grad, self.heads, -self.d,
                self.regions, self.pixels)


def decoder_case(regions: int, hw: tuple[int, int], d: int, dtype: str, grad: bool) -> Case:
    return Case("decoder", regions, hw, 1, d, DECODER_DV, dtype, grad)


def encoder_case(regions: int, hw: tuple[int, int], heads: int, dtype: str, grad: bool) -> Case:
    width = ENCODER_WIDTH // heads
    return Case("encoder", regions, hw, heads, width, width, dtype, grad)


def build_cases(kinds: list[str], dtypes: list[str], passes: list[str], quick: bool) -> list[Case]:
    """The grid to time: ``--quick`` is one decoder and one encoder shape at K = 19, N = 64x64."""
    regions, pixels = ((19,), ((64, 64),)) if quick else (FULL_REGIONS, FULL_PIXELS)
    decoder_d, heads = ((720,), (1,)) if quick else (FULL_DECODER_D, FULL_ENCODER_HEADS)
    modes = [(dtype, p == "fwdbwd") for dtype in dtypes for p in passes]
    cases = []
    for k in regions:
        for hw in pixels:
            for dtype, grad in modes:
                if "decoder" in kinds:
                    cases += [decoder_case(k, hw, d, dtype, grad) for d in decoder_d]
                if "encoder" in kinds:
                    cases += [encoder_case(k, hw, h, dtype, grad) for h in heads]
    return cases


# ------------------------------------------------------------------------------------------------ floor
def flop_count(case: Case) -> int:
    """Matmul FLOPs (softmax ignored). Forward: q k^T and p v, 2 * bh * Lq * Lk * (D + Dv). Backward:
    dV = p^T dO, dP = dO v^T, dQ = dS k, dK = dS^T q -- two of each forward GEMM, so 2x the forward;
    forward + backward = 3x. A flash-style backward that recomputes q k^T does more; this is the floor."""
    forward = 2 * case.heads * case.lq * case.lk * (case.d + case.dv)
    return 3 * forward if case.grad else forward


def byte_count(case: Case) -> int:
    """Minimum bytes moved; the Lq x Lk scores need not touch memory (a fused kernel keeps them on chip).
    Forward: read q, k, v, write o. Backward adds: read q, k, v, o, dO; write dQ, dK, dV."""
    itemsize = DTYPES[case.dtype].itemsize
    q, k = case.heads * case.lq * case.d, case.heads * case.lk * case.d
    v, o = case.heads * case.lk * case.dv, case.heads * case.lq * case.dv
    forward = q + k + v + o
    backward = (q + k + v + 2 * o) + (q + k + v)
    return itemsize * (forward + backward if case.grad else forward)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_seconds(fn: Callable[[], object], device: str, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls after one warm-up: the machine's capability, not its average."""
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def measure_matmul_gflops(device: str, dtype: str) -> float:
    """Dense (n, n) @ (n, n) rate in GFLOP/s; n = 2048 on CPU, 8192 on CUDA (2048 cannot fill a GPU)."""
    n = 8192 if device == "cuda" else 2048
    a = torch.randn(n, n, device=device).to(DTYPES[dtype])
    b = torch.randn(n, n, device=device).to(DTYPES[dtype])
    return 2 * n**3 / best_seconds(lambda: a @ b, device, 5) / 1e9


def measure_copy_gbps(device: str) -> float:
    """``dst.copy_(src)`` of 256 MiB (1 GiB on CUDA) -- far beyond any cache; counts read + write bytes."""
    numel = (2**30 if device == "cuda" else 2**28) // 4
    src = torch.ones(numel, device=device)  # values do not matter to a copy; randn of 256 MiB takes a second
    dst = torch.empty_like(src)
    return 2 * src.nbytes / best_seconds(lambda: dst.copy_(src), device, 5) / 1e9


def measure_rates(device: str, dtypes: list[str]) -> dict:
    """The floor's denominators, measured now: matmul GFLOP/s per dtype and copy GB/s.

    The matmul rate is taken per dtype because bfloat16 matmuls run at a different rate than float32
    (about 2x on a CPU with AVX512-BF16), so a float32 rate would give bfloat16 a floor it can beat."""
    return {
        "matmul_gflops": {dtype: round(measure_matmul_gflops(device, dtype), 1) for dtype in dtypes},
        "copy_gbps": round(measure_copy_gbps(device), 1),
    }


def floor_ms(case: Case, rates: dict) -> tuple[float, str]:
    """(floor in ms, "compute" | "memory"): the larger of the FLOP floor and the byte floor."""
    compute = flop_count(case) / (rates["matmul_gflops"][case.dtype] * 1e9) * 1e3
    memory = byte_count(case) / (rates["copy_gbps"] * 1e9) * 1e3
    return (compute, "compute") if compute >= memory else (memory, "memory")


# ----------------------------------------------------------------------------------------------- timing
def make_inputs(case: Case, device: str, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """q (1, h, Lq, D), k (1, h, Lk, D), v (1, h, Lk, Dv) and a cotangent (1, h, Lq, Dv).

    q and k have std (scale^2 D)^-1/4, so the logits have std ~1: softmax is neither one-hot nor uniform,
    and exp() never lands in float32 denormals (slow on x86), which unit-std inputs at D = 720 and
    scale 1 would cause."""
    generator = torch.Generator().manual_seed(seed)
    std = (case.scale**2 * case.d) ** -0.25

    def randn(length: int, width: int, factor: float = 1.0) -> torch.Tensor:
        t = torch.randn(1, case.heads, length, width, generator=generator) * factor
        return t.to(device=device, dtype=DTYPES[case.dtype])

    q, k = randn(case.lq, case.d, std), randn(case.lk, case.d, std)
    v, cotangent = randn(case.lk, case.dv), randn(case.lq, case.dv)
    if case.grad:
        q, k, v = (t.requires_grad_() for t in (q, k, v))
    return q, k, v, cotangent


def attention_step(case: Case, backend: str, inputs: tuple[torch.Tensor, ...]) -> Callable[[], None]:
    """One timed call: ``attend`` under no_grad, or ``attend`` + backward of a fixed random cotangent."""
    q, k, v, cotangent = inputs

    def forward() -> None:
        with torch.no_grad():
            ocrformer.attend(q, k, v, scale=case.scale, backend=backend)

    def forward_backward() -> None:
        ocrformer.attend(q, k, v, scale=case.scale, backend=backend).backward(cotangent)

    return forward_backward if case.grad else forward


def timed_call(step: Callable[[], None], device: str) -> tuple[float, float | None]:
    """(milliseconds, CUDA peak MiB above what was allocated before, or None on CPU)."""
    synchronize(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    start = time.perf_counter()
    step()
    synchronize(device)
    elapsed_ms = (time.perf_counter() - start) * 1e3
    peak = (torch.cuda.max_memory_allocated() - before) / 2**20 if device == "cuda" else None
    return elapsed_ms, peak


def auto_runs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """The backend ``attend(..., backend="auto")`` runs for these inputs under the current table."""
    forced = os.environ.get(attention.ENV_VAR, "").strip()
    return forced if forced and forced != "auto" else ocrformer.choose_backend(q, k, v)


def measure_case(case: Case, device: str, warmup: int, repeats: int) -> dict:
    """Median/min/max ms (and CUDA peak MiB) of every usable backend and ``auto`` on one case."""
    inputs = make_inputs(case, device)
    names = [*ocrformer.available_backends(*inputs[:3]), "auto"]
    steps = {name: attention_step(case, name, inputs) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    peaks: dict[str, list[float]] = {name: [] for name in names}
    for r, name in round_robin(names, warmup, repeats):
        for t in inputs[:3]:
            t.grad = None  # outside the timed call, so each call allocates its gradients alike
        elapsed_ms, peak = timed_call(steps[name], device)
        if r >= 0:
            times[name].append(elapsed_ms)
            if peak is not None:
                peaks[name].append(peak)
    stats = {name: summarize(values) for name, values in times.items()}
    return {
        "median_ms": {name: s["median"] for name, s in stats.items()},
        "min_ms": {name: s["min"] for name, s in stats.items()},
        "max_ms": {name: s["max"] for name, s in stats.items()},
        "peak_mib": {name: max(values) for name, values in peaks.items()} if device == "cuda" else None,
        "auto_ran": auto_runs(*inputs[:3]),
    }


# ------------------------------------------------------------------------------------ shared-CPU guard
def cpu_ticks() -> tuple[int, int] | None:
    """(busy clock ticks of the whole machine, ticks of this process), from /proc; None off Linux.

    Busy counts user, nice, system, irq, softirq and steal (a VM's vCPU waiting for the host is
    contention too); guest time is already inside user."""
    try:
        machine = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = machine
    return user + nice + system + irq + softirq + steal, int(own[11]) + int(own[12])  # utime + stime


def others_cores(start: tuple[int, int] | None, end: tuple[int, int] | None, seconds: float) -> float | None:
    """Cores' worth of CPU that other processes used between two ``cpu_ticks`` samples."""
    if start is None or end is None or seconds <= 0:
        return None
    others = (end[0] - start[0]) - (end[1] - start[1])
    return max(others, 0) / os.sysconf("SC_CLK_TCK") / seconds


@dataclass
class QuietGuard:
    """Keeps other processes' CPU use out of the timings, within a budget of seconds.

    A busy neighbour does not just take its share: a parallel kernel waits at every barrier for
    whichever of its threads was preempted, so on 2 cores one neighbour can make a call several times
    slower, and unequally so for kernels that parallelise differently. The guard measures the
    neighbours' load during each case (from /proc, minus this process's own) and, while its budget
    lasts, waits for them to go quiet and re-times a disturbed case; the least disturbed attempt is
    kept and its load reported."""

    budget_s: float
    threshold: float = 0.1  # others' average load, in cores, above which a case counts as disturbed
    retries: int = 2
    spent_s: float = 0.0

    def wait_for_quiet(self, window_s: float = 0.5, patience_s: float = 30.0) -> None:
        """Sleep in ``window_s`` steps until one step sees others below ``threshold``, for at most
        ``patience_s`` (a long neighbour job must not eat the whole budget at once) and the budget."""
        deadline = time.perf_counter() + patience_s
        while self.spent_s < self.budget_s and time.perf_counter() < deadline:
            start, t0 = cpu_ticks(), time.perf_counter()
            time.sleep(window_s)
            elapsed = time.perf_counter() - t0
            self.spent_s += elapsed
            load = others_cores(start, cpu_ticks(), elapsed)
            if load is None or load <= self.threshold:
                return

    def run(self, measure: Callable[[], dict]) -> dict:
        """The least disturbed of up to ``1 + retries`` calls of ``measure()``, with ``others_cores``
        (the neighbours' load during it) and ``attempts`` (how many calls were made) added."""
        attempts: list[dict] = []
        while len(attempts) <= self.retries:
            if attempts:
                self.wait_for_quiet()
            start, t0 = cpu_ticks(), time.perf_counter()
            result = measure()
            elapsed = time.perf_counter() - t0
            load = others_cores(start, cpu_ticks(), elapsed)
            attempts.append({**result, "others_cores": None if load is None else round(load, 3)})
            if load is None or load <= self.threshold or self.spent_s >= self.budget_s:
                break
            self.spent_s += elapsed  # a discarded attempt is waiting too
        best = min(attempts, key=lambda r: r["others_cores"] or 0)
        return {**best, "attempts": len(attempts)}

    def disturbed(self, result: dict) -> bool:
        return (result["others_cores"] or 0) > self.threshold


# ------------------------------------------------------------------------------------- decision table
def backend_ms(result: dict, key: str = "median_ms") -> dict[str, float]:
    """The real backends' figures of one case (``auto`` is not a backend the table may choose)."""
    return {name: ms for name, ms in result[key].items() if name != "auto"}


def _round_ms(values: dict[str, float]) -> dict[str, float]:
    # 4 significant figures: beyond the run-to-run noise, and keeps the committed table's diffs small.
    return {name: float(f"{ms:.4g}") for name, ms in sorted(values.items())}


def table_entry(case: Case, result: dict, device: str) -> dict:
    """One decision-table entry, in the format ``attention._table_choice`` reads (plus ``kind``)."""
    return {
        "device": device,
        "dtype": case.dtype,
        "grad": case.grad,
        "kind": case.kind,
        **case.shape(),
        "median_ms": _round_ms(backend_ms(result, "median_ms")),
        "min_ms": _round_ms(backend_ms(result, "min_ms")),
        "max_ms": _round_ms(backend_ms(result, "max_ms")),
    }


def entry_sort_key(entry: dict) -> tuple:
    return tuple(entry[key] for key in ("device", "dtype", "grad", "kind", "bh", "lq", "lk", "d", "dv"))


def format_table(table: dict) -> str:
    """JSON with one entry per line: valid, deterministic, and diffs show which cases changed."""
    header = [f" {json.dumps(key)}: {json.dumps(value, sort_keys=True)}," for key, value in table.items()
              if key != "entries"]
    entries = ",\n".join("  " + json.dumps(entry) for entry in table["entries"])
    return "{\n" + "\n".join(header) + '\n "entries": [\n' + entries + "\n ]\n}\n"


def write_table(path: Path, entries: list[dict], meta: dict) -> dict:
    """Write the decision table atomically (``ocrformer._atomic``), so a reader never sees half a file.

    The measured device's entries replace that device's old ones; other devices' entries are kept (a
    CPU run must not erase a CUDA table), and ``runs`` keeps each device's provenance."""
    device = entries[0]["device"]
    old = json.loads(path.read_text()) if path.exists() else {}
    kept = [e for e in old.get("entries", []) if e["device"] != device]
    runs = {**old.get("runs", {}), device: meta}
    entries = sorted(kept + entries, key=entry_sort_key)
    table = {**meta, "runs": dict(sorted(runs.items())), "entries": entries}
    atomic_write_text(path, format_table(table))
    return table


# ------------------------------------------------------------------------------------------- auto check
def choice_for(case: Case, device: str) -> str:
    """What ``auto`` picks for ``case`` under the table now loaded (empty tensors: only shapes matter)."""
    dtype = DTYPES[case.dtype]

    def empty(length: int, width: int) -> torch.Tensor:
        return torch.empty(1, case.heads, length, width, dtype=dtype, device=device, requires_grad=case.grad)

    return ocrformer.choose_backend(empty(case.lq, case.d), empty(case.lk, case.d), empty(case.lk, case.dv))


def judge(choice: str, medians: dict[str, float]) -> dict:
    """Is ``choice``'s median within ``TOLERANCE`` of the fastest backend's?"""
    fastest = min(medians, key=medians.get)
    ratio = medians[choice] / medians[fastest]
    return {"choice": choice, "fastest": fastest, "ratio": ratio, "pass": ratio <= TOLERANCE}


def check_auto(cases: list[Case], results: list[dict], device: str) -> list[dict]:
    """``auto``'s choice (from the table file as it is now) against this run's medians, per case."""
    attention.reload_table()  # attend reads the table once, at import; this run may have rewritten it
    pairs = zip(cases, results, strict=True)
    return [judge(choice_for(case, device), backend_ms(result)) for case, result in pairs]


def leave_one_out(cases: list[Case], results: list[dict], device: str) -> list[dict]:
    """The nearest-neighbour rule's accuracy on shapes it has *not* measured: each case judged by
    ``auto`` loaded with a table of this run's other cases. The check that is not a tautology."""
    entries = [table_entry(case, result, device) for case, result in zip(cases, results, strict=True)]
    verdicts = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "leave_one_out.json"
        try:
            for i, (case, result) in enumerate(zip(cases, results, strict=True)):
                path.write_text(json.dumps({"entries": entries[:i] + entries[i + 1 :]}))
                attention.reload_table(path)
                verdicts.append(judge(choice_for(case, device), backend_ms(result)))
        finally:
            attention.reload_table()
    return verdicts


def print_checks(title: str, cases: list[Case], verdicts: list[dict], verbose: bool) -> int:
    """Print one PASS/FAIL line per case (FAILs only unless ``verbose``) and a summary; returns #FAIL."""
    failures = 0
    for case, v in zip(cases, verdicts, strict=True):
        failures += not v["pass"]
        if verbose or not v["pass"]:
            print(f"{'PASS' if v['pass'] else 'FAIL'}  {case.label()} {case.mode()}: auto -> {v['choice']}, "
                  f"fastest {v['fastest']}, ratio {v['ratio']:.2f}")
    print(f"{title}: {len(verdicts) - failures}/{len(verdicts)} cases within {TOLERANCE - 1:.0%} "
          f"of the fastest backend ({failures} FAIL)\n")
    return failures


# ---------------------------------------------------------------------------------------------- reports
def format_ms(ms: float) -> str:
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def markdown(cases: list[Case], results: list[dict], floors: list[tuple[float, str]],
             verdicts: list[dict], meta: dict, rates: dict) -> str:
    """The results table: median ms and its multiple of the floor, per backend; sdpa/matmul; auto's pick."""
    backends = [name for name in attention.BACKENDS if any(name in r["median_ms"] for r in results)]
    rate_text = ", ".join(f"{dtype} {gflops:g}" for dtype, gflops in rates["matmul_gflops"].items())
    lines = [
        f"Measured by: `{meta['measured_by']}`  ",
        *([f"Reported by: `{meta['generated_by']}`  "] if meta["generated_by"] != meta["measured_by"] else []),
        f"Date: {meta['date']}  ",
        f"Machine: {meta['machine']}  ",
        f"Floor rates (measured in the same run): matmul GFLOP/s {rate_text}; copy {rates['copy_gbps']:g} GB/s "
        f"(others' load meanwhile: {rates.get('others_cores', '-')} cores)",
        "",
        "Cells: median ms over the repeats (x its floor). "
        "Floor = max(FLOPs / matmul rate, bytes / copy rate); "
        "`auto ms` ran the table as it was when timed (`ran`); `auto ->` is its choice after this run "
        "and `<=10%` whether that choice's median is within 10% of the fastest. `others`: cores' worth of "
        "CPU other processes used while the case was timed (-: not measurable here).",
        "",
        "| case | mode | floor ms | "
        + " | ".join(f"{b} ms" for b in backends)
        + " | auto ms (ran) | sdpa / matmul | auto -> | <=10% | others |",
        "|---|---|---|" + "---|" * len(backends) + "---|---|---|---|---|",
    ]
    for case, result, (floor, bound), v in zip(cases, results, floors, verdicts, strict=True):
        med = result["median_ms"]
        cells = [f"{format_ms(med[b])} ({med[b] / floor:.1f}x)" if b in med else "-" for b in backends]
        ratio = f"{med['sdpa'] / med['matmul']:.2f}" if {"sdpa", "matmul"} <= med.keys() else "-"
        lines.append(
            f"| {case.label()} | {case.mode()} | {format_ms(floor)} {bound[:3]} | " + " | ".join(cells)
            + f" | {format_ms(med['auto'])} ({result['auto_ran']}) | {ratio} | {v['choice']} | "
            + ("PASS" if v["pass"] else f"FAIL ({v['ratio']:.2f}x)")
            + (" | -" if result.get("others_cores") is None else f" | {result['others_cores']:.2f}") + " |"
        )
    return "\n".join(lines) + "\n"


def decision_grids(cases: list[Case], results: list[dict], verdicts: list[dict]) -> str:
    """auto's choice per case as grids, one per kind and mode: rows (D or heads, K), columns N. A cell
    names the choice, adds its median / the fastest's when it is not the fastest, FAIL past 10%, and a
    dagger when other processes disturbed the timing (its ``others_cores`` > ``QuietGuard.threshold``)."""
    lines = []
    groups = dict.fromkeys((c.kind, c.mode()) for c in cases)  # first-seen order
    for kind, mode in groups:
        picked = {(c.d if kind == "decoder" else c.heads, c.regions, c.hw): (v, r)
                  for c, r, v in zip(cases, results, verdicts, strict=True)
                  if (c.kind, c.mode()) == (kind, mode)}
        grids = sorted({hw for *_, hw in picked}, key=lambda hw: hw[0] * hw[1])
        rows = list(dict.fromkeys(key[:2] for key in picked))
        lines += [f"**{kind}, {mode}**", "",
                  f"| {'D' if kind == 'decoder' else 'h'} | K | " + " | ".join(f"N={h}x{w}" for h, w in grids) + " |",
                  "|---|---|" + "---|" * len(grids)]
        for row in rows:
            cells = [grid_cell(picked.get((*row, hw))) for hw in grids]
            lines.append(f"| {row[0]} | {row[1]} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def grid_cell(picked: tuple[dict, dict] | None) -> str:
    if picked is None:
        return "-"
    verdict, result = picked
    text = verdict["choice"]
    if verdict["choice"] != verdict["fastest"]:
        text += f" ({verdict['ratio']:.2f})"
    text = text if verdict["pass"] else f"**{text} FAIL**"
    return text + (" †" if (result.get("others_cores") or 0) > QuietGuard.threshold else "")


def plot(cases: list[Case], results: list[dict], floors: list[tuple[float, str]], path: Path) -> None:
    """Median ms vs N per backend (log-log), one column per kind and one row per dtype/pass.

    Shown: decoder D = 720 and encoder h = 1 (or the first measured); K = smallest (solid) and largest
    (dashed) measured; grey dotted = the floor. The JSON holds every case."""
    import matplotlib  # lazy: only the report needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(c.mode() for c in cases))  # cases come in report order
    kinds = [k for k in KINDS if any(c.kind == k for c in cases)]
    size = (6 * len(kinds), 3.6 * len(modes))
    fig, axes = plt.subplots(len(modes), len(kinds), figsize=size, squeeze=False)
    colors = {"matmul": "tab:blue", "sdpa": "tab:orange", "xformers": "tab:green", "auto": "tab:red"}
    for row, mode in enumerate(modes):
        for col, kind in enumerate(kinds):
            ax = axes[row][col]
            rows = [(c, r, f) for c, r, f in zip(cases, results, floors, strict=True)
                    if c.kind == kind and c.mode() == mode]
            headline = {c.d if kind == "decoder" else c.heads for c, _, _ in rows}
            pick = (720 if 720 in headline else min(headline)) if kind == "decoder" else min(headline)
            rows = [x for x in rows if (x[0].d if kind == "decoder" else x[0].heads) == pick]
            regions = sorted({c.regions for c, _, _ in rows})
            # zip (not strict): with one K measured, only the solid style is used.
            for k, style in zip(sorted({regions[0], regions[-1]}), ("-", "--")):  # noqa: B905
                series = sorted((x for x in rows if x[0].regions == k), key=lambda x: x[0].pixels)
                n = [c.pixels for c, _, _ in series]
                for name in series[0][1]["median_ms"]:
                    ax.plot(n, [r["median_ms"][name] for _, r, _ in series], style, marker="o",
                            color=colors.get(name, "k"), label=f"{name} K={k}")
                ax.plot(n, [f[0] for _, _, f in series], style, marker="x", color="0.6", lw=1, label=f"floor K={k}")
            what = f"D={pick}" if kind == "decoder" else f"h={pick}"
            ax.set(xscale="log", yscale="log", xlabel="N pixels", ylabel="median ms")
            ax.set_title(f"{kind} {what}, {mode}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_json(cases: list[Case], results: list[dict], rates: dict, meta: dict,
                checks: dict[str, list[dict]]) -> dict:
    """Everything measured, per case, with the counts the floors came from and each check's verdict
    (``checks``: {check name: one verdict per case}; may be empty)."""
    rows = []
    for i, (case, result) in enumerate(zip(cases, results, strict=True)):
        floor, bound = floor_ms(case, rates)
        rows.append({
            "case": case.label(), **asdict(case), **case.shape(), "scale": case.scale,
            "flops": flop_count(case), "bytes": byte_count(case), "floor_ms": floor, "floor_bound": bound,
            **result, **{name: verdicts[i] for name, verdicts in checks.items()},
        })
    counts = {"flops": flop_count.__doc__, "bytes": byte_count.__doc__}
    return {**meta, "rates": rates, "counts": counts, "cpu_peak_memory": "not measured", "cases": rows}


# ------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Full CPU run: 216 cases, ~5 min on 2 idle cores (up to ~12 min while other processes "
        "share them). --quick: 4 cases, ~10 s.",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where to time (default cpu)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: decoder and encoder at K=19, N=64x64, float32, fwd and fwd+bwd, "
                             "3 repeats")
    parser.add_argument("--cases", default=",".join(KINDS),
                        help="comma list of decoder,encoder (default both)")
    parser.add_argument("--dtypes", default=None,
                        help="comma list of float32,bfloat16 (default both; --quick: float32)")
    parser.add_argument("--passes", default=",".join(PASSES),
                        help="comma list of fwd (no_grad forward), fwdbwd (forward + backward); "
                             "default both")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds per case (default 5; --quick 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds per case first (default 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="report folder (default outputs/attention_speed)")
    parser.add_argument("--quiet-budget", type=float, default=None,
                        help="seconds the run may spend waiting for other processes to go quiet and "
                             "re-timing cases they disturbed (default 300; --quick 15; 0: never wait)")
    parser.add_argument("--from-json", type=Path, default=None, metavar="PATH",
                        help="time nothing: report (and with --write-table, tabulate) the run saved in "
                             "PATH, an attention_speed.json; keeps the cleanest run of a shared machine")
    parser.add_argument("--write-table", action="store_true",
                        help=f"write the medians to {attention.TABLE_PATH.relative_to(REPO_ROOT)} "
                             "(replacing this device's entries), then check auto against them")
    parser.add_argument("--verbose-checks", action="store_true",
                        help="print leave-one-out PASS lines too, not only its FAILs")
    args = parser.parse_args(argv)
    args.cases = split_choices(parser, "--cases", args.cases, KINDS)
    dtypes = args.dtypes or ("float32" if args.quick else ",".join(DTYPES))
    args.dtypes = split_choices(parser, "--dtypes", dtypes, tuple(DTYPES))
    args.passes = split_choices(parser, "--passes", args.passes, PASSES)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.quiet_budget = (15.0 if args.quick else 300.0) if args.quiet_budget is None else args.quiet_budget
    if args.write_table and args.quick:
        parser.error("--write-table with --quick would shrink the decision table to 4 cases; drop --quick")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    return args


def split_choices(parser: argparse.ArgumentParser, flag: str, text: str, allowed: tuple[str, ...]) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``, refusing names outside ``allowed``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = sorted(set(items) - set(allowed))
    if unknown or not items:
        parser.error(f"{flag}: expected a comma list of {','.join(allowed)}, got {text!r}")
    return items


def command_line(argv: list[str] | None) -> str:
    """The command as typed (``sys.orig_argv``), or its equivalent when ``main`` is called from Python."""
    if argv is None:
        return shlex.join(sys.orig_argv)
    return shlex.join(["python", "benchmarks/attention_speed.py", *argv])


RESULT_KEYS = ("median_ms", "min_ms", "max_ms", "peak_mib", "auto_ran", "others_cores", "attempts")
META_KEYS = ("device", "generated_by", "measured_by", "date", "machine")


def timed_run(args: argparse.Namespace, command: str) -> tuple[dict, dict, list[Case], list[dict], dict]:
    """Measure now: (meta, floor rates, cases, one result per case, notes on how shared the CPU was)."""
    if os.environ.get(attention.ENV_VAR):
        print(f"warning: {attention.ENV_VAR}={os.environ[attention.ENV_VAR]} forces what 'auto' runs")
    load = os.getloadavg()[0]
    if args.device == "cpu" and load > 0.5:
        print(f"warning: load average {load:.1f} before starting: other processes compete for the cores, "
              "and CPU timings will be noisy (parallel kernels wait for preempted threads)")
    meta = {"device": args.device, "generated_by": command, "measured_by": command,
            "date": datetime.date.today().isoformat(), "machine": machine_description(args.device)}
    cases = build_cases(args.cases, args.dtypes, args.passes, args.quick)
    guard = QuietGuard(args.quiet_budget)
    guard.wait_for_quiet()  # the floor's rates are the machine's best: measure them undisturbed
    rates = guard.run(lambda: measure_rates(args.device, args.dtypes))
    results = [guard.run(lambda case=case: measure_case(case, args.device, args.warmup, args.repeats))
               for case in tqdm(cases, desc="attention cases", unit="case")]
    disturbed = sum(guard.disturbed(r) for r in results)
    print(
        f"{disturbed}/{len(cases)} cases timed while other processes used > {guard.threshold} core "
        f"(column 'others'); {guard.spent_s:.0f} s of the {args.quiet_budget:.0f} s quiet budget spent"
    )
    notes = {"load_average_1min": {"start": load, "end": os.getloadavg()[0]}, "disturbed_cases": disturbed,
             "quiet_budget_spent_s": round(guard.spent_s, 1)}
    return meta, rates, cases, results, notes


def saved_run(path: Path, command: str) -> tuple[dict, dict, list[Case], list[dict], dict]:
    """The same as ``timed_run``, read back from a saved ``attention_speed.json`` (no timing)."""
    saved = json.loads(path.read_text())
    names = [f.name for f in fields(Case)]
    cases = [Case(**{**{name: c[name] for name in names}, "hw": tuple(c["hw"])}) for c in saved["cases"]]
    results = [{key: c[key] for key in RESULT_KEYS if key in c} for c in saved["cases"]]
    # A report without these keys predates them; it was a CPU run measured by its generated_by.
    meta = {"device": "cpu", "measured_by": saved["generated_by"], **{k: saved[k] for k in META_KEYS if k in saved}}
    meta["generated_by"] = command
    notes = {key: saved[key] for key in ("load_average_1min", "disturbed_cases") if key in saved}
    return meta, saved["rates"], cases, results, {**notes, "rendered_from": str(path)}


def main(argv: list[str] | None = None) -> int:
    """Time (or read a saved run), report, optionally write the table, check auto. Returns 1 if auto
    fails its check after ``--write-table``."""
    args = parse_args(argv)
    command = command_line(argv)
    meta, rates, cases, results, notes = (saved_run(args.from_json, command) if args.from_json
                                          else timed_run(args, command))
    order = sorted(range(len(cases)), key=lambda i: cases[i].report_key())  # reports group like with like
    cases, results = [cases[i] for i in order], [results[i] for i in order]

    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "attention_speed.json"
    atomic_write_text(json_path, json.dumps({**report_json(cases, results, rates, meta, {}), **notes}, indent=1) + "\n")
    if args.write_table:
        entries = [table_entry(case, result, meta["device"]) for case, result in zip(cases, results, strict=True)]
        write_table(attention.TABLE_PATH, entries, {key: meta[key] for key in META_KEYS[1:]})
        print(f"wrote {attention.TABLE_PATH} ({len(entries)} {meta['device']} entries)")
    verdicts = check_auto(cases, results, meta["device"])
    loo = leave_one_out(cases, results, meta["device"])

    report = report_json(cases, results, rates, meta, {"auto_check": verdicts, "leave_one_out": loo})
    atomic_write_text(json_path, json.dumps({**report, **notes}, indent=1) + "\n")
    floors = [floor_ms(case, rates) for case in cases]
    text = markdown(cases, results, floors, verdicts, meta, rates)
    text += "\n## auto's choice per case\n\n" + decision_grids(cases, results, verdicts)
    atomic_write_text(args.out / "attention_speed.md", text)
    plot(cases, results, floors, args.out / "attention_speed.png")
    print(text)
    failures = print_checks("auto vs the table file", cases, verdicts, verbose=True)
    print_checks("leave-one-out (auto on shapes the table lacks)", cases, loo, verbose=args.verbose_checks)
    print(f"reports in {args.out}")
    # With --write-table a FAIL is a bug (the table holds these very medians); without it, a FAIL may be
    # a stale table or this run's noise, so it is reported but is no error.
    return 1 if failures and args.write_table else 0


if __name__ == "__main__":
    sys.exit(main())
