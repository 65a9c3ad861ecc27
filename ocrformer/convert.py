"""Convert released OCRNet checkpoints to ocrformer's parameter names, recording whose network they are.

    from ocrformer.convert import convert_checkpoint
    from ocrformer import create_model
    sd = convert_checkpoint(torch.load("hrnet_ocr_cs_8162_torch11.pth", map_location="cpu"))  # source detected
    model = create_model("ocrnet_hrnet_w48", weights=sd)   # built for the checkpoint's layout, loaded strictly

Command line: ``python -m ocrformer.convert IN.pth OUT.pth [--source hrnet-ocr|openseg|mmseg]``.

Sources (``ocrformer.layouts`` has what each network computes; every difference below was read in that code):

``"hrnet-ocr"``  HRNet-Semantic-Segmentation, branch HRNet-OCR (``lib/models/seg_hrnet_ocr.py``): a flat dict
                 ``model.<name>`` (``FullModel``) with ``loss.criterion.weight`` beside it (left out, with a
                 warning). Head: ``aux_head.{0,1,3}`` (Conv1x1 with bias + BN + ReLU + Conv1x1),
                 ``conv3x3_ocr.{0,1}`` (Conv3x3 with bias + BN), ``ocr_distri_head.object_context_block.
                 f_{pixel,object,down,up}`` (bias-free convs; BN inside ``BNReLU`` as ``.1.0``/``.3.0``),
                 ``ocr_distri_head.conv_bn_dropout.{0,1.0}``, ``cls_head``. Backbone: the HRNet names at the top
                 level (``conv1``, ``bn1``, ``layer1``, ``transition*``, ``stage*``), the same as timm's.
``"openseg"``    openseg.pytorch (``lib/models/nets/hrnet.py`` ``HRNet_W48_OCR``, ``lib/models/nets/ocrnet.py``
                 ``SpatialOCRNet``), saved as ``{"config_dict", "state_dict": {"module.<name>"}}`` with
                 ``bn_type "torchbn"``/``"torchsyncbn"``. HRNet head: ``aux_head.{0,1.0,2}`` (a **3x3** first
                 conv), ``conv3x3.{0,1.0}``, ``ocr_distri_head.*`` as above but **every conv with a bias**,
                 ``cls_head``. ResNet head: ``dsn_head.{0,1.0,3}`` (Conv3x3 1024 -> 512 + BN + ReLU +
                 Dropout2d(0.05) + Conv1x1), ``conv_3x3.{0,1.0}``, ``spatial_ocr_head.*``, ``head``. Backbones
                 under ``backbone.``: HRNet with the official names; the deep-base ResNet's stem as
                 ``resinit.{conv1,bn1,conv2,bn2,conv3,bn3}`` (-> timm's ``conv1.{0,1,3,4,6}``, ``bn1``), its
                 stages as ``layer1-4`` (timm's names). Refused: ``bn_type "inplace_abn"`` files (openseg's
                 published models), whose ``InPlaceABNSync`` computes ``LeakyReLU(0.01)`` and scales by
                 ``|weight| + eps`` -- another function, which ocrformer does not build -- and D16 backbones.
``"mmseg"``      mmsegmentation's ``CascadeEncoderDecoder`` OCRNet, ``{"meta", "state_dict"}`` or bare:
                 ``decode_head.0`` = FCNHead (``convs.0.{conv,bn}``, ``conv_seg``), ``decode_head.1`` = OCRHead
                 (``bottleneck``, ``object_context_block.{query,key}_project.{0,1}``, ``value_project``,
                 ``out_project``, ``bottleneck``; ``conv_seg``); no conv biases before BN (ConvModule).
                 Backbone ``backbone.*``: HRNet with the official names; ResNetV1c's deep stem as
                 ``stem.{0,1,3,4,6,7}`` (-> timm's ``conv1.{0,1,3,4,6}``, ``bn1``), stages as ``layer1-4``.

What carries over unchanged: the OCR head's arithmetic is the same in all three (spatial softmax of the
region logits at scale 1, key-channel scaling ``Dk^-0.5``, ``cat([context, pixels])`` before the fusion conv);
ocrformer's ``OCRHead`` computes it as cross-attention (``ocrformer.ocr``). Conv biases that a source puts in
front of a BatchNorm are folded into that BatchNorm's ``running_mean`` (``BN(x + b)`` with mean ``m`` equals
``BN(x)`` with mean ``m - b``; in training the batch mean absorbs ``b``), so outputs are unchanged.

Output: head parameters under ``head.`` in ``OCRHead``'s names, backbone parameters under ``backbone.`` in
timm's names, and ``_extra_state``: the layout entry (``ocrformer.layouts.layout_signature``) that makes
``OCRNet.load_state_dict`` refuse a model that would compute another function. A missing head key is an
error naming every missing key; a key that is neither head nor backbone is named in a warning, never dropped
silently; a checkpoint of no known layout is refused with what each layout looks like.
"""

