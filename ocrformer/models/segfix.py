"""SegFixNet: the boundary and direction network of SegFix (Yuan, Xie, Chen & Wang, ECCV 2020, arXiv 2007.04269).

SegFix refines the label map of any segmentation model: a separate network predicts, for every pixel, whether it
lies on an object boundary and the direction from it towards the interior of its object; each predicted boundary
pixel then takes the label of the interior pixel that direction points to (``ocrformer.segfix.segfix_refine``).

Shape legend: B batch, H x W the input image, h x w the features at the backbone stride s (4 for HRNet),
m the number of directions, Cin the width of the backbone features the branches read.

Upstream (openseg-group/openseg.pytorch) and what is kept of it:

* ``lib/models/nets/segfix.py`` (``SegFix_HRNet``): the four HRNet branch outputs, upsampled to stride 4
  (bilinear, ``align_corners=True``) and concatenated (15 x width channels), feed two branches of the same form,
  Conv1x1(Cin -> 256, no bias) + BN + ReLU + Conv1x1(256 -> out, no bias): the *mask* branch with 2 outputs
  (boundary / not boundary, a softmax pair, not one sigmoid logit) and the *direction* branch with m outputs
  (8 by default, ``DTOffsetConfig.num_classes``). Kept as is for HRNet backbones (the ``"hrnet"`` features of
  ``ocrformer.backbones``). Other backbones of the registry (dilated ResNets, the tiny test backbone) are an
  extension: the branches read the backbone's last feature map.
* ``lib/loss/loss_helper.py`` (``SegFixLoss``): the logits are upsampled to the label size (bilinear,
  ``align_corners=True``); the mask loss is a 2-way cross-entropy whose class weights are ``1 - frequency`` of
  each class in the batch (ignored pixels excluded), the direction loss an m-way cross-entropy with the same kind
  of weights over its pixels; both weighted 1 (``mask_weight``/``direction_weight`` environment variables,
  default 1). Kept, with these deviations:

  - by default (``direction_on="target"``) the direction loss is computed on the *target* boundary pixels
    (``boundary == 1`` with a direction target). Upstream computes it on the pixels its mask branch *predicts* as
    boundary (softmax > 0.5), with a direction target that exists at every labelled pixel: that is
    ``direction_on="predicted"``, with targets made by ``segfix_targets(direction_everywhere=True)`` (which
    ``SegFixTrainer`` then asks for). The default supervises the directions from the first step on, whatever
    the boundary branch predicts, and only where a boundary pixel will be moved at refinement;
  - upstream's weighted mean divides by zero (NaN) when a batch holds one class only (no boundary pixel, or all
    direction pixels pointing one way: that class's weight is ``1 - 1 = 0``). Here the boundary loss is the
    mean of the per-class mean losses of the classes present -- equal to upstream's weighted mean whenever both
    classes are present -- and the direction loss falls back to the plain mean when upstream's would be 0 / 0;
  - a batch with no pixel to learn from gives a loss of exactly 0 that is still connected to the logits (so
    DistributedDataParallel sees a gradient, zero, for every parameter).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from ..backbones import create_backbone
from .ocrnet import resize_logits

__all__ = ["SegFixNet", "boundary_probability", "segfix_loss"]

FORMAT = "ocrformer-segfix/1"  # the ``_extra_state`` entry of a SegFixNet state dict
DIRECTION_ON = ("target", "predicted")  # where the direction loss applies (SegFixNet(direction_on=...))


class SegFixBranch(nn.Sequential):
    """Conv1x1 (no bias) + BN + ReLU + Conv1x1 (no bias), as upstream's ``mask_head`` / ``dir_head``:
    (B, Cin, h, w) -> (B, out_channels, h, w)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvNormAct(in_channels, mid_channels, 1, bias=False)
        self.classifier = nn.Conv2d(mid_channels, out_channels, 1, bias=False)


