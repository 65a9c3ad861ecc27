"""OCRNet: a timm backbone + the OCR head, the FCN baseline or another context head, and the GT-OCR oracle.

Shape legend: B batch, K classes, H x W the input image, s the backbone stride, Cin head input channels.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from ..backbones import create_backbone, family
from ..context import CONTEXT_MODULES, ContextHead, build_context
from ..layouts import FORMAT, check_signature, get_layout, signature
from ..losses import OCRLoss
from ..ocr import (
    OCRHead,
    _check_input_dtype,
    _check_label_tensor,
    _check_non_empty,
    _check_positive_int,
)

__all__ = ["HEADS", "FCNHead", "OCRNet"]

# Every ``OCRNet(head=...)``: OCR, the FCN baseline, and the context heads of ``ocrformer.context``.
HEADS: tuple[str, ...] = ("ocr", "fcn", *CONTEXT_MODULES)


def resize_logits(out: dict[str, torch.Tensor], images: torch.Tensor, align_corners: bool) -> dict[str, torch.Tensor]:
    """Each (B, *, h, w) map of ``out`` resized bilinearly to the images' (H, W): the models' outputs at the
    input size."""
    size = images.shape[-2:]
    return {
        name: F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)
        for name, logits in out.items()
    }


class FCNHead(ContextHead):
    """The ablation baseline: the OCR head without OCR.

    The same soft-region branch (ConvKxK + BN + ReLU + Dropout2d + Conv1x1 -> ``aux_logits``, trained with the
    same aux loss) and the same pixel representation (Conv3x3 + BN + ReLU), classified directly after dropout:
    what is left when the object context is taken away. A ``ContextHead`` whose context is that Conv3x3, kept
    under the name ``pixels`` (state-dict keys ``aux.*``, ``pixels.*``, ``classifier.*``).

    ``forward(feats (B, Cin, h, w), region_feats=None)`` -> ``{"logits", "aux_logits"}``, (B, K, h, w) each.
    """

    context_name = "pixels"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        mid_channels: int = 512,
        dropout: float = 0.05,
        region_in_channels: int | None = None,
        region_channels: int | None = None,
        region_kernel_size: int = 1,
        region_dropout: float = 0.0,
    ) -> None:
        _check_positive_int(in_channels=in_channels, num_classes=num_classes, mid_channels=mid_channels)
        super().__init__(
            in_channels,
            num_classes,
            ConvNormAct(in_channels, mid_channels, 3),  # its out_channels is mid_channels
            dropout=dropout,
            region_in_channels=region_in_channels,
            region_channels=region_channels,
            region_kernel_size=region_kernel_size,
            region_dropout=region_dropout,
        )


class OCRNet(nn.Module):
    """Semantic segmentation with object-contextual representations.

    Args:
        backbone: a timm model name (``"hrnet_w48"``, ``"resnet101"``, ...); see ``ocrformer.backbones``.
        num_classes: K.
        head: ``"ocr"`` (default), ``"fcn"`` (the baseline without OCR, same backbone and aux branch), or one of
            the context heads the OCR paper compares with (``ocrformer.context.CONTEXT_MODULES``: ``"ppm"``,
            ``"aspp"``, ``"danet"``, ``"self_attention"``, ``"criss_cross"``, ``"isa"``, ``"double_attention"``),
            each a ``ContextHead``: the same aux branch and loss, its context module ``mid_channels`` wide
            (OCNet's and ISA's attention keys ``key_channels`` wide).
        layout: whose network this is (``ocrformer.layouts``): ``"ocrformer"`` (default, for new models),
            ``"hrnet-ocr"`` (official HRNet-OCR), ``"openseg"`` or ``"mmseg"``. It sets the defaults of
            ``align_corners``, ``dropout`` and the ``region_*`` arguments, the HRNet fuse upsampling and the
            dilated ResNet's stem, so that a converted checkpoint of that codebase computes its function.
        pretrained: ``False`` (default): random initialisation, nothing downloaded. ``True`` asks timm for its
            ImageNet weights (needs a network connection); ``checkpoint_path`` loads them from a local file.
        align_corners: for every bilinear resize (HRNet fuse layers and branches, logits to the image size);
            ``None``: the layout's (True for HRNet-OCR and openseg, False for mmsegmentation).
        mid_channels, key_channels, num_heads, backend: see ``OCRHead`` (``num_heads``: OCR only; ``backend``:
            every head's ``attend`` calls; ``align_corners`` also sets PPM's upsampling).
        dropout, region_channels, region_kernel_size, region_dropout: see ``OCRDecoder``/``OCREncoder``;
            ``None``: the layout's values for this backbone.
        loss: the ``OCRLoss`` that ``forward(images, targets)`` returns (default: cross-entropy + 0.4 x
            cross-entropy on ``aux_logits``, ``ignore_index`` as the model's).
        backbone_kwargs: extra ``timm.create_model`` arguments (``output_stride``, ``out_indices``, ...) and
            ``features`` (how OCR reads the backbone, see ``ocrformer.backbones``).

    ``forward(images (B, 3, H, W), *, oracle_labels=None)`` -> ``{"logits", "aux_logits"}``, both (B, K, H, W),
    upsampled bilinearly from the output stride to the input size. ``images`` must be floating point (normalised)
    in the model's dtype (any floating dtype under autocast), with B, H, W >= 1. Any input size works: the HRNet
    branches are resized to exact sizes (as the upstream codebases do), nothing is padded. ``oracle_labels``
    (B, H, W) integer class ids (``ignore_index`` for void) switch on the GT-OCR oracle (see
    ``OCRHead.forward``): an analysis tool for the upper bound of OCR, which needs the labels at inference.

    Parameter names: ``backbone.*`` are timm's (for HRNet, the HRNet-Semantic-Segmentation names) and
    ``head.*`` are ``OCRHead``'s (``FCNHead``'s, ``ContextHead``'s for the other heads), so
    ``ocrformer.convert.convert_checkpoint`` output loads with ``strict=True``.
    The state dict also holds ``_extra_state``: the layout and the settings that define the function (see
    ``ocrformer.layouts``); loading a checkpoint made for another function is refused, naming both layouts.
    """

    def __init__(
        self,
        backbone: str = "hrnet_w48",
        num_classes: int = 19,
        *,
        head: str = "ocr",
        layout: str = "ocrformer",
        pretrained: bool = False,
        checkpoint_path: str | Path | None = None,
        align_corners: bool | None = None,
        mid_channels: int = 512,
        key_channels: int = 256,
        num_heads: int = 1,
        dropout: float | None = None,
        region_channels: int | None = None,
        region_kernel_size: int | None = None,
        region_dropout: float | None = None,
        backend: str = "auto",
        ignore_index: int = 255,
        loss: OCRLoss | None = None,
        backbone_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {list(HEADS)}, got {head!r}")
        spec = get_layout(layout)
        backbone_kwargs = dict(backbone_kwargs or {})
        align_corners = spec.align_corners if align_corners is None else align_corners
        resnet = family(backbone) == "resnet"
        if resnet:  # the codebase's ResNet stem (timm's own for ocrformer's models)
            backbone_kwargs = {**spec.resnet_stem, **backbone_kwargs}
        self.backbone, self.neck, info = create_backbone(
            backbone,
            pretrained=pretrained,
            checkpoint_path=checkpoint_path,
            align_corners=align_corners,
            hrnet_fuse=spec.hrnet_fuse,
            ceil_pool=spec.resnet_ceil_pool and resnet,
            **backbone_kwargs,
        )
        features = info.features
        head_layout = spec.head(features)
        common = {
            "mid_channels": mid_channels,
            "dropout": head_layout.dropout if dropout is None else dropout,
            "region_in_channels": info.region_channels,
            "region_channels": head_layout.region_channels if region_channels is None else region_channels,
            "region_kernel_size": head_layout.region_kernel_size if region_kernel_size is None else region_kernel_size,
            "region_dropout": head_layout.region_dropout if region_dropout is None else region_dropout,
        }
        if head == "ocr":
            self.head = OCRHead(
                info.out_channels,
                num_classes,
                key_channels=key_channels,
                num_heads=num_heads,
                backend=backend,
                **common,
            )
        elif head == "fcn":
            self.head = FCNHead(info.out_channels, num_classes, **common)
        else:
            context = build_context(
                head,
                info.out_channels,
                common.pop("mid_channels"),
                key_channels=key_channels,
                align_corners=align_corners,
                backend=backend,
            )
            self.head = ContextHead(info.out_channels, num_classes, context, **common)
        self.head_name = head
        self.num_classes = num_classes
        self.stride = info.stride
        self.align_corners = align_corners
        self.layout = layout
        self.input_channels = spec.input_channels
        self.ignore_index = ignore_index
        # The loss the model returns when given targets (no learned state: the state dict does not change).
        self.criterion = OCRLoss(ignore_index=ignore_index) if loss is None else loss
        self._signature = signature(
            features=features,
            stride=info.stride,
            align_corners=align_corners,
            hrnet_fuse=spec.hrnet_fuse,
            ceil_pool=spec.resnet_ceil_pool,
            num_heads=num_heads if head == "ocr" else 1,
            input_channels=spec.input_channels,
        )

    # ------------------------------------------------------------------------------------- layout entry
    def get_extra_state(self) -> dict:
        """The state dict's ``_extra_state``: the layout and the settings that define this network's function."""
        return {"format": FORMAT, "layout": self.layout, **self._signature}

    def set_extra_state(self, state: dict) -> None:
        check_signature(state, self.get_extra_state())

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors):
        if strict and prefix + "_extra_state" not in state_dict:
            errors.append(
                f"the state dict has no {prefix}_extra_state entry (the layout ocrformer records): it was not "
                "written by this ocrformer. Convert a released checkpoint with ocrformer.convert "
                "(python -m ocrformer.convert IN OUT), or load a partial state dict with strict=False"
            )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors)

    # ---------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        images: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        oracle_labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Without ``targets``: the logits (see the class docstring). With ``targets`` (B, H, W) labels: the
        named, already weighted loss terms of ``self.criterion`` (``{"loss_main", "loss_aux"}``; the total is
        their sum), as torchvision's and detectron2's models return theirs -- ``Trainer`` optimises the sum."""
        out = resize_logits(self.logits_at_stride(images, oracle_labels=oracle_labels), images, self.align_corners)
        if targets is None:
            return out
        return self.criterion({name: logits.float() for name, logits in out.items()}, targets)

    def logits_at_stride(
        self, images: torch.Tensor, *, oracle_labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"logits", "aux_logits"}`` at the output stride s: (B, K, h, w) with h, w the size of the backbone's
        stride-s features (``ceil(H / s)`` for HRNet) -- what the upstream networks return before their
        inference resizes to the image."""
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"images must be (B, 3, H, W), a torch.Tensor, got {type(images).__name__}")
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        _check_non_empty(images, "images")
        # Shape and dtype only, no pass over the pixels: this runs at every step.
        _check_input_dtype(images, "images", next(self.parameters()).dtype, "model")
        if oracle_labels is not None:
            if not isinstance(self.head, OCRHead):
                why = (
                    "an optimize_for_inference copy computes the plain function only"
                    if self.head_name == "ocr"
                    else f"the {self.head_name!r} head has no object regions to replace"
                )
                raise ValueError(f"oracle_labels (GT-OCR) need an OCRHead: {why}")
            _check_label_tensor(oracle_labels, "oracle_labels")
            if oracle_labels.shape != (images.shape[0], *images.shape[-2:]):
                raise ValueError(
                    f"oracle_labels must be (B, H, W) = {(images.shape[0], *images.shape[-2:])} like the images, "
                    f"got {tuple(oracle_labels.shape)}"
                )
        feats, region_feats = self.neck(self.backbone(images))
        if oracle_labels is None:
            return self.head(feats, region_feats)
        return self.head(feats, region_feats, oracle_labels=self._labels_at(oracle_labels, feats))

    def _labels_at(self, labels: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """labels (B, H, W) -> (B, h, w) at feature resolution (nearest); ignore -> -1 (unlabelled)."""
        labels = labels.long().where(labels != self.ignore_index, -1)
        return F.interpolate(labels[:, None].float(), size=feats.shape[-2:], mode="nearest")[:, 0].long()
