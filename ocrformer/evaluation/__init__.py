"""Evaluation metrics: ``SemanticEvaluator`` (mIoU, pixel accuracy from a confusion matrix)."""

from .semantic import SemanticEvaluator

__all__ = ["SemanticEvaluator"]
