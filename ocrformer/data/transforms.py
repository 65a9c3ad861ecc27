"""Paired image/label transforms on ``torchvision.transforms.v2``.

Both transforms are callables ``(image, label) -> (image, label)``:
    in:  image uint8 (3, H, W) RGB, label int64 (H, W) train ids (255 = ignore)
    out: image float32 (3, h, w) normalised, label int64 (h, w)

The pair is wrapped as ``tv_tensors.Image`` / ``tv_tensors.Mask``, so every geometric op is applied to both
consistently (same scale, crop window and flip) and the label is always resized nearest-neighbour, padded with
the ignore index and left out of the photometric ops. All randomness comes from the global torch RNG:
reproducible under ``torch.manual_seed`` (and per worker, as a ``DataLoader`` seeds each worker).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "EvalTransform", "RandomRescale", "TrainTransform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ``v2.ColorJitter`` strengths. Contrast and saturation as mmsegmentation's PhotoMetricDistortion (x[0.5, 1.5]);
# brightness (x[0.875, 1.125], mmseg adds +-32/255) and hue (+-0.05 of the circle, mmseg +-0.1) a little milder.
JITTER = {"brightness": 0.125, "contrast": 0.5, "saturation": 0.5, "hue": 0.05}


class RandomRescale(v2.Transform):
    """Scale the whole sample by a factor drawn uniformly from ``scale_range`` (image bilinear with
    antialiasing, masks nearest -- ``v2.functional.resize`` picks nearest for ``tv_tensors.Mask`` itself)."""

    def __init__(self, scale_range: tuple[float, float]) -> None:
        super().__init__()
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}")
        self.scale_range = (float(low), float(high))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        low, high = self.scale_range
        scale = low + (high - low) * torch.rand(()).item()
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return v2.functional.resize(inpt, params["size"], interpolation=InterpolationMode.BILINEAR, antialias=True)


def _pair_size(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s > 0 for s in pair):
        raise ValueError(f"crop_size must be a positive int or (height, width), got {size!r}")
    return pair


def _check_pair(image: torch.Tensor, label: torch.Tensor) -> None:
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be a uint8 (3, H, W) tensor, got {image.dtype} {tuple(image.shape)}")
    if label.dtype != torch.int64 or label.shape != image.shape[1:]:
        raise ValueError(
            f"label must be an int64 (H, W) tensor matching the image {tuple(image.shape[1:])}, "
            f"got {label.dtype} {tuple(label.shape)}"
        )


class _PairTransform:
    """Runs a ``v2`` pipeline on ``(Image, Mask)`` and hands back plain tensors."""

    pipeline: v2.Compose

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_pair(image, label)
        image, label = self.pipeline(tv_tensors.Image(image), tv_tensors.Mask(label))
        return image.as_subclass(torch.Tensor), label.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline})"


class TrainTransform(_PairTransform):
    """Training augmentation: jitter -> random rescale -> random crop (padded) -> horizontal flip -> normalise.

    Args:
        crop_size: output ``(h, w)`` (or one int for a square).
        scale_range: the rescale factor range, relative to the input size.
        flip: random horizontal flip with probability 0.5.
        jitter: photometric jitter (brightness, contrast, saturation, hue; strengths in ``JITTER``).
        mean, std: per-channel normalisation, in [0, 1] units.
        ignore_index: the label value of padded pixels.

    The jitter runs first, on the uint8 input, so that the zero padding of the crop stays zero (contrast
    jitter would otherwise shift it). A crop larger than the rescaled image is padded with 0 (image) and
    ``ignore_index`` (label); ``v2.RandomCrop`` pads both sides and keeps the whole image inside the crop.
    """

    def __init__(
        self,
        crop_size: int | Sequence[int],
        *,
        scale_range: tuple[float, float] = (0.5, 2.0),
        flip: bool = True,
        jitter: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        ignore_index: int = 255,
    ) -> None:
        self.crop_size = _pair_size(crop_size)
        steps: list[v2.Transform] = [v2.ColorJitter(**JITTER)] if jitter else []
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
        steps += [RandomRescale(scale_range), v2.RandomCrop(self.crop_size, pad_if_needed=True, fill=fill)]
        if flip:
            steps.append(v2.RandomHorizontalFlip(0.5))
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
        self.pipeline = v2.Compose(steps)


class EvalTransform(_PairTransform):
    """Evaluation: to float in [0, 1] and normalise; no resize (evaluate at the label's resolution)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.pipeline = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])
