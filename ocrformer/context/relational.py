"""Relational context: DANet, CCNet's criss-cross attention, OCNet's self-attention, ISA and A2-Net.

Shape legend: B batch, Cin input channels, H x W positions, N = H * W, C the module's width (``channels``,
512 in the papers), Dk key channels, Dv value channels, n descriptors (A2-Net), m descriptor channels.
Every module maps (B, Cin, H, W) -> (B, C, H, W): a Conv3x3 Cin -> C + BN + ReLU (the "front conv", reducing
2048 -> 512 in every paper here), the relation, and for OCNet, ISA and A2-Net a fusion of the context with the
front conv's output.

Every large attention runs through ``ocrformer.attend`` (so its backends and ``attention_backend`` apply):
DANet's position attention, OCNet's and ISA's self-attention, both A2-Net steps; DANet's channel attention too,
on the explicit ``matmul`` path. The one exception is criss-cross attention (see ``CrissCrossAttention``).

Sources read (each class says which detail comes from where and which is a choice): openseg.pytorch
``lib/models/modules/base_oc_block.py``, ``isa_block.py`` and their ``__main__`` complexity runs,
``lib/models/nets/ocnet.py``, ``isanet.py``; mmsegmentation ``mmseg/models/decode_heads/da_head.py``,
``cc_head.py``, ``isa_head.py``; speedinghzl/CCNet ``networks/ccnet.py``, ``cc_attention/functions.py``;
junfu1115/DANet ``encoding/models/sseg/danet.py``; the A2-Net paper (Chen et al., NeurIPS 2018), which neither
codebase implements. No module contains a dropout: the codebases' Dropout2d after the last fusion is
``ContextHead``'s dropout here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import ConvNormAct
from torch import nn

from ..attention import _validate_name, attend
from ..ocr import _check_positive_int

__all__ = [
    "BaseObjectContext",
    "ChannelAttention",
    "CrissCrossAttention",
    "DoubleAttention",
    "DualAttention",
    "InterlacedSparseSelfAttention",
    "PositionAttention",
    "RecurrentCrissCross",
    "SelfAttentionBlock",
]


def tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, N, C): one attention head over the N positions, as ``attend`` takes it.

    Made contiguous: torch's fused sdpa kernels need the last dim at stride 1 and otherwise fall back silently to
    the math path, which builds the N x N map; the copy is N x C, small beside that map."""
    return rearrange(x, "b c h w -> b 1 (h w) c").contiguous()


def untokens(x: torch.Tensor, height: int) -> torch.Tensor:
    """(B, 1, N, C) -> (B, C, H, W)."""
    return rearrange(x, "b 1 (h w) c -> b c h w", h=height)


def _reduced(channels: int, query_channels: int | None, ratio: int = 8) -> int:
    """DANet's and CCNet's query/key width: C / 8 unless given."""
    query_channels = channels // ratio if query_channels is None else query_channels
    _check_positive_int(query_channels=query_channels)
    return query_channels


