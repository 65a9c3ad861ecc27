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
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .convert import SOURCES, convert_checkpoint
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .engine.checkpoint import load_checkpoint
from .inference import predict_labels
from .models import create_model, list_models
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
    return model.to(args.device).eval(), palette or default_palette(model.num_classes)


def _to_tensor(image: np.ndarray, channels: str) -> torch.Tensor:
    """An (H, W, 3) uint8 RGB image -> the normalised (3, H, W) float tensor the model was trained on. openseg's
    networks read images with OpenCV (BGR) and normalise them with the ImageNet statistics listed in RGB order;
    ``channels="BGR"`` reproduces exactly that."""
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    if channels == "BGR":
        tensor = tensor.flip(0)
    return (tensor - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))  # a writable copy
    except (OSError, ValueError) as error:
        raise SystemExit(f"cannot read image {path}: {error}") from error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ocrformer.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--model", required=True, choices=list_models(), metavar="NAME", help="registered model")
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--source", choices=SOURCES, help="the codebase of a released checkpoint (default: detected)")
    parser.add_argument("--num-classes", type=int, help="checked against the checkpoint's classifier if given")
    parser.add_argument("--scales", default="1.0", help="comma-separated test scales, e.g. 0.5,0.75,1.0,1.25")
    parser.add_argument("--flip", action="store_true", help="also average the horizontally flipped image")
    parser.add_argument("--window", help="sliding-window inference with this crop, e.g. 512,1024")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise SystemExit(f"image files not found: {', '.join(missing)}")
    model, palette = _load_model(args)
    scales = tuple(float(s) for s in args.scales.split(","))
    window = tuple(int(v) for v in args.window.split(",")) if args.window else None
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.images:
        image = _read_image(path)
        tensor = _to_tensor(image, model.input_channels)
        labels = predict_labels(
            model, tensor[None].to(args.device), scales=scales, flip=args.flip, window=window,
            align_corners=model.align_corners,
        )[0].cpu().numpy()  # fmt: skip
        mask = colorize(labels, palette)
        Image.fromarray(labels.astype(np.uint8)).save(args.out / f"{path.stem}_labels.png")
        Image.fromarray(mask).save(args.out / f"{path.stem}_mask.png")
        Image.fromarray(overlay(image, mask)).save(args.out / f"{path.stem}_overlay.png")
        print(f"{path} -> {args.out / (path.stem + '_overlay.png')}")


if __name__ == "__main__":
    main()