from __future__ import annotations

import argparse
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ._atomic import atomic_write
from .layouts import LAYOUTS, layout_signature

__all__ = ["SOURCES", "convert_checkpoint", "detect_source"]

SOURCES = ("hrnet-ocr", "openseg", "mmseg")
_BN_KEYS = ("weight", "bias", "running_mean", "running_var")
# Wrappers that training scripts put in front of every key: DataParallel/DDP's ``module.``, the
# HRNet-Semantic-Segmentation ``FullModel``'s ``model.``.
_PREFIXES = ("module.", "model.")


@dataclass(frozen=True)
class _HeadNames:
    """Where one source keeps each part of the OCR head (module paths in its state dict)."""

    region: tuple[str, str]  # the soft-region branch's hidden conv and its BN
    region_classifier: str  # its 1x1 classifier = the category queries
    pixels: tuple[str, str]  # the 3x3 conv + BN of the pixel representation
    block: str  # the object-context block
    block_style: str  # "classic" (f_pixel/f_object/f_down/f_up with BNReLU) or "mmseg" (ConvModules)
    fuse: tuple[str, str]  # the 1x1 conv + BN over [context, pixels]
    classifier: str


_HEADS: dict[tuple[str, str], _HeadNames] = {
    ("hrnet-ocr", "hrnet"): _HeadNames(
        region=("aux_head.0", "aux_head.1"),
        region_classifier="aux_head.3",
        pixels=("conv3x3_ocr.0", "conv3x3_ocr.1"),
        block="ocr_distri_head.object_context_block",
        block_style="classic",
        fuse=("ocr_distri_head.conv_bn_dropout.0", "ocr_distri_head.conv_bn_dropout.1.0"),
        classifier="cls_head",
    ),
    ("openseg", "hrnet"): _HeadNames(
        region=("aux_head.0", "aux_head.1.0"),
        region_classifier="aux_head.2",
        pixels=("conv3x3.0", "conv3x3.1.0"),
        block="ocr_distri_head.object_context_block",
        block_style="classic",
        fuse=("ocr_distri_head.conv_bn_dropout.0", "ocr_distri_head.conv_bn_dropout.1.0"),
        classifier="cls_head",
    ),
    ("openseg", "last_two"): _HeadNames(
        region=("dsn_head.0", "dsn_head.1.0"),
        region_classifier="dsn_head.3",
        pixels=("conv_3x3.0", "conv_3x3.1.0"),
        block="spatial_ocr_head.object_context_block",
        block_style="classic",
        fuse=("spatial_ocr_head.conv_bn_dropout.0", "spatial_ocr_head.conv_bn_dropout.1.0"),
        classifier="head",
    ),
}
for _family in ("hrnet", "last_two"):
    _HEADS["mmseg", _family] = _HeadNames(
        region=("decode_head.0.convs.0.conv", "decode_head.0.convs.0.bn"),
        region_classifier="decode_head.0.conv_seg",
        pixels=("decode_head.1.bottleneck.conv", "decode_head.1.bottleneck.bn"),
        block="decode_head.1.object_context_block",
        block_style="mmseg",
        fuse=("decode_head.1.object_context_block.bottleneck.conv", "decode_head.1.object_context_block.bottleneck.bn"),
        classifier="decode_head.1.conv_seg",
    )

# The object-context block's conv + BN pairs: ocrformer module <- (classic names, mmseg names), relative to the block.
_BLOCK = [
    ("encoder.query_proj.0", ("f_pixel.0", "f_pixel.1.0"), ("query_project.0.conv", "query_project.0.bn")),
    ("encoder.query_proj.1", ("f_pixel.2", "f_pixel.3.0"), ("query_project.1.conv", "query_project.1.bn")),
    ("encoder.key_proj.0", ("f_object.0", "f_object.1.0"), ("key_project.0.conv", "key_project.0.bn")),
    ("encoder.key_proj.1", ("f_object.2", "f_object.3.0"), ("key_project.1.conv", "key_project.1.bn")),
    ("encoder.value_proj", ("f_down.0", "f_down.1.0"), ("value_project.conv", "value_project.bn")),
    ("encoder.out_proj", ("f_up.0", "f_up.1.0"), ("out_project.conv", "out_project.bn")),
]

