"""SegFix refinement: move the labels of boundary pixels along the predicted inward direction.

Shape legend:
    B  batch    m  direction bins    H, W  image size

Given the label map of *any* segmentation model and SegFix's two outputs - a boundary probability and direction
logits over m bins - every pixel whose boundary probability exceeds the threshold takes the label found
``offset_scale`` steps away along its predicted direction (towards the interior of its region, where labels are
reliable). All other pixels keep their label. It is a single gather: every pixel reads the *input* labels, so a
moved label is never moved again.

Upstream facts followed (openseg-group/openseg.pytorch):
    * ``segmentor/tester_offset.py`` (``_get_offset``): the direction is the argmax over the m bins, converted to
      a unit step by ``DTOffsetHelper.label_to_vector`` (8 bins: the 8 neighbours, see
      :func:`ocrformer.segfix.direction_offsets`), and set to zero where the boundary probability is not above
      0.5 (strict ``>``).
    * ``scripts/cityscapes/segfix.py``: the offsets are multiplied by ``--scale``, default **2**, then the labels
      are resampled at ``position + offset`` (``grid_sample`` of the one-hot labels with ``padding_mode="border"``,
      i.e. positions outside the image are clamped to it). Why 2 and not 1: the boundary band SegFix predicts
      is thick (upstream's ground truth marks every pixel within 5 px of a border, on both sides), and the
      errors of a segmentation model along a border are usually a few pixels wide, so a one-pixel step from an
      erroneous pixel mostly lands on another erroneous pixel of the same band; a longer step reaches the
      interior, whose label is trustworthy. Hence ``offset_scale=2``.

Deviations:
    * Upstream samples bilinearly and takes the argmax; with integer offsets (integer ``offset_scale``) that is
      exactly a gather, which is what is done here. A non-integer ``offset_scale`` is rounded per pixel to the
      nearest whole step instead of blending neighbouring labels.
    * Void labels: a pixel labelled ``ignore_index`` keeps it, and ``ignore_index`` is never copied onto another
      pixel (such a pixel keeps its own label). Upstream assumes a prediction without void.
"""

from __future__ import annotations

import math

import torch

from .targets import direction_offsets

__all__ = ["segfix_refine"]


def _shape(value) -> object:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _check_inputs(labels, boundary_prob, direction_logits) -> bool:
    """Validate shapes/dtypes/ranges; returns whether the inputs are unbatched."""
    if not isinstance(labels, torch.Tensor) or labels.dim() not in (2, 3):
        raise ValueError(f"labels must be a (B, H, W) or (H, W) tensor of class ids, got {_shape(labels)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must hold integer class ids, got dtype {labels.dtype}")
    unbatched = labels.dim() == 2
    if not isinstance(boundary_prob, torch.Tensor) or boundary_prob.shape != labels.shape:
        raise ValueError(
            f"boundary_prob must have the shape of labels, {tuple(labels.shape)}, got {_shape(boundary_prob)}"
        )
    if not boundary_prob.is_floating_point():
        raise ValueError(f"boundary_prob must hold probabilities (floating point), got dtype {boundary_prob.dtype}")
    # Written so that NaN fails too (every comparison with NaN is False).
    outside = ~((boundary_prob >= 0) & (boundary_prob <= 1))
    if outside.any():
        raise ValueError(
            f"boundary_prob must lie in [0, 1] (probabilities, not logits): {int(outside.sum())} of its "
            f"{boundary_prob.numel()} values do not (NaN included)"
        )
    expected = "(m, H, W)" if unbatched else "(B, m, H, W)"
    if (
        not isinstance(direction_logits, torch.Tensor)
        or direction_logits.dim() != labels.dim() + 1
        or direction_logits.shape[-2:] != labels.shape[-2:]
        or (not unbatched and direction_logits.shape[0] != labels.shape[0])
    ):
        raise ValueError(
            f"direction_logits must have shape {expected} to match labels {tuple(labels.shape)}, "
            f"got {_shape(direction_logits)}"
        )
    channels = direction_logits.shape[-3]
    if channels < 2:
        raise ValueError(f"direction_logits must have m >= 2 direction channels, got {channels}")
    if not direction_logits.is_floating_point():
        raise ValueError(f"direction_logits must hold real scores (floating point), got dtype {direction_logits.dtype}")
    non_finite = ~torch.isfinite(direction_logits)
    if non_finite.any():
        # argmax reads NaN as the largest score: a NaN pixel would silently pick some direction.
        raise ValueError(f"direction_logits has {int(non_finite.sum())} non-finite values (NaN or inf)")
    return unbatched


