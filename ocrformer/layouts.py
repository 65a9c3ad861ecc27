"""Layouts: how each codebase builds OCRNet, so that a model built for a converted checkpoint computes that
codebase's function.

Parameter names and shapes do not say everything a network computes. Two HRNet-OCR checkpoints with the same
keys and shapes compute different functions if one network upsamples its HRNet branches with
``align_corners=True`` and the other with ``False``, or if a 4-head encoder reads weights trained with one
head. A layout fixes what the weights leave open:

- ``align_corners`` of every bilinear resize (HRNet fuse layers, branch concatenation, logits to the image);
- how HRNet's fuse layers upsample (``ocrformer.backbones.hrnet``);
- the soft-region branch: kernel, width and dropout of its hidden layer; the dropout before the classifier;
- the dilated ResNet's stem (timm ``stem_type``/``stem_width``, and the max-pool's ``ceil_mode``);
- the channel order the codebase feeds its networks (openseg reads images with OpenCV and normalises them in
  BGR order with the ImageNet mean and std listed in RGB order); ``ocrformer.predict`` follows it.

===============  ==========================================================================================
``ocrformer``    ocrformer's own models (the default for new training). HRNet: the official HRNet-OCR
                 function. Dilated ResNet: timm's ResNet as it is (its 7x7 stem, so timm's ImageNet weights
                 load) with the region branch of openseg's ResNet OCRNet (``SpatialOCRNet``, the OCR authors'
                 own): Conv3x3 -> 512 + BN + ReLU + Dropout2d(0.05).
``hrnet-ocr``    HRNet-Semantic-Segmentation, branch HRNet-OCR (``seg_hrnet_ocr.py``): the released
                 ``hrnet_ocr_*`` checkpoints. HRNet only (that code has no ResNet OCRNet).
``openseg``      openseg.pytorch: ``HRNet_W48_OCR`` (region branch Conv3x3, conv biases in the OCR block)
                 and ``SpatialOCRNet`` on ``deepbase_resnet101_dilated8`` (3x3 deep stem of width 64, max-pool
                 with ``ceil_mode=True``: a 512x1024 image gives 65x129 features). BGR input.
``mmseg``        mmsegmentation: ``ocrnet_hr18/hr48`` (``align_corners=False``, fuse resized twice, no
                 dropout) and ``ocrnet_r101-d8`` (ResNetV1c deep stem of width 32, FCNHead region branch
                 Conv3x3 -> 256 + BN + ReLU + Dropout2d(0.1), dropout 0.1 before the classifier).
===============  ==========================================================================================

Every difference listed here was read in the codebase's own code (the module docstrings of
``ocrformer.convert`` and ``ocrformer.backbones.hrnet`` give the files) and is tested against outputs of that
code (``../shared/golden``, ``tests/test_golden.py``).

A model records its layout and the settings that define its function in its state dict (``_extra_state``);
``ocrformer.convert`` writes the same entry into converted checkpoints, and ``load_state_dict`` refuses a
checkpoint whose settings differ from the model's, naming both layouts (``check_signature``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "FORMAT",
    "LAYOUTS",
    "HeadLayout",
    "Layout",
    "check_signature",
    "get_layout",
    "layout_signature",
    "signature",
]

# Version of the ``_extra_state`` entry; bump when its meaning changes.
FORMAT = 1


@dataclass(frozen=True)
class HeadLayout:
    """The head settings that differ between codebases (see ``OCRDecoder`` / ``OCREncoder``).

    region_kernel_size, region_channels, region_dropout: the soft-region branch's hidden layer (``None``
    channels: as wide as its input); dropout: ``Dropout2d`` before the classifier (HRNet-OCR and openseg put it
    after the fusion conv, mmsegmentation in ``cls_seg``: the same place).
    """

    region_kernel_size: int = 1
    region_channels: int | None = None
    region_dropout: float = 0.0
    dropout: float = 0.05


@dataclass(frozen=True)
class Layout:
    """One codebase's OCRNet. ``hrnet_head``/``resnet_head`` ``None``: that codebase has no such model."""

    name: str
    description: str
    align_corners: bool
    hrnet_fuse: str
    hrnet_head: HeadLayout | None
    resnet_head: HeadLayout | None
    resnet_stem: dict = field(default_factory=dict)
    resnet_ceil_pool: bool = False
    # Channel order the codebase feeds its networks (its data pipeline, not the model): "RGB" or "BGR".
    input_channels: str = "RGB"

    def head(self, features: str) -> HeadLayout:
        """The head settings for a backbone whose features OCR reads as ``features`` ("hrnet", "last_two" for a
        dilated ResNet, "last" for any other timm model)."""
        head = {"hrnet": self.hrnet_head, "last_two": self.resnet_head}.get(features)
        if features == "last" and self.name == "ocrformer":
            return HeadLayout()
        if head is None:
            kind = {"hrnet": "HRNet", "last_two": "dilated-ResNet"}.get(features, "this kind of")
            has = [n for n, h in (("HRNet", self.hrnet_head), ("dilated ResNet", self.resnet_head)) if h]
            raise ValueError(
                f"layout {self.name!r} ({self.description}) has no {kind} OCRNet; it has: {', '.join(has)}"
            )
        return head


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            name="ocrformer",
            description="ocrformer's own models",
            align_corners=True,
            hrnet_fuse="bilinear",
            hrnet_head=HeadLayout(),
            resnet_head=HeadLayout(region_kernel_size=3, region_channels=512, region_dropout=0.05),
        ),
        Layout(
            name="hrnet-ocr",
            description="official HRNet-OCR (HRNet-Semantic-Segmentation, HRNet-OCR branch)",
            align_corners=True,
            hrnet_fuse="bilinear",
            hrnet_head=HeadLayout(),
            resnet_head=None,
        ),
        Layout(
            name="openseg",
            description="openseg.pytorch (HRNet_W48_OCR, SpatialOCRNet)",
            align_corners=True,
            hrnet_fuse="bilinear",
            hrnet_head=HeadLayout(region_kernel_size=3),
            resnet_head=HeadLayout(region_kernel_size=3, region_channels=512, region_dropout=0.05),
            resnet_stem={"stem_type": "deep", "stem_width": 64},
            resnet_ceil_pool=True,
            input_channels="BGR",
        ),
        Layout(
            name="mmseg",
            description="mmsegmentation (OCRNet on HRNetV2 / ResNetV1c-D8)",
            align_corners=False,
            hrnet_fuse="bilinear-twice",
            hrnet_head=HeadLayout(dropout=0.0),
            resnet_head=HeadLayout(region_kernel_size=3, region_channels=256, region_dropout=0.1, dropout=0.1),
            resnet_stem={"stem_type": "deep", "stem_width": 32},
        ),
    )
}