# Backbone keys: (source, family) -> (the prefix the backbone has in the source, stem renames to timm's names).
_HRNET_TOP_LEVEL = ("conv1.", "bn1.", "conv2.", "bn2.", "layer1.", "transition", "stage")  # official: no prefix
_STEM_RENAMES = {
    ("openseg", "last_two"): {
        "resinit.conv1.": "conv1.0.",
        "resinit.bn1.": "conv1.1.",
        "resinit.conv2.": "conv1.3.",
        "resinit.bn2.": "conv1.4.",
        "resinit.conv3.": "conv1.6.",
        "resinit.bn3.": "bn1.",
    },
    ("mmseg", "last_two"): {
        "stem.0.": "conv1.0.",
        "stem.1.": "conv1.1.",
        "stem.3.": "conv1.3.",
        "stem.4.": "conv1.4.",
        "stem.6.": "conv1.6.",
        "stem.7.": "bn1.",
    },
}

# One key that only each source's OCR head has (after prefixes are stripped), and what the layouts look like,
# for the error message when none matches.
_MARKERS = {
    ("hrnet-ocr", "hrnet"): "conv3x3_ocr.0.weight",
    ("openseg", "hrnet"): "conv3x3.0.weight",
    ("openseg", "last_two"): "conv_3x3.0.weight",
    ("mmseg", None): "decode_head.1.object_context_block.query_project.0.conv.weight",
}
_EXPECTED = (
    "official HRNet-OCR (conv3x3_ocr.*, aux_head.*, ocr_distri_head.*, cls_head.*, usually behind 'model.'); "
    "openseg (HRNet_W48_OCR: conv3x3.*, aux_head.*, ocr_distri_head.*, cls_head.*; SpatialOCRNet: conv_3x3.*, "
    "dsn_head.*, spatial_ocr_head.*, head.*; behind 'module.'); "
    "mmsegmentation (decode_head.0.* FCNHead, decode_head.1.* OCRHead, backbone.*)"
)


def _unwrap(checkpoint: Mapping) -> Mapping:
    """The state dict inside a checkpoint file's top-level dict (``state_dict``/``model`` entries)."""
    for key in ("state_dict", "model"):
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner
    return checkpoint


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def _mmseg_family(keys: set[str], state: Mapping[str, torch.Tensor]) -> str:
    if any(k.startswith("backbone.stage4.") for k in keys):
        return "hrnet"
    if any(k.startswith("backbone.layer4.") for k in keys):
        return "last_two"
    # No backbone in the file: the FCNHead's conv is 1x1 over the HRNet concatenation, 3x3 on ResNet's layer3.
    weight = state.get("decode_head.0.convs.0.conv.weight")
    return "hrnet" if weight is not None and weight.shape[-1] == 1 else "last_two"


def detect_source(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, str]:
    """``(source, features)`` of a released OCRNet checkpoint: the codebase (``SOURCES``) and how its OCR head
    reads the backbone (``"hrnet"`` or ``"last_two"`` for a dilated ResNet).

    Raises:
        ValueError: no known layout; the message says what each layout looks like.
    """
    return _detect({_strip_prefixes(k): v for k, v in _unwrap(state_dict).items()})


def _detect(state: Mapping[str, torch.Tensor]) -> tuple[str, str]:
    """``detect_source`` on a state dict whose wrapper prefixes are stripped."""
    for (source, family), marker in _MARKERS.items():
        if marker in state:
            return source, family if family is not None else _mmseg_family(set(state), state)
    sample = ", ".join(sorted(state)[:6]) if state else "nothing"
    raise ValueError(
        f"cannot recognise the checkpoint's layout: expected one of {_EXPECTED}; it has {len(state)} keys, "
        f"e.g. {sample}"
    )


_INPLACE_ABN = (
    "InPlaceABNSync layers compute LeakyReLU(0.01) and scale by |weight| + eps: another function than "
    "BatchNorm + ReLU, which ocrformer does not build (openseg checkpoints trained with bn_type 'torchbn' or "
    "'torchsyncbn' convert)"
)


