"""Segmentation models built from a timm backbone and the OCR head."""

from .ocrnet import FCNHead, OCRNet
from .registry import create_model, list_models

__all__ = ["FCNHead", "OCRNet", "create_model", "list_models"]
