"""Evaluation metrics: ``SemanticEvaluator`` (mIoU, pixel accuracy from a confusion matrix),
``panoptic_quality`` / ``PanopticEvaluator`` (PQ, SQ, RQ with the official COCO panoptic evaluator) and
``boundary_f_score`` / ``BoundaryEvaluator`` (boundary F-score at pixel tolerances, as used to evaluate SegFix)."""

from .boundary import BoundaryEvaluator, boundary_f_score
from .panoptic import PanopticEvaluator, panoptic_quality, summarize_pq
from .semantic import SemanticEvaluator

__all__ = [
    "BoundaryEvaluator",
    "PanopticEvaluator",
    "SemanticEvaluator",
    "boundary_f_score",
    "panoptic_quality",
    "summarize_pq",
]
