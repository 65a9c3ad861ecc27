"""The classic HRNet-OCR head, written out in its original layout, as the reference for ocrformer.

This is an independent re-implementation of the head of HRNet-Semantic-Segmentation
(``lib/models/seg_hrnet_ocr.py``) with the same module tree, so its ``state_dict`` has exactly the keys of the
released HRNet-OCR checkpoints (``conv3x3_ocr.*``, ``ocr_distri_head.object_context_block.f_pixel.*``, ...).
The tests convert its weights with ``ocrformer.convert.convert_checkpoint`` and require ``OCRHead`` to give the
same outputs and gradients; the benchmarks time it against ``OCRHead``. It follows the classic code's data
layout on purpose -- channel-first tensors, ``view``/``permute`` and ``bmm`` -- so nothing here is tuned.

Shape legend: B batch, K classes, Cin input channels, C mid channels, Dk key channels, N = H * W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ocrformer import OCRHead
from ocrformer.convert import convert_checkpoint

__all__ = ["ClassicOCRHead", "classic_and_ocrformer", "head_state_dict", "randomize_"]


def _bn_relu(channels: int) -> nn.Sequential:
    # The classic code's ModuleHelper.BNReLU: a Sequential(BN, ReLU), hence the ``1.0.*`` keys.
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=False)


class ClassicObjectAttentionBlock(nn.Module):
    """``_ObjectAttentionBlock`` with scale 1: pixels (B, C, H, W) query regions (B, C, K, 1)."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.f_pixel = nn.Sequential(
            _conv1x1(channels, key_channels), _bn_relu(key_channels),
            _conv1x1(key_channels, key_channels), _bn_relu(key_channels),
        )
        self.f_object = nn.Sequential(
            _conv1x1(channels, key_channels), _bn_relu(key_channels),
            _conv1x1(key_channels, key_channels), _bn_relu(key_channels),
        )
        self.f_down = nn.Sequential(_conv1x1(channels, key_channels), _bn_relu(key_channels))
        self.f_up = nn.Sequential(_conv1x1(key_channels, channels), _bn_relu(channels))

    def forward(self, x: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        query = self.f_pixel(x).view(batch, self.key_channels, -1).permute(0, 2, 1)  # (B, N, Dk)
        key = self.f_object(proxy).view(batch, self.key_channels, -1)  # (B, Dk, K)
        value = self.f_down(proxy).view(batch, self.key_channels, -1).permute(0, 2, 1)  # (B, K, Dk)
        sim_map = F.softmax(torch.matmul(query, key) * self.key_channels**-0.5, dim=-1)  # (B, N, K)
        context = torch.matmul(sim_map, value).permute(0, 2, 1).contiguous()  # (B, Dk, N)
        context = context.view(batch, self.key_channels, height, width)
        return self.f_up(context)


class ClassicSpatialOCR(nn.Module):
    """``SpatialOCR_Module``: object context, then concat([context, pixels]) -> 1x1 conv -> BN/ReLU -> dropout."""

    def __init__(self, channels: int, key_channels: int, dropout: float) -> None:
        super().__init__()
        self.object_context_block = ClassicObjectAttentionBlock(channels, key_channels)
        self.conv_bn_dropout = nn.Sequential(
            _conv1x1(2 * channels, channels), _bn_relu(channels), nn.Dropout2d(dropout)
        )

    def forward(self, feats: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
        context = self.object_context_block(feats, proxy)
        return self.conv_bn_dropout(torch.cat([context, feats], 1))


def classic_spatial_gather(feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """``SpatialGather_Module`` (scale 1): feats (B, C, H, W), logits (B, K, H, W) -> regions (B, C, K, 1)."""
    batch, classes = probs.shape[:2]
    probs = F.softmax(probs.view(batch, classes, -1), dim=2)  # spatial softmax, (B, K, N)
    feats = feats.view(batch, feats.shape[1], -1).permute(0, 2, 1)  # (B, N, C)
    return torch.matmul(probs, feats).permute(0, 2, 1).unsqueeze(3)  # (B, C, K, 1)


class ClassicOCRHead(nn.Module):
    """The HRNet-OCR head: feats (B, Cin, H, W) -> {"logits", "aux_logits"} (B, K, H, W)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        mid_channels: int = 512,
        key_channels: int = 256,
        dropout: float = 0.05,
    ) -> None:
        super().__init__()
        self.conv3x3_ocr = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 3, padding=1), nn.BatchNorm2d(mid_channels), nn.ReLU()
        )
        self.ocr_distri_head = ClassicSpatialOCR(mid_channels, key_channels, dropout)
        self.cls_head = nn.Conv2d(mid_channels, num_classes, 1)
        self.aux_head = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 1),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.Conv2d(in_channels, num_classes, 1),
        )

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        aux_logits = self.aux_head(feats)
        pixels = self.conv3x3_ocr(feats)
        regions = classic_spatial_gather(pixels, aux_logits)
        fused = self.ocr_distri_head(pixels, regions)
        return {"logits": self.cls_head(fused), "aux_logits": aux_logits}


@torch.no_grad()
def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BatchNorm buffer random values, in place, so equivalence checks cannot pass
    by accident through zero biases, unit weights or identity statistics (running_var stays positive)."""
    generator = torch.Generator().manual_seed(seed)

    def rand(t: torch.Tensor, low: float, high: float) -> torch.Tensor:
        return torch.rand(t.shape, generator=generator, dtype=torch.float64).to(t.dtype) * (high - low) + low

    for name, param in module.named_parameters():
        fan_in = param[0].numel() if param.dim() > 1 else 1
        bound = 1.5 / fan_in**0.5 if param.dim() > 1 else 0.5
        param.copy_(rand(param, -bound, bound))
        if name.endswith("weight") and param.dim() == 1:  # BatchNorm scale: keep away from zero
            param.copy_(rand(param, 0.5, 1.5))
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.running_mean.copy_(rand(sub.running_mean, -0.5, 0.5))
            sub.running_var.copy_(rand(sub.running_var, 0.5, 2.0))
            sub.num_batches_tracked.fill_(int(rand(sub.num_batches_tracked, 1, 1000).item()))
    return module


def head_state_dict(converted: dict) -> dict:
    """The ``head.`` part of a converted checkpoint, with the prefix removed."""
    return {k.removeprefix("head."): v for k, v in converted.items() if k.startswith("head.")}


def classic_and_ocrformer(in_channels, num_classes, *, dtype=torch.float32, seed=0, **kwargs):
    """A randomised ClassicOCRHead and an OCRHead loaded from it through convert_checkpoint (strict)."""
    backend = kwargs.pop("backend", "auto")
    classic = randomize_(ClassicOCRHead(in_channels, num_classes, **kwargs), seed).to(dtype)
    head = OCRHead(in_channels, num_classes, backend=backend, **kwargs).to(dtype)
    head.load_state_dict(head_state_dict(convert_checkpoint(classic.state_dict())), strict=True)
    return classic, head
