"""State dicts in the key layouts of released OCRNet checkpoints, generated from the upstream module trees.

Each function returns ``{key: shape}`` for one codebase's network, written out here from that codebase's module
tree (not from ocrformer's converter or from timm):

- official HRNet-OCR: ``lib/models/seg_hrnet_ocr.py`` (``HighResolutionNet``) inside ``FullModel`` (``model.``,
  plus ``loss.criterion.weight``);
- mmsegmentation: ``CascadeEncoderDecoder`` with ``HRNet`` or ``ResNetV1c`` and ``FCNHead`` + ``OCRHead``;
- openseg.pytorch: ``HRNet_W48_OCR`` and ``SpatialOCRNet`` on ``deepbase_resnet101_dilated8`` (``module.``,
  ``bn_type "torchbn"``).

``tests/test_released_layouts.py`` checks every generator against the key sets and shapes of the golden fixtures
(which the upstream code itself saved) at the fixtures' narrow widths, then uses them at the released widths,
where no upstream file is at hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Shapes = dict[str, tuple[int, ...]]
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class HRNetConfig:
    """HRNetV2: stage-1 Bottlenecks, then per stage (modules, blocks per branch, branch widths)."""

    stage1_blocks: int
    stages: tuple[tuple[int, int, tuple[int, ...]], ...]


HRNET_W48 = HRNetConfig(4, ((1, 4, (48, 96)), (4, 4, (48, 96, 192)), (3, 4, (48, 96, 192, 384))))
HRNET_W18_SMALL_V2 = HRNetConfig(2, ((1, 2, (18, 36)), (3, 2, (18, 36, 72)), (2, 2, (18, 36, 72, 144))))


def _bn(prefix: str, channels: int) -> Shapes:
    return {f"{prefix}.{name}": (() if name == "num_batches_tracked" else (channels,)) for name in BN}


def _conv(prefix: str, out: int, inp: int, k: int, bias: bool = False) -> Shapes:
    shapes = {f"{prefix}.weight": (out, inp, k, k)}
    if bias:
        shapes[f"{prefix}.bias"] = (out,)
    return shapes


def _bottleneck(prefix: str, inplanes: int, planes: int, downsample: bool) -> Shapes:
    s = {**_conv(f"{prefix}.conv1", planes, inplanes, 1), **_bn(f"{prefix}.bn1", planes)}
    s |= {**_conv(f"{prefix}.conv2", planes, planes, 3), **_bn(f"{prefix}.bn2", planes)}
    s |= {**_conv(f"{prefix}.conv3", 4 * planes, planes, 1), **_bn(f"{prefix}.bn3", 4 * planes)}
    if downsample:
        s |= {**_conv(f"{prefix}.downsample.0", 4 * planes, inplanes, 1), **_bn(f"{prefix}.downsample.1", 4 * planes)}
    return s


def hrnet_backbone(config: HRNetConfig) -> Shapes:
    """HRNet-Semantic-Segmentation's ``HighResolutionNet`` backbone keys (also mmseg's and openseg's)."""
    s = {**_conv("conv1", 64, 3, 3), **_bn("bn1", 64), **_conv("conv2", 64, 64, 3), **_bn("bn2", 64)}
    for b in range(config.stage1_blocks):
        s |= _bottleneck(f"layer1.{b}", 64 if b == 0 else 256, 64, downsample=b == 0)
    previous = [256]
    for stage, (modules, blocks, widths) in enumerate(config.stages, start=2):
        # transition: a changed width -> Conv3x3 + BN (+ReLU); a new branch -> Sequential(Conv3x3 s2 + BN + ReLU)
        for i, width in enumerate(widths):
            t = f"transition{stage - 1}.{i}"
            if i < len(previous):
                if previous[i] != width:
                    s |= {**_conv(f"{t}.0", width, previous[i], 3), **_bn(f"{t}.1", width)}
            else:
                s |= {**_conv(f"{t}.0.0", width, previous[-1], 3), **_bn(f"{t}.0.1", width)}
        for m in range(modules):
            p = f"stage{stage}.{m}"
            for br, width in enumerate(widths):
                for b in range(blocks):
                    block = f"{p}.branches.{br}.{b}"
                    s |= {**_conv(f"{block}.conv1", width, width, 3), **_bn(f"{block}.bn1", width)}
                    s |= {**_conv(f"{block}.conv2", width, width, 3), **_bn(f"{block}.bn2", width)}
            for i, wi in enumerate(widths):
                for j, wj in enumerate(widths):
                    f = f"{p}.fuse_layers.{i}.{j}"
                    if j > i:  # Conv1x1 + BN (then upsampled)
                        s |= {**_conv(f"{f}.0", wi, wj, 1), **_bn(f"{f}.1", wi)}
                    for k in range(i - j):  # j < i: strided Conv3x3 + BN steps, the last one to branch i's width
                        width_out = wi if k == i - j - 1 else wj
                        s |= {**_conv(f"{f}.{k}.0", width_out, wj, 3), **_bn(f"{f}.{k}.1", width_out)}
        previous = list(widths)
    return s