def _check_openseg(checkpoint: Mapping, src: Mapping[str, torch.Tensor], names: _HeadNames) -> None:
    """Refuse openseg files that would convert to another function than the network ocrformer builds:
    ``bn_type "inplace_abn"`` heads (``BNReLU`` is one ``InPlaceABNSync``: keys ``X.1.weight``, not ``X.1.0.*``),
    InPlaceABN backbones (``hrnet_backbone.py`` hard-codes the backbone's norm type whatever ``bn_type`` says:
    ``inplace_abn`` in some versions -- no ``num_batches_tracked`` buffers -- ``torchsyncbn`` in others), model
    variants and output stride 16 (named by the file's ``config_dict``)."""
    pixel_bn = names.pixels[1]  # "conv3x3.1.0": BatchNorm inside BNReLU
    config = checkpoint.get("config_dict")
    network = config.get("network", {}) if isinstance(config, Mapping) else {}
    if network.get("bn_type") == "inplace_abn" or (
        f"{pixel_bn.removesuffix('.0')}.weight" in src and f"{pixel_bn}.weight" not in src
    ):
        raise ValueError(f"this openseg checkpoint was trained with bn_type 'inplace_abn': its {_INPLACE_ABN}")
    norms = [k.removesuffix(".running_var") for k in src if k.startswith("backbone.") and k.endswith(".running_var")]
    if norms and not any(f"{norm}.num_batches_tracked" in src for norm in norms):
        raise ValueError(
            f"this openseg checkpoint's backbone norms have no num_batches_tracked (e.g. {norms[0]}): they are "
            f"InPlaceABNSync layers (openseg's hrnet_backbone.py hard-codes bn_type 'inplace_abn' in some "
            f"versions); {_INPLACE_ABN}"
        )
    model = network.get("model_name")
    if model is not None and model not in ("hrnet_w48_ocr", "spatial_ocrnet"):
        raise ValueError(
            f"openseg model {model!r}: ocrformer converts 'hrnet_w48_ocr' (HRNet_W48_OCR) and 'spatial_ocrnet' "
            "(SpatialOCRNet); the variants change the head"
        )
    dilation = re.search(r"dilated(\d+)", network.get("backbone", ""))
    if dilation and dilation.group(1) != "8":
        raise ValueError(
            f"openseg backbone {network['backbone']!r} has output stride {dilation.group(1)}; ocrformer's dilated "
            "ResNets have output stride 8 (dilated8)"
        )


def convert_checkpoint(state_dict: Mapping[str, torch.Tensor], source: str | None = None) -> dict:
    """Map a released OCRNet checkpoint onto ocrformer names (see the module docstring).

    Args:
        state_dict: the checkpoint's state dict, or the dict ``torch.load`` returned for the file.
        source: ``"hrnet-ocr"``, ``"openseg"`` or ``"mmseg"``; ``None`` (default) detects it (``detect_source``).

    Returns:
        ``{"head.<OCRHead key>": tensor, ..., "backbone.<timm key>": tensor, ..., "_extra_state": layout entry}``.

    Raises:
        ValueError: an unknown or wrong ``source``, an unrecognised layout, an openseg file of another function
            (InPlaceABN, a model variant, output stride 16), or head keys missing from the checkpoint (all of
            them are named).

    Warns:
        UserWarning naming every key that is neither head nor backbone (e.g. a loss's class weights); those
        keys are left out of the result.
    """
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {list(SOURCES)}, got {source!r}")
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
    src = {_strip_prefixes(k): v for k, v in _unwrap(state_dict).items()}
    detected, family = _detect(src)
    if source is not None and source != detected:
        raise ValueError(
            f"convert_checkpoint(source={source!r}): this checkpoint has the {detected!r} layout "
            f"({LAYOUTS[detected].description}); pass source={detected!r} or leave source out"
        )
    source = detected
    names = _HEADS[source, family]
    if source == "openseg":
        _check_openseg(state_dict, src, names)
    out, used = _convert_head(src, names, source)
    out.update(_convert_backbone(src, used, source, family))
    out["_extra_state"] = layout_signature(LAYOUTS[source], family, stride=4 if family == "hrnet" else 8)
    return out


