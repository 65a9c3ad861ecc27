"""Panoptic fusion: instances and the semantic map -> one non-overlapping segment map (a pure function).

Shape legend: H x W the image, M instances.

The heuristic of Panoptic-FPN (Kirillov et al. 2019), with detectron2's defaults:

1. instances in order of decreasing score; stop at the first below ``score_threshold`` (0.5);
2. an instance whose mask has no pixels, or of which more than ``overlap_threshold`` (0.5) of the pixels are
   already taken by earlier segments, is skipped; otherwise it takes its *free* pixels only;
3. then each stuff class of the semantic prediction (never the "thing" class, nor ``VOID`` = 255) takes its free
   pixels, unless fewer than ``stuff_area_threshold`` of them remain (4096, for COCO-sized images of ~640x480;
   scale it with the image area for smaller images -- see ``scaled_stuff_area``);
4. what is left is void (id 0).

Two refinements of degenerate cases, where detectron2 would list a segment that the map does not hold: a segment
never has zero pixels (an instance whose pixels are all taken, possible with ``overlap_threshold=1``, and a stuff
class with no free pixel, possible with ``stuff_area_threshold=0``, are skipped). Inputs that would make a wrong
result silently (NaN scores, negative labels, soft masks, semantic values that are no class) are refused.
"""

from __future__ import annotations

import math
from numbers import Real

import torch

__all__ = ["COCO_IMAGE_AREA", "VOID", "combine_panoptic", "scaled_stuff_area"]

COCO_IMAGE_AREA = 640 * 480  # the typical COCO image, for which the 4096-pixel stuff threshold was chosen
VOID = 255  # a semantic value that is no class (the ignore index of ocrformer's data): void, never a segment


def scaled_stuff_area(height: int, width: int, threshold: int = 4096) -> int:
    """The stuff area threshold for (height, width) images: the same fraction of the image as 4096 pixels are of
    a 640x480 COCO image (at least 1 pixel)."""
    return max(1, round(threshold * height * width / COCO_IMAGE_AREA))


def combine_panoptic(
    semantic: torch.Tensor,
    masks: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    thing_class: int,
    score_threshold: float = 0.5,
    overlap_threshold: float = 0.5,
    stuff_area_threshold: int = 4096,
) -> tuple[torch.Tensor, list[dict]]:
    """Fuse instance and semantic predictions of one image.

    Args:
        semantic: (H, W) integer tensor -- the semantic branch's class per pixel: a stuff class in
            ``[0, thing_class)``, ``thing_class`` ("some thing"), or ``VOID`` (255: no class, e.g. a ground-truth
            map's void pixels; they stay void).
        masks: (M, H, W) -- the instance masks, already thresholded: bool, or 0/1 values of any dtype (soft masks
            are refused: threshold them first), on ``semantic``'s device.
        scores: (M,) floating point -- instance scores, finite.
        labels: (M,) integer -- instance classes (contiguous thing indices, 0-based, so >= 0).
        thing_class: the semantic class that means "thing", an int in ``[0, 255)``; it never becomes a stuff
            segment.
        score_threshold: a finite number; overlap_threshold: in ``[0, 1]``; stuff_area_threshold: an int >= 0.
            See the module docstring.

    Returns:
        ``(panoptic (H, W) int32, segments_info)``: segment ids 1, 2, ... in the order they were placed, 0 for
        void; per segment ``{"id", "isthing", "category_id" (contiguous thing or stuff index), "area"}`` (> 0),
        and ``"score"`` for instances.

    Raises:
        TypeError: an input that is not a ``torch.Tensor`` (a numpy array: ``torch.as_tensor`` it first).
        ValueError: shapes that do not fit, wrong dtypes, NaN/inf scores, negative labels, non-binary masks,
            semantic values outside ``[0, thing_class]`` other than 255, or thresholds out of range; the message
            names the argument and what was expected.
    """
    _check_fusion_inputs(semantic, masks, scores, labels, thing_class=thing_class)
    _check_thresholds(score_threshold, overlap_threshold, stuff_area_threshold)
    panoptic = torch.zeros(semantic.shape, dtype=torch.int32, device=semantic.device)
    segments: list[dict] = []

    for index in torch.argsort(scores, descending=True).tolist():
        score = float(scores[index])
        if score < score_threshold:
            break
        mask = masks[index].bool()
        area = int(mask.sum())
        if area == 0:
            continue
        taken = mask & (panoptic > 0)
        taken_area = int(taken.sum())
        if taken_area / area > overlap_threshold or taken_area == area:  # the latter: nothing free (threshold 1)
            continue
        free = mask & ~taken
        segment_id = len(segments) + 1
        panoptic[free] = segment_id
        segments.append(
            {"id": segment_id, "isthing": True, "category_id": int(labels[index]), "area": int(free.sum()),
             "score": score}
        )

    for stuff in torch.unique(semantic).tolist():
        if stuff in (thing_class, VOID):
            continue
        free = (semantic == stuff) & (panoptic == 0)
        area = int(free.sum())
        if area < stuff_area_threshold or area == 0:
            continue
        segment_id = len(segments) + 1
        panoptic[free] = segment_id
        segments.append({"id": segment_id, "isthing": False, "category_id": int(stuff), "area": area})
    return panoptic, segments


