"""Named models: ``create_model("ocrnet_hrnet_w48", num_classes=19)``.

Names are ``{prefix}_{backbone}``. The prefix names the head (``HEAD_PREFIXES``): ``ocrnet`` for OCR, ``fcn`` for
the baseline without OCR, and the networks whose context modules the OCR paper compares with -- ``pspnet``,
``deeplabv3``, ``danet``, ``ocnet``, ``ccnet``, ``isanet``, ``a2net``. The backbone is one of the entries below.
Each entry fixes the timm model and its settings; keyword arguments to ``create_model`` override them (any
``OCRNet`` argument, ``layout`` included). ``weights=`` builds the model a checkpoint was made for and loads it.

SegFix networks (``SegFixNet``, boundary refinement) are named ``segfix_{backbone}`` over the same backbone
entries: ``create_segfix_model("segfix_hrnet_w48")``, ``list_segfix_models()``.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from .ocrnet import OCRNet
from .panoptic_fpn import PanopticFPN
from .panoptic_fusion import scaled_stuff_area
from .segfix import SegFixNet

__all__ = [
    "HEAD_PREFIXES",
    "PANOPTIC_PRESETS",
    "create_model",
    "create_panoptic_model",
    "create_segfix_model",
    "list_models",
    "list_segfix_models",
    "read_weights",
    "segfix_models_for_backbone",
]

# backbone entry -> OCRNet keyword arguments
_BACKBONES: dict[str, dict] = {
    "hrnet_w48": {"backbone": "hrnet_w48"},
    "hrnet_w32": {"backbone": "hrnet_w32"},
    "hrnet_w18": {"backbone": "hrnet_w18"},
    "hrnet_w18_small": {"backbone": "hrnet_w18_small"},
    "hrnet_w18_small_v2": {"backbone": "hrnet_w18_small_v2"},
    # Dilated ResNets (output stride 8): OCR on layer4, the soft regions from layer3. The stem depends on the
    # layout (timm's 7x7 stem for ocrformer's own models, the 3x3 deep stems of openseg and mmsegmentation).
    "resnet101_d8": {"backbone": "resnet101", "backbone_kwargs": {"output_stride": 8}},
    "resnet50_d8": {"backbone": "resnet50", "backbone_kwargs": {"output_stride": 8}},
    # Small enough for the tests and the CPU demo: ResNet-10-T's stem and first stage (stride 4, 64 channels,
    # a receptive field of about 31 pixels -- deliberately local, so that context has to come from OCR),
    # narrow OCR widths.
    "tiny": {
        "backbone": "resnet10t",
        "backbone_kwargs": {"out_indices": (1,), "features": "last"},
        "mid_channels": 32,
        "key_channels": 16,
    },
}
# ``OCRNet(head=...)`` key -> the model-name prefix of that head (no underscore: names split at the first one).
HEAD_PREFIXES: dict[str, str] = {
    "fcn": "fcn",
    "ppm": "pspnet",
    "aspp": "deeplabv3",
    "danet": "danet",
    "self_attention": "ocnet",  # OCNet's base object context
    "criss_cross": "ccnet",
    "isa": "isanet",
    "double_attention": "a2net",
    "ocr": "ocrnet",
}
_HEADS = {prefix: head for head, prefix in HEAD_PREFIXES.items()}  # prefix -> head
# Where a converted or saved context head keeps its attention key width (dim 0): read back as key_channels.
_KEY_WIDTH_KEYS = {
    "self_attention": "context.attention.query.0.conv.weight",
    "isa": "context.long_range.query.0.conv.weight",
}


def list_models() -> list[str]:
    """Every registered name: OCR's first, then the FCN baseline's, then the other heads' (``HEAD_PREFIXES``)."""
    prefixes = ["ocrnet", "fcn", *(p for p in HEAD_PREFIXES.values() if p not in ("ocrnet", "fcn"))]
    return [f"{prefix}_{backbone}" for prefix in prefixes for backbone in _BACKBONES]


