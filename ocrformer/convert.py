"""Convert released OCRNet checkpoints to ocrformer's parameter names.

    from ocrformer.convert import convert_checkpoint
    sd = convert_checkpoint(torch.load("hrnet_ocr_cs_8162_torch11.pth", map_location="cpu"))
    head.load_state_dict({k[len("head."):]: v for k, v in sd.items() if k.startswith("head.")})

Sources:
    ``"hrnet-ocr"``  HRNet-Semantic-Segmentation's ``seg_hrnet_ocr.py`` (keys ``conv3x3_ocr.*``, ``aux_head.*``,
                     ``ocr_distri_head.*``, ``cls_head.*`` beside the HRNet backbone keys, usually behind a
                     ``model.`` and/or ``module.`` prefix).
    ``"mmseg"``      mmsegmentation's OCRNet (``decode_head.0`` = FCN aux head, ``decode_head.1`` = OCRHead,
                     ``backbone.*``), as a bare state dict or the ``{"state_dict": ..., "meta": ...}`` file.

Output: head parameters under ``head.`` in ``OCRHead``'s names; backbone parameters under ``backbone.``, their
names otherwise unchanged. Conv biases that the classic layout puts in front of a BatchNorm are folded into
that BatchNorm's ``running_mean`` (``BN(x + b)`` with mean ``m`` equals ``BN(x)`` with mean ``m - b``, in
inference and, since the batch mean absorbs ``b``, in training as well), so outputs are unchanged.

Command line: ``python -m ocrformer.convert IN.pth OUT.pth [--source hrnet-ocr|mmseg]``.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Mapping

import torch

__all__ = ["SOURCES", "convert_checkpoint"]

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")

# Each source: (ocrformer conv+BN module, source conv, source BN) triples, and plain tensor renames.
_HRNET_OCB = "ocr_distri_head.object_context_block"
_MMSEG_OCB = "decode_head.1.object_context_block"
_CONV_BN: dict[str, list[tuple[str, str, str]]] = {
    "hrnet-ocr": [
        ("decoder.key_proj", "aux_head.0", "aux_head.1"),
        ("decoder.value_proj", "conv3x3_ocr.0", "conv3x3_ocr.1"),
        ("encoder.query_proj.0", f"{_HRNET_OCB}.f_pixel.0", f"{_HRNET_OCB}.f_pixel.1.0"),
        ("encoder.query_proj.1", f"{_HRNET_OCB}.f_pixel.2", f"{_HRNET_OCB}.f_pixel.3.0"),
        ("encoder.key_proj.0", f"{_HRNET_OCB}.f_object.0", f"{_HRNET_OCB}.f_object.1.0"),
        ("encoder.key_proj.1", f"{_HRNET_OCB}.f_object.2", f"{_HRNET_OCB}.f_object.3.0"),
        ("encoder.value_proj", f"{_HRNET_OCB}.f_down.0", f"{_HRNET_OCB}.f_down.1.0"),
        ("encoder.out_proj", f"{_HRNET_OCB}.f_up.0", f"{_HRNET_OCB}.f_up.1.0"),
        ("encoder.fuse", "ocr_distri_head.conv_bn_dropout.0", "ocr_distri_head.conv_bn_dropout.1.0"),
    ],
    "mmseg": [
        ("decoder.key_proj", "decode_head.0.convs.0.conv", "decode_head.0.convs.0.bn"),
        ("decoder.value_proj", "decode_head.1.bottleneck.conv", "decode_head.1.bottleneck.bn"),
        ("encoder.query_proj.0", f"{_MMSEG_OCB}.query_project.0.conv", f"{_MMSEG_OCB}.query_project.0.bn"),
        ("encoder.query_proj.1", f"{_MMSEG_OCB}.query_project.1.conv", f"{_MMSEG_OCB}.query_project.1.bn"),
        ("encoder.key_proj.0", f"{_MMSEG_OCB}.key_project.0.conv", f"{_MMSEG_OCB}.key_project.0.bn"),
        ("encoder.key_proj.1", f"{_MMSEG_OCB}.key_project.1.conv", f"{_MMSEG_OCB}.key_project.1.bn"),
        ("encoder.value_proj", f"{_MMSEG_OCB}.value_project.conv", f"{_MMSEG_OCB}.value_project.bn"),
        ("encoder.out_proj", f"{_MMSEG_OCB}.out_project.conv", f"{_MMSEG_OCB}.out_project.bn"),
        ("encoder.fuse", f"{_MMSEG_OCB}.bottleneck.conv", f"{_MMSEG_OCB}.bottleneck.bn"),
    ],
}
_RENAMES: dict[str, list[tuple[str, str]]] = {
    "hrnet-ocr": [
        ("decoder.queries", "aux_head.3.weight"),
        ("decoder.query_bias", "aux_head.3.bias"),
        ("classifier.weight", "cls_head.weight"),
        ("classifier.bias", "cls_head.bias"),
    ],
    "mmseg": [
        ("decoder.queries", "decode_head.0.conv_seg.weight"),
        ("decoder.query_bias", "decode_head.0.conv_seg.bias"),
        ("classifier.weight", "decode_head.1.conv_seg.weight"),
        ("classifier.bias", "decode_head.1.conv_seg.bias"),
    ],
}
# Wrappers that training scripts put in front of every key (DataParallel's ``module.``, the
# HRNet-Semantic-Segmentation ``FullModel``'s ``model.``).
_PREFIXES = {"hrnet-ocr": ("module.", "model."), "mmseg": ("module.",)}
# Top-level module names of the HRNet backbone inside the classic segmentation model.
_HRNET_BACKBONE = ("conv1.", "bn1.", "conv2.", "bn2.", "layer1.", "transition", "stage")
SOURCES = tuple(_CONV_BN)


def _unwrap(checkpoint: Mapping) -> Mapping:
    """The state dict inside a checkpoint file's top-level dict (``state_dict``/``model`` entries)."""
    for key in ("state_dict", "model"):
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner
    return checkpoint


