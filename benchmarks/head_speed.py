"""Time the whole OCR head -- ``ocrformer.OCRHead`` against the classic HRNet-OCR head -- against the machine's floor.

Cases (B batch, Cin input channels, H x W feature map, K classes; mid 512, key 256 channels as in HRNet-OCR):
    eval   Cityscapes scale  B=1, Cin=720, 128x256, K=19   forward under ``torch.no_grad`` (the speed goal)
    eval   smaller           B=1, Cin=720, 64x128,  K=19
    train  step              B=2, Cin=720, 64x128,  K=19   forward + backward + SGD step, dropout 0

Variants: ``classic`` (``benchmarks/classic_ocr.py``: channel-first tensors, view/permute/bmm, BN after every
conv, concat before the fuse conv), and ``OCRHead`` loaded with the same weights through ``convert_checkpoint``:
in eval ``modules`` (``OCRHead`` itself: module by module, as in training), ``fused direct`` and ``fused
winograd`` (``FusedOCRHead``, the inference copy ``optimize_for_inference`` builds; see
``ocrformer/fused_head.py``); in training the one path ``OCRHead`` has.

Before a case is timed, every variant runs on the same input and its outputs are compared with the classic
head's; past 1e-5 relative (max |diff| / max |classic|; the training forward in float64, past 1e-10, see
``check_parity``) the script refuses to time and exits with status 2.

Per case, the variants are timed round-robin (the first one rotating) so that a shared machine's noise hits all
alike: warm-up rounds, then repeats; median, min and max. Floor, measured in the same run: max(FLOPs / matmul
rate, fewest bytes / copy bandwidth), FLOPs by ``FlopCounterMode`` on the classic head (the direct-conv work of
the problem; each variant's own count is reported too, since Winograd does fewer multiplications). Peak memory:
the peak RSS of a fresh process per (case, variant) over one step after a warm-up one, above the RSS before it.

Run from the repository root:  python benchmarks/head_speed.py [--quick] [--profile | --conv]
(``--profile``: per-op time of every variant; ``--conv``: the 3x3 conv alone, direct, Winograd and NNPACK).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import shlex
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script without installing the package
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks._reports import write_reports  # noqa: E402
from benchmarks.attention_speed import (  # noqa: E402
    QuietGuard,
    machine_description,
    measure_rates,
    round_robin,
    summarize,
)
from benchmarks.classic_ocr import ClassicOCRHead, randomize_  # noqa: E402
from benchmarks.context_modules import PeakMemory, forkserver  # noqa: E402
from ocrformer import FusedOCRHead, OCRHead  # noqa: E402
from ocrformer.convert import convert_checkpoint  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "outputs" / "head_speed"
TOLERANCE = 1e-5  # relative, float32: max |diff| / max |classic output|
TOLERANCE_FLOAT64 = 1e-10  # the same, for the float64 check of the training forward
MB = 2**20
EVAL_VARIANTS = {"classic": None, "ocrformer modules": None, "ocrformer fused direct": "direct",
                 "ocrformer fused winograd": "winograd"}  # fmt: skip
TRAIN_VARIANTS = {"classic": None, "ocrformer": None}
AUX_WEIGHT = 0.4  # HRNet-OCR's loss: CE(logits) + 0.4 CE(aux_logits)


class ParityError(RuntimeError):
    """The heads disagree: timing them would compare different functions."""


# ------------------------------------------------------------------------------------------------ cases
@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "eval" | "train"
    batch: int
    in_channels: int
    hw: tuple[int, int]
    classes: int

    def label(self) -> str:
        h, w = self.hw
        return f"{self.kind} {self.name}: B={self.batch} Cin={self.in_channels} {h}x{w} K={self.classes}"

    @property
    def variants(self) -> dict[str, str | None]:
        return EVAL_VARIANTS if self.kind == "eval" else TRAIN_VARIANTS


def build_cases(quick: bool) -> list[Case]:
    if quick:  # the same widths, smaller maps: exercises every path in seconds
        return [Case("quick", "eval", 1, 720, (32, 64), 19), Case("quick", "train", 2, 720, (16, 32), 19)]
    return [
        Case("cityscapes", "eval", 1, 720, (128, 256), 19),
        Case("smaller", "eval", 1, 720, (64, 128), 19),
        Case("smaller", "train", 2, 720, (64, 128), 19),
    ]


# ----------------------------------------------------------------------------------------------- models
def build_models(case: Case, names: list[str] | None = None, seed: int = 0) -> dict[str, nn.Module]:
    """The named variants (default: all of the case's), the classic head randomised and every ``OCRHead``
    loaded from it through ``convert_checkpoint`` (strict), as ``tests/conftest.py`` does."""
    names = list(case.variants) if names is None else names
    dropout = 0.0 if case.kind == "train" else 0.05  # eval: dropout is off anyway; train: 0 for parity
    classic = randomize_(ClassicOCRHead(case.in_channels, case.classes, dropout=dropout), seed)
    converted = convert_checkpoint(classic.state_dict())
    state = {k.removeprefix("head."): v for k, v in converted.items() if k.startswith("head.")}
    models = {}
    for name in names:
        if name == "classic":
            model = classic
        else:
            model = OCRHead(case.in_channels, case.classes, dropout=dropout)
            model.load_state_dict(state, strict=True)
            if case.variants[name] is not None:  # ocrformer's inference copy, built explicitly
                model = FusedOCRHead(model.eval(), conv=case.variants[name])
        models[name] = model.train(case.kind == "train")
    return models


def make_inputs(case: Case, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    h, w = case.hw
    feats = torch.randn(case.batch, case.in_channels, h, w, generator=generator)
    labels = torch.randint(0, case.classes, (case.batch, h, w), generator=generator)
    return {"feats": feats, "labels": labels}


def loss_of(out: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out["logits"], labels) + AUX_WEIGHT * F.cross_entropy(out["aux_logits"], labels)


def make_step(case: Case, model: nn.Module, inputs: dict[str, torch.Tensor]) -> Callable[[], None]:
    """One timed call: a no_grad forward (eval), or forward + backward + SGD step (train)."""
    feats, labels = inputs["feats"], inputs["labels"]
    if case.kind == "eval":

        def forward() -> None:
            with torch.no_grad():
                model(feats)

        return forward
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_of(model(feats), labels).backward()
        optimizer.step()

    return train_step


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.abs().max().clamp_min(torch.finfo(expected.dtype).tiny)
    return ((actual - expected).abs().max() / scale).item()


def check_parity(case: Case, models: dict[str, nn.Module], inputs: dict[str, torch.Tensor]) -> dict:
    """Every variant's outputs against the classic head's on the same input, on copies (a training forward moves
    BatchNorm statistics). Raises ``ParityError`` past the tolerance.

    Eval: in float32, within ``TOLERANCE``. Train mode: in float64, within ``TOLERANCE_FLOAT64``: in float32 the
    training forward is too ill-conditioned for 1e-5 -- its BatchNorms over the B x K region vectors, which are
    nearly alike, amplify rounding, so the classic head itself lands ~4e-5 from its own float64 result at
    64x128 -- and float64 shows the two compute the same function. Each variant's float32 error against the
    classic float64 result is recorded beside it (``float32_vs_float64``)."""
    train = case.kind == "train"
    dtype, tolerance = (torch.float64, TOLERANCE_FLOAT64) if train else (torch.float32, TOLERANCE)
    keys = ("logits", "aux_logits")
    with torch.no_grad():
        outputs = {name: copy.deepcopy(model).to(dtype)(inputs["feats"].to(dtype)) for name, model in models.items()}
        errors = {
            name: {k: relative_error(out[k], outputs["classic"][k]) for k in keys} for name, out in outputs.items()
        }
        result = {"dtype": str(dtype).removeprefix("torch."), "tolerance": tolerance, "errors": errors}
        if train:
            result["float32_vs_float64"] = {
                name: {k: relative_error(out[k].double(), outputs["classic"][k]) for k in keys}
                for name, out in ((n, copy.deepcopy(m)(inputs["feats"])) for n, m in models.items())
            }
    bad = {name: e for name, e in errors.items() if max(e.values()) > tolerance}
    if bad:
        raise ParityError(
            f"{case.label()}: {result['dtype']} outputs differ from the classic head's by more than {tolerance:g} "
            "(relative): "
            + "; ".join(f"{name} {e}" for name, e in bad.items())
            + " -- refusing to time different functions"
        )
    return result


def perturb_(model: nn.Module, amount: float) -> None:
    """Self-test of the parity check (``--perturb``): nudge one weight of an ``OCRHead``."""
    with torch.no_grad():
        weight = model.encoder.fuse.conv.weight
        weight.add_(amount * weight.abs().max())


# ------------------------------------------------------------------------------------------------ floor
def count_flops(case: Case, model: nn.Module, inputs: dict[str, torch.Tensor]) -> int:
    """FLOPs (2 per multiply-add; convolutions and matrix products) of one step of ``model``, counted on a copy."""
    model = copy.deepcopy(model)
    step = make_step(case, model, inputs)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def byte_count(case: Case, model: nn.Module) -> int:
    """Fewest bytes a step must move: eval reads the input and the weights and writes the two (B, K, H, W)
    outputs; a training step also reads the weights again in backward, writes and reads their gradients, and
    reads and writes the weights and the momentum in the SGD step (7 passes over the parameters).
    Activations kept for backward are not counted (a fused implementation might recompute them)."""
    h, w = case.hw
    feats = case.batch * case.in_channels * h * w
    outputs = 2 * case.batch * case.classes * h * w
    params = sum(p.numel() for p in model.parameters())
    return 4 * (feats + outputs + (params if case.kind == "eval" else 7 * params))


def floor_ms(flops: int, nbytes: int, rates: dict) -> tuple[float, str]:
    compute = flops / (rates["matmul_gflops"]["float32"] * 1e9) * 1e3
    memory = nbytes / (rates["copy_gbps"] * 1e9) * 1e3
    return (compute, "compute") if compute >= memory else (memory, "memory")


# ----------------------------------------------------------------------------------------------- timing
def time_case(case: Case, models: dict[str, nn.Module], inputs: dict, warmup: int, repeats: int) -> dict:
    """Median/min/max ms per variant, timed round-robin."""
    steps = {name: make_step(case, model, inputs) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r, name in round_robin(list(steps), warmup, repeats):
        start = time.perf_counter()
        steps[name]()
        elapsed = (time.perf_counter() - start) * 1e3
        if r >= 0:
            times[name].append(elapsed)
    stats = {name: summarize(values) for name, values in times.items()}
    return {key: {name: s[key.removesuffix("_ms")] for name, s in stats.items()}
            for key in ("median_ms", "min_ms", "max_ms")}  # fmt: skip


def memory_worker(case_dict: dict, name: str, threads: int) -> dict:
    """In a fresh process: build one variant, run one step untimed, then the peak RSS over one more step above
    the RSS before it (weights, input and one-off initialisation excluded; the output and every temporary, and
    the gradients in training, included)."""
    torch.set_num_threads(threads)
    case = Case(**{**case_dict, "hw": tuple(case_dict["hw"])})
    model = build_models(case, [name])[name]
    inputs = make_inputs(case)
    step = make_step(case, model, inputs)
    step()
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    step()
    return {"peak_mb": memory.peak_mb()}


def peak_memory(case: Case, name: str, threads: int) -> float | None:
    """``memory_worker`` in a fresh process (forked from a server that has torch imported); None if it died."""
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=forkserver()) as pool:
            return pool.submit(memory_worker, asdict(case), name, threads).result()["peak_mb"]
    except BrokenProcessPool:
        return None


def profile_case(case: Case, models: dict[str, nn.Module], inputs: dict, top: int = 8) -> str:
    """Where one step's time goes, per variant: ``torch.profiler``'s self CPU time per op, the ``top`` ops and
    the rest (one profiled step after an untimed one; the profiler's overhead included)."""
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415 - only --profile needs it

    lines = [f"**{case.label()}**", "", "| variant | total ms | " + " | ".join(["op: ms (%)"] * top) + " |",
             "|---|---:|" + "---|" * top]  # fmt: skip
    for name, model in models.items():
        step = make_step(case, model, inputs)
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in ops) / 1e3
        cells = [f"{e.key.removeprefix('aten::')}: {e.self_cpu_time_total / 1e3:.0f} "
                 f"({100 * e.self_cpu_time_total / 1e3 / total:.0f}%)" for e in ops[:top]]  # fmt: skip
        cells += ["-"] * (top - len(cells))
        lines.append(f"| {name} | {total:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def conv_variants(hw: tuple[int, int], repeats: int, cin: int = 720, cout: int = 512) -> str:
    """The head's 3x3 conv alone (B=1, ``cin`` -> ``cout``, bias, ReLU), in the ways it can run on CPU: time
    (round-robin, median of ``repeats``) and float32 error against the float64 conv (max |diff| / max |ref|)."""
    from ocrformer.winograd import padded_nhwc, winograd_conv3x3, winograd_weight  # noqa: PLC0415

    generator = torch.Generator().manual_seed(0)
    h, w = hw
    x64 = torch.randn(1, cin, h, w, generator=generator, dtype=torch.float64)
    w64 = (torch.rand(cout, cin, 3, 3, generator=generator, dtype=torch.float64) * 2 - 1) * 1.5 / (9 * cin) ** 0.5
    b64 = torch.rand(cout, generator=generator, dtype=torch.float64) - 0.5
    reference = F.conv2d(x64, w64, b64, padding=1).relu()
    x, weight, bias = x64.float(), w64.float(), b64.float()
    u = winograd_weight(weight)  # transformed once, as FusedOCRHead does
    last = torch.channels_last
    runs = {
        "oneDNN direct, NCHW (as the classic head)": lambda: F.conv2d(x, weight, bias, padding=1).relu_(),
        "oneDNN direct, channels-last (incl. the NCHW -> NHWC copy)": lambda: F.conv2d(
            x.contiguous(memory_format=last), weight.contiguous(memory_format=last), bias, padding=1
        ).relu_(),
        "Winograd F(2x2, 3x3), ocrformer.winograd (incl. padding copy)": lambda: winograd_conv3x3(
            padded_nhwc(x, h + 2 + h % 2, w + 2 + w % 2), u, bias, relu=True
        )[:, :h, :w].permute(0, 3, 1, 2),
    }
    if torch._nnpack_available():
        runs["NNPACK (Winograd F(6x6, 3x3)), torch._nnpack_spatial_convolution"] = lambda: (
            torch._nnpack_spatial_convolution(x, weight, bias, [1, 1]).relu_()
        )
    flops = 2 * 9 * cin * cout * h * w
    with torch.no_grad():
        errors = {name: relative_error(run().double(), reference) for name, run in runs.items()}
        times: dict[str, list[float]] = {name: [] for name in runs}
        for r, name in round_robin(list(runs), 1, repeats):
            start = time.perf_counter()
            runs[name]()
            if r >= 0:
                times[name].append((time.perf_counter() - start) * 1e3)
    lines = [f"**3x3 conv {cin} -> {cout}, 1 x {h} x {w}, float32 ({flops / 1e9:.1f} GFLOP direct)**", "",
             "| conv | median ms [min-max] | GFLOP/s (direct-conv FLOPs) | error vs float64 |",
             "|---|---|---:|---:|"]  # fmt: skip
    for name, values in times.items():
        stats = summarize(values)
        lines.append(f"| {name} | {stats['median']:.0f} [{stats['min']:.0f}-{stats['max']:.0f}] | "
                     f"{flops / stats['median'] / 1e6:.0f} | {errors[name]:.2e} |")  # fmt: skip
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- reports
def markdown(report: dict) -> str:
    rates = report["rates"]
    lines = [
        f"Measured by: `{report['generated_by']}`  ",
        f"Date: {report['date']}  ",
        f"Machine: {report['machine']}  ",
        f"Floor rates (measured in the same run): matmul {rates['matmul_gflops']['float32']:g} GFLOP/s (float32), "
        f"copy {rates['copy_gbps']:g} GB/s",
        "",
        "Cells: median ms over the repeats [min-max]; `x floor`: median / the case's floor (FLOPs of the classic "
        "formulation / matmul rate, or bytes / copy rate if larger); `x own floor`: the same with the variant's "
        "own FLOP count; `speed-up`: classic median / this median; `peak MB`: peak RSS above the RSS before the "
        "step, in a fresh process; `parity`: max relative error of the outputs vs the classic head's, checked before "
        "timing (eval in float32, train mode in float64; `f32 vs f64`: the variant's float32 training forward vs "
        "the classic float64 one); `others`: cores' worth of CPU other processes used while the case was timed.",
        "",
        "| case | variant | GFLOP | floor ms | median ms [min-max] | x floor | x own floor | speed-up | peak MB "
        "| parity | f32 vs f64 | others |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in report["cases"]:
        for name, v in case["variants"].items():
            others = "-" if case.get("others_cores") is None else f"{case['others_cores']:.2f}"
            peak = "-" if v["peak_mb"] is None else f"{v['peak_mb']:.0f}"
            f32 = "-" if v["float32_vs_float64"] is None else f"{v['float32_vs_float64']:.1e}"
            lines.append(
                f"| {case['label']} | {name} | {v['flops'] / 1e9:.1f} | {case['floor_ms']:.0f} | "
                f"{v['median_ms']:.0f} [{v['min_ms']:.0f}-{v['max_ms']:.0f}] | {v['x_floor']:.2f} | "
                f"{v['x_own_floor']:.2f} | {v['speedup']:.2f} | {peak} | "
                f"{v['parity_err']:.1e} ({case['parity']['dtype']}) | {f32} | {others} |"
            )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: eval at 32x64, a training step at B=2 16x32; 2 repeats (~30 s)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per case (default 5; --quick 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds per case first (default 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder (default outputs/head_speed)")
    parser.add_argument("--quiet-budget", type=float, default=None,
                        help="seconds the run may spend waiting for other processes to go quiet and re-timing "
                             "disturbed cases (default 300; --quick 0)")  # fmt: skip
    parser.add_argument("--no-memory", action="store_true", help="skip the per-variant peak-memory processes")
    parser.add_argument("--conv", action="store_true",
                        help="only the 3x3 conv (720 -> 512, the head's size) in its CPU variants: time and "
                             "float32 error (writes head_speed_conv.md)")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="only profile: per-op self CPU time of every variant, after the parity check "
                             "(writes head_speed_profile.md)")  # fmt: skip
    parser.add_argument("--perturb", type=float, default=0.0, metavar="REL",
                        help="self-test: add REL x max|w| to one OCRHead weight; the parity check must "
                             "refuse")  # fmt: skip
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.quiet_budget = (0.0 if args.quick else 300.0) if args.quiet_budget is None else args.quiet_budget
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(sys.orig_argv if argv is None else ["python", "benchmarks/head_speed.py", *argv])
    cases = build_cases(args.quick)
    threads = torch.get_num_threads()
    if args.conv:
        hw = next(c.hw for c in cases if c.kind == "eval")
        text = (
            f"Measured by: `{command}`  \nDate: {datetime.date.today()}  \n"
            + f"Machine: {machine_description('cpu')}\n\n"
            + conv_variants(hw, args.repeats)
        )
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "head_speed_conv.md").write_text(text)
        print(text)
        return 0
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f}: other processes share the cores; timings will be noisy")

    # Parity first, for every case: nothing is timed unless all variants compute the classic head's function.
    prepared = []
    for case in cases:
        models, inputs = build_models(case), make_inputs(case)
        if args.perturb:
            perturb_(models[next(name for name in models if name != "classic")], args.perturb)
        try:
            parity = check_parity(case, models, inputs)
        except ParityError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"parity ({parity['dtype']}) {case.label()}: "
              + ", ".join(f"{n} {max(e.values()):.1e}" for n, e in parity["errors"].items()))  # fmt: skip
        prepared.append((case, models, inputs, parity))

    if args.profile:
        text = "\n".join(profile_case(case, models, inputs) for case, models, inputs, _ in prepared)
        text = (
            f"Measured by: `{command}`  \nDate: {datetime.date.today()}  \n"
            + f"Machine: {machine_description('cpu')}\n\n"
            + text
        )
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "head_speed_profile.md").write_text(text)
        print(text)
        return 0

    guard = QuietGuard(args.quiet_budget)
    guard.wait_for_quiet()
    rates = guard.run(lambda: measure_rates("cpu", ["float32"]))
    print(f"rates: matmul {rates['matmul_gflops']['float32']} GFLOP/s, copy {rates['copy_gbps']} GB/s")
    rows = []
    for case, models, inputs, parity in prepared:
        flops = {name: count_flops(case, model, inputs) for name, model in models.items()}
        nbytes = byte_count(case, models["classic"])
        floor, bound = floor_ms(flops["classic"], nbytes, rates)
        timed = guard.run(lambda case=case, models=models, inputs=inputs: time_case(
            case, models, inputs, args.warmup, args.repeats))  # fmt: skip
        variants = {}
        for name in models:
            median = timed["median_ms"][name]
            own_floor, _ = floor_ms(flops[name], nbytes, rates)
            peak = None if args.no_memory else peak_memory(case, name, threads)
            variants[name] = {
                "median_ms": median, "min_ms": timed["min_ms"][name], "max_ms": timed["max_ms"][name],
                "flops": flops[name], "x_floor": median / floor, "x_own_floor": median / own_floor,
                "speedup": timed["median_ms"]["classic"] / median, "peak_mb": peak,
                "parity_err": max(parity["errors"][name].values()),
                "float32_vs_float64": max(parity["float32_vs_float64"][name].values())
                if "float32_vs_float64" in parity else None,
            }  # fmt: skip
        rows.append({"label": case.label(), **asdict(case), "bytes": nbytes, "floor_ms": floor,
                     "floor_bound": bound, "parity": parity, "others_cores": timed["others_cores"],
                     "attempts": timed["attempts"], "variants": variants})  # fmt: skip
        best = max((n for n in variants if n != "classic"), key=lambda n: variants[n]["speedup"])
        print(f"{case.label()}: classic {variants['classic']['median_ms']:.0f} ms, {best} "
              f"{variants[best]['median_ms']:.0f} ms ({variants[best]['speedup']:.2f}x)")  # fmt: skip

    report = {
        "generated_by": command, "date": datetime.date.today().isoformat(), "machine": machine_description("cpu"),
        "rates": rates, "tolerance": TOLERANCE, "warmup": args.warmup, "repeats": args.repeats,
        "load_average_1min": {"start": load, "end": os.getloadavg()[0]},
        "quiet_budget_spent_s": round(guard.spent_s, 1),
        "counts": {"flops": count_flops.__doc__, "bytes": byte_count.__doc__, "memory": memory_worker.__doc__},
        "cases": rows,
    }  # fmt: skip
    write_reports(args.out, "head_speed", report, markdown(report), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
