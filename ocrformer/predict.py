"""Segment images with a trained model: colour masks and overlays as PNG.

    python -m ocrformer.predict --model ocrnet_hrnet_w48 --checkpoint run/last.pth street.png --out masks/
    python -m ocrformer.predict --model ocrnet_hrnet_w48 --checkpoint hrnet_ocr_cs_8162_torch11.pth \\
        --scales 0.75,1.0,1.25 --flip a.png b.png --out masks/

The checkpoint is a training checkpoint written by ``ocrformer.engine.Trainer`` (classes and palette come
with it), an ocrformer state dict (``model.state_dict()``, or a checkpoint converted by ``ocrformer.convert``),
or a released HRNet-OCR / openseg / mmsegmentation checkpoint, converted on the fly (its codebase is detected;
``--source`` names it). The model is built for the layout the weights record (``ocrformer.layouts``) and fed
images the way that codebase feeds them (openseg's networks take BGR images). For each image ``NAME.png`` it
writes ``NAME_mask.png`` (class colours) and ``NAME_overlay.png`` (the mask blended over the image), plus
``NAME_labels.png`` (class ids, 8-bit) for further processing.

Speed: ``--optimize`` runs ``ocrformer.optimize_for_inference``'s copy of the model (BatchNorm folded, channels-last,
the fused OCR head; the same function within 1e-4 relative: measured <= 1.7e-5 on the released
networks' golden fixtures). On the CPU, an allocator that keeps freed memory helps further (the optimized
model ran about 1.2x faster with it, benchmarks/README.md):
``MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 python -m ocrformer.predict ...`` (glibc), or
jemalloc / tcmalloc preloaded (README, "Speed").

SegFix: ``--segfix SEGFIX_CKPT`` (a ``SegFixTrainer`` checkpoint or a ``SegFixNet`` state dict) refines every
predicted label map with that boundary network before anything is written (``ocrformer.segfix.cli``: the
preset is read from the checkpoint, ``--segfix-model NAME`` where it cannot be). ``python -m ocrformer.segfix
refine`` does the same for label PNGs written by another tool.

Output names: NAME is the image's stem (``street.png`` -> ``street_mask.png``). Images whose stems are equal
(compared ignoring case and Unicode normalisation, as the file systems of macOS and Windows compare names) are
named by their whole file name instead (``a.jpg`` -> ``a.jpg_mask.png``, ``a.png`` -> ``a.png_mask.png``).
Images whose file names are equal too (one name in several folders) get as many of their parent folders as it
takes to tell them apart, joined by ``__`` (``x/a.png`` -> ``x__a.png_mask.png``, ``y/a.png`` ->
``y__a.png_mask.png``); names still equal after that (``A.png`` and ``a.png`` in one folder) end in ``-1``,
``-2``, ... in command-line order. An image given twice is segmented once. Each image's overlay is printed.

Failures: an image that cannot be read or segmented does not stop the others. Every other image is processed,
the failures are listed at the end (file and reason) and the exit status is 1. A file that does not exist
stops the run before the model is loaded.

Images are read as the datasets read them (``ocrformer.data._io.read_rgb``): any 8-bit PIL mode is converted to
RGB; 16-bit greyscale (PIL modes ``I;16``, ``I;16B``, ``I``) is reduced to 8 bits by its high byte (0, 32768,
65535 -> 0, 128, 255, over the full 16-bit range, not stretched per image) and replicated to three channels;
floating-point images are refused.
"""

from __future__ import annotations

import argparse
import os
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .convert import SOURCES, convert_checkpoint
from .data._io import read_rgb
from .data.transforms import normalize_image
from .engine.checkpoint import load_checkpoint, non_finite_tensors
from .inference import predict_labels
from .models import create_model, list_models, list_segfix_models
from .optimize import optimize_for_inference
from .segfix.cli import load_segfix_model, refine_labels
from .visualize import colorize, default_palette, overlay

__all__ = ["main"]


def _load_model(args: argparse.Namespace) -> tuple[torch.nn.Module, list[tuple[int, int, int]]]:
    state = load_checkpoint(args.checkpoint)
    palette = None
    num_classes = args.num_classes
    if "model" in state and isinstance(state["model"], dict) and "iteration" in state:  # a Trainer checkpoint
        num_classes = state["num_classes"]
        palette = [tuple(c) for c in state.get("palette") or []] or None
        weights = state["model"]
    elif args.source or "_extra_state" not in state:  # a released checkpoint: convert it
        try:
            weights = convert_checkpoint(state, source=args.source)
        except ValueError as error:
            raise SystemExit(
                f"{args.checkpoint} is neither an ocrformer checkpoint nor a released OCRNet checkpoint ocrformer "
                f"converts: {error}"
            ) from error
    else:
        weights = state
    try:
        model = create_model(args.model, num_classes, weights=weights)
    except (ValueError, RuntimeError) as error:  # another layout or another network's keys and shapes
        raise SystemExit(f"{args.checkpoint} does not fit --model {args.model}: {error}") from error
    bad = non_finite_tensors(model.state_dict())
    if bad:  # NaN weights predict plausible-looking masks (all one class): refuse them
        raise SystemExit(f"{args.checkpoint}: the weights hold non-finite values ({', '.join(bad[:5])}); no masks")
    return model.to(args.device).eval(), palette or default_palette(model.num_classes)


def _to_tensor(image: np.ndarray, channels: str) -> torch.Tensor:
    """An (H, W, 3) uint8 RGB image -> the normalised (3, H, W) float tensor the model was trained on (openseg's
    networks: BGR, see ``normalize_image``)."""
    return normalize_image(torch.from_numpy(image).permute(2, 0, 1), channels)