def get_layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {name!r}")
    return LAYOUTS[name]


def signature(
    *,
    features: str,
    stride: int,
    align_corners: bool,
    hrnet_fuse: str,
    ceil_pool: bool,
    num_heads: int,
    input_channels: str,
) -> dict:
    """The settings that define an OCRNet's function beyond its parameter names and shapes.

    features: how OCR reads the backbone ("hrnet", "last_two", "last"); stride: output stride; hrnet_fuse: the
    HRNet fuse upsampling (kept for HRNet only); ceil_pool: the dilated ResNet's max-pool ``ceil_mode`` (kept
    for dilated ResNets only); num_heads: encoder attention heads (a 4-head encoder has the 1-head encoder's
    parameters and computes something else); input_channels: "RGB" or "BGR" images.
    """
    return {
        "features": features,
        "stride": stride,
        "align_corners": align_corners,
        "hrnet_fuse": hrnet_fuse if features == "hrnet" else None,
        "ceil_pool": ceil_pool if features == "last_two" else None,
        "num_heads": num_heads,
        "input_channels": input_channels,
    }


def layout_signature(layout: Layout, features: str, stride: int) -> dict:
    """``{"format", "layout", **signature}`` of the released models of ``layout`` (one encoder head) with this
    backbone: what ``ocrformer.convert`` writes into a converted checkpoint."""
    layout.head(features)  # refuses a backbone the codebase has no model for
    return {
        "format": FORMAT,
        "layout": layout.name,
        **signature(
            features=features,
            stride=stride,
            align_corners=layout.align_corners,
            hrnet_fuse=layout.hrnet_fuse,
            ceil_pool=layout.resnet_ceil_pool,
            num_heads=1,
            input_channels=layout.input_channels,
        ),
    }


def check_signature(checkpoint: dict, model: dict) -> None:
    """Refuse a checkpoint whose layout entry (``_extra_state``) describes another function than the model's.

    Both are ``{"format", "layout", **signature}``. Raises ``ValueError`` naming both layouts and every setting
    that differs.
    """
    if not isinstance(checkpoint, dict) or "layout" not in checkpoint:
        raise ValueError(
            f"the checkpoint's layout entry (_extra_state) must be a dict with a 'layout', got {checkpoint!r}"
        )
    if checkpoint.get("format", FORMAT) > FORMAT:
        raise ValueError(
            f"the checkpoint's layout entry has format {checkpoint['format']}, newer than this ocrformer's "
            f"({FORMAT}); update ocrformer"
        )
    differences = [
        f"{key}={checkpoint.get(key)!r} (model: {model[key]!r})"
        for key in model
        if key not in ("format", "layout") and checkpoint.get(key) != model[key]
    ]
    if differences:
        raise ValueError(
            f"this checkpoint is for a network of layout {checkpoint['layout']!r}, but the model was built with "
            f"layout {model['layout']!r}; they compute different functions: {'; '.join(differences)}. Build the "
            f"model for the checkpoint: create_model(name, num_classes, layout={checkpoint['layout']!r}) "
            "or ocrformer.models.load_model(checkpoint)"
        )