def create_model(
    name: str,
    num_classes: int | None = None,
    *,
    weights: Mapping | str | Path | None = None,
    **overrides,
) -> OCRNet:
    """Build a registered model with random weights (``pretrained=False``) unless told otherwise.

    Args:
        name: a registered name (``list_models()``).
        num_classes: K; may be left out when ``weights`` are given (read from the classifier's shape).
        weights: an ocrformer state dict -- converted by ``ocrformer.convert`` or written by ocrformer --, a
            released HRNet-OCR / openseg / mmsegmentation checkpoint (converted here), or a path to one of these
            (a training checkpoint's ``"model"`` is taken). The model is built for the layout the weights record
            (``ocrformer.layouts``) with the head widths their shapes give, and loaded strictly.
        **overrides: any ``OCRNet`` argument.
    """
    if not isinstance(name, str):
        raise ValueError(
            f"create_model: name must be a str (a registered model name, see list_models()), "
            f"got {type(name).__name__} {name!r}"
        )
    head, _, backbone = name.partition("_")
    if head not in _HEADS or backbone not in _BACKBONES:
        raise ValueError(f"unknown model {name!r}; known: {list_models()}")
    kwargs = {**_BACKBONES[backbone], "head": _HEADS[head]}
    state = None
    if weights is not None:
        state = read_weights(weights)
        kwargs.update(_settings_from_weights(state, _HEADS[head]))
        num_classes = _classes_from_weights(state, num_classes)
    if num_classes is None:
        raise ValueError(f"create_model({name!r}): num_classes is needed when no weights are given")
    model = OCRNet(num_classes=num_classes, **{**kwargs, **overrides})
    if state is not None:
        model.load_state_dict(state, strict=True)
    return model


def read_weights(weights: Mapping | str | Path) -> dict[str, torch.Tensor]:
    """An ocrformer state dict from a mapping or a file: a converted checkpoint, a ``state_dict()``, a training
    checkpoint (its ``"model"``), or a released checkpoint (converted by ``ocrformer.convert``)."""
    if isinstance(weights, (str, Path)):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
        try:
            weights = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # a training checkpoint: it holds RNG states, read by the trainer's reader
            from ..engine.checkpoint import load_checkpoint  # here: the engine imports this module

            weights = load_checkpoint(path)
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be a state dict (a mapping of names to tensors), got {type(weights).__name__}")
    if isinstance(weights.get("model"), Mapping) and "_extra_state" in weights["model"]:
        weights = weights["model"]  # a training checkpoint
    if "_extra_state" not in weights:  # a released checkpoint? (HRNet-OCR, openseg, mmseg: converted here)
        from ..convert import convert_checkpoint  # here: convert is a command-line module

        try:
            with warnings.catch_warnings(record=True) as caught:  # keys left out: named, as the converter does
                warnings.simplefilter("always")
                weights = convert_checkpoint(weights)
        except ValueError as error:
            raise ValueError(
                "these weights have no _extra_state entry (the layout ocrformer records) and are no released "
                f"checkpoint ocrformer converts ({error}); convert a released checkpoint first "
                "(python -m ocrformer.convert IN OUT)"
            ) from error
        for warning in caught:
            warnings.warn(warning.message, stacklevel=3)
    return dict(weights)


def _settings_from_weights(state: Mapping, head: str) -> dict:
    """OCRNet arguments that the weights fix: the layout and encoder heads (from the layout entry), the
    alignment, and the head widths (from the shapes)."""
    entry = state["_extra_state"]
    settings = {"layout": entry["layout"], "align_corners": entry["align_corners"]}
    shape = {k.removeprefix("head."): tuple(v.shape) for k, v in state.items() if k.startswith("head.")}
    if head == "ocr" and "decoder.queries" in shape and "encoder.query_proj.0.conv.weight" in shape:
        settings.update(
            num_heads=entry["num_heads"],
            mid_channels=shape["classifier.weight"][1],
            key_channels=shape["encoder.query_proj.0.conv.weight"][0],
            region_channels=shape["decoder.queries"][1],
        )
    elif head != "ocr" and "aux.2.weight" in shape and "classifier.weight" in shape:
        # FCNHead and ContextHead: the classifier reads the context module's mid_channels-wide output.
        settings.update(mid_channels=shape["classifier.weight"][1], region_channels=shape["aux.2.weight"][1])
        if _KEY_WIDTH_KEYS.get(head) in shape:
            settings["key_channels"] = shape[_KEY_WIDTH_KEYS[head]][0]
    return settings


