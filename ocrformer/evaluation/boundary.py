"""Boundary F-score (BF) at pixel tolerances, per class, accumulated over a dataset.

Shape legend:
    B  batch    K  classes    T  tolerances    H, W  image size

Definitions
    * Boundary of class c in a label map: the pixels labelled c that have a 4-neighbour (inside the image) with
      another label. The image border is not a boundary.
    * Matching at tolerance t (pixels): a predicted boundary pixel of class c is *matched* when some ground-truth
      boundary pixel of class c lies within Euclidean distance t of it (``scipy.ndimage.distance_transform_edt``,
      the same set as a binary dilation by a disk of radius t), and vice versa for a ground-truth pixel.
    * Per class c, over everything accumulated: precision = matched predicted / predicted boundary pixels,
      recall = matched ground-truth / ground-truth boundary pixels, F = 2PR / (P + R) (0 when P + R = 0).
      Empty sides follow upstream: no predicted boundary -> P = 1 (nothing claimed wrongly); no ground-truth
      boundary -> R = 1; so one empty side gives F = 0.
    * ``bf{t}`` = mean of F over the classes *present* (a boundary pixel of c in the predictions or in the
      ground truth somewhere in the data). When no class is present at all (e.g. uniform maps predicted
      exactly, or an all-void target) every score is 1: there was no boundary to miss or invent (upstream's
      empty/empty = 1). With nothing accumulated every score is NaN.
    * Void: the prediction is first set to void wherever the ground truth is void, and void pixels are never
      boundary pixels. Both maps thus see the same void edges (a class pixel next to void is a boundary pixel
      in both when the prediction agrees) - upstream zeroes both class masks at void pixels for the same reason.

Upstream (openseg-group/openseg.pytorch ``lib/metrics/F1_running_score.py``, adapted from GSCNN's
``f_boundary.py``): per class, binary class masks, boundaries by ``seg2bmap``, dilation by a disk of the
tolerance, precision/recall/F with the empty-side conventions above, then the mean over classes. Deviations:
    * Upstream computes F per *image* and class and averages the F values over images (an image where a class is
      absent from both maps counts as F = 1, and the final mean divides by all K classes). Here the matched and
      total pixel counts are summed over the dataset per class and F is taken once at the end, over the classes
      present - counts, unlike per-image F values, sum exactly across batches and ranks, and absent classes do
      not inflate the score.
    * Upstream's ``seg2bmap`` marks a pixel whose east, south or south-east neighbour differs (a boundary shifted
      half a pixel towards the origin, possibly on the outer side of a region); here the boundary pixels of class
      c are class-c pixels with a differing 4-neighbour (an inner boundary, symmetric in all four directions).
    * Upstream sets the tolerance as a fraction of the image diagonal (0.00088 -> 3 px on Cityscapes); here it
      is given in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from .semantic import _all_reduce_sum

__all__ = ["BoundaryEvaluator", "boundary_f_score"]

# Columns of the count table: matched predicted, predicted, matched ground truth, ground truth boundary pixels.
_PRED_MATCHED, _PRED, _GT_MATCHED, _GT = range(4)


def _boundary(label_map: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a 4-neighbour of another label (the image border does not count)."""
    edge = np.zeros(label_map.shape, dtype=bool)
    horizontal = label_map[:, 1:] != label_map[:, :-1]
    vertical = label_map[1:, :] != label_map[:-1, :]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    return edge


