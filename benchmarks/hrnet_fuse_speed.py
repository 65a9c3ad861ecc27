"""Whole-model inference time of ``ocrnet_hrnet_w48`` with each HRNet fuse upsampling, same weights, one run.

Variants (the whole OCRNet in eval mode, float32, under ``torch.no_grad``; same backbone and head weights):
    timm nearest        timm's classification HRNet fuse, ``nn.Upsample(scale_factor=2**k, mode="nearest")``:
                        what ``ocrnet_hrnet_w48`` computed before issue 9 (at sizes that are multiples of 32,
                        where it needed no padding)
    bilinear            HRNet-OCR's and openseg's fuse, one bilinear resize to the exact branch size: the
                        default of ``ocrnet_hrnet_w48`` now (layouts ``ocrformer``, ``hrnet-ocr``, ``openseg``)
    bilinear twice      mmsegmentation's fuse: a bilinear 2**k upsampling, then a resize to the branch size

The variants are timed round-robin (the first one rotating) after a warm-up round; median, min and max of the
repeats. The report also gives how far the nearest variant's logits are from the bilinear one's (relative L2):
the function a released checkpoint loses with the wrong fuse.

Run from the repository root:  python benchmarks/hrnet_fuse_speed.py [--size 512,1024] [--repeats 7] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import shlex
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script without installing the package
    sys.path.insert(0, str(REPO_ROOT))

import timm  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks._common import machine_description, time_round_robin  # noqa: E402
from benchmarks._reports import write_reports  # noqa: E402
from ocrformer import create_model  # noqa: E402
from ocrformer.backbones.hrnet import FuseUpsample  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "outputs" / "hrnet_fuse_speed"


class NearestFuseOCRNet(nn.Module):
    """``model`` with its HRNet body replaced by timm's unmodified one (nearest fuse), weights copied."""

    def __init__(self, model: nn.Module, timm_name: str) -> None:
        super().__init__()
        self.model = model
        self.body = timm.create_model(timm_name, features_only=True, feature_location="", out_indices=(1, 2, 3, 4))
        self.body.load_state_dict(model.backbone.state_dict())

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats, _ = self.model.neck(self.body(images))
        out = self.model.head(feats)
        size, ac = images.shape[-2:], self.model.align_corners
        return {k: nn.functional.interpolate(v, size=size, mode="bilinear", align_corners=ac) for k, v in out.items()}


def build_variants(name: str, num_classes: int) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    bilinear = create_model(name, num_classes).eval()
    twice = copy.deepcopy(bilinear)
    for module in twice.modules():
        if isinstance(module, FuseUpsample):
            module.mode = "bilinear-twice"
    nearest = NearestFuseOCRNet(bilinear, bilinear.backbone.default_cfg["architecture"]).eval()
    return {"timm nearest": nearest, "bilinear": bilinear, "bilinear twice": twice}


def relative_l2(expected: torch.Tensor, actual: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


def measure(variants: dict[str, nn.Module], size: tuple[int, int], warmup: int, repeats: int) -> dict:
    images = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outputs = {name: model(images)["logits"] for name, model in variants.items()}
        ms = time_round_robin({name: (lambda m=model: m(images)) for name, model in variants.items()}, warmup, repeats)
    return {
        "ms": ms,
        "nearest_vs_bilinear_relative_l2": relative_l2(outputs["bilinear"], outputs["timm nearest"]),
    }


def markdown(report: dict) -> str:
    ms = report["result"]["ms"]
    base = ms["timm nearest"]["median"]
    lines = [
        f"# HRNet fuse upsampling: whole `{report['model']}` eval at 1x3x{report['size'][0]}x{report['size'][1]}",
        "",
        f"{report['date']}, {report['machine']}; median of {report['repeats']} (after {report['warmup']} warm-up); "
        f"`{report['command']}`",
        "",
        "| fuse | median ms | min | max | vs timm nearest |",
        "|:--|--:|--:|--:|--:|",
    ]
    for name, s in ms.items():
        lines.append(f"| {name} | {s['median']:.0f} | {s['min']:.0f} | {s['max']:.0f} | {s['median'] / base:.3f}x |")
    diff = report["result"]["nearest_vs_bilinear_relative_l2"]
    lines += ["", f"Same (random) weights: the nearest variant's logits differ from the bilinear one's by {diff:.2f} "
              "relative L2 -- another function (the golden fixtures measure it on upstream outputs)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ocrnet_hrnet_w48")
    parser.add_argument("--size", default="512,1024", help="image H,W")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="ocrnet_hrnet_w18_small_v2 at 128x256, 2 repeats")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.size, args.repeats = "ocrnet_hrnet_w18_small_v2", "128,256", 2
    size = tuple(int(v) for v in args.size.split(","))
    report = {
        "model": args.model,
        "size": size,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "date": datetime.date.today().isoformat(),
        "machine": machine_description("cpu"),
        "command": "python benchmarks/hrnet_fuse_speed.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "result": measure(build_variants(args.model, 19), size, args.warmup, args.repeats),
    }
    write_reports(args.out, "hrnet_fuse_speed", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
