"""Backbones for OCR: timm feature extractors, how OCR reads them, HRNet's segmentation fuse, the FPN trunk."""

from .features import FEATURES, BackboneInfo, FeatureAdapter, FPNBackbone, create_backbone, family, features_of
from .hrnet import FUSE_MODES, use_segmentation_fuse

__all__ = [
    "FEATURES",
    "FUSE_MODES",
    "BackboneInfo",
    "FPNBackbone",
    "FeatureAdapter",
    "create_backbone",
    "family",
    "features_of",
    "use_segmentation_fuse",
]
