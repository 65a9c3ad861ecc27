"""Inference and training speed on the CPU: the OCR head and the whole OCRNet, plain against optimized.

Cases (one run measures every ratio it reports; float32, no gradients unless training):
    head eval     B=1, 720 -> 512/256 channels, K=19, at 128x256 (Cityscapes), 64x128, 32x64, 16x32, 8x16:
                  ``classic`` (benchmarks/classic_ocr.py, the HRNet-OCR code's formulation), ``OCRHead`` (its
                  modules: what ``forward`` runs), ``fused direct`` / ``fused winograd2`` / ``fused winograd4``
                  (``FusedOCRHead``, what ``optimize_for_inference`` builds, with each 3x3 conv; its default,
                  ``conv="auto"``, takes one of them by the map's size: the table says which)
    model eval    ``ocrnet_hrnet_w48`` on 1x3x512x1024: ``plain`` against ``optimize_for_inference(model)`` (the
                  defaults: BatchNorm folded by torch.fx, channels-last, the fused head with ``conv="auto"``),
                  against it with the direct conv, and with ``compile=True``; then
                  plain against optimized again in a fresh process whose glibc keeps freed memory for reuse
                  (``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` at 4 GiB, see ``KEEP_FREED_MEMORY``)
    train step    B=2, 720 channels, 64x128, K=19: forward + backward + SGD step, ``classic`` against ``OCRHead``;
                  and the step's peak memory, each variant in a fresh process (``benchmarks/_common.PeakMemory``)

Before anything is timed each variant's outputs are compared with the reference's (the classic head; the plain
model; in training, the classic head in float64); past the tolerance the script exits with status 2 instead of
timing different functions. Timing: round-robin, warm-up round first (it includes torch.compile's compilation,
whose time is reported apart), median [min-max] of the repeats (``benchmarks/_common.py``).

Run from the repository root:  python benchmarks/inference_speed.py [--quick] [--repeats 5] [--no-compile] [--no-memory]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script without installing the package
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks._common import (  # noqa: E402
    PeakMemory,
    forkserver,
    fresh_process_with_env,
    machine_description,
    relative_error,
    time_round_robin,
)
from benchmarks._reports import write_reports  # noqa: E402
from benchmarks.classic_ocr import ClassicOCRHead, classic_and_ocrformer  # noqa: E402
from ocrformer import FusedOCRHead, OCRHead, create_model, optimize_for_inference  # noqa: E402
from ocrformer.fused_head import auto_conv  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "outputs" / "inference_speed"
TOLERANCE = {"head": 1e-5, "model": 1e-4, "train": 1e-10}  # relative, max |diff| / max |reference|
# glibc serves large blocks with their own mmap by default and returns them on free: every large tensor of a
# forward then costs page faults and zeroed pages anew. With both thresholds this high, freed blocks stay in the
# heap and the next forward reuses them (the same effect jemalloc or tcmalloc have when preloaded).
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**32)}


class ParityError(RuntimeError):
    """A variant computes another function than the reference: timing it would compare different things."""


@dataclass(frozen=True)
class Sizes:
    head_channels: tuple[int, int, int]  # in, mid, key
    head_sizes: tuple[tuple[int, int], ...]
    model: str
    model_size: tuple[int, int]
    train_size: tuple[int, int]


FULL = Sizes((720, 512, 256), ((128, 256), (64, 128), (32, 64), (16, 32), (8, 16)), "ocrnet_hrnet_w48", (512, 1024),
             (64, 128))
QUICK = Sizes((48, 32, 16), ((32, 64), (16, 32), (8, 16)), "ocrnet_hrnet_w18_small_v2", (64, 128), (16, 32))
CLASSES = 19


def heads(sizes: Sizes, dropout: float = 0.05, seed: int = 0) -> tuple[ClassicOCRHead, OCRHead]:
    """The classic head, randomised (BatchNorm statistics included), and an OCRHead loaded from it."""
    cin, mid, key = sizes.head_channels
    return classic_and_ocrformer(cin, CLASSES, mid_channels=mid, key_channels=key, dropout=dropout, seed=seed)


def check(kind: str, label: str, outputs: dict[str, dict], reference: str) -> dict[str, float]:
    """Each variant's worst relative error against the reference's outputs; ``ParityError`` past the tolerance."""
    errors = {
        name: max(relative_error(out[k], outputs[reference][k]) for k in ("logits", "aux_logits"))
        for name, out in outputs.items()
        if name != reference
    }
    bad = {name: e for name, e in errors.items() if e > TOLERANCE[kind]}
    if bad:
        raise ParityError(f"{label}: {bad} above {TOLERANCE[kind]:g} against {reference} -- refusing to time")
    return errors


def head_case(sizes: Sizes, hw: tuple[int, int], warmup: int, repeats: int) -> dict:
    classic, head = heads(sizes)
    variants = {
        "classic": classic.eval(),
        "OCRHead": head.eval(),
        **{f"fused {conv}": FusedOCRHead(head, conv=conv) for conv in ("direct", "winograd2", "winograd4")},
    }
    feats = torch.randn(1, sizes.head_channels[0], *hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        errors = check("head", f"head {hw}", {n: m(feats) for n, m in variants.items()}, "classic")
        ms = time_round_robin({n: (lambda m=m: m(feats)) for n, m in variants.items()}, warmup, repeats)
    auto = auto_conv(hw[0] * hw[1])
    return {"case": f"head eval, {sizes.head_channels[0]} ch, {hw[0]}x{hw[1]} (auto: {auto})", "baseline": "classic",
            "ms": ms, "errors": errors}


def calibrated(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """``model`` with BatchNorm statistics from one pass over ``images``: a random deep network with fresh
    statistics grows its activations layer after layer until float32 rounding dominates the comparison. (Used on
    the backbone only: the OCR head's BatchNorms over the K region vectors of one image would get near-zero
    variances, whose 1 / sqrt(var + eps) amplifies rounding instead.)"""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: after one pass, that pass's statistics
    with torch.no_grad():
        model.train()(images)
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


def model_case(sizes: Sizes, warmup: int, repeats: int, compile: bool, *, only_default: bool = False,
               threads: int | None = None, note: str = "") -> dict:
    """The whole model: plain against optimized (``only_default``: the default optimization only)."""
    if threads is not None:  # a fresh worker process starts with torch's default
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    images = torch.randn(1, 3, *sizes.model_size, generator=torch.Generator().manual_seed(2))
    plain = create_model(sizes.model, CLASSES)
    calibrated(plain.backbone, images)
    plain.eval()
    variants = {"plain": plain, "optimized": optimize_for_inference(plain)}
    if not only_default:
        variants["optimized, direct conv"] = optimize_for_inference(plain, conv="direct")
    compile_s = None
    with torch.no_grad():
        if compile:
            variants["optimized + compile"] = optimize_for_inference(plain, compile=True)
            start = time.perf_counter()
            variants["optimized + compile"](images)  # compiles
            compile_s = time.perf_counter() - start
        errors = check("model", sizes.model, {n: m(images) for n, m in variants.items()}, "plain")
        ms = time_round_robin({n: (lambda m=m: m(images)) for n, m in variants.items()}, warmup, repeats)
    h, w = sizes.model_size
    return {"case": f"{sizes.model} eval, 1x3x{h}x{w}{note}", "baseline": "plain", "ms": ms, "errors": errors,
            "compile_seconds": compile_s}


def model_case_keeping_freed_memory(sizes: Sizes, warmup: int, repeats: int) -> dict:
    """``model_case`` (plain against the default optimization) in a fresh process started with
    ``KEEP_FREED_MEMORY``: how much of each time is the allocator's, not the arithmetic's."""
    with fresh_process_with_env(KEEP_FREED_MEMORY) as pool:
        return pool.submit(model_case, sizes, warmup, repeats, False, only_default=True,
                           threads=torch.get_num_threads(), note=" (glibc keeps freed memory)").result()


def train_inputs(sizes: Sizes) -> tuple[torch.Tensor, torch.Tensor]:
    feats = torch.randn(2, sizes.head_channels[0], *sizes.train_size, generator=torch.Generator().manual_seed(3))
    labels = torch.randint(0, CLASSES, (2, *sizes.train_size), generator=torch.Generator().manual_seed(4))
    return feats, labels


def train_step(model: nn.Module, feats: torch.Tensor, labels: torch.Tensor):
    """One training step of a head: forward, CE + 0.4 CE(aux), backward, SGD with momentum."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        out = model(feats)
        loss = F.cross_entropy(out["logits"], labels) + 0.4 * F.cross_entropy(out["aux_logits"], labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def train_peak_mb(sizes: Sizes, variant: int, threads: int) -> float:
    """In a fresh process: one untimed step, then the peak RSS over one more step above the RSS before it
    (weights, input and one-off initialisation excluded; activations, gradients and temporaries included)."""
    torch.set_num_threads(threads)
    model = heads(sizes, dropout=0.0)[variant]
    step = train_step(model, *train_inputs(sizes))
    step()
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    step()
    return memory.peak_mb()


def train_case(sizes: Sizes, warmup: int, repeats: int, memory: bool) -> dict:
    classic, head = heads(sizes, dropout=0.0)  # dropout off: the two steps compute the same thing
    feats, labels = train_inputs(sizes)
    with torch.no_grad():  # parity in float64 (the training forward's BatchNorms amplify float32 rounding)
        outputs = {name: copy.deepcopy(model).double().train()(feats.double())
                   for name, model in (("classic", classic), ("OCRHead", head))}
    errors = check("train", "train step", outputs, "classic")
    steps = {"classic": train_step(classic, feats, labels), "OCRHead": train_step(head, feats, labels)}
    ms = time_round_robin(steps, warmup, repeats)
    peak = None
    if memory:  # each variant in a fresh process, so that its memory is its own
        with ProcessPoolExecutor(max_workers=1, mp_context=forkserver()) as pool:
            peak = {name: pool.submit(train_peak_mb, sizes, i, torch.get_num_threads()).result()
                    for i, name in enumerate(steps)}
    h, w = sizes.train_size
    return {"case": f"train step, B=2, {sizes.head_channels[0]} ch, {h}x{w}", "baseline": "classic", "ms": ms,
            "errors": errors, "peak_mb": peak}


def markdown(report: dict) -> str:
    lines = [
        "# Inference and training speed: plain against optimized",
        "",
        f"{report['date']}, {report['machine']}; median [min-max] of {report['repeats']} repeats after "
        f"{report['warmup']} warm-up round(s); `{report['command']}`",
        "",
        "| case | variant | ms: median [min-max] | vs baseline (its ms / this ms) | parity (max rel. error) |",
        "|:--|:--|--:|--:|--:|",
    ]
    for case in report["cases"]:
        base = case["ms"][case["baseline"]]["median"]
        for name, s in case["ms"].items():
            ratio = f"{base / s['median']:.2f}x ({base:.4g} / {s['median']:.4g})" if name != case["baseline"] else "1"
            error = f"{case['errors'][name]:.1e}" if name in case["errors"] else "reference"
            lines.append(f"| {case['case']} | {name} | {s['median']:.4g} [{s['min']:.4g}-{s['max']:.4g}] | {ratio} | "
                         f"{error} |")
        if case.get("compile_seconds") is not None:
            lines.append(f"| | (torch.compile's first call: {case['compile_seconds']:.0f} s) | | | |")
        if case.get("peak_mb"):
            peaks = ", ".join(f"{name} {mb:.0f} MB" for name, mb in case["peak_mb"].items())
            lines.append(f"| | (peak memory of a step, each in a fresh process: {peaks}) | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="narrow widths and small sizes (the machinery only)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variant")
    parser.add_argument("--no-memory", action="store_true", help="leave out the training step's peak memory")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    try:
        cases = [head_case(sizes, hw, args.warmup, args.repeats) for hw in sizes.head_sizes]
        cases.append(model_case(sizes, args.warmup, args.repeats, compile=not args.no_compile))
        cases.append(model_case_keeping_freed_memory(sizes, args.warmup, args.repeats))
        cases.append(train_case(sizes, args.warmup, args.repeats, memory=not args.no_memory))
    except ParityError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": machine_description("cpu"),
        "command": shlex.join(["python", "benchmarks/inference_speed.py", *(sys.argv[1:] if argv is None else argv)]),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "cases": cases,
    }
    write_reports(args.out, "inference_speed", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