def _match_counts(pred_edge: np.ndarray, gt_edge: np.ndarray, tolerances: np.ndarray) -> np.ndarray:
    """(T, 4) int64 counts [matched pred, pred, matched gt, gt] of one class in one image."""
    counts = np.zeros((len(tolerances), 4), dtype=np.int64)
    n_pred, n_gt = int(pred_edge.sum()), int(gt_edge.sum())
    counts[:, _PRED] = n_pred
    counts[:, _GT] = n_gt
    if n_pred == 0 or n_gt == 0:
        return counts  # nothing can match
    # Every pixel that matters lies in the bounding box of both boundaries, so the distance transforms (the cost
    # here) run on that box only: the nearest boundary pixel of either map is inside it by construction.
    rows = np.flatnonzero((pred_edge | gt_edge).any(axis=1))
    cols = np.flatnonzero((pred_edge | gt_edge).any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    pred_edge, gt_edge = pred_edge[box], gt_edge[box]
    # distance_transform_edt gives each nonzero pixel its distance to the nearest zero, i.e. boundary, pixel.
    to_gt = ndimage.distance_transform_edt(~gt_edge)[pred_edge]
    to_pred = ndimage.distance_transform_edt(~pred_edge)[gt_edge]
    counts[:, _PRED_MATCHED] = (to_gt[None, :] <= tolerances[:, None]).sum(axis=1)
    counts[:, _GT_MATCHED] = (to_pred[None, :] <= tolerances[:, None]).sum(axis=1)
    return counts


def _tolerance_key(tolerance: float) -> str:
    return f"{tolerance:g}"


class BoundaryEvaluator:
    """Accumulates per-class boundary match counts over batches and reports BF scores at pixel tolerances.

    Args:
        num_classes: K; labels and predicted ids live in ``[0, K)``.
        tolerances: distances in pixels (numbers > 0); ``bf{t}`` is reported for each.
        ignore_index: the void label of the ground truth (also accepted in predictions, as "no class"); it must
            lie outside ``[0, K)``.

    The state is one int64 (T, K, 4) table of pixel counts, so accumulating batches one by one gives exactly
    the result of one call on their concatenation, and ranks are summed with one all-reduce.

    Usage::

        evaluator = BoundaryEvaluator(19)
        for images, labels in loader:
            evaluator.update(model(images).argmax(1), labels)
        evaluator.compute()["bf3"]
    """

    def __init__(self, num_classes: int, tolerances: Sequence[float] = (1, 3, 5), ignore_index: int = 255) -> None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
            raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index={ignore_index} is a class id in [0, {num_classes}); use e.g. 255")
        tolerances = tuple(tolerances) if isinstance(tolerances, Sequence) else (tolerances,)
        if not tolerances or any(
            isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t > 0)
            for t in tolerances
        ):
            raise ValueError(f"tolerances must be a non-empty sequence of finite numbers > 0, got {tolerances!r}")
        if len({_tolerance_key(t) for t in tolerances}) != len(tolerances):
            raise ValueError(f"tolerances has duplicates: {tolerances!r}")
        self.num_classes = num_classes
        self.tolerances = tolerances
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._counts = torch.zeros(len(self.tolerances), self.num_classes, 4, dtype=torch.int64)
        self._images = torch.zeros((), dtype=torch.int64)

    @torch.no_grad()
    def update(self, pred, target) -> None:
        """Add a batch.

        Args:
            pred: (B, H, W) or (H, W) integer class ids (torch.Tensor or np.ndarray), in ``[0, K)`` or
                ``ignore_index``.
            target: the ground truth, same shape, in ``[0, K)`` or ``ignore_index``.

        Raises:
            ValueError: mismatched shapes, non-integer dtypes, or ids outside ``[0, K)`` that are not
                ``ignore_index`` (listed).
        """
        pred = self._check(pred, "pred")
        target = self._check(target, "target")
        if pred.shape != target.shape:
            raise ValueError(f"pred has shape {pred.shape} but target has shape {target.shape}")
        tolerances = np.asarray(self.tolerances, dtype=np.float64)
        counts = np.zeros((len(tolerances), self.num_classes, 4), dtype=np.int64)
        for pred_map, target_map in zip(pred, target, strict=True):
            void = target_map == self.ignore_index
            pred_map = np.where(void, self.ignore_index, pred_map)
            pred_edge = _boundary(pred_map)
            gt_edge = _boundary(target_map)
            present = np.union1d(pred_map[pred_edge], target_map[gt_edge])
            for class_id in present[present != self.ignore_index]:
                counts[:, class_id] += _match_counts(
                    pred_edge & (pred_map == class_id), gt_edge & (target_map == class_id), tolerances
                )
        self._counts += torch.from_numpy(counts)
        self._images += pred.shape[0]

    def compute(self) -> dict:
        """The scores over everything accumulated (summed over all ranks when distributed).

        Returns a dict with, for each tolerance t (keys formatted with ``{t:g}``: 1 -> ``"bf1"``):
            ``"bf{t}"``            mean over the classes present of the per-class F (float in [0, 1])
            ``"bp{t}"``, ``"br{t}"`` mean over the classes present of the per-class precision / recall
            ``"bf{t}_per_class"``  list of K per-class F, NaN for a class absent from both sides
        and ``"counts"``: the (T, K, 4) int64 table [matched predicted, predicted, matched ground truth, ground
        truth] boundary pixels. With no class present the means are 1; with nothing accumulated they are NaN.
        """
        counts = _all_reduce_sum(self._counts.clone()).cpu()
        images = int(_all_reduce_sum(self._images.clone()))
        c = counts.double()
        present = (counts[..., _PRED] + counts[..., _GT]) > 0  # (T, K); identical over T
        # An empty side scores 1 (upstream's convention): nothing predicted is nothing wrong, and vice versa.
        precision = torch.where(c[..., _PRED] > 0, c[..., _PRED_MATCHED] / c[..., _PRED].clamp(min=1), 1.0)
        recall = torch.where(c[..., _GT] > 0, c[..., _GT_MATCHED] / c[..., _GT].clamp(min=1), 1.0)
        denominator = precision + recall
        f_score = torch.where(denominator > 0, 2 * precision * recall / denominator.clamp(min=1e-12), 0.0)
        nan = torch.full_like(f_score, math.nan)
        result: dict = {}
        for index, tolerance in enumerate(self.tolerances):
            key = _tolerance_key(tolerance)
            mask = present[index]
            for name, values in (("bf", f_score), ("bp", precision), ("br", recall)):
                if images == 0:
                    result[f"{name}{key}"] = math.nan
                elif not mask.any():
                    result[f"{name}{key}"] = 1.0
                else:
                    result[f"{name}{key}"] = values[index][mask].mean().item()
            result[f"bf{key}_per_class"] = torch.where(mask, f_score[index], nan[index]).tolist()
        result["counts"] = counts
        return result

    def _check(self, value, name: str) -> np.ndarray:
        """(B, H, W) int64 numpy copy of an integer label batch (a single (H, W) map gets B = 1)."""
        array = integer_ids(value, name, "(B, H, W)")
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise ValueError(f"{name} must have shape (B, H, W) or (H, W), got {tuple(array.shape)}")
        array = array.astype(np.int64)
        invalid = ((array < 0) | (array >= self.num_classes)) & (array != self.ignore_index)
        if invalid.any():
            bad = np.unique(array[invalid]).tolist()
            raise ValueError(
                f"{name} has ids {bad} outside [0, {self.num_classes}) that are not ignore_index={self.ignore_index}"
            )
        return array