# ----------------------------------------------------------------------------------------------------- DANet
class PositionAttention(nn.Module):
    """DANet's position attention module (PAM): ``gamma * softmax_N(q k^T) v + x`` over the N positions.

    Queries/keys Conv1x1 C -> C/8, values Conv1x1 C -> C (all with bias), no logit scaling, a learned residual
    gate ``gamma`` initialised to 0 (DANet ``PAM_Module``; mmsegmentation ``PAM`` with ``pam_channels`` = 64 for
    C = 512). Runs through ``attend`` with scale 1.

    ``forward(x (B, C, H, W))`` -> (B, C, H, W).
    """

    def __init__(self, channels: int, query_channels: int | None = None, *, backend: str = "auto") -> None:
        super().__init__()
        _check_positive_int(channels=channels)
        _validate_name(backend, "PositionAttention(backend=...)")
        query_channels = _reduced(channels, query_channels)
        self.backend = backend
        self.query = nn.Conv2d(channels, query_channels, 1)
        self.key = nn.Conv2d(channels, query_channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = tokens(self.query(x)), tokens(self.key(x)), tokens(self.value(x))
        context = attend(q, k, v, scale=1.0, backend=self.backend)  # (B, 1, N, C)
        return self.gamma * untokens(context, x.shape[2]) + x


class ChannelAttention(nn.Module):
    """DANet's channel attention module (CAM): a C x C map ``softmax(rowmax(X X^T) - X X^T)`` over the
    channels, ``gamma * (map @ X) + x`` with ``gamma`` initialised to 0 (DANet ``CAM_Module``, mmsegmentation
    ``CAM``). No parameters besides ``gamma``.

    Subtracting from the row max is the same softmax as ``softmax(-X X^T)``: attention with scale -1 and
    q = k = v = X (B, 1, C, N). Always on ``attend``'s explicit ``matmul`` path: the map is only C x C, and the
    head dim is N (16384 at 128 x 128), which no fused kernel takes.

    ``forward(x (B, C, H, W))`` -> (B, C, H, W).
    """

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = rearrange(x, "b c h w -> b 1 c (h w)")
        context = attend(flat, flat, flat, scale=-1.0, backend="matmul")  # (B, 1, C, N)
        return self.gamma * context.view_as(x) + x


class DualAttention(nn.Module):
    """DANet's head without its classifiers: position attention and channel attention, outputs summed.

    ``full_head=True`` (default; DANet ``DANetHead``, mmsegmentation ``DAHead``): each branch has its own front
    conv (``conv5a``/``conv5c``: Conv3x3 Cin -> C + BN + ReLU, C = Cin / 4 = 512 in DANet) and its own Conv3x3
    C -> C + BN + ReLU after the attention (``conv51``/``conv52``); the sum of the two is classified.
    ``full_head=False``: one shared front conv and no post convs -- the attention core alone, which the
    context-module benchmark times beside the full head.

    Checked: PAM/CAM as in ``PositionAttention``/``ChannelAttention``; the two-branch layout, the 3x3 convs and
    the sum (DANet, mmsegmentation). Choice: DANet trains three classifiers (on the sum and on each branch, each
    with its own loss); here the sum alone is classified and the aux loss comes from ``ContextHead``'s region
    branch, the contract every head here shares.

    At Cin = 2048, C = 512: full head 23.93M parameters and 1110 GFLOPs at 128 x 128 (the OCR paper's table
    has 1110 GFLOPs, but 10.6M parameters -- a count neither layout gives; the attention core is 9.77M; see
    ``ocrformer.context.published``).

    ``forward(x (B, Cin, H, W))`` -> (B, C, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 512,
        *,
        query_channels: int | None = None,
        full_head: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        _check_positive_int(in_channels=in_channels, channels=channels)
        self.out_channels = channels
        self.position_in = ConvNormAct(in_channels, channels, 3)
        self.channel_in = ConvNormAct(in_channels, channels, 3) if full_head else None
        self.position = PositionAttention(channels, query_channels, backend=backend)
        self.channel = ChannelAttention()
        self.position_out = ConvNormAct(channels, channels, 3) if full_head else nn.Identity()
        self.channel_out = ConvNormAct(channels, channels, 3) if full_head else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        position_feats = self.position_in(x)
        channel_feats = position_feats if self.channel_in is None else self.channel_in(x)
        position = self.position_out(self.position(position_feats))
        return position + self.channel_out(self.channel(channel_feats))


# ----------------------------------------------------------------------------------------------------- CCNet
class CrissCrossAttention(nn.Module):
    """CCNet's criss-cross attention: every position attends over its row and its column (H + W - 1
    positions, itself once) with one joint softmax; ``gamma * context + x``.

    Queries/keys Conv1x1 C -> C/8, values Conv1x1 C -> C (with bias), no logit scaling, ``gamma`` initialised to
    0 (CCNet ``PixelwiseAttention``/``ca_weight`` -- its CUDA op builds an (H + W - 1) map per position -- and
    mmcv's ``CrissCrossAttention``, whose pure-PyTorch form masks the position's own column entry with -inf as
    done here). The map is (B, H, W, H + W), not N x N.

    Not routed through ``attend``: the joint softmax couples the row and the column, and ``attend`` returns
    normalised outputs without their log-sum-exp, so a row call and a column call cannot be merged exactly;
    gathering each position's H + W - 1 keys and values for one call would materialise N (H + W) C values,
    far more than this map. The map is already small, so there is no large attention to hand to a kernel.

    ``forward(x (B, C, H, W))`` -> (B, C, H, W).
    """

    def __init__(self, channels: int, query_channels: int | None = None) -> None:
        super().__init__()
        _check_positive_int(channels=channels)
        query_channels = _reduced(channels, query_channels)
        self.query = nn.Conv2d(channels, query_channels, 1)
        self.key = nn.Conv2d(channels, query_channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        q, k, v = self.query(x), self.key(x), self.value(x)
        column = torch.einsum("bchw,bcgw->bhwg", q, k)  # position (h, w) vs (g, w): (B, H, W, H)
        # The row term already holds the position itself; mask it out of the column term.
        self_mask = torch.zeros(height, 1, height, device=x.device, dtype=column.dtype)
        self_mask.diagonal(dim1=0, dim2=2).fill_(float("-inf"))
        row = torch.einsum("bchw,bchv->bhwv", q, k)  # position (h, w) vs (h, v): (B, H, W, W)
        weights = torch.softmax(torch.cat([column + self_mask, row], dim=-1), dim=-1)
        column_weights, row_weights = weights.split([height, width], dim=-1)
        context = torch.einsum("bhwg,bcgw->bchw", column_weights, v) + torch.einsum("bhwv,bchv->bchw", row_weights, v)
        return self.gamma * context + x


class RecurrentCrissCross(nn.Module):
    """CCNet's recurrent criss-cross attention module (RCCA) without its classifier.

    Front Conv3x3 Cin -> C + BN + ReLU (``conva``; C = Cin / 4 = 512), criss-cross attention applied
    ``recurrence`` = 2 times with shared weights (so every position reaches every other), and with
    ``full_head=True`` (default) a Conv3x3 C -> C + BN + ReLU (``convb``) and a Conv3x3 (Cin + C) -> C + BN + ReLU
    bottleneck on [input, context]. ``full_head=False``: front conv and attention only, the core the
    context-module benchmark times beside the full head.

    Checked: all of the above in CCNet ``RCCAModule`` and mmsegmentation ``CCHead`` (``num_convs=2``,
    ``concat_input=True``, ``recurrence=2``; the paper's R = 2). Choices: ReLU after every BN (CCNet's
    InPlaceABNSync uses leaky ReLU with slope 0.01, mmsegmentation ReLU); CCNet's Dropout2d(0.1) before its
    classifier is ``ContextHead``'s dropout.

    At Cin = 2048, C = 512: full head 23.92M parameters and 804 GFLOPs at 128 x 128 (the OCR paper's table has
    804 GFLOPs, but 10.6M parameters -- neither layout's count; the core is 9.77M).

    ``forward(x (B, Cin, H, W))`` -> (B, C, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 512,
        *,
        recurrence: int = 2,
        query_channels: int | None = None,
        full_head: bool = True,
    ) -> None:
        super().__init__()
        _check_positive_int(in_channels=in_channels, channels=channels, recurrence=recurrence)
        self.out_channels = channels
        self.recurrence = recurrence
        self.front = ConvNormAct(in_channels, channels, 3)
        self.attention = CrissCrossAttention(channels, query_channels)
        self.post = ConvNormAct(channels, channels, 3) if full_head else None
        self.bottleneck = ConvNormAct(in_channels + channels, channels, 3) if full_head else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.front(x)
        for _ in range(self.recurrence):
            feats = self.attention(feats)
        if self.post is None:
            return feats
        return self.bottleneck(torch.cat([x, self.post(feats)], dim=1))


# ------------------------------------------------------------------------------------------ self-attention
class SelfAttentionBlock(nn.Module):
    """The self-attention (non-local) block of OCNet and ISA: ``out(softmax(q k^T / sqrt(Dk)) v)``.

    Queries and keys: 2 x (Conv1x1 + BN + ReLU) C -> Dk -> Dk; values: Conv1x1 C -> Dv; scale Dk^-0.5; the
    output projection Dv -> C is a Conv1x1 with bias initialised to zero (OCNet, ``norm_out=False``) or a
    Conv1x1 + BN + ReLU (ISA, ``norm_out=True``). Runs through ``attend``.

    Checked: openseg ``_SelfAttentionBlock`` (base_oc_block.py) and ``SelfAttentionBlock2D`` (isa_block.py):
    the two-layer key/query transforms, the scaling, the zero-initialised output conv of OCNet, the
    conv + BN + ReLU output of ISA; mmsegmentation ``ISAHead`` agrees for ISA. Choices: the key/query convs are
    bias-free before their BatchNorm (openseg's OCNet has a bias there, redundant); the value conv has no bias
    (as ISA's; OCNet's value bias passes through the weighted sum unchanged -- the weights sum to 1 -- and its
    output conv's bias absorbs it).

    ``forward(x (B, C, H, W))`` -> (B, C, H, W).
    """

    def __init__(
        self,
        channels: int,
        *,
        key_channels: int = 256,
        value_channels: int | None = None,
        norm_out: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        value_channels = key_channels if value_channels is None else value_channels
        _check_positive_int(channels=channels, key_channels=key_channels, value_channels=value_channels)
        _validate_name(backend, "SelfAttentionBlock(backend=...)")
        self.backend = backend
        self.query = nn.Sequential(ConvNormAct(channels, key_channels, 1), ConvNormAct(key_channels, key_channels, 1))
        self.key = nn.Sequential(ConvNormAct(channels, key_channels, 1), ConvNormAct(key_channels, key_channels, 1))
        self.value = nn.Conv2d(channels, value_channels, 1, bias=False)
        if norm_out:
            self.out = ConvNormAct(value_channels, channels, 1)
        else:
            self.out = nn.Conv2d(value_channels, channels, 1)
            # OCNet's non-local convention: the block starts as "no context" and learns to add it.
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = tokens(self.query(x)), tokens(self.key(x)), tokens(self.value(x))
        context = attend(q, k, v, backend=self.backend)  # (B, 1, N, Dv); scale Dk ** -0.5
        return self.out(untokens(context, x.shape[2]))


class BaseObjectContext(nn.Module):
    """OCNet's base object context (base-OC), the OCR paper's "Self-Attention" row.

    Front Conv3x3 Cin -> C + BN + ReLU; a ``SelfAttentionBlock`` over all N positions (Dk = Dv = 256); its
    output concatenated with the front conv's and fused by a Conv1x1 2C -> C + BN + ReLU.

    Checked: openseg ``BaseOCNet`` (front conv 2048 -> 512 with BN + ReLU, ``BaseOC_Module(512, 512,
    key_channels=256, value_channels=256)``, fusion of [context, input] by 1x1 + BN + ReLU + Dropout2d(0.05))
    and its complexity run (base_oc_block.py ``__main__``: the same front conv + module). Choices: bias-free
    convs before BatchNorm (openseg's front and fusion convs carry biases); the module's Dk = Dv = the model's
    ``key_channels``.

    At Cin = 2048, C = 512: 10.62M parameters (openseg's run counts the same layout: 10.62M; the OCR paper's
    table says 10.5M), 623 GFLOPs at 128 x 128 (table: 619).

    ``forward(x (B, Cin, H, W))`` -> (B, C, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 512,
        *,
        key_channels: int = 256,
        value_channels: int | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        _check_positive_int(in_channels=in_channels, channels=channels)
        self.out_channels = channels
        self.front = ConvNormAct(in_channels, channels, 3)
        self.attention = SelfAttentionBlock(
            channels, key_channels=key_channels, value_channels=value_channels, backend=backend
        )
        self.fuse = ConvNormAct(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.front(x)
        return self.fuse(torch.cat([self.attention(feats), feats], dim=1))


class InterlacedSparseSelfAttention(nn.Module):
    """ISA: self-attention factorised into a long-range and a short-range step.

    Front Conv3x3 Cin -> C + BN + ReLU; long range: self-attention within each of the ``groups`` = 8 x 8
    interlaced subsets (the positions 8 apart in both directions, spread over the whole map); short range:
    self-attention within each 8 x 8 block; both ``SelfAttentionBlock`` with ``norm_out`` (Dk = 256,
    Dv = C = 512); the result concatenated after the front conv's output and fused by a Conv1x1 2C -> C + BN +
    ReLU. H, W not divisible by 8 are zero-padded evenly on both sides and cropped back afterwards (the padded
    positions take part in the attention, as in both codebases).

    Checked: openseg ``ISA_Block``/``ISA_Module`` and ``ISANet`` (``key_channels=256, value_channels=512,
    out_channels=512, down_factors=[[8, 8]]``, fusion of [input, context]); mmsegmentation ``ISAHead``
    (``down_factor=(8, 8)``, same padding and permutations). Choice: bias-free front conv before its BatchNorm.
    Not in the OCR paper's complexity table. At Cin = 2048, C = 512: 11.80M parameters.

    ``forward(x (B, Cin, H, W))`` -> (B, C, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 512,
        *,
        key_channels: int = 256,
        value_channels: int | None = None,
        groups: tuple[int, int] = (8, 8),
        backend: str = "auto",
    ) -> None:
        super().__init__()
        value_channels = channels if value_channels is None else value_channels
        _check_positive_int(in_channels=in_channels, channels=channels, group_h=groups[0], group_w=groups[1])
        self.out_channels = channels
        self.groups = tuple(groups)
        self.front = ConvNormAct(in_channels, channels, 3)
        block = {"key_channels": key_channels, "value_channels": value_channels, "norm_out": True, "backend": backend}
        self.long_range = SelfAttentionBlock(channels, **block)
        self.short_range = SelfAttentionBlock(channels, **block)
        self.fuse = ConvNormAct(2 * channels, channels, 1)

    def interlaced(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W): long-range then short-range attention."""
        (gh, gw), (height, width) = self.groups, feats.shape[2:]
        pad_h, pad_w = -height % gh, -width % gw
        padded = F.pad(feats, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        qh, qw = padded.shape[2] // gh, padded.shape[3] // gw
        # Long range: group (i, j) holds the positions (a * gh + i, b * gw + j), spread over the whole map.
        x = rearrange(padded, "b c (qh gh) (qw gw) -> (b gh gw) c qh qw", gh=gh, gw=gw)
        x = self.long_range(x)
        # Short range: block (a, b) holds the positions (a * gh + i, b * gw + j), a local gh x gw window.
        x = rearrange(x, "(b gh gw) c qh qw -> (b qh qw) c gh gw", gh=gh, gw=gw)
        x = self.short_range(x)
        x = rearrange(x, "(b qh qw) c gh gw -> b c (qh gh) (qw gw)", qh=qh, qw=qw)
        return x[:, :, pad_h // 2 : pad_h // 2 + height, pad_w // 2 : pad_w // 2 + width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.front(x)
        return self.fuse(torch.cat([feats, self.interlaced(feats)], dim=1))


# ------------------------------------------------------------------------------------------ double attention
class DoubleAttention(nn.Module):
    """A2-Net's double attention, between a front conv and a fusion as the other relational modules have them.

    Front Conv3x3 Cin -> C + BN + ReLU. Then the A2 block (A2-Net paper, Sec. 3): features A = Conv1x1 C -> m;
    gather -- n attention maps B = Conv1x1 C -> n, each a softmax over the N positions, pool A into n global
    descriptors G (B, n, m); distribute -- each position mixes the descriptors with its own softmax over n of
    V = Conv1x1 C -> n; a Conv1x1 m -> C. The result is concatenated with the front conv's output and fused by a
    Conv1x1 2C -> C + BN + ReLU.

    Both steps are attention, run through ``attend`` without computing B or V separately: gather is n learned
    queries (B's weights, (n, C)) over the N position keys with A as values -- OCR's decoder step; B's bias
    would shift all N logits of a map alike, which a softmax over N ignores, so B has none. Distribute is each
    position's [x, 1] as query over n keys [V's weights, V's bias], with G as values -- OCR's encoder step. Both
    products are the 1x1 convs themselves, so no FLOPs are added (beyond 7 zero columns of padding).

    Neither openseg nor mmsegmentation has A2-Net, so this layout is a choice: the plain 1x1 convs and the two
    softmaxes are the paper's; m = n = C / 4 = 128 is a choice, which reproduces the OCR paper's table best
    (10.23M parameters vs 10.2M, 336 vs 338 GFLOPs at 2048 x 128 x 128; n = K = 19 descriptors would give
    10.12M); the front conv and the concatenation + fusion follow how openseg builds its other relational
    modules (A2-Net itself adds the block's output to its input).

    ``forward(x (B, Cin, H, W))`` -> (B, C, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 512,
        *,
        descriptors: int | None = None,
        descriptor_channels: int | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        descriptors = channels // 4 if descriptors is None else descriptors
        descriptor_channels = channels // 4 if descriptor_channels is None else descriptor_channels
        _check_positive_int(
            in_channels=in_channels, channels=channels, descriptors=descriptors, descriptor_channels=descriptor_channels
        )
        _validate_name(backend, "DoubleAttention(backend=...)")
        self.out_channels = channels
        self.backend = backend
        self.front = ConvNormAct(in_channels, channels, 3)
        self.features = nn.Conv2d(channels, descriptor_channels, 1)  # A
        self.gather = nn.Conv2d(channels, descriptors, 1, bias=False)  # B: the gather maps' logits
        self.distribute = nn.Conv2d(channels, descriptors, 1)  # V: the distribute weights' logits
        self.up = nn.Conv2d(descriptor_channels, channels, 1)
        self.fuse = ConvNormAct(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.front(x)  # (B, C, H, W)
        batch, channels, height, _ = feats.shape
        pixels = tokens(feats)  # (B, 1, N, C)
        # Under autocast the activations may be bf16 while the weights are not.
        gather = self.gather.weight.view(-1, channels).to(pixels.dtype)  # (n, C)
        values = tokens(self.features(feats))  # (B, 1, N, m)
        descriptors = attend(
            gather.expand(batch, 1, *gather.shape), pixels, values, scale=1.0, backend=self.backend
        )  # (B, 1, n, m): softmax over the N positions
        weight, bias = self.distribute.weight.view(-1, channels), self.distribute.bias
        # Zero columns up to a multiple of 8 leave every q . k alone; torch's memory-efficient CUDA kernel only
        # takes head dims divisible by 8 (4 in float32) and would otherwise fall back to the N x n math path.
        pad = -(channels + 1) % 8
        keys = F.pad(torch.cat([weight, bias[:, None]], dim=1), (0, pad)).to(pixels.dtype)  # (n, C + 1 + pad)
        ones = F.pad(pixels.new_ones(*pixels.shape[:-1], 1), (0, pad))
        queries = torch.cat([pixels, ones], dim=-1)  # (B, 1, N, C + 1 + pad): [x, 1, 0...]
        context = attend(
            queries, keys.expand(batch, 1, *keys.shape), descriptors, scale=1.0, backend=self.backend
        )  # (B, 1, N, m): softmax over the n descriptors
        return self.fuse(torch.cat([self.up(untokens(context, height)), feats], dim=1))
