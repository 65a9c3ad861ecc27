"""Evaluation metrics: ``SemanticEvaluator`` (mIoU, pixel accuracy from a confusion matrix) and
``panoptic_quality`` / ``PanopticEvaluator`` (PQ, SQ, RQ with the official COCO panoptic evaluator)."""

from .panoptic import PanopticEvaluator, panoptic_quality, summarize_pq
from .semantic import SemanticEvaluator

__all__ = ["PanopticEvaluator", "SemanticEvaluator", "panoptic_quality", "summarize_pq"]