def _classes_from_weights(state: Mapping, num_classes: int | None) -> int | None:
    weight = state.get("head.classifier.weight")
    if weight is None:
        return num_classes
    if num_classes is not None and num_classes != weight.shape[0]:
        raise ValueError(f"num_classes={num_classes}, but the weights classify {weight.shape[0]} classes")
    return weight.shape[0]


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
    if not isinstance(name, str):
        raise ValueError(
            f"create_panoptic_model: name must be a str (one of {sorted(PANOPTIC_PRESETS)}), "
            f"got {type(name).__name__} {name!r}"
        )
    if name not in PANOPTIC_PRESETS:
        raise ValueError(f"unknown panoptic model {name!r}; known: {sorted(PANOPTIC_PRESETS)}")
    return PanopticFPN(num_thing_classes, num_stuff_classes, ocr=ocr, **{**PANOPTIC_PRESETS[name], **overrides})


# SegFix: ``segfix_{backbone}`` for every backbone entry above. The entry's timm model and ``backbone_kwargs`` are
# taken; its OCR head widths are not (SegFix has no OCR head). Both branches are 256 wide as upstream's, except
# for the ``tiny`` test backbone, whose branches are as narrow as its OCR head.
SEGFIX_PREFIX = "segfix"
_SEGFIX_MID_CHANNELS = {"tiny": 32}


def list_segfix_models() -> list[str]:
    """Every SegFix preset name: ``segfix_{backbone}`` for each backbone entry of ``create_model``."""
    return [f"{SEGFIX_PREFIX}_{backbone}" for backbone in _BACKBONES]


def segfix_models_for_backbone(backbone: str) -> list[str]:
    """The SegFix presets built on the timm model ``backbone`` (what a ``SegFixNet`` state dict records)."""
    return [f"{SEGFIX_PREFIX}_{entry}" for entry, kwargs in _BACKBONES.items() if kwargs["backbone"] == backbone]


def create_segfix_model(name: str, *, weights: Mapping | str | Path | None = None, **overrides) -> SegFixNet:
    """A SegFix network on a registered backbone (random weights unless told otherwise).

    Args:
        name: ``segfix_{backbone}`` (``list_segfix_models()``), e.g. ``"segfix_hrnet_w48"`` (upstream's
            Cityscapes SegFix), ``"segfix_hrnet_w18"``, ``"segfix_tiny"`` (tests).
        weights: a ``SegFixNet`` state dict, a file holding one, or a ``SegFixTrainer`` checkpoint (its
            ``"model"``); loaded strictly, and refused when made for another backbone, number of directions or
            boundary width (the state dict's ``_extra_state``).
        **overrides: any ``SegFixNet`` argument (``num_directions``, ``boundary_width``, ``mid_channels``,
            ``backbone_kwargs``, the loss settings...).
    """
    if not isinstance(name, str):
        raise ValueError(
            f"create_segfix_model: name must be a str (see list_segfix_models()), got {type(name).__name__} {name!r}"
        )
    prefix, _, backbone = name.partition("_")
    if prefix != SEGFIX_PREFIX or backbone not in _BACKBONES:
        raise ValueError(f"unknown SegFix model {name!r}; known: {list_segfix_models()}")
    entry = _BACKBONES[backbone]
    kwargs: dict = {"backbone": entry["backbone"]}
    if "backbone_kwargs" in entry:
        kwargs["backbone_kwargs"] = dict(entry["backbone_kwargs"])
    if backbone in _SEGFIX_MID_CHANNELS:
        kwargs["mid_channels"] = _SEGFIX_MID_CHANNELS[backbone]
    model = SegFixNet(**{**kwargs, **overrides})
    if weights is not None:
        model.load_state_dict(_segfix_state(weights), strict=True)
    return model


def _segfix_state(weights: Mapping | str | Path) -> Mapping:
    if isinstance(weights, (str, Path)):
        from ..engine.checkpoint import load_checkpoint  # here: the engine imports this module

        weights = load_checkpoint(weights)
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be a state dict (a mapping of names to tensors), got {type(weights).__name__}")
    if isinstance(weights.get("model"), Mapping):  # a training checkpoint
        weights = weights["model"]
    return weights
