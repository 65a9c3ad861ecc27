"""Panoptic-FPN, and Panoptic-FPN + OCR: torchvision's Mask R-CNN for things, an FPN semantic head for stuff.

Shape legend: B images, H x W an image (each its own size), Hp x Wp the padded batch (multiples of 32),
T thing classes, S stuff classes, M instances, C FPN channels, Cs semantic-head channels.

    images --Mask R-CNN transform (resize, normalise, pad)--> FPN backbone --> P2..P6 (B, C, Hp/s, Wp/s)
      instance branch: torchvision RPN + RoI heads (boxes, classes, masks) on P2..P6, unchanged
      semantic branch: P2..P5 --SemanticFPN--> (B, Cs, Hp/4, Wp/4)
                         ocr=False: 1x1 classifier                                    -> (B, S+1, Hp/4, Wp/4)
                         ocr=True:  OCRHead (OCRDecoder -> OCREncoder -> classifier)  -> (B, S+1, Hp/4, Wp/4)
                                    and the decoder's soft regions as aux logits
    then per image: semantic argmax + instances --combine_panoptic--> panoptic segments

Semantic classes: the S stuff classes are ``0 .. S-1``; class ``S`` means "a thing" (any thing pixel, as in
Panoptic-FPN); 255 is void. Thing labels follow torchvision: ``1 .. T`` in targets and detections (0 is
background); ``combine_panoptic`` and the returned segments use the 0-based thing index.

Training (``model.train()``): ``model(images, targets)`` -> named, already weighted losses: torchvision's
``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``, ``loss_mask`` (weight 1, as
in Panoptic-FPN), ``loss_sem_seg`` (weight ``semantic_weight`` = 0.5) and with OCR ``loss_sem_seg_aux``
(``semantic_weight * aux_weight`` = 0.5 x 0.4, the OCR paper's aux weight inside the semantic branch).
Inference (``model.eval()``): ``model(images)`` -> a list of per-image dicts (see ``PanopticFPN.forward``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from ..backbones import FPNBackbone
from ..ocr import OCRHead, _check_positive_int
from .panoptic_fusion import combine_panoptic

__all__ = ["PanopticFPN", "SemanticFPN"]


def _group_norm(channels: int) -> nn.GroupNorm:
    groups = math.gcd(32, channels)  # 32 groups as in Panoptic-FPN, fewer for narrow test models
    return nn.GroupNorm(groups, channels)


class SemanticFPN(nn.Module):
    """Panoptic-FPN's semantic trunk: each of P2..P5 goes through ``max(1, log2(s / 4))`` blocks of
    Conv3x3 (``channels``) + GroupNorm + ReLU, each followed by 2x bilinear upsampling until stride 4; the four
    maps are summed.

    ``forward(features)``: ``{"0": (B, C, Hp/4, Wp/4), "1": ... stride 8, "2": 16, "3": 32}`` ->
    (B, ``channels``, Hp/4, Wp/4).
    """

    def __init__(self, in_channels: int, channels: int = 128, strides: Sequence[int] = (4, 8, 16, 32)) -> None:
        super().__init__()
        _check_positive_int(in_channels=in_channels, channels=channels)
        self.scale_heads = nn.ModuleList()
        for stride in strides:
            blocks: list[nn.Module] = []
            for k in range(max(1, round(math.log2(stride / strides[0])))):
                blocks += [
                    nn.Conv2d(in_channels if k == 0 else channels, channels, 3, padding=1, bias=False),
                    _group_norm(channels),
                    nn.ReLU(inplace=True),
                ]
                if stride != strides[0]:
                    blocks.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*blocks))
        self.out_channels = channels

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.scale_heads[0](features["0"])
        for level, head in enumerate(self.scale_heads[1:], start=1):
            out = out + head(features[str(level)])
        return out


class PanopticFPN(nn.Module):
    """Panoptic-FPN (Kirillov et al. 2019) with, optionally, OCR in its semantic branch (the OCR paper's
    Panoptic-FPN + OCR).

    Args:
        num_thing_classes: T (instance classes; torchvision labels 1..T).
        num_stuff_classes: S (the semantic branch predicts S + 1 classes, the last meaning "thing").
        backbone: a timm model with stride-4..32 stages (``"resnet50"``, ``"resnet101"``, ``"resnet18"``...).
        ocr: put ``OCRHead`` on the summed stride-4 semantic features (``False``: the plain 1x1 classifier).
        pretrained: ask timm for ImageNet weights (needs the network); ``checkpoint_path``: a local weights file.
        freeze_bn: frozen backbone BatchNorms; by default exactly when initialised from weights (``FPNBackbone``).
        fpn_channels: C (256 in Panoptic-FPN). semantic_channels: Cs (128).
        ocr_mid_channels, ocr_key_channels, ocr_heads, ocr_dropout, attention_backend: the ``OCRHead`` settings.
        semantic_weight: the semantic losses' weight (0.5). aux_weight: the OCR aux loss's weight inside it (0.4).
        ignore_index: void label of the semantic targets (255).
        min_size, max_size: Mask R-CNN's resizing (a tuple ``min_size`` samples one per image in training).
        anchor_sizes: one anchor size per FPN level P2..P6 (torchvision/detectron2: 32..512 pixels).
        box_head_channels, mask_head_channels: widths of the box MLP (1024) and the four mask convs (256).
        score_threshold, overlap_threshold, stuff_area_threshold: panoptic fusion (see ``combine_panoptic``).
        mask_threshold: instance mask probability threshold (0.5).
        **detector_kwargs: passed to ``torchvision.models.detection.MaskRCNN`` (``rpn_pre_nms_top_n_train``,
            ``box_batch_size_per_image``, ``box_detections_per_img``, ...).
    """

    def __init__(
        self,
        num_thing_classes: int,
        num_stuff_classes: int,
        *,
        backbone: str = "resnet50",
        ocr: bool = True,
        pretrained: bool = False,
        checkpoint_path: str | Path | None = None,
        freeze_bn: bool | None = None,
        fpn_channels: int = 256,
        semantic_channels: int = 128,
        ocr_mid_channels: int = 256,
        ocr_key_channels: int = 128,
        ocr_heads: int = 1,
        ocr_dropout: float = 0.05,
        attention_backend: str = "auto",
        semantic_weight: float = 0.5,
        aux_weight: float = 0.4,
        ignore_index: int = 255,
        min_size: int | tuple[int, ...] = 800,
        max_size: int = 1333,
        anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
        box_head_channels: int = 1024,
        mask_head_channels: int = 256,
        score_threshold: float = 0.5,
        overlap_threshold: float = 0.5,
        stuff_area_threshold: int = 4096,
        mask_threshold: float = 0.5,
        **detector_kwargs,
    ) -> None:
        super().__init__()
        _check_positive_int(num_thing_classes=num_thing_classes, num_stuff_classes=num_stuff_classes)
        if len(anchor_sizes) != 5:
            raise ValueError(f"anchor_sizes needs one size per FPN level P2..P6 (5), got {tuple(anchor_sizes)}")
        self.num_thing_classes, self.num_stuff_classes = num_thing_classes, num_stuff_classes
        self.thing_class = num_stuff_classes  # the semantic class that means "a thing"
        self.ocr = ocr
        self.semantic_weight, self.aux_weight, self.ignore_index = semantic_weight, aux_weight, ignore_index
        self.score_threshold, self.overlap_threshold = score_threshold, overlap_threshold
        self.stuff_area_threshold, self.mask_threshold = stuff_area_threshold, mask_threshold

        trunk = FPNBackbone(
            backbone,
            out_channels=fpn_channels,
            pretrained=pretrained,
            checkpoint_path=checkpoint_path,
            freeze_bn=freeze_bn,
        )
        num_detector_classes = num_thing_classes + 1  # + background
        roi_size = 7 * 7 * fpn_channels
        self.detector = MaskRCNN(
            trunk,
            min_size=min_size,
            max_size=max_size,
            rpn_anchor_generator=AnchorGenerator(tuple((s,) for s in anchor_sizes), ((0.5, 1.0, 2.0),) * 5),
            box_head=TwoMLPHead(roi_size, box_head_channels),
            box_predictor=FastRCNNPredictor(box_head_channels, num_detector_classes),
            mask_head=MaskRCNNHeads(fpn_channels, [mask_head_channels] * 4, 1),
            mask_predictor=MaskRCNNPredictor(mask_head_channels, mask_head_channels, num_detector_classes),
            **detector_kwargs,
        )
        self.semantic_fpn = SemanticFPN(fpn_channels, semantic_channels)
        num_semantic = num_stuff_classes + 1
        if ocr:
            self.semantic_head = OCRHead(
                semantic_channels,
                num_semantic,
                mid_channels=ocr_mid_channels,
                key_channels=ocr_key_channels,
                num_heads=ocr_heads,
                dropout=ocr_dropout,
                backend=attention_backend,
            )
        else:
            self.semantic_head = nn.Conv2d(semantic_channels, num_semantic, 1)

    @property
    def backbone(self) -> nn.Module:
        """The FPN trunk shared by both branches."""
        return self.detector.backbone

    def semantic_logits(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """P2..P5 -> ``{"logits": (B, S+1, Hp/4, Wp/4)}`` (and ``"aux_logits"`` of the same shape with OCR)."""
        trunk = self.semantic_fpn(features)
        if self.ocr:
            return self.semantic_head(trunk)
        return {"logits": self.semantic_head(trunk)}

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None) -> dict | list[dict]:
        """
        Args:
            images: B float images (3, H, W) with values in [0, 1] (RGB); sizes may differ.
            targets (training only): per image ``"boxes"`` (M, 4) XYXY pixels, ``"labels"`` (M,) in 1..T,
                ``"masks"`` (M, H, W) uint8, ``"sem_seg"`` (H, W) int64 in 0..S or ``ignore_index`` -- what
                ``ocrformer.data.CocoPanoptic`` returns.

        Returns:
            training: ``{loss name: scalar}``, already weighted (sum them for the total).
            inference: per image, at its own (H, W):
                ``"sem_seg"`` (S+1, H, W) float semantic logits;
                ``"instances"``: ``{"boxes" (M, 4), "labels" (M,) 1..T, "scores" (M,), "masks" (M, H, W)
                probabilities}``;
                ``"panoptic_seg"`` (H, W) int32 segment ids (0 = void) and ``"segments_info"`` -- see
                ``combine_panoptic``.
        """
        if self.training and targets is None:
            raise ValueError("PanopticFPN in training mode needs targets (or call model.eval() for inference)")
        if not isinstance(images, list | tuple) or not all(
            isinstance(i, torch.Tensor) and i.dim() == 3 for i in images
        ):
            raise ValueError("images must be a list of (3, H, W) tensors (sizes may differ)")
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        detection_targets = None if targets is None else [self._detection_target(t) for t in targets]
        batch, detection_targets = self.detector.transform(list(images), detection_targets)
        features = self.detector.backbone(batch.tensors)
        semantic = self.semantic_logits(features)
        proposals, rpn_losses = self.detector.rpn(batch, features, detection_targets)
        detections, roi_losses = self.detector.roi_heads(features, proposals, batch.image_sizes, detection_targets)
        if self.training:
            semantic_target = self._semantic_target(targets, batch.image_sizes, batch.tensors.shape[-2:])
            return {**rpn_losses, **roi_losses, **self._semantic_losses(semantic, semantic_target)}
        detections = self.detector.transform.postprocess(detections, batch.image_sizes, original_sizes)
        return [
            self._inference_result(semantic["logits"][i], batch.image_sizes[i], original_sizes[i], detections[i])
            for i in range(len(images))
        ]

    # ------------------------------------------------------------------------------------------- training
    @staticmethod
    def _detection_target(target: dict) -> dict:
        # Plain tensors: torchvision's detection code predates tv_tensors.
        return {key: torch.as_tensor(target[key]).as_subclass(torch.Tensor) for key in ("boxes", "labels", "masks")}

    def _semantic_target(self, targets: list[dict], sizes: list[tuple[int, int]], padded: torch.Size) -> torch.Tensor:
        """Each (H, W) ``sem_seg`` resized (nearest) as its image was, padded with void: (B, Hp, Wp)."""
        out = torch.full((len(targets), *padded), self.ignore_index, dtype=torch.long, device=self._device)
        for i, (target, (height, width)) in enumerate(zip(targets, sizes, strict=True)):
            label = torch.as_tensor(target["sem_seg"]).as_subclass(torch.Tensor).to(self._device)
            if label.dim() != 2:
                raise ValueError(f"targets[{i}]['sem_seg'] must be (H, W), got shape {tuple(label.shape)}")
            label = F.interpolate(label[None, None].float(), size=(height, width), mode="nearest")[0, 0]
            out[i, :height, :width] = label.long()
        return out

    def _semantic_losses(self, semantic: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        def cross_entropy(logits: torch.Tensor) -> torch.Tensor:
            logits = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
            return F.cross_entropy(logits, target, ignore_index=self.ignore_index)

        losses = {"loss_sem_seg": self.semantic_weight * cross_entropy(semantic["logits"])}
        if "aux_logits" in semantic:
            losses["loss_sem_seg_aux"] = self.semantic_weight * self.aux_weight * cross_entropy(semantic["aux_logits"])
        return losses

    @property
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------------------------------ inference
    def _inference_result(
        self, logits: torch.Tensor, size: tuple[int, int], original: tuple[int, int], instances: dict
    ) -> dict:
        """Semantic logits (S+1, Hp/4, Wp/4) of the padded batch -> this image's (S+1, H, W); fused result."""
        padded = (logits.shape[-2] * 4, logits.shape[-1] * 4)
        logits = F.interpolate(logits[None].float(), size=padded, mode="bilinear", align_corners=False)
        logits = logits[..., : size[0], : size[1]]  # drop the padding, then undo Mask R-CNN's resize
        logits = F.interpolate(logits, size=original, mode="bilinear", align_corners=False)[0]
        masks = instances["masks"][:, 0]  # (M, H, W) probabilities
        panoptic, segments = combine_panoptic(
            logits.argmax(0),
            masks >= self.mask_threshold,
            instances["scores"],
            instances["labels"] - 1,
            thing_class=self.thing_class,
            score_threshold=self.score_threshold,
            overlap_threshold=self.overlap_threshold,
            stuff_area_threshold=self.stuff_area_threshold,
        )
        return {
            "sem_seg": logits,
            "instances": {**instances, "masks": masks},
            "panoptic_seg": panoptic,
            "segments_info": segments,
        }
