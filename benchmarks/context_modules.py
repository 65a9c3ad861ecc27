"""Context modules of the OCRNet paper's complexity comparison: parameters, FLOPs, peak memory and time.

The paper (Yuan, Chen & Wang, ECCV 2020) compares context modules on one 2048 x 128 x 128 feature map
(inference, one GPU). This script measures the library's modules (``ocrformer.context``) -- PPM, ASPP, DANet,
CC-Attention, Self-Attention (OCNet base-OC), Interlaced Sparse Self-Attention, Double Attention -- at the
paper's widths, and composes OCR from ``ocrformer.OCRDecoder`` + ``ocrformer.OCREncoder``. The channel
conventions follow the openseg.pytorch benchmark scripts where they exist (``lib/models/modules/*_block.py``,
``__main__``); each module's docstring says where every detail comes from:

    front conv  Conv3x3 Cin -> 512 + BN + ReLU in front of every relational module (DANet, CC, SA, ISA,
                A2, OCR). PPM and ASPP have none: their own 3x3 convs replace it (openseg times them alone,
                and only that reproduces the paper's 23.1M / 15.5M parameters).
    keys 256, values 256 (SA) / 512 (ISA), DANet and CCNet queries/keys C/8 = 64, A2 descriptors and their
    channels C/4 = 128, K = 19 object regions for OCR (Cityscapes).
    DANet and CC-Attention are timed as their attention cores (one shared front conv, no post convs);
    ``danet_full`` and ``cc_full`` -- the heads ``create_model`` builds -- are counted, not timed: the paper's
    FLOPs are theirs.

Shape legend: B batch, Cin input channels, H x W positions, N = H * W, C = 512 module channels,
K = 19 regions. Every module maps (B, Cin, H, W) -> (B, out_channels, H, W); out_channels is 512
except ASPP (256, as in DeepLabv3).

Measured per (module, attention backend), each in a fresh process (forked from a preloaded server):
    params    at Cin = 2048, whatever --size says (parameters do not depend on H, W), built on ``meta``.
    GFLOPs    ``torch.utils.flop_counter.FlopCounterMode`` on ``meta`` tensors, at the run size and at the
              full 2048 x 128 x 128; it counts a multiply-add as 2 FLOPs and counts only matmuls/convs
              (softmax, BN, pooling, interpolation are not counted).
    memory    the peak over the timed forwards above what was in use before them (so weights, input and
              one-off initialisation are out; the output and every temporary are in). CUDA:
              ``torch.cuda.max_memory_allocated``. CPU (Linux): peak RSS (``VmHWM``, reset through
              ``/proc/self/clear_refs``), so library scratch buffers (oneDNN weight/input reorders) count
              too; see ``PeakMemory``. MB = 2**20 bytes.
    time      after one untimed forward and ``--warmup`` more, ``--repeats`` forwards (synchronised on
              CUDA): median [min-max], ms.

The attention modules run once per backend of ``ocrformer.attend``: ``matmul`` (the explicit N x N map, as in
2019), ``sdpa`` (torch's fused kernels; which kernel ran is recorded) and ``xformers`` (CUDA only).
CC-Attention's criss-cross map is computed explicitly (see ``ocrformer.context.CrissCrossAttention``).

The paper's numbers beside ours are ``ocrformer.context.OCR_PAPER_COMPLEXITY`` (its docstring says where they
come from and how far they are checked).

Run from the repository root:  python benchmarks/context_modules.py [--quick] [--device cuda] [--size C,H,W]
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script without installing the package
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.attention import SDPBackend  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks._common import PeakMemory, forkserver, machine_description  # noqa: E402
from benchmarks._reports import write_reports  # noqa: E402
from ocrformer import OCRDecoder, OCREncoder, attention_backend  # noqa: E402
from ocrformer.context import (  # noqa: E402
    ASPP,
    OCR_PAPER_COMPLEXITY,
    BaseObjectContext,
    DoubleAttention,
    DualAttention,
    InterlacedSparseSelfAttention,
    PyramidPooling,
    RecurrentCrissCross,
)

DEFAULT_OUT = REPO_ROOT / "outputs" / "context_modules"
FULL_SIZE = (2048, 128, 128)  # the paper's input: Cin, H, W
DEFAULT_SIZE = {"cuda": FULL_SIZE, "cpu": (512, 64, 64)}
QUICK_SIZE = (64, 16, 16)
CHANNELS = 512  # C: the 3x3 front conv's output, the relational modules' width
NUM_CLASSES = 19  # K: Cityscapes

# The paper's table (params M, GFLOPs) by row; see ``ocrformer.context.published`` for its provenance.
PAPER = OCR_PAPER_COMPLEXITY


# ------------------------------------------------------------------------------------------------ OCR
class OCR(nn.Module):
    """OCR composed from ``ocrformer``: ``OCRDecoder`` (front conv = its ``value_proj``; K = 19 category
    queries over the N pixels) + ``OCREncoder`` (N pixel queries over the K regions, fused with the pixels).
    ``OCRHead``'s final 1x1 classifier is left out, as every module here ends at features.

    ``aux_hidden=False`` (the paper's scope): the soft-region logits are a linear classifier on the input
    (the K queries, 19 x Cin) -- the openseg benchmark even takes them as a given input. ``aux_hidden=True``
    keeps the decoder as ``OCRHead`` builds it: a 1x1 Cin -> Cin + BN + ReLU (the HRNet-OCR aux head's hidden
    layer) in front of the queries, 4.2M parameters and 137 GFLOPs at Cin = 2048.

    (B, Cin, H, W) -> (B, 512, H, W).
    """

    out_channels = CHANNELS

    def __init__(self, in_channels: int, *, aux_hidden: bool = False) -> None:
        super().__init__()
        self.decoder = OCRDecoder(in_channels, NUM_CLASSES, mid_channels=CHANNELS)
        if not aux_hidden:
            self.decoder.key_proj = nn.Identity()
        self.encoder = OCREncoder(CHANNELS, key_channels=256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        decoded = self.decoder(x)
        return self.encoder(decoded.pixels, decoded.regions)


# ------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Spec:
    """A module of the comparison: how to build it at ``Cin`` input channels and whether it is timed."""

    key: str
    name: str
    build: Callable[[int], nn.Module]
    attends: bool = False  # its large attention runs through ``attend``, so it is measured per backend
    timed: bool = True
    paper: str | None = None  # key into PAPER


SPECS = (
    # PPM's upsampling as openseg's run has it (align_corners=True; no parameters or FLOPs depend on it).
    Spec("ppm", "PPM", lambda c: PyramidPooling(c, CHANNELS, align_corners=True), paper="ppm"),
    Spec("aspp", "ASPP", lambda c: ASPP(c, 256), paper="aspp"),
    Spec("danet", "DANet", lambda c: DualAttention(c, CHANNELS, full_head=False), attends=True, paper="danet"),
    Spec("cc", "CC-Attention", lambda c: RecurrentCrissCross(c, CHANNELS, full_head=False), paper="cc"),
    Spec("self_attention", "Self-Attention", lambda c: BaseObjectContext(c, CHANNELS), attends=True,
         paper="self_attention"),
    Spec("isa", "Interlaced Sparse SA", lambda c: InterlacedSparseSelfAttention(c, CHANNELS), attends=True),
    Spec("double_attention", "Double Attention", lambda c: DoubleAttention(c, CHANNELS), attends=True,
         paper="double_attention"),
    Spec("ocr", "OCR", OCR, attends=True, paper="ocr"),
    Spec("ocr_aux", "OCR + aux hidden 1x1", lambda c: OCR(c, aux_hidden=True), attends=True, paper="ocr"),
    Spec("danet_full", "DANet, full head", lambda c: DualAttention(c, CHANNELS), timed=False, paper="danet"),
    Spec("cc_full", "CC-Attention, full head", lambda c: RecurrentCrissCross(c, CHANNELS), timed=False, paper="cc"),
)
SPECS_BY_KEY = {spec.key: spec for spec in SPECS}


def backends_for(spec: Spec, device: str) -> list[str]:
    """The attention backends a module is measured with; ``-`` for modules without an ``attend`` call."""
    if not spec.attends:
        return ["-"]
    return ["matmul", "sdpa", "xformers"] if device == "cuda" else ["matmul", "sdpa"]


# ------------------------------------------------------------------------------------------- counting
def meta_model(spec: Spec, size: tuple[int, int, int]) -> tuple[nn.Module, torch.Tensor]:
    """The module and a (1, Cin, H, W) input on the ``meta`` device: shapes only, no memory, no compute."""
    with torch.device("meta"):
        return spec.build(size[0]).eval(), torch.empty(1, *size)


def count_params(spec: Spec, in_channels: int = FULL_SIZE[0]) -> int:
    """Parameters (BN affine included, buffers not), as ``sum(p.numel())`` at ``in_channels``."""
    model, _ = meta_model(spec, (in_channels, 1, 1))
    return sum(p.numel() for p in model.parameters())


def count_flops(spec: Spec, size: tuple[int, int, int], *, device: str = "meta",
                backend: str = "matmul") -> tuple[int, dict[str, int]]:
    """FLOPs of one forward at (Cin, H, W) by ``FlopCounterMode``, and the per-submodule totals. Counted on
    the explicit ``matmul`` path by default (sdpa's count is the same); ``device="cpu"`` runs real tensors."""
    if device == "meta":
        model, x = meta_model(spec, size)
    else:
        model, x = spec.build(size[0]).eval(), torch.randn(1, *size)
    with torch.no_grad(), attention_backend(backend), FlopCounterMode(display=False) as counter:
        model(x)
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    return counter.get_total_flops(), per_module


def breakdown(spec: Spec, size: tuple[int, int, int] = FULL_SIZE) -> dict[str, dict[str, float]]:
    """Parameters (M) and GFLOPs per submodule, two levels deep, at (Cin, H, W). FLOPs of ops called by a
    module's own ``forward`` (attention products, einsums) count for it but for none of its children."""
    model, _ = meta_model(spec, size)
    _, flops = count_flops(spec, size)
    prefix = type(model).__name__
    return {
        name: {"params_m": sum(p.numel() for p in sub.parameters()) / 1e6,
               "gflops": flops.get(f"{prefix}.{name}", 0) / 1e9}
        for name, sub in model.named_modules() if name and name.count(".") <= 1
    }


# ------------------------------------------------------------------------------------------ measuring
class SdpaKernelLog(TorchFunctionMode):
    """Records which kernel ``scaled_dot_product_attention`` picks for each call inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.scaled_dot_product_attention:
            choice = torch._fused_sdp_choice(*args[:3])  # private, but the only way to ask torch
            self.kernels.append(SDPBackend(choice).name.lower())
        return func(*args, **(kwargs or {}))


def forward_ms(model: nn.Module, x: torch.Tensor) -> float:
    """One synchronised forward, in ms."""
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    model(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def measure_case(case: dict) -> dict:
    """Build one module; run it once (recording sdpa's kernel choice) and ``warmup`` times untimed, then
    ``repeats`` timed forwards, over which the peak memory is taken: a steady-state forward, without one-off
    initialisation, weights or input. Meant for a fresh process per case (see ``run_isolated``)."""
    if case["threads"]:
        torch.set_num_threads(case["threads"])
    spec, device = SPECS_BY_KEY[case["key"]], torch.device(case["device"])
    torch.manual_seed(0)
    model = spec.build(case["size"][0]).eval().to(device)
    x = torch.randn(1, *case["size"], device=device)
    backend = attention_backend(case["backend"]) if spec.attends else nullcontext()
    memory = PeakMemory(device)
    try:
        with torch.no_grad(), backend:
            with SdpaKernelLog() as log:
                model(x)
            for _ in range(case["warmup"]):
                forward_ms(model, x)
            memory.reset()
            times = [forward_ms(model, x) for _ in range(case["repeats"])]
            peak_mb = memory.peak_mb()
    except (ValueError, RuntimeError) as error:  # a backend that refuses these shapes, or out of memory
        return {"error": f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"}
    return {
        "sdpa_kernels": sorted(set(log.kernels)),
        "peak_mb": peak_mb,
        "times_ms": times,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "error": None,
    }


def run_isolated(case: dict) -> dict:
    """``measure_case`` in a fresh process, so that its memory is its own."""
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=forkserver()) as pool:
            return pool.submit(measure_case, case).result()
    except BrokenProcessPool:  # killed, typically by the kernel's out-of-memory killer
        return {"error": "the worker process died (out of memory?)"}


# ------------------------------------------------------------------------------------------ reporting
def backend_label(row: dict) -> str:
    """``sdpa (flash)``-style label: the backend and, for sdpa, the kernel(s) torch picked."""
    kernels = row.get("sdpa_kernels") or []
    return f"{row['backend']} ({', '.join(kernels)})" if kernels else row["backend"]


def size_text(size: tuple[int, int, int]) -> str:
    return "x".join(map(str, size))


def measured_table(report: dict) -> str:
    """The per-(module, backend) Markdown table."""
    size = size_text(report["meta"]["size"])
    lines = [
        f"| module | backend | params M (Cin=2048) | GFLOPs ({size}) | GFLOPs (2048x128x128) "
        f"| peak memory MB ({size}) | time ms ({size}), median [min-max] |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in report["rows"]:
        if row["error"]:
            cost = f"n/a | {row['error']}"
        else:
            cost = f"{row['peak_mb']:.1f} | {row['median_ms']:.1f} [{row['min_ms']:.1f}-{row['max_ms']:.1f}]"
        lines.append(f"| {row['module']} | {backend_label(row)} | {row['params_m']:.2f} | {row['gflops']:.2f} "
                     f"| {row['gflops_full']:.1f} | {cost} |")
    return "\n".join(lines)


def full_size_table(report: dict) -> str:
    """Params and FLOPs at 2048x128x128 beside the paper's numbers (``OCR_PAPER_COMPLEXITY``)."""
    lines = [
        "| module | params M | paper params M | GFLOPs (2 per MAC) | GMACs | paper GFLOPs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["full_size"]:
        paper = PAPER.get(row["paper"] or "", (None, None))
        paper_text = [f"{value:g}" if value is not None else "-" for value in paper]
        lines.append(f"| {row['module']} | {row['params_m']:.2f} | {paper_text[0]} | {row['gflops_full']:.1f} "
                     f"| {row['gflops_full'] / 2:.1f} | {paper_text[1]} |")
    return "\n".join(lines)


def breakdown_table(report: dict, keys: tuple[str, ...] = ("ocr", "ocr_aux")) -> str:
    """Parameters and GFLOPs per submodule at full size, side by side for ``keys``."""
    names = [SPECS_BY_KEY[key].name for key in keys]
    lines = ["| submodule | " + " | ".join(f"{n}: params M | {n}: GFLOPs" for n in names) + " |",
             "|---|" + "---:|---:|" * len(keys)]
    parts = list(dict.fromkeys(name for key in keys for name in report["breakdown_full"][key]))
    for part in parts:
        cells = []
        for key in keys:
            entry = report["breakdown_full"][key].get(part)
            cells += [f"{entry['params_m']:.3f}", f"{entry['gflops']:.2f}"] if entry else ["-", "-"]
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(report: dict) -> str:
    meta = report["meta"]
    return "\n\n".join([
        "# Context modules: parameters, FLOPs, memory, time",
        f"Command: `{meta['command']}`  \nDate: {meta['date']}  \nMachine: {meta['machine']}  \n"
        f"Input: 1 x {size_text(meta['size'])} (Cin x H x W), float32, inference (eval, no_grad), "
        f"1 + {meta['warmup']} untimed + {meta['repeats']} timed forwards per case  \nMemory: {meta['memory_method']}",
        measured_table(report),
        "## Parameters and FLOPs at the paper's size (2048x128x128), counted on meta tensors",
        full_size_table(report),
        "## OCR per submodule at 2048x128x128 (a line includes its children)",
        breakdown_table(report),
    ]) + "\n"


# ------------------------------------------------------------------------------------------------ main
def parse_size(text: str) -> tuple[int, int, int]:
    try:
        channels, height, width = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be C,H,W (three integers), got {text!r}") from None
    if min(channels, height, width) < 1:
        raise argparse.ArgumentTypeError(f"--size values must be positive, got {text!r}")
    return channels, height, width


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, help="Cin,H,W (default 2048,128,128 on CUDA, 512,64,64 on CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--repeats", type=int, help="timed forwards per case (default 20 on CUDA, 5 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed forwards before timing (default 5 on CUDA, 1 on CPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--modules", nargs="+", choices=[s.key for s in SPECS if s.timed],
                        help="measure only these modules (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON and Markdown reports")
    parser.add_argument(
        "--quick", action="store_true", help=f"size {size_text(QUICK_SIZE)}, 1 repeat, no extra warm-up"
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    cuda = args.device == "cuda"
    args.size = args.size or (QUICK_SIZE if args.quick else DEFAULT_SIZE[args.device])
    args.repeats = args.repeats or (1 if args.quick else 20 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 5 if cuda else 1)
    return args


def command_line(argv: list[str] | None) -> str:
    """The command as typed, or its equivalent when ``main`` is called from Python."""
    return shlex.join(sys.orig_argv if argv is None else ["python", "benchmarks/context_modules.py", *argv])


def counted(spec: Spec, size: tuple[int, int, int]) -> dict[str, float]:
    """Parameters (M) at Cin = 2048, GFLOPs at ``size`` and at the full 2048 x 128 x 128."""
    return {
        "params_m": count_params(spec) / 1e6,
        "gflops": count_flops(spec, size)[0] / 1e9,
        "gflops_full": count_flops(spec, FULL_SIZE)[0] / 1e9,
    }


def measure_all(args: argparse.Namespace, threads: int) -> list[dict]:
    """One row per (timed module, backend): counts plus ``measure_case`` run in its own process."""
    specs = [s for s in SPECS if s.timed and (args.modules is None or s.key in args.modules)]
    cases = [(spec, backend) for spec in specs for backend in backends_for(spec, args.device)]
    rows = []
    for spec, backend in tqdm(cases, desc="context modules", unit="case"):
        case = {"key": spec.key, "backend": backend, "device": args.device, "size": args.size,
                "threads": threads, "warmup": args.warmup, "repeats": args.repeats}
        rows.append({"module": spec.name, "key": spec.key, "backend": backend, **counted(spec, args.size),
                     **run_isolated(case)})
    return rows


def memory_method(device: str) -> str:
    if device == "cuda":
        text = "torch.cuda.max_memory_allocated over the timed forwards minus what was allocated before them"
    else:
        text = ("peak RSS (VmHWM, reset via /proc/self/clear_refs) over the timed forwards minus the RSS before "
                "them, in a fresh process per case, glibc mmap threshold 64 KiB")
    return text + " (after warm-up: weights, input and one-off initialisation excluded)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = args.threads or torch.get_num_threads()
    meta = {
        "command": command_line(argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_description(args.device, threads),
        "device": args.device,
        "size": list(args.size),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "memory_method": memory_method(args.device),
        "flops": "torch.utils.flop_counter.FlopCounterMode (a multiply-add = 2 FLOPs; matmuls and convs only)",
    }
    report = {
        "meta": meta,
        "rows": measure_all(args, threads),
        "full_size": [{"module": s.name, "key": s.key, "paper": s.paper, **counted(s, FULL_SIZE)} for s in SPECS],
        "breakdown_full": {spec.key: breakdown(spec) for spec in SPECS},
    }
    write_reports(args.out, "context_modules", report, markdown(report), indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
