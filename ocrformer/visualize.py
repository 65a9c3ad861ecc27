"""Colours for class maps: palettes, colour masks, overlays, and images back from normalised tensors."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "colorize", "default_palette", "denormalize", "overlay"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct colours by the PASCAL VOC bit-interleaving scheme (deterministic, any number of classes)."""
    palette = []
    for index in range(num_classes):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.append((r, g, b))
    return palette


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
