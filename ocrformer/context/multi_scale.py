"""Multi-scale context: PSPNet's pyramid pooling (PPM) and DeepLabv3's atrous spatial pyramid pooling (ASPP).

Shape legend: B batch, Cin input channels, H x W positions, C the module's width (``channels``).
Both map (B, Cin, H, W) -> (B, C, H, W) and have no front conv: their own convolutions read the backbone
features directly (as in PSPNet, DeepLabv3 and both codebases checked below).

Sources read for every detail (the docstrings say which detail comes from where, and which is a choice):
openseg.pytorch ``lib/models/modules/psp_block.py`` (``PSPModule``), ``aspp_block.py`` (``ASPPModule``) and
``lib/models/nets/pspnet.py``; mmsegmentation ``mmseg/models/decode_heads/psp_head.py`` (``PSPHead``) and
``aspp_head.py`` (``ASPPHead``). Neither module contains a dropout: openseg ends both with ``Dropout2d(0.1)``,
mmsegmentation puts it in front of its classifier -- here ``ContextHead``'s dropout sits in that place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from ..ocr import _check_positive_int

__all__ = ["ASPP", "PyramidPooling"]


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module.

    Average-pool the input to ``bins`` x ``bins`` cells for each of ``bins`` = (1, 2, 3, 6); a Conv1x1
    Cin -> C + BN + ReLU per level; upsample each bilinearly to H x W; concatenate with the input; a Conv3x3
    (Cin + 4 C) -> C + BN + ReLU (the bottleneck).

    Checked: bins (1, 2, 3, 6), the per-level 1x1 conv + BN + ReLU to C = 512, the concatenation with the input
    and the 3x3 bottleneck to C (openseg ``PSPModule(2048, 512)``, mmsegmentation ``PSPHead``, channels 512;
    PSPNet's 1/N reduction of 2048 channels over N = 4 levels is the same 512). Choices: the concatenation order
    [input, levels] (mmsegmentation's; openseg appends the input last -- a permutation of the bottleneck's input
    channels, the same function class and parameter count); ``align_corners`` of the upsampling is the model's
    (openseg True, mmsegmentation False; the 1-bin level is a broadcast either way); convs are bias-free before
    BatchNorm (so are both codebases').

    At Cin = 2048, C = 512: 23.07M parameters, 619 GFLOPs at 128 x 128 (``ocrformer.context.published``).
    Training needs B >= 2: the 1-bin level's BatchNorm sees one value per channel and sample.

    ``forward(x (B, Cin, H, W))`` -> (B, C, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 512,
        *,
        bins: tuple[int, ...] = (1, 2, 3, 6),
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        _check_positive_int(in_channels=in_channels, channels=channels)
        if not bins:
            raise ValueError("bins must name at least one pyramid level")
        _check_positive_int(**{f"bins[{i}]": b for i, b in enumerate(bins)})
        self.out_channels = channels
        self.align_corners = align_corners
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvNormAct(in_channels, channels, 1)) for b in bins
        )
        self.bottleneck = ConvNormAct(in_channels + len(bins) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        levels = [
            F.interpolate(stage(x), size, mode="bilinear", align_corners=self.align_corners) for stage in self.stages
        ]
        return self.bottleneck(torch.cat([x, *levels], dim=1))


class ASPP(nn.Module):
    """DeepLabv3's atrous spatial pyramid pooling.

    Five parallel branches, each Cin -> C + BN + ReLU: image pooling (global average + Conv1x1, broadcast back
    to H x W), a Conv1x1, and Conv3x3 at dilation rates 12, 24, 36; concatenated and projected by a Conv1x1
    5 C -> C + BN + ReLU.

    Checked: the image-pooling branch, the 1x1 branch and rates (12, 24, 36) -- DeepLabv3's (6, 12, 18) doubled
    for output stride 8 (openseg ``ASPPModule`` ``dilations=(12, 24, 36)``; mmsegmentation ``ASPPHead``
    ``dilations=(1, 12, 24, 36)``); BN + ReLU after every branch. The 1x1 projection is DeepLabv3's and openseg's
    (mmsegmentation's bottleneck is a 3x3 conv: a choice here). Width: DeepLabv3 and openseg's complexity run use
    C = 256 (``ASPPModule(2048, 256, 256)``, the 15.5M of the OCR paper's table); mmsegmentation uses 512. Heads
    built by name pass the model's ``mid_channels`` like every other head.

    At Cin = 2048, C = 256: 15.54M parameters, 492 GFLOPs at 128 x 128. Training needs B >= 2 (the pooled
    branch's BatchNorm).

    ``forward(x (B, Cin, H, W))`` -> (B, C, H, W).
    """

    def __init__(self, in_channels: int, channels: int = 256, *, rates: tuple[int, ...] = (12, 24, 36)) -> None:
        super().__init__()
        _check_positive_int(in_channels=in_channels, channels=channels)
        _check_positive_int(**{f"rates[{i}]": r for i, r in enumerate(rates)})
        self.out_channels = channels
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvNormAct(in_channels, channels, 1))
        self.branches = nn.ModuleList(
            [ConvNormAct(in_channels, channels, 1)]
            + [ConvNormAct(in_channels, channels, 3, dilation=rate) for rate in rates]
        )
        self.project = ConvNormAct((len(rates) + 2) * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Bilinear upsampling of a 1 x 1 map (what both codebases call) is this broadcast.
        pooled = self.pool(x).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([pooled, *(branch(x) for branch in self.branches)], dim=1))
