"""OCRNet: a timm backbone + the OCR head (or the plain FCN head, for ablations), and the GT-OCR oracle.

Shape legend: B batch, K classes, H x W the input image, s the backbone stride, Cin head input channels.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from ..backbones import create_backbone
from ..ocr import OCRHead, _check_positive_int

__all__ = ["FCNHead", "OCRNet"]


class FCNHead(nn.Module):
    """The ablation baseline: the OCR head without OCR.

    The same soft-region branch (Conv1x1 + BN + ReLU + Conv1x1 -> ``aux_logits``, trained with the same aux
    loss) and the same pixel representation (Conv3x3 + BN + ReLU), classified directly after dropout: what is
    left when the object context is taken away.

    ``forward(feats (B, Cin, h, w), region_feats=None)`` -> ``{"logits", "aux_logits"}``, (B, K, h, w) each.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        mid_channels: int = 512,
        dropout: float = 0.05,
        region_in_channels: int | None = None,
    ) -> None:
        super().__init__()
        region_in_channels = in_channels if region_in_channels is None else region_in_channels
        _check_positive_int(in_channels=in_channels, num_classes=num_classes, mid_channels=mid_channels)
        self.aux = nn.Sequential(
            ConvNormAct(region_in_channels, region_in_channels, 1), nn.Conv2d(region_in_channels, num_classes, 1)
        )
        self.pixels = ConvNormAct(in_channels, mid_channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(mid_channels, num_classes, 1)

    def forward(self, feats: torch.Tensor, region_feats: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        aux_logits = self.aux(feats if region_feats is None else region_feats)
        return {"logits": self.classifier(self.dropout(self.pixels(feats))), "aux_logits": aux_logits}


class OCRNet(nn.Module):
    """Semantic segmentation with object-contextual representations.

    Args:
        backbone: a timm model name (``"hrnet_w48"``, ``"resnet101"``, ...); see ``ocrformer.backbones``.
        num_classes: K.
        head: ``"ocr"`` (default) or ``"fcn"`` (the baseline without OCR, same backbone and aux branch).
        pretrained: ``False`` (default): random initialisation, nothing downloaded. ``True`` asks timm for its
            ImageNet weights (needs a network connection); ``checkpoint_path`` loads them from a local file.
        align_corners: for every bilinear resize (HRNet branches, logits to the image size). ``True``, the
            default, matches the HRNet-OCR checkpoints; mmsegmentation's models use ``False``.
        mid_channels, key_channels, num_heads, dropout, backend: see ``OCRHead``.
        backbone_kwargs: extra ``timm.create_model`` arguments (``output_stride``, ``out_indices``, ...).

    ``forward(images (B, 3, H, W), *, oracle_labels=None)`` -> ``{"logits", "aux_logits"}``, both (B, K, H, W),
    upsampled bilinearly to the input size (inputs are zero-padded at the bottom/right to a multiple of the
    backbone's ``size_divisor`` -- 32 for HRNet -- and the outputs cropped back). ``oracle_labels`` (B, H, W)
    (``ignore_index`` for void) switch on the GT-OCR oracle (see ``OCRHead.forward``): an analysis tool for the
    upper bound of OCR, which needs the labels at inference.

    Parameter names: ``backbone.*`` are timm's (for HRNet, the HRNet-Semantic-Segmentation names) and
    ``head.*`` are ``OCRHead``'s, so ``ocrformer.convert.convert_checkpoint`` output loads with ``strict=True``.
    """

    def __init__(
        self,
        backbone: str = "hrnet_w48",
        num_classes: int = 19,
        *,
        head: str = "ocr",
        pretrained: bool = False,
        checkpoint_path: str | Path | None = None,
        align_corners: bool = True,
        mid_channels: int = 512,
        key_channels: int = 256,
        num_heads: int = 1,
        dropout: float = 0.05,
        backend: str = "auto",
        ignore_index: int = 255,
        backbone_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if head not in ("ocr", "fcn"):
            raise ValueError(f"head must be 'ocr' or 'fcn', got {head!r}")
        self.backbone, self.neck, info = create_backbone(
            backbone,
            pretrained=pretrained,
            checkpoint_path=checkpoint_path,
            align_corners=align_corners,
            **(backbone_kwargs or {}),
        )
        common = {"mid_channels": mid_channels, "dropout": dropout, "region_in_channels": info.region_channels}
        if head == "ocr":
            self.head = OCRHead(
                info.out_channels,
                num_classes,
                key_channels=key_channels,
                num_heads=num_heads,
                backend=backend,
                **common,
            )
        else:
            self.head = FCNHead(info.out_channels, num_classes, **common)
        self.num_classes = num_classes
        self.stride = info.stride
        self.size_divisor = info.size_divisor
        self.align_corners = align_corners
        self.ignore_index = ignore_index

    def forward(self, images: torch.Tensor, *, oracle_labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        size = images.shape[-2:]
        images = self._pad_to_divisor(images)
        feats, region_feats = self.neck(self.backbone(images))
        if oracle_labels is None:
            out = self.head(feats, region_feats)
        else:
            if not isinstance(self.head, OCRHead):
                raise ValueError("oracle_labels (GT-OCR) need head='ocr'; the FCN head has no regions to replace")
            labels = self._pad_to_divisor(oracle_labels, value=self.ignore_index)
            out = self.head(feats, region_feats, oracle_labels=self._labels_at(labels, feats))
        padded = images.shape[-2:]
        return {
            name: F.interpolate(logits, size=padded, mode="bilinear", align_corners=self.align_corners)[
                ..., : size[0], : size[1]
            ]
            for name, logits in out.items()
        }

    def _pad_to_divisor(self, x: torch.Tensor, value: float = 0.0) -> torch.Tensor:
        """Pad the bottom/right of (B, [C,] H, W) up to a multiple of the backbone's size divisor (the outputs
        are cropped back to the input size)."""
        div = self.size_divisor
        pad_h, pad_w = -x.shape[-2] % div, -x.shape[-1] % div
        return F.pad(x, (0, pad_w, 0, pad_h), value=value) if pad_h or pad_w else x

    def _labels_at(self, labels: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """labels (B, H, W) -> (B, h, w) at feature resolution (nearest); ignore -> -1 (unlabelled)."""
        labels = labels.long().where(labels != self.ignore_index, -1)
        return F.interpolate(labels[:, None].float(), size=feats.shape[-2:], mode="nearest")[:, 0].long()