def _convert_head(src: Mapping[str, torch.Tensor], names: _HeadNames, source: str) -> tuple[dict, set[str]]:
    """The OCR head's tensors under ``head.``, and the source keys they used."""
    used: set[str] = set()
    missing: list[str] = []
    out: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor | None:
        if key not in src:
            missing.append(key)
            return None
        used.add(key)
        return src[key]

    style = 0 if names.block_style == "classic" else 1
    pairs = [("decoder.key_proj", *names.region), ("decoder.value_proj", *names.pixels), ("encoder.fuse", *names.fuse)]
    pairs += [(target, f"{names.block}.{p[style][0]}", f"{names.block}.{p[style][1]}") for target, *p in _BLOCK]
    for target, conv, bn in pairs:
        out[f"head.{target}.conv.weight"] = take(f"{conv}.weight")
        for name in _BN_KEYS:
            out[f"head.{target}.bn.{name}"] = take(f"{bn}.{name}")
        tracked = f"{bn}.num_batches_tracked"  # absent from checkpoints older than PyTorch 0.4.1
        out[f"head.{target}.bn.num_batches_tracked"] = src.get(tracked, torch.tensor(0, dtype=torch.long))
        used.add(tracked)
        mean, bias = out[f"head.{target}.bn.running_mean"], src.get(f"{conv}.bias")
        if bias is not None and mean is not None:  # a bias in front of BN: fold it into the running mean
            out[f"head.{target}.bn.running_mean"] = mean - bias.to(mean.dtype)
            used.add(f"{conv}.bias")
    queries = take(f"{names.region_classifier}.weight")
    out["head.decoder.query_bias"] = take(f"{names.region_classifier}.bias")
    out["head.classifier.weight"] = take(f"{names.classifier}.weight")
    out["head.classifier.bias"] = take(f"{names.classifier}.bias")
    if missing:
        raise ValueError(
            f"convert_checkpoint(source={source!r}): the checkpoint lacks {len(missing)} OCR head keys: "
            + ", ".join(missing)
            + (f" (it has e.g. {sorted(src)[:5]})" if src else " (it is empty)")
        )
    out["head.decoder.queries"] = queries.reshape(queries.shape[0], -1)  # 1x1 conv (K, C, 1, 1) -> (K, C)
    return out, used


def _convert_backbone(src: Mapping[str, torch.Tensor], used: set[str], source: str, family: str) -> dict:
    """Backbone tensors under ``backbone.`` in timm's names; warns about keys that are neither head nor backbone."""
    renames = _STEM_RENAMES.get((source, family), {})
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in src.items():
        if key in used:
            continue
        if source == "hrnet-ocr" and key.startswith(_HRNET_TOP_LEVEL):
            name = key
        elif source != "hrnet-ocr" and key.startswith("backbone."):
            name = key.removeprefix("backbone.")
            for old, new in renames.items():
                if name.startswith(old):
                    name = new + name[len(old) :]
                    break
        else:
            unknown.append(key)
            continue
        out["backbone." + name] = value
    if unknown:
        warnings.warn(
            f"convert_checkpoint(source={source!r}): {len(unknown)} keys are neither OCR head nor backbone "
            f"and were left out: {', '.join(sorted(unknown))}",
            stacklevel=3,
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ocrformer.convert", description=__doc__.split("\n\n")[0].replace("\n", " ")
    )
    parser.add_argument("input", help="released checkpoint (.pth)")
    parser.add_argument("output", help="where to write the converted state dict")
    parser.add_argument("--source", choices=SOURCES, help="the codebase it comes from (default: detected)")
    args = parser.parse_args(argv)
    try:
        converted = convert_checkpoint(torch.load(args.input, map_location="cpu", weights_only=True), args.source)
    except ValueError as error:
        raise SystemExit(f"{args.input}: {error}") from error
    atomic_write(args.output, lambda partial: torch.save(converted, partial))  # no torn file if interrupted
    entry = converted["_extra_state"]
    kind = "HRNet" if entry["features"] == "hrnet" else "dilated ResNet"
    classes = converted["head.classifier.weight"].shape[0]
    print(
        f"wrote {len(converted) - 1} tensors to {args.output}: a {LAYOUTS[entry['layout']].description} OCRNet "
        f"({kind}, {classes} classes). Load it with ocrformer.create_model(<model name>, weights={args.output!r}) "
        f"or python -m ocrformer.predict --model <model name> --checkpoint {args.output} ..."
    )


if __name__ == "__main__":
    main()
