"""HRNet's branch fusion computed the way the segmentation codebases compute it, on timm's HRNet.

timm's ``hrnet_*`` models are the ImageNet classification HRNet (HRNet-Image-Classification, ``cls_hrnet.py``):
in every fuse layer a lower-resolution branch j is brought to branch i's resolution by
``nn.Upsample(scale_factor=2**(j-i), mode="nearest")``. The segmentation networks whose checkpoints ocrformer
loads have the same parameters under the same names but upsample differently:

===================  ==========================================================================================
``"bilinear"``       the official HRNet-Semantic-Segmentation code (HRNet-OCR branch, ``HighResolutionModule``)
                     and openseg.pytorch's HRNet: conv1x1 + BN, then ``F.interpolate(size=<branch i's size>,
                     mode="bilinear", align_corners=ALIGN_CORNERS)`` (True in the OCR configs) -- one resize
                     straight to the exact size, so any input size works.
``"bilinear-twice"`` mmsegmentation's ``HRModule``: conv1x1 + BN + mmseg ``Upsample(scale_factor=2**(j-i),
                     mode="bilinear", align_corners=False)`` (a resize to ``int(2**(j-i) * size)``), then
                     ``HRModule.forward`` resizes the result again to branch i's size. Where the sizes halve
                     exactly the second resize is the identity; at odd sizes (15x23 -> 8x12 -> 16x24 -> 15x23)
                     it is a second interpolation and changes the output (about 36% relative L2 on the logits
                     of a 58x90 image in the golden fixture, against resizing once).
===================  ==========================================================================================

Nearest upsampling with a fixed scale factor also fails at odd sizes (8x12 -> 16x24 cannot be added to
15x23), which is why the earlier ocrformer padded inputs to a multiple of 32 -- and padding changes every
branch's grid and the function. Exact-size resizing needs no padding.

``use_segmentation_fuse(body, mode, align_corners)`` converts a timm HRNet in place: each
``HighResolutionModule`` becomes a ``SegmentationFuseModule`` (same parameters, same names; only ``forward``
differs) and the parameter-free ``nn.Upsample`` at the end of each upsampling fuse path becomes a
``FuseUpsample`` that is told the target size. Everything else -- stem, transitions, blocks, the strided 3x3
convs that bring higher-resolution branches down -- is timm's and computes what both codebases compute
(checked bit for bit against the golden fixtures' backbone outputs). Two differences that do not change the
function: the official code feeds a transition of an existing branch ``y_list[i]`` where timm feeds it
``y_list[-1]``, but those transitions are identities in every HRNet config (equal widths); BatchNorm momentum
is 0.1 in all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.hrnet import HighResolutionModule
from torch import nn

__all__ = ["FUSE_MODES", "FuseUpsample", "SegmentationFuseModule", "use_segmentation_fuse"]

FUSE_MODES = ("bilinear", "bilinear-twice")


class FuseUpsample(nn.Module):
    """Bilinear upsampling of a lower-resolution HRNet branch to the size of the branch it is added to.

    ``forward(x (B, C, h, w), size (H, W))`` -> (B, C, H, W); ``scale_factor`` is the nominal ``2**(j-i)``,
    used by the ``"bilinear-twice"`` mode only (see the module docstring).
    """

    def __init__(self, scale_factor: int, mode: str, align_corners: bool) -> None:
        super().__init__()
        if mode not in FUSE_MODES:
            raise ValueError(f"HRNet fuse mode must be one of {FUSE_MODES}, got {mode!r}")
        self.scale_factor = scale_factor
        self.mode = mode
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
        if self.mode == "bilinear-twice":
            nominal = [s * self.scale_factor for s in x.shape[-2:]]
            x = F.interpolate(x, size=nominal, mode="bilinear", align_corners=self.align_corners)
            if x.shape[-2:] == size:  # mmseg resizes again; at equal sizes that is exactly the identity
                return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}, align_corners={self.align_corners}"


class SegmentationFuseModule(HighResolutionModule):
    """timm's ``HighResolutionModule`` whose fuse step resizes lower branches to the exact size of the branch
    they are added to (``FuseUpsample``). Built only by ``use_segmentation_fuse`` (class swap of a timm module).

    ``forward(x)``: a list of branch maps (B, C_i, H_i, W_i), one per branch -> the fused list, same shapes.
    """

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.num_branches == 1:
            return [self.branches[0](x[0])]
        x = [branch(xi) for branch, xi in zip(self.branches, x, strict=True)]
        fused = []
        for i, paths in enumerate(self.fuse_layers):
            y = None
            for j, path in enumerate(paths):
                if j > i:  # conv1x1 + BN at branch j's resolution, then up to branch i's exact size
                    z = path[2](path[1](path[0](x[j])), x[i].shape[-2:])
                else:  # identity (j == i) or strided 3x3 convs down to branch i (j < i): timm's modules
                    z = path(x[j])
                y = z if y is None else y + z
            fused.append(self.fuse_act(y))
        return fused


def use_segmentation_fuse(body: nn.Module, mode: str, align_corners: bool) -> nn.Module:
    """Make every fuse layer of the timm HRNet ``body`` upsample as the segmentation codebases do (``mode``:
    ``"bilinear"`` or ``"bilinear-twice"``, see the module docstring). In place; returns ``body``.

    Raises:
        ValueError: an unknown ``mode``, or ``body`` has no HRNet fuse layers.
    """
    if mode not in FUSE_MODES:
        raise ValueError(f"HRNet fuse mode must be one of {FUSE_MODES}, got {mode!r}")
    modules = [m for m in body.modules() if isinstance(m, HighResolutionModule)]
    if not modules:
        raise ValueError(f"{type(body).__name__} has no HRNet HighResolutionModule to change")
    for module in modules:
        module.__class__ = SegmentationFuseModule  # same attributes and parameters; only forward differs
        if module.num_branches == 1:
            continue
        for i, paths in enumerate(module.fuse_layers):
            for j, path in enumerate(paths):
                if j > i:
                    upsample = path[2]
                    if not isinstance(upsample, (nn.Upsample, FuseUpsample)):
                        raise ValueError(f"unexpected timm HRNet fuse path {path} (expected conv, BN, Upsample)")
                    path[2] = FuseUpsample(2 ** (j - i), mode, align_corners)
    return body