def resnet_layers(blocks: tuple[int, ...], base: int, inplanes: int) -> Shapes:
    """Bottleneck stages ``layer1-4`` (pytorch style: stride on conv2; downsample = Conv1x1 + BN)."""
    s: Shapes = {}
    for layer, count in enumerate(blocks, start=1):
        planes = base * 2 ** (layer - 1)
        for b in range(count):
            s |= _bottleneck(f"layer{layer}.{b}", inplanes, planes, downsample=b == 0)
            inplanes = 4 * planes
    return s


def _classic_block(prefix: str, mid: int, key: int, bias: bool) -> Shapes:
    """``SpatialOCR_Module``: ``object_context_block.f_{pixel,object,down,up}`` and ``conv_bn_dropout``."""
    b = f"{prefix}.object_context_block"
    s: Shapes = {}
    for name in ("f_pixel", "f_object"):
        s |= {**_conv(f"{b}.{name}.0", key, mid, 1, bias), **_bn(f"{b}.{name}.1.0", key)}
        s |= {**_conv(f"{b}.{name}.2", key, key, 1, bias), **_bn(f"{b}.{name}.3.0", key)}
    s |= {**_conv(f"{b}.f_down.0", key, mid, 1, bias), **_bn(f"{b}.f_down.1.0", key)}
    s |= {**_conv(f"{b}.f_up.0", mid, key, 1, bias), **_bn(f"{b}.f_up.1.0", mid)}
    s |= {**_conv(f"{prefix}.conv_bn_dropout.0", mid, 2 * mid, 1, bias), **_bn(f"{prefix}.conv_bn_dropout.1.0", mid)}
    return s


def official_hrnet_ocr(config: HRNetConfig, classes: int, mid: int = 512, key: int = 256) -> Shapes:
    """The released ``hrnet_ocr_*.pth`` layout: ``FullModel(model, loss).state_dict()``."""
    c = sum(config.stages[-1][2])
    s = hrnet_backbone(config)
    s |= {**_conv("conv3x3_ocr.0", mid, c, 3, bias=True), **_bn("conv3x3_ocr.1", mid)}
    s |= _classic_block("ocr_distri_head", mid, key, bias=False)
    s |= _conv("cls_head", classes, mid, 1, bias=True)
    s |= {**_conv("aux_head.0", c, c, 1, bias=True), **_bn("aux_head.1", c), **_conv("aux_head.3", classes, c, 1, True)}
    return {f"model.{k}": v for k, v in s.items()} | {"loss.criterion.weight": (classes,)}


def _mmseg_heads(region_in: int, region: int, region_kernel: int, c: int, mid: int, key: int, classes: int) -> Shapes:
    s = {**_conv("decode_head.0.convs.0.conv", region, region_in, region_kernel)}
    s |= {**_bn("decode_head.0.convs.0.bn", region), **_conv("decode_head.0.conv_seg", classes, region, 1, True)}
    s |= {**_conv("decode_head.1.bottleneck.conv", mid, c, 3), **_bn("decode_head.1.bottleneck.bn", mid)}
    b = "decode_head.1.object_context_block"
    for name in ("query_project", "key_project"):
        s |= {**_conv(f"{b}.{name}.0.conv", key, mid, 1), **_bn(f"{b}.{name}.0.bn", key)}
        s |= {**_conv(f"{b}.{name}.1.conv", key, key, 1), **_bn(f"{b}.{name}.1.bn", key)}
    s |= {**_conv(f"{b}.value_project.conv", key, mid, 1), **_bn(f"{b}.value_project.bn", key)}
    s |= {**_conv(f"{b}.out_project.conv", mid, key, 1), **_bn(f"{b}.out_project.bn", mid)}
    s |= {**_conv(f"{b}.bottleneck.conv", mid, 2 * mid, 1), **_bn(f"{b}.bottleneck.bn", mid)}
    return s | _conv("decode_head.1.conv_seg", classes, mid, 1, bias=True)


