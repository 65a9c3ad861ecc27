"""Test-time inference: multi-scale, horizontal flip and sliding-window prediction of class probabilities.

Shape legend:
    B  batch    K  classes    C  image channels    H, W  input size    h, w  window (crop) size

``predict`` works with any callable ``model(images) -> {"logits": (B, K, h', w')}``. For every scale (and its
horizontal flip) the image is resized, the logits are computed over the whole image or over sliding windows
(overlaps averaged, as mmsegmentation's ``slide_inference``), turned into probabilities with a softmax,
resized back to (H, W), and the probabilities of all passes are averaged.

With ``flip_pairs`` (a dataset's left/right classes, e.g. LIP's arms, legs and shoes), the flipped pass's class
channels are exchanged pairwise after flipping back: on the mirrored image the model sees a left arm where the
right arm is, so its "left arm" score belongs to the original image's right arm.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data.transforms import FlipPairs, check_flip_pairs

__all__ = ["predict", "predict_labels"]

Model = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]
# A size given as one int (square) or as (height, width).
Size2d = int | tuple[int, int]


def predict(
    model: Model,
    images: torch.Tensor,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    flip_pairs: Sequence[Sequence[int]] = (),
    window: Size2d | None = None,
    stride: Size2d | None = None,
    num_classes: int | None = None,
    align_corners: bool = False,
) -> torch.Tensor:
    """Class probabilities averaged over scales and flips: images (B, C, H, W) -> (B, K, H, W).

    Args:
        model: ``model(x)`` returns a dict whose ``"logits"`` are (B, K, h', w'); logits of another size than
            ``x`` are resized to it bilinearly. An ``nn.Module`` is put in eval mode for the call and every
            submodule gets its previous mode back afterwards.
        images: (B, C, H, W) input batch, already normalised.
        scales: resize factors; each scale s runs the model on the image resized (bilinearly) to
            ``(round(s * H), round(s * W))``.
        flip: also run every scale on the horizontally flipped image (the output is flipped back).
        flip_pairs: ``(a, b)`` class ids whose channels the flipped pass exchanges (the dataset's
            ``flip_pairs``; see the module docstring); distinct ids in ``0..K-1``, none twice. Used only with
            ``flip=True``; ``()`` flips the scores back and nothing more.
        window: ``(h, w)`` (or one int) crop size for sliding-window inference; None runs the whole image.
            An image smaller than the window is zero-padded at the bottom/right up to it, and cropped back.
        stride: ``(sh, sw)`` (or one int) step between windows, at most the window; default 2/3 of the window.
            The last window in each direction is moved back to end at the border, so every pixel is covered.
        num_classes: K, to check the model's output against; None accepts whatever K the model gives.
        align_corners: ``align_corners`` of every bilinear resize (of images, logits and probabilities).

    Returns:
        (B, K, H, W) probabilities (they sum to 1 over K) in float32, or float64 for a float64 model.
    """
    scales = _check_args(images, scales, num_classes)
    flip_pairs = check_flip_pairs(flip_pairs, num_classes)
    window, stride = _window_and_stride(window, stride)
    passes = [(scale, flipped) for scale in scales for flipped in ((False, True) if flip else (False,))]
    with torch.no_grad(), _eval_mode(model):
        total = None
        for scale, flipped in passes:
            pairs = flip_pairs if flipped else ()
            probs = _predict_pass(model, images, scale, flipped, pairs, window, stride, num_classes, align_corners)
            total = probs if total is None else total + probs
    return total / len(passes)


def predict_labels(model: Model, images: torch.Tensor, **kwargs) -> torch.Tensor:
    """Class ids (B, H, W) int64: the argmax of ``predict(model, images, **kwargs)``; same keyword arguments."""
    return predict(model, images, **kwargs).argmax(dim=1)


# ------------------------------------------------------------------------------------------ one pass
def _predict_pass(
    model: Model,
    images: torch.Tensor,
    scale: float,
    flipped: bool,
    flip_pairs: FlipPairs,
    window: tuple[int, int] | None,
    stride: tuple[int, int] | None,
    num_classes: int | None,
    align_corners: bool,
) -> torch.Tensor:
    """(B, K, H, W) probabilities of one scale, optionally on the flipped image (channels of ``flip_pairs``
    exchanged)."""
    size = tuple(images.shape[-2:])
    x = images
    if scale != 1.0:
        scaled = tuple(max(1, round(scale * s)) for s in size)
        x = F.interpolate(x, size=scaled, mode="bilinear", align_corners=align_corners)
    if flipped:
        x = x.flip(-1)
    if window is None:
        logits = _logits(model, x, num_classes, align_corners)
    else:
        logits = _slide_logits(model, x, window, stride, num_classes, align_corners)
    if flipped:
        logits = logits.flip(-1)
    if flip_pairs:
        logits = logits[:, _pair_permutation(flip_pairs, logits.shape[1]).to(logits.device)]
    # Accumulate in at least float32: half-precision probabilities would lose the small differences.
    probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=1)
    if probs.shape[-2:] != size:
        probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=align_corners)
    return probs


def _slide_logits(
    model: Model,
    x: torch.Tensor,
    window: tuple[int, int],
    stride: tuple[int, int],
    num_classes: int | None,
    align_corners: bool,
) -> torch.Tensor:
    """(B, K, H, W) logits of x (B, C, H, W) averaged over the overlapping (h, w) windows that cover it."""
    height, width = x.shape[-2:]
    # Zero-pad at the bottom/right up to the window so that every window is full-sized.
    padded = F.pad(x, (0, max(window[1] - width, 0), 0, max(window[0] - height, 0)))
    total = None
    count = padded.new_zeros((1, 1, *padded.shape[-2:]))
    for top in _window_starts(padded.shape[-2], window[0], stride[0]):
        for left in _window_starts(padded.shape[-1], window[1], stride[1]):
            rows, cols = slice(top, top + window[0]), slice(left, left + window[1])
            logits = _logits(model, padded[..., rows, cols], num_classes, align_corners)
            if total is None:
                total = logits.new_zeros((*logits.shape[:2], *padded.shape[-2:]))
            total[..., rows, cols] += logits
            count[..., rows, cols] += 1
    return (total / count.to(total.dtype))[..., :height, :width]


def _pair_permutation(flip_pairs: FlipPairs, num_classes: int) -> torch.Tensor:
    """Channel order (K,) that exchanges each pair: ``scores[:, perm]`` puts channel b where a was and a where
    b was. ``ValueError`` naming ``flip_pairs`` if an id is not below the model's K."""
    check_flip_pairs(flip_pairs, num_classes, name=f"flip_pairs (the model gives K={num_classes} classes)")
    perm = torch.arange(num_classes)
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm


def _window_starts(size: int, window: int, stride: int) -> list[int]:
    """Offsets of the windows along one axis (size >= window), as mmseg: ``ceil((size - window) / stride) + 1``
    windows ``stride`` apart, the last one moved back to end exactly at ``size``."""
    count = math.ceil((size - window) / stride) + 1
    return [min(i * stride, size - window) for i in range(count)]


def _logits(model: Model, x: torch.Tensor, num_classes: int | None, align_corners: bool) -> torch.Tensor:
    """The model's (B, K, H, W) logits for x (B, C, H, W), resized to x's size when they differ."""
    out = model(x)
    if not isinstance(out, Mapping) or "logits" not in out:
        keys = sorted(out) if isinstance(out, Mapping) else type(out).__name__
        raise ValueError(f"model must return a dict with 'logits', got {keys}")
    logits = out["logits"]
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4 or logits.shape[0] != x.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"model's 'logits' must be (B={x.shape[0]}, K, H, W), got {shape}")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(
            f"model gave K={logits.shape[1]} classes (shape {tuple(logits.shape)}) but num_classes={num_classes}"
        )
    if logits.shape[-2:] != x.shape[-2:]:
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=align_corners)
    return logits


# ------------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _eval_mode(model: Model) -> Iterator[None]:
    """An ``nn.Module`` in eval mode inside the block; afterwards each submodule gets its own mode back (not
    ``model.train(previous)``, which would also switch submodules that were deliberately kept in eval)."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def _pair(value: Size2d, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair (h, w) of positive ints, got {value!r}")
    return pair


def _window_and_stride(
    window: Size2d | None, stride: Size2d | None
) -> tuple[tuple[int, int], tuple[int, int]] | tuple[None, None]:
    """Checked (window, stride) pairs with the default stride filled in, or (None, None) for whole images."""
    if window is None:
        if stride is not None:
            raise ValueError("stride is only used with window; pass window=(h, w) for sliding-window inference")
        return None, None
    window = _pair(window, "window")
    # mmseg's configs pair a 512 crop with a 341 stride: 2/3 of the window.
    stride = tuple(max(1, 2 * size // 3) for size in window) if stride is None else _pair(stride, "stride")
    if stride[0] > window[0] or stride[1] > window[1]:
        raise ValueError(f"stride {stride} must not exceed window {window}; a larger step would skip pixels")
    return window, stride


def _check_args(images: torch.Tensor, scales: Sequence[float], num_classes: int | None) -> tuple[float, ...]:
    """Checks images, scales and num_classes; returns the scales as a tuple."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a 4-D tensor (B, C, H, W), got {shape}")
    scales = (scales,) if isinstance(scales, int | float) else tuple(scales)
    if not scales or not all(isinstance(s, int | float) and math.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales!r}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
    return scales
