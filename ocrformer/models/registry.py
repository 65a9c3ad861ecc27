"""Named models: ``create_model("ocrnet_hrnet_w48", num_classes=19)``.

Names are ``{head}_{backbone}``: head ``ocrnet`` (OCR) or ``fcn`` (the baseline without OCR), backbone one of
the entries below. Each entry fixes the timm model and its settings; keyword arguments to ``create_model``
override them (any ``OCRNet`` argument).
"""

from __future__ import annotations

from .ocrnet import OCRNet

__all__ = ["create_model", "list_models"]

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