def mmseg_ocrnet_hrnet(config: HRNetConfig, classes: int, mid: int = 512, key: int = 256) -> Shapes:
    """mmsegmentation ``ocrnet_hr*``: ``{"meta", "state_dict"}``'s state dict."""
    c = sum(config.stages[-1][2])
    s = {f"backbone.{k}": v for k, v in hrnet_backbone(config).items()}
    return s | _mmseg_heads(c, c, 1, c, mid, key, classes)


def mmseg_ocrnet_resnet(
    classes: int, blocks=(3, 4, 23, 3), base: int = 64, stem: int = 64, fcn: int = 256, mid: int = 512, key: int = 256
) -> Shapes:
    """mmsegmentation ``ocrnet_r101-d8`` (``ResNetV1c``: deep stem ``stem.{0..8}`` of widths stem/2, stem/2, stem)."""
    s = {**_conv("stem.0", stem // 2, 3, 3), **_bn("stem.1", stem // 2), **_conv("stem.3", stem // 2, stem // 2, 3)}
    s |= {**_bn("stem.4", stem // 2), **_conv("stem.6", stem, stem // 2, 3), **_bn("stem.7", stem)}
    s |= resnet_layers(blocks, base, stem)
    s = {f"backbone.{k}": v for k, v in s.items()}
    return s | _mmseg_heads(8 * base * 2, fcn, 3, 8 * base * 4, mid, key, classes)


def openseg_hrnet_w48_ocr(config: HRNetConfig | None, classes: int, c: int = 720, mid=512, key=256) -> Shapes:
    """openseg ``HRNet_W48_OCR`` saved by ``ModuleRunner.save_net`` (``module.``); ``config=None``: head only."""
    s = {} if config is None else {f"backbone.{k}": v for k, v in hrnet_backbone(config).items()}
    s |= {**_conv("conv3x3.0", mid, c, 3, bias=True), **_bn("conv3x3.1.0", mid)}
    s |= _classic_block("ocr_distri_head", mid, key, bias=True)
    s |= _conv("cls_head", classes, mid, 1, bias=True)
    s |= {**_conv("aux_head.0", c, c, 3, bias=True), **_bn("aux_head.1.0", c)}
    s |= _conv("aux_head.2", classes, c, 1, bias=True)
    return {f"module.{k}": v for k, v in s.items()}


def openseg_spatial_ocrnet(
    classes: int, with_backbone: bool = True, inputs=(1024, 2048), region=512, mid=512, key=256
) -> Shapes:
    """openseg ``SpatialOCRNet`` on ``deepbase_resnet101_dilated8`` (stem ``resinit``: 3x3 convs 64, 64, 128)."""
    s: Shapes = {}
    if with_backbone:
        s |= {**_conv("resinit.conv1", 64, 3, 3), **_bn("resinit.bn1", 64), **_conv("resinit.conv2", 64, 64, 3)}
        s |= {**_bn("resinit.bn2", 64), **_conv("resinit.conv3", 128, 64, 3), **_bn("resinit.bn3", 128)}
        s |= resnet_layers((3, 4, 23, 3), 64, 128)
        s = {f"backbone.{k}": v for k, v in s.items()}
    s |= {**_conv("conv_3x3.0", mid, inputs[1], 3, bias=True), **_bn("conv_3x3.1.0", mid)}
    s |= _classic_block("spatial_ocr_head", mid, key, bias=True)
    s |= _conv("head", classes, mid, 1, bias=True)
    s |= {**_conv("dsn_head.0", region, inputs[0], 3, bias=True), **_bn("dsn_head.1.0", region)}
    s |= _conv("dsn_head.3", classes, region, 1, bias=True)
    return {f"module.{k}": v for k, v in s.items()}


def random_state(shapes: Shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Tensors of these shapes that make a well-conditioned random network: conv weights N(0, 1/fan_in), BN
    weights U(0.5, 1.5), biases and running means N(0, 0.1^2), running variances U(0.5, 1.5), int64 counters."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var") or (key.endswith("weight") and len(shape) == 1):
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        elif key.endswith("weight") and len(shape) == 4:
            state[key] = torch.randn(shape, generator=generator) / (shape[1] * shape[2] * shape[3]) ** 0.5
        else:
            state[key] = 0.1 * torch.randn(shape, generator=generator)
    return state


def shapes_of(state: dict[str, torch.Tensor]) -> Shapes:
    return {k: tuple(v.shape) for k, v in state.items()}
