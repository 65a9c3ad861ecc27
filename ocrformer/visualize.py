"""Colours for class maps: palettes, colour masks, overlays, panoptic segment maps, and images back from
normalised tensors."""

from __future__ import annotations

import numpy as np
import torch

from .data._io import voc_palette
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD

# Distinct colours for any number of classes (the PASCAL VOC colour map), for datasets without a palette.
default_palette = voc_palette

__all__ = ["colorize", "colorize_panoptic", "default_palette", "denormalize", "overlay"]


def colorize(labels: np.ndarray, palette: list[tuple[int, int, int]]) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours; ids outside the palette are black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)[:256]
    return table[labels.clip(0, 255).astype(np.uint8)]


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour mask (H, W, 3) over an RGB image (H, W, 3), both uint8."""
    return (image.astype(np.float32) * (1 - alpha) + mask.astype(np.float32) * alpha).round().astype(np.uint8)


def denormalize(image: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """A normalised (3, H, W) float tensor -> (H, W, 3) uint8 RGB."""
    mean = torch.tensor(mean, dtype=image.dtype).view(3, 1, 1)
    std = torch.tensor(std, dtype=image.dtype).view(3, 1, 1)
    return ((image.detach().cpu() * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def colorize_panoptic(segment_ids: np.ndarray, colors: dict[int, tuple[int, int, int]], *, seed: int = 0) -> np.ndarray:
    """(H, W) segment ids (0 = void) + ``{segment id: category RGB}`` -> (H, W, 3) uint8.

    Each segment gets its category's colour, shifted a little per segment so that touching instances of one
    class stay apart (the shift is seeded: the same ids give the same picture); segment borders are darkened
    and void is black.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((*segment_ids.shape, 3), dtype=np.uint8)
    for segment_id, color in sorted(colors.items()):
        shifted = np.clip(np.asarray(color, dtype=np.int64) + rng.integers(-40, 41, size=3), 0, 255)
        out[segment_ids == segment_id] = shifted.astype(np.uint8)
    border = np.zeros(segment_ids.shape, dtype=bool)
    border[:, 1:] |= segment_ids[:, 1:] != segment_ids[:, :-1]
    border[1:, :] |= segment_ids[1:, :] != segment_ids[:-1, :]
    out[border] = (out[border] * 0.35).astype(np.uint8)
    return out