def segfix_refine(
    labels: torch.Tensor,
    boundary_prob: torch.Tensor,
    direction_logits: torch.Tensor,
    *,
    boundary_threshold: float = 0.5,
    offset_scale: float = 2,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Refine a label map with SegFix's boundary and direction predictions.

    Args:
        labels: (B, H, W) or (H, W) integer labels predicted by any model.
        boundary_prob: (B, H, W) or (H, W) boundary probability in [0, 1].
        direction_logits: (B, m, H, W) or (m, H, W) direction scores (logits or probabilities; only the argmax
            is used), bins as in :mod:`ocrformer.segfix.targets`.
        boundary_threshold: a pixel moves when its boundary probability is strictly above this (upstream: 0.5).
        offset_scale: the step length in units of the bin's pixel step (upstream ``scripts/cityscapes/segfix.py``
            default: 2, see the module docstring). Non-integer values are rounded per pixel.
        ignore_index: the void label: never copied, and void pixels keep it.

    Returns:
        The refined labels, same shape, dtype and device as ``labels``. Positions beyond the image are clamped
        to its border.

    Raises:
        ValueError: bad shapes, dtypes or values, naming the argument.
    """
    unbatched = _check_inputs(labels, boundary_prob, direction_logits)
    if isinstance(boundary_threshold, bool) or not isinstance(boundary_threshold, (int, float)):
        raise ValueError(f"boundary_threshold must be a number in [0, 1], got {boundary_threshold!r}")
    if not 0 <= boundary_threshold <= 1:
        raise ValueError(f"boundary_threshold must be a number in [0, 1], got {boundary_threshold!r}")
    if (
        isinstance(offset_scale, bool)
        or not isinstance(offset_scale, (int, float))
        or not math.isfinite(offset_scale)
        or offset_scale <= 0
    ):
        raise ValueError(f"offset_scale must be a finite number > 0, got {offset_scale!r}")
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")

    if unbatched:
        labels, boundary_prob, direction_logits = labels[None], boundary_prob[None], direction_logits[None]
    device = labels.device
    boundary_prob = boundary_prob.to(device)
    direction_logits = direction_logits.to(device)
    batch, height, width = labels.shape

    steps = direction_offsets(direction_logits.shape[1]).to(device)  # (m, 2) integer (dy, dx)
    offset = steps[direction_logits.argmax(dim=1)]  # (B, H, W, 2)
    if float(offset_scale).is_integer():
        offset = offset * int(offset_scale)
    else:
        offset = torch.round(offset.double() * offset_scale).long()
    # Pixels not on the predicted boundary stay where they are.
    offset = offset * (boundary_prob > boundary_threshold).unsqueeze(-1)

    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    # Clamping is upstream's grid_sample(padding_mode="border").
    src_row = (rows + offset[..., 0]).clamp(0, height - 1)
    src_col = (cols + offset[..., 1]).clamp(0, width - 1)
    flat = labels.reshape(batch, height * width)
    moved = flat.gather(1, (src_row * width + src_col).reshape(batch, -1)).reshape(batch, height, width)
    keep = (moved == ignore_index) | (labels == ignore_index)
    refined = torch.where(keep, labels, moved)
    return refined[0] if unbatched else refined
