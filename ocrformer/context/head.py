"""``ContextHead``: any context module as a segmentation head with OCRNet's aux branch and loss contract.

Shape legend: B batch, K classes, Cin head input channels, Cr region-feature channels, h x w the feature size,
C the context module's output channels.

``CONTEXT_MODULES`` names the context modules that ``OCRNet(head=...)`` and ``create_model`` build by key;
``build_context`` builds one at a width.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from timm.layers import ConvNormAct
from torch import nn

from ..attention import _validate_name
from ..ocr import _check_dropout, _check_feature_map, _check_positive_int, _region_widths
from .multi_scale import ASPP, PyramidPooling
from .relational import (
    BaseObjectContext,
    DoubleAttention,
    DualAttention,
    InterlacedSparseSelfAttention,
    RecurrentCrissCross,
)

__all__ = ["CONTEXT_MODULES", "ContextHead", "build_context", "region_branch"]


def region_branch(in_channels: int, channels: int, kernel_size: int, dropout: float) -> list[nn.Module]:
    """The soft-region (aux) branch's hidden layer: ConvKxK + BN + ReLU, then Dropout2d (identity at 0)."""
    return [ConvNormAct(in_channels, channels, kernel_size), nn.Dropout2d(dropout)]


class ContextHead(nn.Module):
    """A segmentation head around a context module: what the OCR paper compares OCR with.

    ``aux``         the soft-region branch of ``OCRHead``/``FCNHead``: ConvKxK + BN + ReLU (+ Dropout2d) on
                    ``region_feats`` (or ``feats``), then a Conv1x1 -> ``aux_logits``, trained by the same aux loss
                    (the layout's ``region_kernel_size``/``region_channels``/``region_dropout``)
    ``context``     the context module: (B, Cin, h, w) -> (B, C, h, w), with an ``out_channels`` attribute = C
    ``dropout``     Dropout2d before the classifier (the layout's ``dropout``; where the codebases put theirs)
    ``classifier``  Conv1x1 C -> K -> ``logits``

    ``FCNHead`` is this head with a Conv3x3 + BN + ReLU as the context (registered as ``pixels``: the name its
    released state dicts use). A subclass names its context module by ``context_name``.

    ``forward(feats (B, Cin, h, w), region_feats=None (B, Cr, h, w))`` -> ``{"logits", "aux_logits"}``, (B, K, h, w)
    each. Inputs are floating point in the head's dtype (any floating dtype under autocast) with B, h, w >= 1.
    """

    context_name: ClassVar[str] = "context"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        context: nn.Module,
        *,
        dropout: float = 0.05,
        region_in_channels: int | None = None,
        region_channels: int | None = None,
        region_kernel_size: int = 1,
        region_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        region_in_channels, region_channels = _region_widths(
            in_channels, region_in_channels, region_channels, region_kernel_size, region_dropout,
            num_classes=num_classes,
        )
        _check_dropout(dropout=dropout)
        out_channels = getattr(context, "out_channels", None)
        if not isinstance(context, nn.Module) or not isinstance(out_channels, int):
            raise ValueError(
                f"context must be an nn.Module with an int out_channels attribute, got {type(context).__name__}"
            )
        self.in_channels, self.region_in_channels = in_channels, region_in_channels
        self.aux = nn.Sequential(
            *region_branch(region_in_channels, region_channels, region_kernel_size, region_dropout),
            nn.Conv2d(region_channels, num_classes, 1),
        )
        self.add_module(self.context_name, context)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(out_channels, num_classes, 1)

    def forward(self, feats: torch.Tensor, region_feats: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        dtype = self.classifier.weight.dtype
        _check_feature_map(feats, self.in_channels, "feats", "in_channels", dtype)
        if region_feats is not None:
            _check_feature_map(region_feats, self.region_in_channels, "region_feats", "region_in_channels", dtype)
            if region_feats.shape[0] != feats.shape[0] or region_feats.shape[2:] != feats.shape[2:]:
                raise ValueError(
                    f"region_feats {tuple(region_feats.shape)} must match feats {tuple(feats.shape)} "
                    "in batch size and spatial size"
                )
        aux_logits = self.aux(feats if region_feats is None else region_feats)
        context = getattr(self, self.context_name)(feats)
        return {"logits": self.classifier(self.dropout(context)), "aux_logits": aux_logits}


# head key -> builder(in_channels, channels, key_channels, align_corners, backend) of its context module. Every
# module reads the backbone features (Cin) and returns ``channels`` = the model's ``mid_channels``; the other
# widths follow each paper's ratios (DANet/CCNet queries C/8, A2-Net descriptors C/4) or the model's
# ``key_channels`` (the self-attention keys of OCNet and ISA, 256 as in OCR's encoder).
ContextBuilder = Callable[[int, int, int, bool, str], nn.Module]
CONTEXT_MODULES: dict[str, ContextBuilder] = {
    "ppm": lambda cin, c, key, align, backend: PyramidPooling(cin, c, align_corners=align),  # PSPNet
    "aspp": lambda cin, c, key, align, backend: ASPP(cin, c),  # DeepLabv3
    "danet": lambda cin, c, key, align, backend: DualAttention(cin, c, backend=backend),  # DANet
    "self_attention": lambda cin, c, key, align, backend: BaseObjectContext(  # OCNet (base-OC)
        cin, c, key_channels=key, backend=backend
    ),
    "criss_cross": lambda cin, c, key, align, backend: RecurrentCrissCross(cin, c),  # CCNet
    "isa": lambda cin, c, key, align, backend: InterlacedSparseSelfAttention(  # ISANet
        cin, c, key_channels=key, backend=backend
    ),
    "double_attention": lambda cin, c, key, align, backend: DoubleAttention(cin, c, backend=backend),  # A2-Net
}


def build_context(
    name: str,
    in_channels: int,
    channels: int,
    *,
    key_channels: int = 256,
    align_corners: bool = False,
    backend: str = "auto",
) -> nn.Module:
    """The context module ``name`` (a key of ``CONTEXT_MODULES``) reading ``in_channels`` and returning
    ``channels``: (B, in_channels, h, w) -> (B, channels, h, w)."""
    if name not in CONTEXT_MODULES:
        raise ValueError(f"unknown context module {name!r}; known: {sorted(CONTEXT_MODULES)}")
    _check_positive_int(in_channels=in_channels, channels=channels, key_channels=key_channels)
    _validate_name(backend, "build_context(backend=...)")
    return CONTEXT_MODULES[name](in_channels, channels, key_channels, align_corners, backend)