def integer_ids(value, name: str, shape: str) -> np.ndarray:
    """A numpy view or copy of an integer id map given as a torch.Tensor or np.ndarray (any rank); ``ValueError``
    naming ``name`` for another type or a float / complex / bool dtype (``shape`` describes the expected shape)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer class ids, got dtype {value.dtype}")
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class ids, got dtype {value.dtype}")
        return value
    raise ValueError(f"{name} must be a {shape} torch.Tensor or np.ndarray, got {type(value).__name__}")

def boundary_f_score(
    pred, target, *, num_classes: int, tolerances: Sequence[float] = (1, 3, 5), ignore_index: int = 255
) -> dict:
    """BF scores of one label map or a batch, in one call: ``BoundaryEvaluator`` with a single ``update``.

    Args:
        pred: (H, W) or (B, H, W) integer class ids.
        target: the ground truth, same shape; ``ignore_index`` marks void.
        num_classes, tolerances, ignore_index: as for :class:`BoundaryEvaluator`.

    Returns:
        :meth:`BoundaryEvaluator.compute`'s dict (``"bf1"``, ``"bf3"``, ``"bf5"``, ...).
    """
    evaluator = BoundaryEvaluator(num_classes, tolerances=tolerances, ignore_index=ignore_index)
    evaluator.update(pred, target)
    return evaluator.compute()