def _device(text: str) -> torch.device:
    """The ``--device`` flag: a device torch knows and this machine has."""
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has no CUDA device (torch.cuda.is_available())")
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return device


def _name_key(name: str) -> str:
    """How file systems that ignore case and Unicode normalisation (macOS, Windows) compare names."""
    return unicodedata.normalize("NFC", name).casefold()


def _clashing(names: list[str]) -> list[int]:
    counts = Counter(_name_key(name) for name in names)
    return [i for i, name in enumerate(names) if counts[_name_key(name)] > 1]


def _output_names(paths: list[Path]) -> list[str]:
    """One NAME per image, unique even where case and Unicode normalisation are ignored (module docstring)."""
    names = [path.stem for path in paths]
    for i in _clashing(names):
        names[i] = paths[i].name
    parts = [Path(os.path.abspath(path)).parts[1:] for path in paths]  # without the root (or drive)
    depth = 1
    while (clash := _clashing(names)) and depth < max(len(parts[i]) for i in clash):
        depth += 1
        for i in clash:
            names[i] = "__".join(parts[i][-depth:])
    taken = {_name_key(name) for i, name in enumerate(names) if i not in clash}
    number = 0
    for i in clash:  # equal up to the root: names differing only in case (or normalisation) in one folder
        number += 1
        while _name_key(f"{paths[i].name}-{number}") in taken:
            number += 1
        names[i] = f"{paths[i].name}-{number}"
        taken.add(_name_key(names[i]))
    return names


def main(argv: list[str] | None = None) -> None:
    paragraphs = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(
        prog="python -m ocrformer.predict",
        description=paragraphs[0],
        epilog="\n\n".join(
            p for p in paragraphs if p.startswith(("SegFix", "Output names", "Failures", "Images are read"))
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--model", required=True, choices=list_models(), metavar="NAME", help="registered model")
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path, help="output folder (file names: see below)")
    parser.add_argument("--source", choices=SOURCES, help="the codebase of a released checkpoint (default: detected)")
    parser.add_argument("--num-classes", type=int, help="checked against the checkpoint's classifier if given")
    parser.add_argument("--scales", default="1.0", help="comma-separated test scales, e.g. 0.5,0.75,1.0,1.25")
    parser.add_argument("--flip", action="store_true", help="also average the horizontally flipped image")
    parser.add_argument("--window", help="sliding-window inference with this crop, e.g. 512,1024")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", type=_device,
                        help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--optimize", action="store_true",
                        help="run ocrformer.optimize_for_inference's faster copy of the model (same function within "
                        "1e-4 relative: a pixel where two classes tie may take the other)")
    parser.add_argument("--segfix", type=Path, metavar="SEGFIX_CKPT", help="refine the labels with SegFix (see below)")
    parser.add_argument("--segfix-model", choices=list_segfix_models(), metavar="NAME",
                        help="the SegFix preset (default: read from SEGFIX_CKPT)")
    args = parser.parse_args(argv)
    if args.segfix_model and not args.segfix:
        parser.error("--segfix-model needs --segfix SEGFIX_CKPT")

    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise SystemExit(f"image files not found: {', '.join(missing)}")
    unique: dict[Path, Path] = {}
    for path in args.images:
        unique.setdefault(path.resolve(), path)  # an image given twice is segmented once
    images = list(unique.values())
    model, palette = _load_model(args)
    if args.optimize:
        model = optimize_for_inference(model)
    segfix = load_segfix_model(args.segfix, args.segfix_model, device=args.device) if args.segfix else None
    changed = 0  # pixels SegFix changed
    scales = tuple(float(s) for s in args.scales.split(","))
    window = tuple(int(v) for v in args.window.split(",")) if args.window else None
    args.out.mkdir(parents=True, exist_ok=True)
    failures: list[tuple[Path, str]] = []
    for path, name in zip(images, _output_names(images), strict=True):
        try:
            image = read_rgb(path)
        except ValueError as error:  # names the file and what was expected
            reason = str(error)
        else:
            try:
                labels = predict_labels(
                    model, _to_tensor(image, model.input_channels)[None].to(args.device), scales=scales,
                    flip=args.flip, window=window, align_corners=model.align_corners,
                )[0].cpu()
                if segfix is not None:
                    refined = refine_labels(segfix, torch.from_numpy(image).permute(2, 0, 1), labels)
                    changed, labels = changed + int((refined != labels).sum()), refined
                labels = labels.numpy()
                mask = colorize(labels, palette)
                Image.fromarray(labels.astype(np.uint8)).save(args.out / f"{name}_labels.png")
                Image.fromarray(mask).save(args.out / f"{name}_mask.png")
                Image.fromarray(overlay(image, mask)).save(args.out / f"{name}_overlay.png")
                print(f"{path} -> {args.out / (name + '_overlay.png')}")
                continue
            except (RuntimeError, ValueError, OSError) as error:  # e.g. out of memory, a full disk
                reason = f"segmenting or writing failed: {type(error).__name__}: {error}"
        failures.append((path, reason))  # this image only: the others are still processed
        print(f"{path}: FAILED: {reason}", file=sys.stderr)
    refined = f", refined by SegFix ({args.segfix}: {changed} pixels changed)" if segfix is not None else ""
    print(f"{len(images) - len(failures)} of {len(images)} images segmented{refined} -> {args.out}")
    if failures:
        listed = "\n".join(f"  {path}: {reason}" for path, reason in failures)
        raise SystemExit(f"{len(failures)} of {len(images)} images failed; the others were written:\n{listed}")


if __name__ == "__main__":
    main()