def _check_fusion_inputs(
    semantic: torch.Tensor, masks: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, *, thing_class: int
) -> None:
    """Types, shapes, dtypes and values of ``combine_panoptic``'s inputs (one image: the value checks are cheap)."""
    for name, value in (("semantic", semantic), ("masks", masks), ("scores", scores), ("labels", labels)):
        if not isinstance(value, torch.Tensor):
            kind = f"{type(value).__module__.partition('.')[0]}.{type(value).__name__}".removeprefix("builtins.")
            raise TypeError(
                f"combine_panoptic: {name} must be a torch.Tensor, got {kind} (convert it with torch.as_tensor)"
            )
    if not isinstance(thing_class, int) or isinstance(thing_class, bool) or not 0 <= thing_class < VOID:
        raise ValueError(
            f"thing_class must be an int in [0, {VOID}) (the number of stuff classes; {VOID} marks void), "
            f"got {thing_class!r}"
        )
    if semantic.dim() != 2:
        raise ValueError(f"semantic must be (H, W), got shape {tuple(semantic.shape)}")
    if masks.dim() != 3 or masks.shape[1:] != semantic.shape:
        raise ValueError(f"masks must be (M, H, W) with (H, W) = {tuple(semantic.shape)}, got {tuple(masks.shape)}")
    if scores.shape != masks.shape[:1] or labels.shape != masks.shape[:1]:
        raise ValueError(
            f"scores and labels must be (M,) = ({masks.shape[0]},), got {tuple(scores.shape)}, {tuple(labels.shape)}"
        )
    if masks.device != semantic.device:
        raise ValueError(f"masks must be on semantic's device {semantic.device}, got {masks.device}")
    if not _is_integer(semantic):
        raise ValueError(f"semantic must hold integer class ids, got dtype {semantic.dtype}")
    if not _is_integer(labels):
        raise ValueError(f"labels must hold integer thing indices, got dtype {labels.dtype}")
    if not scores.is_floating_point():
        raise ValueError(f"scores must be floating point, got dtype {scores.dtype}")

    outside = ((semantic < 0) | (semantic > thing_class)) & (semantic != VOID)
    if outside.any():
        bad = torch.unique(semantic[outside]).tolist()
        raise ValueError(
            f"semantic holds values {bad[:10]} outside [0, {thing_class}] (stuff classes and thing_class="
            f"{thing_class}) that are not {VOID} (void)"
        )
    if masks.dtype != torch.bool:
        soft = int(((masks != 0) & (masks != 1)).sum())
        if soft:
            raise ValueError(
                f"masks must be binary (bool, or 0/1 values), but {soft} value{'s' if soft > 1 else ''} of the "
                f"{masks.dtype} masks {'are' if soft > 1 else 'is'} not 0 or 1: threshold soft masks first "
                "(e.g. masks >= 0.5)"
            )
    non_finite = int((~torch.isfinite(scores)).sum())
    if non_finite:
        raise ValueError(
            f"scores has {non_finite} non-finite value{'s' if non_finite > 1 else ''} (NaN or inf): "
            f"{scores.tolist()[:10]}; expected finite instance scores"
        )
    if (labels < 0).any():
        bad = torch.unique(labels[labels < 0]).tolist()
        raise ValueError(f"labels must be contiguous thing indices >= 0, got {bad} (detection labels minus 1?)")


def _check_thresholds(score_threshold: float, overlap_threshold: float, stuff_area_threshold: int) -> None:
    if not _is_real(score_threshold) or not math.isfinite(score_threshold):
        raise ValueError(f"score_threshold must be a finite number, got {score_threshold!r}")
    if not _is_real(overlap_threshold) or not 0 <= overlap_threshold <= 1:
        raise ValueError(f"overlap_threshold must be a number in [0, 1], got {overlap_threshold!r}")
    if not isinstance(stuff_area_threshold, int) or isinstance(stuff_area_threshold, bool) or stuff_area_threshold < 0:
        raise ValueError(f"stuff_area_threshold must be an int >= 0, got {stuff_area_threshold!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_integer(tensor: torch.Tensor) -> bool:
    return not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)
