"""Panoptic fusion: instances and the semantic map -> one non-overlapping segment map (a pure function).

Shape legend: H x W the image, M instances.

The heuristic of Panoptic-FPN (Kirillov et al. 2019), with detectron2's defaults:

1. instances in order of decreasing score; stop at the first below ``score_threshold`` (0.5);
2. an instance whose mask has no pixels, or of which more than ``overlap_threshold`` (0.5) of the pixels are
   already taken by earlier segments, is skipped; otherwise it takes its *free* pixels only;
3. then each stuff class of the semantic prediction (never the "thing" class) takes its free pixels, unless
   fewer than ``stuff_area_threshold`` of them remain (4096, for COCO-sized images of ~640x480; scale it with
   the image area for smaller images -- see ``scaled_stuff_area``);
4. what is left is void (id 0).
"""

from __future__ import annotations

import torch

__all__ = ["COCO_IMAGE_AREA", "combine_panoptic", "scaled_stuff_area"]

COCO_IMAGE_AREA = 640 * 480  # the typical COCO image, for which the 4096-pixel stuff threshold was chosen


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
        semantic: (H, W) int -- the semantic branch's class per pixel: a stuff class in ``[0, thing_class)``, or
            ``thing_class`` ("some thing").
        masks: (M, H, W) bool -- the instance masks (already thresholded).
        scores: (M,) float -- instance scores.
        labels: (M,) int -- instance classes (contiguous thing indices, 0-based).
        thing_class: the semantic class that means "thing"; it never becomes a stuff segment.
        score_threshold, overlap_threshold, stuff_area_threshold: see the module docstring.

    Returns:
        ``(panoptic (H, W) int32, segments_info)``: segment ids 1, 2, ... in the order they were placed, 0 for
        void; per segment ``{"id", "isthing", "category_id" (contiguous thing or stuff index), "area"}``, and
        ``"score"`` for instances.
    """
    if semantic.dim() != 2:
        raise ValueError(f"semantic must be (H, W), got shape {tuple(semantic.shape)}")
    if masks.dim() != 3 or masks.shape[1:] != semantic.shape:
        raise ValueError(f"masks must be (M, H, W) with (H, W) = {tuple(semantic.shape)}, got {tuple(masks.shape)}")
    if scores.shape != masks.shape[:1] or labels.shape != masks.shape[:1]:
        raise ValueError(
            f"scores and labels must be (M,) = ({masks.shape[0]},), got {tuple(scores.shape)}, {tuple(labels.shape)}"
        )
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
        if int(taken.sum()) / area > overlap_threshold:
            continue
        free = mask & ~taken
        segment_id = len(segments) + 1
        panoptic[free] = segment_id
        segments.append(
            {"id": segment_id, "isthing": True, "category_id": int(labels[index]), "area": int(free.sum()),
             "score": score}
        )  # fmt: skip

    for stuff in torch.unique(semantic).tolist():
        if stuff == thing_class:
            continue
        free = (semantic == stuff) & (panoptic == 0)
        area = int(free.sum())
        if area < stuff_area_threshold:
            continue
        segment_id = len(segments) + 1
        panoptic[free] = segment_id
        segments.append({"id": segment_id, "isthing": False, "category_id": int(stuff), "area": area})
    return panoptic, segments
