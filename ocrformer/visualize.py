"""Colours for class maps: palettes, colour masks, overlays, and images back from normalised tensors."""

from __future__ import annotations

import numpy as np
import torch

from .data._io import voc_palette
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD

# Distinct colours for any number of classes (the PASCAL VOC colour map), for datasets without a palette.
default_palette = voc_palette

__all__ = ["colorize", "default_palette", "denormalize", "overlay"]


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
