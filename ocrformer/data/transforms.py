"""Paired image/label transforms on ``torchvision.transforms.v2``.

Both transforms are callables ``(image, label) -> (image, label)``:
    in:  image uint8 (3, H, W) RGB, label int64 (H, W) train ids (255 = ignore)
    out: image float32 (3, h, w) normalised, label int64 (h, w)

The pair is wrapped as ``tv_tensors.Image`` / ``tv_tensors.Mask``, so every geometric op is applied to both
consistently (same scale, crop window and flip) and the label is always resized nearest-neighbour, padded with
the ignore index and left out of the photometric ops. All randomness comes from the global torch RNG:
reproducible under ``torch.manual_seed`` (and per worker, as a ``DataLoader`` seeds each worker).

Flip pairs: in datasets with left/right classes (LIP's left and right arm, leg, shoe) a mirrored image shows a
left arm where a right arm was, so the horizontal flip must also exchange those label ids. A dataset declares
them once, as ``flip_pairs`` (pairs of train ids, e.g. ``((14, 15), (16, 17), (18, 19))``; ``()`` for the
others); ``TrainTransform(..., flip_pairs=...)`` swaps them whenever it flips, and
``ocrformer.inference.predict(..., flip_pairs=...)`` swaps the class channels of its flipped pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EvalTransform",
    "FlipPairs",
    "RandomHorizontalFlipSwap",
    "RandomRescale",
    "TrainTransform",
    "check_flip_pairs",
    "normalize_image",
    "swap_flip_pairs",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ``v2.ColorJitter`` strengths. Contrast and saturation as mmsegmentation's PhotoMetricDistortion (x[0.5, 1.5]);
# brightness (x[0.875, 1.125], mmseg adds +-32/255) and hue (+-0.05 of the circle, mmseg +-0.1) a little milder.
JITTER = {"brightness": 0.125, "contrast": 0.5, "saturation": 0.5, "hue": 0.05}

# Pairs of class ids that a horizontal flip exchanges (see the module docstring).
FlipPairs = tuple[tuple[int, int], ...]


def check_flip_pairs(flip_pairs: Any, num_classes: int | None = None, *, name: str = "flip_pairs") -> FlipPairs:
    """``flip_pairs`` as a tuple of ``(a, b)`` int tuples (lists, e.g. read from JSON, are accepted), or
    ``ValueError`` naming ``name``: every entry must be a pair of two distinct non-negative int class ids, below
    ``num_classes`` when it is given, and no id may appear twice (a class has one mirror image)."""
    if isinstance(flip_pairs, str | bytes) or not isinstance(flip_pairs, Sequence):
        raise ValueError(f"{name} must be a sequence of (a, b) class-id pairs, got {flip_pairs!r}")
    pairs, seen = [], set()
    for pair in flip_pairs:
        if (
            isinstance(pair, str | bytes)
            or not isinstance(pair, Sequence)
            or len(pair) != 2
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in pair)
        ):
            raise ValueError(f"{name} must hold pairs (a, b) of int class ids, got the entry {pair!r}")
        a, b = pair
        if a == b:
            raise ValueError(f"{name}: the pair {tuple(pair)} swaps class {a} with itself; a pair needs two classes")
        for class_id in (a, b):
            if class_id < 0 or (num_classes is not None and class_id >= num_classes):
                valid = f"0..{num_classes - 1}" if num_classes is not None else "non-negative"
                raise ValueError(f"{name}: class id {class_id} in the pair {tuple(pair)} is out of range ({valid})")
            if class_id in seen:
                raise ValueError(f"{name}: class {class_id} appears in more than one pair; each class has one mirror")
            seen.add(class_id)
        pairs.append((a, b))
    return tuple(pairs)


def swap_flip_pairs(label: torch.Tensor, flip_pairs: FlipPairs) -> torch.Tensor:
    """A copy of ``label`` (any shape, int ids) with the ids of every pair exchanged; other values (other
    classes, the ignore index) are kept. Applied to the label of a mirrored image."""
    swapped = label.clone()
    for a, b in flip_pairs:
        swapped[label == a] = b
        swapped[label == b] = a
    return swapped


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


class RandomHorizontalFlipSwap(v2.RandomHorizontalFlip):
    """``v2.RandomHorizontalFlip(p)`` that, when it flips, also exchanges the ids of ``flip_pairs`` in every
    ``tv_tensors.Mask`` (images are only mirrored). It draws its decision exactly as ``v2.RandomHorizontalFlip``
    does (one ``torch.rand(1)`` per call), so without pairs it is the same transform, random stream included.

    ``ignore_index`` must not be in a pair (the padding would become a class).
    """

    def __init__(self, p: float = 0.5, flip_pairs: Sequence[Sequence[int]] = (), ignore_index: int = 255) -> None:
        super().__init__(p)
        self.flip_pairs = check_flip_pairs(flip_pairs)
        if any(ignore_index in pair for pair in self.flip_pairs):
            raise ValueError(f"flip_pairs {self.flip_pairs} contain the ignore_index {ignore_index}")

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        flipped = super().transform(inpt, params)
        if isinstance(flipped, tv_tensors.Mask) and self.flip_pairs:
            return tv_tensors.wrap(swap_flip_pairs(flipped.as_subclass(torch.Tensor), self.flip_pairs), like=flipped)
        return flipped


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
    """Training augmentation: jitter -> random rescale -> random crop (padded) -> horizontal flip (exchanging the
    ``flip_pairs`` label ids) -> normalise.

    Args:
        crop_size: output ``(h, w)`` (or one int for a square).
        scale_range: the rescale factor range, relative to the input size.
        flip: random horizontal flip with probability 0.5.
        flip_pairs: label ids that the flip exchanges (the dataset's ``flip_pairs``, e.g. LIP's left/right
            parts); ``()`` mirrors the label only.
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
        flip_pairs: Sequence[Sequence[int]] = (),
        jitter: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        ignore_index: int = 255,
    ) -> None:
        self.crop_size = _pair_size(crop_size)
        self.flip_pairs = check_flip_pairs(flip_pairs)
        steps: list[v2.Transform] = [v2.ColorJitter(**JITTER)] if jitter else []
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
        steps += [RandomRescale(scale_range), v2.RandomCrop(self.crop_size, pad_if_needed=True, fill=fill)]
        if flip:
            steps.append(RandomHorizontalFlipSwap(0.5, self.flip_pairs, ignore_index))
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
        self.pipeline = v2.Compose(steps)


class EvalTransform(_PairTransform):
    """Evaluation: to float in [0, 1] and normalise; no resize (evaluate at the label's resolution)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.pipeline = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def normalize_image(image: torch.Tensor, channels: str = "RGB") -> torch.Tensor:
    """A uint8 (3, H, W) RGB image -> float32 (3, H, W): scaled to [0, 1] and normalised with the ImageNet mean and
    std, as the models are trained (``EvalTransform``'s arithmetic, without a label). ``channels="BGR"`` reverses
    the channels first and normalises them with the statistics in RGB order, as openseg's networks read images
    (OpenCV, BGR)."""
    tensor = image.float() / 255
    if channels == "BGR":
        tensor = tensor.flip(0)
    return (tensor - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