class SegFixNet(nn.Module):
    """The SegFix network: a backbone of the model registry, a boundary branch and a direction branch.

    Args:
        backbone: a timm model name (``"hrnet_w18"`` (default), ``"hrnet_w48"``, ``"resnet101"``, ...); see
            ``ocrformer.backbones``. HRNets are read as upstream reads them (all four branches at stride 4).
        num_directions: m, the direction classes (8 upstream; see ``ocrformer.segfix.direction_vectors``).
        mid_channels: width of both branches' hidden layer (256 upstream).
        boundary_width: the boundary band width of the targets this model is trained on
            (``segfix_targets(boundary_width=...)``; ``None``: that function's default). The network does not use
            it: it is recorded (``_extra_state``) so that training data and refinement agree with the model, and
            ``SegFixTrainer`` makes its targets with it.
        pretrained, checkpoint_path: as ``OCRNet``'s (random initialisation by default, nothing downloaded).
        align_corners: every bilinear resize (HRNet fuse and concatenation, logits to the input size); ``True``
            as upstream.
        boundary_weight, direction_weight: the loss terms' weights (1 and 1 upstream).
        class_balance: weight the classes of each loss as upstream does (see the module docstring); ``False``:
            plain means over the pixels.
        direction_on: where the direction loss applies: ``"target"`` (default) the target boundary pixels;
            ``"predicted"`` (upstream) the pixels the boundary branch predicts as boundary, which needs direction
            targets beyond the band (``segfix_targets(direction_everywhere=True)``); see the module docstring.
        boundary_threshold: a pixel is predicted as boundary when its boundary probability exceeds this (0.5
            upstream, its ``mask_threshold``); used by ``direction_on="predicted"``, ``refine`` and
            ``SegFixTrainer.evaluate``.
        ignore_index: the void value of the targets.
        backbone_kwargs: extra ``timm.create_model`` arguments (``output_stride``, ``out_indices``, ...) and
            ``features`` (how the backbone is read), as ``OCRNet`` takes them.

    ``forward(images (B, 3, H, W), targets=None)``: without targets ``{"boundary_logits": (B, 2, H, W),
    "direction_logits": (B, m, H, W)}`` (channel 1 of ``boundary_logits`` is "boundary"; softmax over the pair,
    see ``boundary_probability``), upsampled bilinearly from stride s to the input size as ``OCRNet``'s logits.
    With ``targets = {"boundary": (B, H, W), "direction": (B, H, W)}`` (int; ``boundary`` 1/0/``ignore_index``,
    ``direction`` in [0, m) or ``ignore_index`` -- ``segfix_targets``' maps): the
    named, weighted loss terms ``{"loss_boundary", "loss_direction"}`` (float32 scalars; ``Trainer`` optimises
    their sum). Any input size works (nothing is padded).
    """

    def __init__(
        self,
        backbone: str = "hrnet_w18",
        num_directions: int = 8,
        *,
        mid_channels: int = 256,
        boundary_width: int | None = None,
        pretrained: bool = False,
        checkpoint_path: str | Path | None = None,
        align_corners: bool = True,
        boundary_weight: float = 1.0,
        direction_weight: float = 1.0,
        class_balance: bool = True,
        direction_on: str = "target",
        boundary_threshold: float = 0.5,
        ignore_index: int = 255,
        backbone_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("num_directions", num_directions), ("mid_channels", mid_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if num_directions < 2:
            raise ValueError(f"num_directions must be at least 2, got {num_directions}")
        if boundary_width is not None and (
            isinstance(boundary_width, bool) or not isinstance(boundary_width, int | float) or not boundary_width >= 0
        ):
            raise ValueError(f"boundary_width must be a number >= 0 or None, got {boundary_width!r}")
        if direction_on not in DIRECTION_ON:
            raise ValueError(f"direction_on must be one of {DIRECTION_ON}, got {direction_on!r}")
        if not 0.0 <= boundary_threshold < 1.0:
            raise ValueError(f"boundary_threshold must be in [0, 1), got {boundary_threshold!r}")
        for name, value in (("boundary_weight", boundary_weight), ("direction_weight", direction_weight)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        self.backbone, self.neck, info = create_backbone(
            backbone,
            pretrained=pretrained,
            checkpoint_path=checkpoint_path,
            align_corners=align_corners,
            hrnet_fuse="bilinear",  # openseg's HRNet, as for the "openseg" OCRNet layout
            **dict(backbone_kwargs or {}),
        )
        # The dilated ResNets' "region" features (the stage before the last) are OCR's; SegFix reads one map.
        self.boundary_head = SegFixBranch(info.out_channels, mid_channels, 2)
        self.direction_head = SegFixBranch(info.out_channels, mid_channels, num_directions)
        self.backbone_name = backbone
        self.num_directions = num_directions
        self.boundary_width = boundary_width
        self.stride = info.stride
        self.features = info.features
        self.align_corners = align_corners
        self.boundary_weight = float(boundary_weight)
        self.direction_weight = float(direction_weight)
        self.class_balance = class_balance
        self.direction_on = direction_on
        self.boundary_threshold = float(boundary_threshold)
        self.ignore_index = ignore_index

    # ------------------------------------------------------------------------------------- state entry
    def get_extra_state(self) -> dict:
        """The state dict's ``_extra_state``: what the weights mean (backbone, directions, target band width)."""
        return {
            "format": FORMAT,
            "backbone": self.backbone_name,
            "features": self.features,
            "stride": self.stride,
            "align_corners": self.align_corners,
            "num_directions": self.num_directions,
            "boundary_width": self.boundary_width,
        }

    def set_extra_state(self, state: dict) -> None:
        mine = self.get_extra_state()
        if not isinstance(state, Mapping) or state.get("format") != FORMAT:
            raise ValueError(f"these weights are not a SegFixNet's (their _extra_state is {state!r})")
        differences = [f"{k}: {state.get(k)!r} (weights), {v!r} (model)" for k, v in mine.items() if state.get(k) != v]
        if differences:
            raise ValueError(f"these SegFixNet weights were made for another model: {'; '.join(differences)}")

    # ---------------------------------------------------------------------------------------------- forward
    def forward(
        self, images: torch.Tensor, targets: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """See the class docstring."""
        out = resize_logits(self.logits_at_stride(images), images, self.align_corners)
        if targets is None:
            return out
        boundary, direction = _check_targets(targets, images)
        return segfix_loss(
            out["boundary_logits"],
            out["direction_logits"],
            boundary,
            direction,
            ignore_index=self.ignore_index,
            boundary_weight=self.boundary_weight,
            direction_weight=self.direction_weight,
            class_balance=self.class_balance,
            direction_on=self.direction_on,
            boundary_threshold=self.boundary_threshold,
        )

    def logits_at_stride(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"boundary_logits": (B, 2, h, w), "direction_logits": (B, m, h, w)}`` at the backbone stride s --
        what upstream's network returns before its loss resizes them to the label size."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a (B, 3, H, W) tensor, got {shape}")
        if images.numel() == 0:
            raise ValueError(f"images must not be empty, got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point (normalised), got {images.dtype}")
        feats, _ = self.neck(self.backbone(images))
        return {"boundary_logits": self.boundary_head(feats), "direction_logits": self.direction_head(feats)}

    @torch.no_grad()
    def refine(self, images: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        """Refine ``labels`` (B, H, W) -- any segmentation model's prediction for ``images`` (B, 3, H, W) -- with
        this network's boundary and directions: ``ocrformer.segfix.segfix_refine`` (``kwargs`` passed on; the
        threshold defaults to ``boundary_threshold``). Returns (B, H, W) labels. Runs in the current mode: call
        ``eval()`` first."""
        from ..segfix import segfix_refine  # here: ocrformer.segfix does not need the models

        out = self(images)
        kwargs.setdefault("boundary_threshold", self.boundary_threshold)
        return segfix_refine(labels, boundary_probability(out["boundary_logits"]), out["direction_logits"], **kwargs)


def boundary_probability(boundary_logits: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) boundary logits -> (B, H, W) float32 probability of "boundary" (softmax, channel 1)."""
    return boundary_logits.float().softmax(dim=1)[:, 1]


def segfix_loss(
    boundary_logits: torch.Tensor,
    direction_logits: torch.Tensor,
    boundary: torch.Tensor,
    direction: torch.Tensor,
    *,
    ignore_index: int = 255,
    boundary_weight: float = 1.0,
    direction_weight: float = 1.0,
    class_balance: bool = True,
    direction_on: str = "target",
    boundary_threshold: float = 0.5,
) -> dict[str, torch.Tensor]:
    """SegFix's two loss terms (see the module docstring for upstream's loss and the deviations).

    Args:
        boundary_logits: (B, 2, H, W); direction_logits: (B, m, H, W) -- at the targets' size.
        boundary: (B, H, W) int, 1 boundary / 0 interior / ``ignore_index``.
        direction: (B, H, W) int in [0, m) or ``ignore_index`` (no target).
        direction_on: ``"target"``: the direction loss covers the pixels with ``boundary == 1`` and a direction
            target; ``"predicted"`` (upstream): those with a direction target whose boundary probability
            (``boundary_probability``, detached) exceeds ``boundary_threshold``.

    Returns ``{"loss_boundary", "loss_direction"}``: float32 scalars, already multiplied by their weights. The
    direction logits of the pixels outside the direction loss take no part (neither value nor gradient).
    """
    if direction_on not in DIRECTION_ON:
        raise ValueError(f"direction_on must be one of {DIRECTION_ON}, got {direction_on!r}")
    boundary_logits, direction_logits = boundary_logits.float(), direction_logits.float()
    boundary_valid = boundary != ignore_index
    direction_valid = direction != ignore_index
    if direction_on == "target":
        direction_valid = direction_valid & (boundary == 1)
    else:
        # Decided by the current prediction, not learned through: upstream's mask is a thresholded softmax too.
        direction_valid = direction_valid & (boundary_probability(boundary_logits.detach()) > boundary_threshold)
    loss_boundary = _class_weighted_ce(
        boundary_logits, boundary, boundary_valid, balance="per_class_mean" if class_balance else None
    )
    loss_direction = _class_weighted_ce(
        direction_logits, direction, direction_valid, balance="one_minus_frequency" if class_balance else None
    )
    return {"loss_boundary": boundary_weight * loss_boundary, "loss_direction": direction_weight * loss_direction}


def _class_weighted_ce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, balance: str | None):
    """Cross-entropy of logits (B, C, H, W) against target (B, H, W) over the ``valid`` pixels, reduced to a
    scalar without a host sync (no boolean indexing, no data-dependent branch):

    * ``None``: the mean over valid pixels;
    * ``"per_class_mean"``: the mean, over the classes present, of each class's mean loss;
    * ``"one_minus_frequency"``: upstream's ``F.cross_entropy(weight=1 - n_c / N)`` mean (sum of weighted
      losses / sum of the weights), the plain mean when all weights of the pixels present are 0.

    No valid pixel: 0, still connected to ``logits``."""
    num_classes = logits.shape[1]
    # Invalid pixels get the extra bin C: their loss is 0 (ignore_index) and it is dropped below.
    bins = target.long().where(valid, num_classes).flatten()
    per_pixel = F.cross_entropy(logits, bins.view_as(target), ignore_index=num_classes, reduction="none").flatten()
    sums = per_pixel.new_zeros(num_classes + 1).scatter_add(0, bins, per_pixel)[:num_classes]
    counts = per_pixel.new_zeros(num_classes + 1).scatter_add(0, bins, torch.ones_like(per_pixel))[:num_classes]
    total = counts.sum()
    plain = sums.sum() / total.clamp(min=1)
    if balance is None:
        return plain
    if balance == "per_class_mean":
        present = (counts > 0).float()
        return (sums / counts.clamp(min=1) * present).sum() / present.sum().clamp(min=1)
    weights = 1 - counts / total.clamp(min=1)
    denominator = (weights * counts).sum()
    weighted = (weights * sums).sum() / torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, weighted, plain)


def _check_targets(targets: Mapping[str, torch.Tensor], images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``targets["boundary"]``, ``targets["direction"]``: integer (B, H, W) like the images (shapes only: this
    runs at every step, so no pass over the pixels)."""
    if not isinstance(targets, Mapping) or not {"boundary", "direction"} <= set(targets):
        keys = sorted(targets) if isinstance(targets, Mapping) else type(targets).__name__
        raise ValueError(f'targets must be a mapping with "boundary" and "direction" (B, H, W) maps, got {keys}')
    expected = (images.shape[0], *images.shape[-2:])
    checked = []
    for name in ("boundary", "direction"):
        value = targets[name]
        if not isinstance(value, torch.Tensor) or value.is_floating_point() or value.dtype == torch.bool:
            kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"targets[{name!r}] must be an integer tensor, got {kind}")
        if tuple(value.shape) != expected:
            raise ValueError(
                f"targets[{name!r}] must be (B, H, W) = {expected} like the images, got {tuple(value.shape)}"
            )
        checked.append(value.to(images.device).long())
    return checked[0], checked[1]
