"""Backbones: timm ``features_only`` models, and the parameter-free adapters that turn their feature lists into
what the OCR head reads.

Shape legend: B batch, Cin channels of the head input, H/s x W/s the feature map at the backbone's stride s.

How OCR reads the backbone (``features``), read from the model itself (timm's registry and ``feature_info``),
not guessed from its name:
    ``"hrnet"``     an HRNet (a model of timm's ``hrnet`` module): the four branch outputs (strides 4, 8, 16, 32)
                    upsampled to stride 4 and concatenated (720 channels for W48) -- the HRNet-OCR input. The
                    regions are predicted from the same features. The fuse layers upsample as the segmentation
                    codebases do (``ocrformer.backbones.hrnet``), not as timm's classification HRNet does.
    ``"last_two"``  a dilated network, whose last two feature maps have one stride (``feature_info``): OCR on the
                    last, the soft regions from the one before, as in the ResNet-101 OCRNet. Models of timm's
                    ``resnet`` module are dilated to output stride 8 unless told otherwise.
    ``"last"``      any other: the deepest feature map for both.

The timm model is used as it is, so its parameter names are timm's: for HRNet they are the
names of the HRNet-Semantic-Segmentation code, and released HRNet-OCR backbones load without renaming.
Every size of input works: nothing is padded (exact-size resizing wherever branches meet).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from .hrnet import use_segmentation_fuse

__all__ = ["FEATURES", "BackboneInfo", "FPNBackbone", "FeatureAdapter", "create_backbone", "family", "features_of"]

FEATURES = ("hrnet", "last_two", "last")


def family(name: str) -> str:
    """``"hrnet"``, ``"resnet"`` or ``"other"``: the timm module that defines the model ``name``."""
    for module in ("hrnet", "resnet"):
        if timm.models.is_model_in_modules(name, [module]):
            return module
    return "other"


def features_of(body: nn.Module, name: str) -> str:
    """How OCR reads a timm ``features_only`` body (see the module docstring), from its ``feature_info``."""
    if family(name) == "hrnet":
        return "hrnet"
    strides = body.feature_info.reduction()
    return "last_two" if len(strides) >= 2 and strides[-1] == strides[-2] else "last"


class FeatureAdapter(nn.Module):
    """Parameter-free: a list of feature maps -> ``(feats (B, Cin, h, w), region_feats (B, Cr, h, w) | None)``."""

    def __init__(self, features: str, *, align_corners: bool = True) -> None:
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        self.features = features
        self.align_corners = align_corners

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.features == "hrnet":
            size = features[0].shape[-2:]
            upsampled = [features[0]] + [
                F.interpolate(f, size=size, mode="bilinear", align_corners=self.align_corners) for f in features[1:]
            ]
            return torch.cat(upsampled, dim=1), None
        if self.features == "last_two":
            return features[-1], features[-2]
        return features[-1], None

    def extra_repr(self) -> str:
        return f"features={self.features!r}, align_corners={self.align_corners}"


def _timm_defaults(name: str, kwargs: dict) -> dict:
    """``timm.create_model`` settings for OCR: HRNet's raw branch outputs (not the classification "incre" blocks)
    without the stem; a ResNet dilated to output stride 8, its last two stages."""
    kind = family(name)
    if kind == "hrnet":
        return {"feature_location": "", "out_indices": (1, 2, 3, 4), **kwargs}
    if kind == "resnet":
        return {"output_stride": 8, "out_indices": (-2, -1), **kwargs}
    return {"out_indices": (-2, -1), **kwargs}


def _create_features_only(name: str, *, pretrained: bool, checkpoint_path: str | Path | None, **kwargs) -> nn.Module:
    kwargs = {"features_only": True, **kwargs}
    if checkpoint_path is not None:
        path = Path(checkpoint_path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint_path {str(path)!r} does not exist (expected a local weights file)")
        # timm loads a local file through the same path as its hub weights (and adapts it to features_only).
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    return timm.create_model(name, pretrained=pretrained, **kwargs)


@dataclass(frozen=True)
class BackboneInfo:
    """What the model needs to know: how OCR reads the features, channels of ``feats`` and ``region_feats``
    (``None``: same as feats), and the output stride."""

    features: str
    out_channels: int
    region_channels: int | None
    stride: int


def create_backbone(
    name: str,
    *,
    pretrained: bool = False,
    checkpoint_path: str | Path | None = None,
    features: str | None = None,
    align_corners: bool = True,
    hrnet_fuse: str = "bilinear",
    ceil_pool: bool = False,
    **timm_kwargs,
) -> tuple[nn.Module, FeatureAdapter, BackboneInfo]:
    """A timm model as a feature extractor for OCR: ``(body, adapter, info)``.

    ``adapter(body(images))`` maps images (B, 3, H, W) to ``(feats (B, out_channels, H/s, W/s), region_feats)``.
    The body is returned bare (not wrapped) so that its parameters keep timm's names inside the model.

    Args:
        name: any timm model name (``hrnet_w48``, ``resnet101``, ...).
        pretrained: ``False`` (default) builds randomly initialised weights -- nothing is downloaded. ``True``
            asks timm for its released weights, which needs a network connection.
        checkpoint_path: a local weights file (timm/ImageNet layout) to initialise from; no network needed.
        features: ``"hrnet"``, ``"last_two"`` or ``"last"`` (see the module docstring); read from the built
            model when ``None``.
        align_corners: for the HRNet fuse and concatenation upsampling (``True`` in HRNet-OCR).
        hrnet_fuse: how HRNet's fuse layers upsample: ``"bilinear"`` (HRNet-OCR, openseg) or
            ``"bilinear-twice"`` (mmsegmentation); see ``ocrformer.backbones.hrnet``.
        ceil_pool: give the ResNet stem's max-pool ``ceil_mode=True`` (openseg's deep-base ResNets: one more
            row/column of features wherever the stem output has an even size).
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``output_stride``, ``out_indices``).
    """
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:10]
        raise ValueError(f"backbone {name!r} is not a timm model; similar names: {close}")
    kwargs = _timm_defaults(name, timm_kwargs)
    body = _create_features_only(name, pretrained=pretrained, checkpoint_path=checkpoint_path, **kwargs)
    features = features_of(body, name) if features is None else features
    adapter = FeatureAdapter(features, align_corners=align_corners)
    if features == "hrnet":
        use_segmentation_fuse(body, hrnet_fuse, align_corners)
    if ceil_pool:
        if not isinstance(getattr(body, "maxpool", None), nn.MaxPool2d):
            raise ValueError(f"ceil_pool=True needs a stem max-pool (body.maxpool); {name!r} has none")
        body.maxpool.ceil_mode = True
    channels = body.feature_info.channels()
    strides = body.feature_info.reduction()
    info = BackboneInfo(
        features=features,
        out_channels=sum(channels) if features == "hrnet" else channels[-1],
        region_channels=channels[-2] if features == "last_two" else None,
        stride=strides[0] if features == "hrnet" else strides[-1],
    )
    return body, adapter, info


class FPNBackbone(nn.Module):
    """A timm model's stride-4/8/16/32 stages + torchvision's ``FeaturePyramidNetwork``: the Panoptic-FPN trunk.

    ``forward(images (B, 3, H, W))`` -> ``OrderedDict`` ``{"0": P2, "1": P3, "2": P4, "3": P5, "pool": P6}``,
    each (B, ``out_channels``, H/s, W/s) for s = 4, 8, 16, 32, 64 -- the names and the ``out_channels``
    attribute torchvision's Mask R-CNN expects of a backbone. H and W must be multiples of 32 (Mask R-CNN's
    batching pads to that).

    Args:
        name: a timm model with stages at strides 4, 8, 16 and 32 (ResNets, ConvNeXts, ...).
        out_channels: FPN width (256 in Panoptic-FPN).
        pretrained, checkpoint_path: as for ``create_backbone``.
        freeze_bn: replace the body's BatchNorms by frozen ones (timm's ``freeze_batch_norm_2d``), as
            detectron2 and torchvision do for ImageNet-initialised detection backbones trained with 1-2 images
            per GPU. ``None`` (default): frozen exactly when initialised from weights (``pretrained`` or
            ``checkpoint_path``) -- random statistics must be learned.
        **timm_kwargs: passed to ``timm.create_model``.
    """

    LEVEL_STRIDES = (4, 8, 16, 32)

    def __init__(
        self,
        name: str,
        *,
        out_channels: int = 256,
        pretrained: bool = False,
        checkpoint_path: str | Path | None = None,
        freeze_bn: bool | None = None,
        **timm_kwargs,
    ) -> None:
        super().__init__()
        from timm.layers import freeze_batch_norm_2d
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        if not timm.is_model(name):
            raise ValueError(f"backbone {name!r} is not a timm model (e.g. 'resnet50', 'resnet18', 'convnext_tiny')")
        self.body = _create_features_only(name, pretrained=pretrained, checkpoint_path=checkpoint_path, **timm_kwargs)
        if freeze_bn if freeze_bn is not None else (pretrained or checkpoint_path is not None):
            self.body = freeze_batch_norm_2d(self.body)
        strides = self.body.feature_info.reduction()
        # Every stage is computed anyway; keep the four the pyramid is built from.
        self.levels = [strides.index(s) for s in self.LEVEL_STRIDES if s in strides]
        if len(self.levels) != len(self.LEVEL_STRIDES):
            raise ValueError(
                f"backbone {name!r} has feature strides {strides}; an FPN needs stages at {self.LEVEL_STRIDES}"
            )
        channels = [self.body.feature_info.channels()[i] for i in self.levels]
        self.fpn = FeaturePyramidNetwork(channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body(images)
        return self.fpn({str(i): features[level] for i, level in enumerate(self.levels)})
