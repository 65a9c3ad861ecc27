"""Segmentation models built from a timm backbone and the OCR head (or another context head); Panoptic-FPN (+ OCR);
the SegFix boundary/direction network."""

from .ocrnet import FCNHead, OCRNet
from .panoptic_fpn import PanopticFPN, SemanticFPN
from .panoptic_fusion import combine_panoptic, scaled_stuff_area
from .registry import (
    HEAD_PREFIXES,
    PANOPTIC_PRESETS,
    create_model,
    create_panoptic_model,
    create_segfix_model,
    list_models,
    list_segfix_models,
)
from .segfix import SegFixNet, boundary_probability, segfix_loss

__all__ = [
    "HEAD_PREFIXES",
    "PANOPTIC_PRESETS",
    "FCNHead",
    "OCRNet",
    "PanopticFPN",
    "SegFixNet",
    "SemanticFPN",
    "boundary_probability",
    "combine_panoptic",
    "create_model",
    "create_panoptic_model",
    "create_segfix_model",
    "list_models",
    "list_segfix_models",
    "scaled_stuff_area",
    "segfix_loss",
]
