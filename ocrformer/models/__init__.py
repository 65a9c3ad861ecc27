"""Segmentation models built from a timm backbone and the OCR head (or another context head); Panoptic-FPN (+ OCR)."""

from .ocrnet import FCNHead, OCRNet
from .panoptic_fpn import PanopticFPN, SemanticFPN
from .panoptic_fusion import combine_panoptic, scaled_stuff_area
from .registry import HEAD_PREFIXES, PANOPTIC_PRESETS, create_model, create_panoptic_model, list_models

__all__ = [
    "HEAD_PREFIXES",
    "PANOPTIC_PRESETS",
    "FCNHead",
    "OCRNet",
    "PanopticFPN",
    "SemanticFPN",
    "combine_panoptic",
    "create_model",
    "create_panoptic_model",
    "list_models",
    "scaled_stuff_area",
]