def _strip_prefixes(key: str, prefixes: tuple[str, ...]) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def _is_backbone(key: str, source: str) -> bool:
    if source == "mmseg":
        return key.startswith("backbone.")
    return key.startswith(_HRNET_BACKBONE)


def convert_checkpoint(state_dict: Mapping[str, torch.Tensor], source: str = "hrnet-ocr") -> dict[str, torch.Tensor]:
    """Map a released OCRNet checkpoint onto ocrformer names (see the module docstring).

    Args:
        state_dict: the checkpoint's state dict, or the dict ``torch.load`` returned for the file.
        source: ``"hrnet-ocr"`` or ``"mmseg"``.

    Returns:
        ``{"head.<OCRHead key>": tensor, ..., "backbone.<key>": tensor, ...}``.

    Raises:
        ValueError: an unknown ``source``, or head keys missing from the checkpoint (all of them are named).

    Warns:
        UserWarning naming every key that is neither head nor backbone (e.g. a loss's class weights); those
        keys are left out of the result.
    """
    if source not in _CONV_BN:
        raise ValueError(f"source must be one of {list(SOURCES)}, got {source!r}")
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
    src = {_strip_prefixes(k, _PREFIXES[source]): v for k, v in _unwrap(state_dict).items()}
    used: set[str] = set()
    missing: list[str] = []
    out: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor | None:
        if key not in src:
            missing.append(key)
            return None
        used.add(key)
        return src[key]

    for target, conv, bn in _CONV_BN[source]:
        out[f"head.{target}.conv.weight"] = take(f"{conv}.weight")
        for name in _BN_KEYS:
            out[f"head.{target}.bn.{name}"] = take(f"{bn}.{name}")
        tracked = f"{bn}.num_batches_tracked"  # absent from checkpoints older than PyTorch 0.4.1
        out[f"head.{target}.bn.num_batches_tracked"] = src.get(tracked, torch.tensor(0, dtype=torch.long))
        used.add(tracked)
        bias_key = f"{conv}.bias"
        mean = out[f"head.{target}.bn.running_mean"]
        if bias_key in src and mean is not None:
            out[f"head.{target}.bn.running_mean"] = mean - src[bias_key].to(mean.dtype)
            used.add(bias_key)
    for target, key in _RENAMES[source]:
        out[f"head.{target}"] = take(key)
    if missing:
        raise ValueError(
            f"convert_checkpoint(source={source!r}): the checkpoint lacks {len(missing)} OCR head keys: "
            + ", ".join(missing)
            + (f" (it has e.g. {sorted(src)[:5]})" if src else " (it is empty)")
        )
    queries = out["head.decoder.queries"]
    out["head.decoder.queries"] = queries.reshape(queries.shape[0], -1)  # 1x1 conv (K, C, 1, 1) -> (K, C)

    unknown = []
    for key, value in src.items():
        if key in used:
            continue
        if _is_backbone(key, source):
            out["backbone." + key.removeprefix("backbone.")] = value
        else:
            unknown.append(key)
    if unknown:
        warnings.warn(
            f"convert_checkpoint(source={source!r}): {len(unknown)} keys are neither OCR head nor backbone "
            f"and were left out: {', '.join(sorted(unknown))}",
            stacklevel=2,
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="released checkpoint (.pth)")
    parser.add_argument("output", help="where to write the converted state dict")
    parser.add_argument("--source", choices=SOURCES, default="hrnet-ocr")
    args = parser.parse_args(argv)
    converted = convert_checkpoint(torch.load(args.input, map_location="cpu", weights_only=True), args.source)
    partial = f"{args.output}.partial"  # write beside, then rename: an interrupted run leaves no torn file
    torch.save(converted, partial)
    os.replace(partial, args.output)
    print(f"wrote {len(converted)} tensors to {args.output}")


if __name__ == "__main__":
    main()
