"""Named models: ``create_model("ocrnet_hrnet_w48", num_classes=19)``.

Names are ``{head}_{backbone}``: head ``ocrnet`` (OCR) or ``fcn`` (the baseline without OCR), backbone one of
the entries below. Each entry fixes the timm model and its settings; keyword arguments to ``create_model``
override them (any ``OCRNet`` argument).
"""

from __future__ import annotations

from .ocrnet import OCRNet
from .panoptic_fpn import PanopticFPN
from .panoptic_fusion import scaled_stuff_area

__all__ = ["PANOPTIC_PRESETS", "create_model", "create_panoptic_model", "list_models"]

# backbone entry -> OCRNet keyword arguments
_BACKBONES: dict[str, dict] = {
    "hrnet_w48": {"backbone": "hrnet_w48"},
    "hrnet_w32": {"backbone": "hrnet_w32"},
    "hrnet_w18": {"backbone": "hrnet_w18"},
    "hrnet_w18_small": {"backbone": "hrnet_w18_small"},
    # Dilated ResNets (output stride 8): OCR on layer4, the soft regions from layer3.
    "resnet101_d8": {"backbone": "resnet101", "backbone_kwargs": {"output_stride": 8}},
    "resnet50_d8": {"backbone": "resnet50", "backbone_kwargs": {"output_stride": 8}},
    # Small enough for the tests and the CPU demo: ResNet-10-T's stem and first stage (stride 4, 64 channels,
    # a receptive field of about 31 pixels -- deliberately local, so that context has to come from OCR),
    # narrow OCR widths.
    "tiny": {
        "backbone": "resnet10t",
        "backbone_kwargs": {"out_indices": (1,), "layout": "last"},
        "mid_channels": 32,
        "key_channels": 16,
    },
}
_HEADS = {"ocrnet": "ocr", "fcn": "fcn"}


def list_models() -> list[str]:
    """Every registered name."""
    return [f"{head}_{backbone}" for head in _HEADS for backbone in _BACKBONES]


def create_model(name: str, num_classes: int, **overrides) -> OCRNet:
    """Build a registered model with random weights (``pretrained=False``) unless told otherwise."""
    head, _, backbone = name.partition("_")
    if head not in _HEADS or backbone not in _BACKBONES:
        raise ValueError(f"unknown model {name!r}; known: {list_models()}")
    kwargs = {**_BACKBONES[backbone], "head": _HEADS[head], **overrides}
    return OCRNet(num_classes=num_classes, **kwargs)


# Panoptic-FPN presets -> PanopticFPN keyword arguments (``ocr`` is chosen separately).
_COCO_TRAIN_SIZES = (640, 672, 704, 736, 768, 800)  # detectron2's multi-scale training for the 3x schedule
PANOPTIC_PRESETS: dict[str, dict] = {
    "panoptic_fpn_r50": {"backbone": "resnet50", "min_size": _COCO_TRAIN_SIZES, "max_size": 1333},
    "panoptic_fpn_r101": {"backbone": "resnet101", "min_size": _COCO_TRAIN_SIZES, "max_size": 1333},
    # For the tests and the CPU demo on ~100-160 px synthetic images: ResNet-18, narrow heads, small anchors,
    # fewer proposals and RoIs, and the stuff area threshold scaled to the images (see scaled_stuff_area).
    "panoptic_fpn_tiny": {
        "backbone": "resnet18",
        "fpn_channels": 64,
        "semantic_channels": 64,
        "ocr_mid_channels": 64,
        "ocr_key_channels": 32,
        "min_size": 128,
        "max_size": 256,
        "anchor_sizes": (8, 16, 32, 64, 128),
        "box_head_channels": 256,
        "mask_head_channels": 64,
        "rpn_pre_nms_top_n_train": 300,
        "rpn_post_nms_top_n_train": 150,
        "rpn_pre_nms_top_n_test": 150,
        "rpn_post_nms_top_n_test": 100,
        "rpn_batch_size_per_image": 128,
        "box_batch_size_per_image": 64,
        "box_detections_per_img": 20,
        "stuff_area_threshold": scaled_stuff_area(128, 128),  # 4096 px of a 640x480 image, at 128x128
    },
}


def create_panoptic_model(
    name: str, num_thing_classes: int, num_stuff_classes: int, *, ocr: bool = True, **overrides
) -> PanopticFPN:
    """A Panoptic-FPN preset (``PANOPTIC_PRESETS``), with OCR in its semantic branch unless ``ocr=False``;
    keyword arguments override the preset (any ``PanopticFPN`` argument)."""
    if name not in PANOPTIC_PRESETS:
        raise ValueError(f"unknown panoptic model {name!r}; known: {sorted(PANOPTIC_PRESETS)}")
    return PanopticFPN(num_thing_classes, num_stuff_classes, ocr=ocr, **{**PANOPTIC_PRESETS[name], **overrides})
