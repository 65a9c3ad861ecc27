"""OCR (object-contextual representations) as Transformer cross-attention (OCRNet paper, Section 3.3).

Shape legend:
    B  batch             K  classes = object regions = category queries
    H, W  feature size   N  = H * W pixels
    Cin  backbone channels     C  pixel/region channels (``mid_channels``, 512 in HRNet-OCR)
    Dk key channels (``key_channels``, 256)     h  heads, d = Dk / h

Decoder  (``OCRDecoder``): the K category queries -- the weights of the linear classifier that predicts the
         soft object regions -- attend over the N pixel keys. The attention logits *are* the soft-region
         logits (``aux_logits``, trained by the auxiliary loss); the spatial softmax-weighted sum of the pixel
         representations gives the K region representations.
Encoder  (``OCREncoder``): every pixel queries the K regions; the result, the object-contextual
         representation, is concatenated with the pixel representation and fused.
Head     (``OCRHead``): decoder -> encoder -> 1x1 classifier; with ``num_heads=1`` exactly the HRNet-OCR head
         (``ocrformer.convert`` maps its checkpoints here).

Every conv that the classic head follows by a BatchNorm is bias-free here: a bias in front of a BatchNorm is
redundant (it cancels against the batch mean in training and can be folded into the running mean for
inference), so ``convert_checkpoint`` folds released biases into ``running_mean`` exactly.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import ConvNormAct
from torch import nn

from .attention import _validate_name, attend

__all__ = ["DecoderOutput", "OCRDecoder", "OCRDecoderLayer", "OCREncoder", "OCRHead"]


def _check_positive_int(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_dropout(**values: float) -> None:
    for name, value in values.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def _region_widths(
    in_channels: int,
    region_in_channels: int | None,
    region_channels: int | None,
    region_kernel_size: int,
    region_dropout: float,
    **positive: int,
) -> tuple[int, int]:
    """(Cr, Dr) of a soft-region branch -- the features it reads (default: the head's input) and its hidden
    width (default: Cr) -- after checking every width (and ``positive``'s), the kernel (1 or 3) and the dropout.
    Shared by ``OCRDecoder`` and the other heads' aux branch (``ocrformer.context.ContextHead``)."""
    region_in_channels = in_channels if region_in_channels is None else region_in_channels
    region_channels = region_in_channels if region_channels is None else region_channels
    _check_positive_int(
        in_channels=in_channels, region_in_channels=region_in_channels, region_channels=region_channels, **positive
    )
    if region_kernel_size not in (1, 3):
        raise ValueError(f"region_kernel_size must be 1 or 3, got {region_kernel_size!r}")
    _check_dropout(region_dropout=region_dropout)
    return region_in_channels, region_channels


def _check_feature_map(
    x: torch.Tensor, channels: int, name: str, expected: str, dtype: torch.dtype | None = None
) -> None:
    """A (B, ``channels``, H, W) floating-point tensor with B, H, W >= 1, of ``dtype`` (the module's, when given).

    Shape and dtype only (no pass over the data): it runs at every forward."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 4-D tensor (B, {expected}, H, W), got {shape}")
    if x.shape[1] != channels:
        raise ValueError(
            f"{name} has {x.shape[1]} channels but the module was built with {expected}={channels} "
            f"(shape {tuple(x.shape)})"
        )
    _check_non_empty(x, name)
    _check_input_dtype(x, name, dtype, "module")


def _describe(x: object) -> object:
    """A tensor's shape, or the type name of anything else (for error messages)."""
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__


def _check_non_empty(x: torch.Tensor, name: str) -> None:
    """B, H and W of a (B, C, H, W) input at least 1 (an empty batch or image has nothing to attend over)."""
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} must be non-empty, got {tuple(x.shape)} (B, C, H, W); expected B, H and W >= 1")


def _check_input_dtype(x: torch.Tensor, name: str, dtype: torch.dtype | None, owner: str) -> None:
    """``x`` floating point and, when ``dtype`` is given, of that dtype -- except under autocast, which casts."""
    if x.is_floating_point() and (dtype is None or x.dtype == dtype or _autocast_enabled(x.device.type)):
        return
    of_dtype = "" if dtype is None else f" of the {owner}'s dtype {dtype}"
    hint = "" if x.is_floating_point() or owner != "model" else " (convert with .float() and normalise first)"
    raise ValueError(f"{name} must be a floating-point tensor{of_dtype}, got {x.dtype}{hint}")


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type without autocast
        return False


class DecoderOutput(NamedTuple):
    """What ``OCRDecoder`` returns.

    regions:        (B, K, C)     the object region representations (the cross-attention output)
    region_logits:  (B, K, H, W)  the soft object regions before the spatial softmax (= ``aux_logits``)
    pixels:         (B, C, H, W)  the pixel representations (the attention values)
    """

    regions: torch.Tensor
    region_logits: torch.Tensor
    pixels: torch.Tensor


class OCRDecoderLayer(nn.Module):
    """One cross-attention step of the decoder: region queries attend over the pixels and come out as regions.

    ``forward(queries (B, K, D) or (K, D) shared by the batch, keys (B, N, D), values (B, N, C), *, weights=None)``
    -> regions (B, K, C):
    ``softmax_N(scale * queries keys^T) values`` through ``ocrformer.attend`` (scale 1: the classic head takes a
    plain spatial softmax of the region logits). ``weights`` (B, K, N), rows summing to 1 (or 0 for an empty
    region), replace the attention -- the GT-OCR oracle passes ground-truth regions this way.

    Parameter-free, so ``OCRDecoder`` runs one with the state-dict keys of the classic head. It is the seam for a
    multi-layer (Mask2Former-style) decoder: a further layer takes the regions of the one before, projected to
    queries, over the same pixel keys and values -- one more layer and a projection, not a new head (not built:
    nothing here measures what it would gain).
    """

    def __init__(self, *, scale: float = 1.0, backend: str = "auto") -> None:
        super().__init__()
        _validate_name(backend, "OCRDecoderLayer(backend=...)")
        self.scale = scale
        self.backend = backend

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        *,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if weights is not None:
            return torch.bmm(weights.to(values.dtype), values)  # (B, K, N) @ (B, N, C)
        q = queries.expand(keys.shape[0], *queries.shape[-2:])[:, None]  # (B, 1, K, D)
        return attend(q, keys[:, None], values[:, None], scale=self.scale, backend=self.backend)[:, 0]

    def extra_repr(self) -> str:
        return f"scale={self.scale}, backend={self.backend!r}"


class OCRDecoder(nn.Module):
    """Category-query cross-attention: K learned class queries attend over the N pixels.

    Args:
        in_channels: channels ``Cin`` of the backbone features that become the pixel representations.
        num_classes: K, the number of object regions (= classes).
        mid_channels: channels ``C`` of the pixel and region representations.
        region_in_channels: channels ``Cr`` of the features the soft regions are predicted from, when they
            differ from ``feats`` (the dilated-ResNet OCRNet predicts regions from the stage before the last);
            defaults to ``in_channels``.
        region_channels: width ``Dr`` of the region branch's hidden layer (the keys); defaults to ``Cr``
            (HRNet-OCR: 720 -> 720; openseg's ResNet OCRNet: 1024 -> 512, mmsegmentation's: 1024 -> 256).
        region_kernel_size: kernel of that layer: 1 (HRNet-OCR, mmsegmentation's HRNet) or 3 (openseg, and
            the dilated-ResNet OCRNets of openseg and mmsegmentation).
        region_dropout: ``Dropout2d`` on the keys before the queries read them (the dilated-ResNet OCRNets:
            0.05 in openseg, 0.1 in mmsegmentation; none in the HRNet models). Training only.
        backend: attention backend for ``ocrformer.attend``.

    ``forward(feats, region_feats=None)``: feats (B, Cin, H, W), region_feats (B, Cr, H, W) -> DecoderOutput.
    Inputs are floating point in the module's dtype (any floating dtype under autocast) with B, H, W >= 1;
    anything else is refused with a ``ValueError`` naming the argument.

    Parameters (and the classic HRNet-OCR modules they replace):
        key_proj    ConvKxK + BN + ReLU, Cr -> Dr  the aux head's hidden layer (``aux_head.0-2``)
        queries     (K, Dr)                       the category queries = aux classifier weights (``aux_head.3``)
        query_bias  (K,)                          per-class logit bias; shifts ``region_logits`` only: a constant
                                                  added over all pixels does not change the spatial softmax
        value_proj  Conv3x3 + BN + ReLU          the pixel representation (``conv3x3_ocr``)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        mid_channels: int = 512,
        region_in_channels: int | None = None,
        region_channels: int | None = None,
        region_kernel_size: int = 1,
        region_dropout: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        region_in_channels, region_channels = _region_widths(
            in_channels,
            region_in_channels,
            region_channels,
            region_kernel_size,
            region_dropout,
            num_classes=num_classes,
            mid_channels=mid_channels,
        )
        _validate_name(backend, "OCRDecoder(backend=...)")
        self.in_channels = in_channels
        self.region_in_channels = region_in_channels
        self.region_channels = region_channels
        self.num_classes = num_classes
        self.layer = OCRDecoderLayer(scale=1.0, backend=backend)
        self.key_proj = ConvNormAct(region_in_channels, region_channels, region_kernel_size)
        self.key_dropout = nn.Dropout2d(region_dropout)
        self.queries = nn.Parameter(torch.empty(num_classes, region_channels))
        self.query_bias = nn.Parameter(torch.empty(num_classes))
        self.value_proj = ConvNormAct(in_channels, mid_channels, 3)
        self.reset_queries()

    def reset_queries(self) -> None:
        """Initialise the queries as ``nn.Conv2d`` initialises the 1x1 classifier they stand for."""
        nn.init.kaiming_uniform_(self.queries, a=math.sqrt(5))
        bound = 1 / math.sqrt(self.region_channels)
        nn.init.uniform_(self.query_bias, -bound, bound)

    def forward(
        self,
        feats: torch.Tensor,
        region_feats: torch.Tensor | None = None,
        *,
        region_weights: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """``region_weights`` (B, K, N), each row summing to 1 over the pixels (or 0 for an empty region),
        replaces the attention weights -- the GT-OCR oracle passes ground-truth regions this way."""
        _check_feature_map(feats, self.in_channels, "feats", "in_channels", self.queries.dtype)
        if region_feats is None:
            region_feats = feats
        else:
            _check_feature_map(
                region_feats, self.region_in_channels, "region_feats", "region_in_channels", self.queries.dtype
            )
            if region_feats.shape[0] != feats.shape[0] or region_feats.shape[2:] != feats.shape[2:]:
                raise ValueError(
                    f"region_feats {tuple(region_feats.shape)} must match feats {tuple(feats.shape)} "
                    "in batch size and spatial size"
                )
        if region_weights is not None:
            expected = (feats.shape[0], self.num_classes, feats.shape[2] * feats.shape[3])
            if not isinstance(region_weights, torch.Tensor) or region_weights.shape != expected:
                raise ValueError(f"region_weights must be (B, K, N) = {expected}, got {_describe(region_weights)}")
        keys = self.key_dropout(self.key_proj(region_feats))  # (B, Dr, H, W)
        pixels = self.value_proj(feats)  # (B, C, H, W)
        batch, _, height, width = feats.shape
        # (K, Dr) @ (B, Dr, N) as a bmm over views: einsum would save a folded copy of the keys for backward.
        region_logits = torch.bmm(self.queries.expand(batch, *self.queries.shape), keys.flatten(2))
        region_logits = (region_logits + self.query_bias[:, None]).view(batch, -1, height, width)

        # Under autocast the keys may be bf16 while the parameter is not.
        q = self.queries.to(keys.dtype)  # (K, Dr), shared by the batch
        k = rearrange(keys, "b c h w -> b (h w) c")  # (B, N, Dr)
        v = rearrange(pixels, "b c h w -> b (h w) c")  # (B, N, C)
        regions = self.layer(q, k, v, weights=region_weights)  # (B, K, C)
        return DecoderOutput(regions, region_logits, pixels)

    @property
    def backend(self) -> str:
        return self.layer.backend

    @backend.setter
    def backend(self, name: str) -> None:
        _validate_name(name, "OCRDecoder.backend")
        self.layer.backend = name


def _key_query_projection(in_channels: int, key_channels: int) -> nn.Sequential:
    """Two Conv1x1 + BN + ReLU layers: the classic ``f_pixel`` / ``f_object``."""
    return nn.Sequential(ConvNormAct(in_channels, key_channels, 1), ConvNormAct(key_channels, key_channels, 1))


class OCREncoder(nn.Module):
    """Pixel-query cross-attention over the K regions, then fusion with the pixel representation.

    Args:
        channels: ``C`` of the pixel and region representations.
        key_channels: ``Dk`` of queries, keys and values inside the attention.
        out_channels: channels of the fused output; defaults to ``channels``.
        num_heads: ``h``; ``Dk`` is split into ``h`` heads of ``Dk / h`` channels, each with its own softmax
            over the regions. ``num_heads=1`` is exactly the classic head.
        dropout: ``Dropout2d`` probability after the fusion (0.05 in HRNet-OCR).
        backend: attention backend for ``ocrformer.attend``.

    ``forward(pixels, regions)``: pixels (B, C, H, W), regions (B, K, C) -> (B, out_channels, H, W); pixels in
    the module's dtype and regions in the pixels' (any floating dtype under autocast), B, H, W, K >= 1.

    Parameters (and the classic ``ocr_distri_head`` modules they replace):
        query_proj  2 x (Conv1x1 + BN + ReLU) on pixels   ``f_pixel``
        key_proj    2 x (Conv1x1 + BN + ReLU) on regions  ``f_object``
        value_proj  Conv1x1 + BN + ReLU on regions        ``f_down``
        out_proj    Conv1x1 + BN + ReLU, Dk -> C          ``f_up``
        fuse        Conv1x1 + BN + ReLU on [context, pixels]  ``conv_bn_dropout``
    """

    def __init__(
        self,
        channels: int,
        *,
        key_channels: int = 256,
        out_channels: int | None = None,
        num_heads: int = 1,
        dropout: float = 0.05,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        out_channels = channels if out_channels is None else out_channels
        _check_positive_int(
            channels=channels, key_channels=key_channels, out_channels=out_channels, num_heads=num_heads
        )
        if key_channels % num_heads:
            raise ValueError(
                f"key_channels ({key_channels}) must be divisible by num_heads ({num_heads}); "
                f"try num_heads in {[h for h in range(1, key_channels + 1) if key_channels % h == 0][:8]}"
            )
        _check_dropout(dropout=dropout)
        _validate_name(backend, "OCREncoder(backend=...)")
        self.channels = channels
        self.num_heads = num_heads
        self.backend = backend
        self.query_proj = _key_query_projection(channels, key_channels)
        self.key_proj = _key_query_projection(channels, key_channels)
        self.value_proj = ConvNormAct(channels, key_channels, 1)
        self.out_proj = ConvNormAct(key_channels, channels, 1)
        self.fuse = ConvNormAct(2 * channels, out_channels, 1)
        self.dropout = nn.Dropout2d(dropout)

    def forward(
        self, pixels: torch.Tensor, regions: torch.Tensor, *, assignment: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``assignment`` (B, N, K): for the GT-OCR oracle, a one-hot row makes that pixel take the value of
        its own ground-truth region instead of attending; all-zero rows (unlabelled pixels) attend as usual."""
        _check_feature_map(pixels, self.channels, "pixels", "channels", self.fuse.conv.weight.dtype)
        _check_regions(regions, pixels, self.channels)
        if assignment is not None:
            expected = (pixels.shape[0], pixels.shape[2] * pixels.shape[3], regions.shape[1])
            if not isinstance(assignment, torch.Tensor) or assignment.shape != expected:
                raise ValueError(f"assignment must be (B, N, K) = {expected}, got {_describe(assignment)}")
        height = pixels.shape[2]
        # The region projections are 1x1 convs (as in the classic head), run on regions laid out (B, C, K, 1).
        region_map = rearrange(regions, "b k c -> b c k 1")
        q = rearrange(self.query_proj(pixels), "b (h d) y x -> b h (y x) d", h=self.num_heads)
        k = rearrange(self.key_proj(region_map), "b (h d) k 1 -> b h k d", h=self.num_heads)
        v = rearrange(self.value_proj(region_map), "b (h d) k 1 -> b h k d", h=self.num_heads)
        context = attend(q, k, v, backend=self.backend)  # (B, h, N, d); scale d ** -0.5
        if assignment is not None:
            assigned = torch.einsum("bnk,bhkd->bhnd", assignment.to(v.dtype), v)
            labelled = (assignment.sum(dim=-1) > 0)[:, None, :, None]  # (B, 1, N, 1)
            context = torch.where(labelled, assigned, context)
        context = rearrange(context, "b h (y x) d -> b (h d) y x", y=height)
        context = self.out_proj(context)  # (B, C, H, W)
        return self.dropout(self._fuse(context, pixels))

    def _fuse(self, context: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """``fuse(cat([context, pixels]))`` without the concatenation: the 1x1 conv over the stacked channels is
        the sum of its two halves applied to each part. Same function and gradients; in training the conv no
        longer saves a (B, 2C, H, W) copy of its input for backward (both parts are saved already)."""
        conv = self.fuse.conv
        split = context.shape[1]
        x = F.conv2d(context, conv.weight[:, :split], conv.bias) + F.conv2d(pixels, conv.weight[:, split:])
        return self.fuse.bn(x)


def _check_regions(regions: torch.Tensor, pixels: torch.Tensor, channels: int) -> None:
    """``regions`` (B, K, channels) with K >= 1, in ``pixels``' dtype (unless autocast casts)."""
    expected = f"(B, K, channels) = ({pixels.shape[0]}, K, {channels})"
    if not isinstance(regions, torch.Tensor):
        raise ValueError(f"regions must be a {expected} tensor, got {type(regions).__name__}")
    if regions.dim() != 3 or regions.shape[0] != pixels.shape[0] or regions.shape[2] != channels:
        raise ValueError(f"regions must be {expected}, got {tuple(regions.shape)}")
    if regions.shape[1] == 0:
        raise ValueError(f"regions must hold at least one region (K >= 1), got {tuple(regions.shape)}")
    if regions.dtype != pixels.dtype and not (regions.is_floating_point() and _autocast_enabled(pixels.device.type)):
        raise ValueError(f"regions must have pixels' dtype {pixels.dtype}, got {regions.dtype}")


class OCRHead(nn.Module):
    """The OCR segmentation head: ``OCRDecoder`` -> ``OCREncoder`` -> 1x1 classifier.

    Args:
        in_channels: ``Cin`` of the backbone features (720 for HRNetV2-W48).
        num_classes: K.
        mid_channels: ``C`` of pixel/region representations (512 in HRNet-OCR).
        key_channels: ``Dk`` inside the encoder attention (256 in HRNet-OCR).
        num_heads: encoder attention heads; 1 is the classic head.
        dropout: ``Dropout2d`` after the fusion (0.05 in HRNet-OCR).
        backend: attention backend for both cross-attentions (``"auto"``, ``"matmul"``, ``"sdpa"``,
            ``"xformers"``).
        region_in_channels, region_channels, region_kernel_size, region_dropout: the soft-region branch (see
            ``OCRDecoder``); the defaults are HRNet-OCR's (Conv1x1 at the input width, no dropout).

    ``forward(feats, region_feats=None)``: feats (B, Cin, H, W) -> ``{"logits": (B, K, H, W),
    "aux_logits": (B, K, H, W)}``, both at the resolution of ``feats``. ``feats`` must be floating point in the
    head's dtype (any floating dtype under autocast) with B, H, W >= 1.

    ``forward`` always runs the modules (training, export and the reference). For fast inference build
    ``FusedOCRHead(head)`` -- or ``ocrformer.optimize_for_inference(model)`` for a whole model -- explicitly: the
    same function with BatchNorm folded, channels-last GEMMs and a choice of 3x3 conv (``ocrformer.fused_head``).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        mid_channels: int = 512,
        key_channels: int = 256,
        num_heads: int = 1,
        dropout: float = 0.05,
        backend: str = "auto",
        region_in_channels: int | None = None,
        region_channels: int | None = None,
        region_kernel_size: int = 1,
        region_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.decoder = OCRDecoder(
            in_channels,
            num_classes,
            mid_channels=mid_channels,
            region_in_channels=region_in_channels,
            region_channels=region_channels,
            region_kernel_size=region_kernel_size,
            region_dropout=region_dropout,
            backend=backend,
        )
        self.encoder = OCREncoder(
            mid_channels, key_channels=key_channels, num_heads=num_heads, dropout=dropout, backend=backend
        )
        self.classifier = nn.Conv2d(mid_channels, num_classes, 1)

    @property
    def backend(self) -> str:
        return self.decoder.backend

    @backend.setter
    def backend(self, name: str) -> None:
        _validate_name(name, "OCRHead.backend")
        self.decoder.backend = self.encoder.backend = name

    def forward(
        self,
        feats: torch.Tensor,
        region_feats: torch.Tensor | None = None,
        *,
        oracle_labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``oracle_labels`` (B, H, W) ground-truth class ids at the resolution of ``feats`` (values outside
        [0, K) = unlabelled) switch on the GT-OCR oracle, the paper's Fig. 1 upper bound -- an analysis tool,
        since it needs labels at inference: each region is the mean of its ground-truth pixels, and each
        labelled pixel takes its own class's region instead of attending over all of them."""
        if oracle_labels is None:
            decoded = self.decoder(feats, region_feats)
            fused = self.encoder(decoded.pixels, decoded.regions)
        else:
            if not isinstance(feats, torch.Tensor) or feats.dim() != 4:  # the rest is checked by the decoder
                _check_feature_map(feats, self.decoder.in_channels, "feats", "in_channels")
            one_hot = self._ground_truth_regions(oracle_labels, feats)  # (B, K, N)
            weights = one_hot / one_hot.sum(dim=-1, keepdim=True).clamp_min(1.0)  # L1-normalised: means
            decoded = self.decoder(feats, region_feats, region_weights=weights)
            fused = self.encoder(decoded.pixels, decoded.regions, assignment=one_hot.transpose(1, 2))
        return {"logits": self.classifier(fused), "aux_logits": decoded.region_logits}

    def _ground_truth_regions(self, labels: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """labels (B, H, W) -> one-hot (B, K, H*W) in feats' dtype; out-of-range labels give all-zero columns."""
        _check_label_tensor(labels, "oracle_labels")
        if labels.shape != (feats.shape[0], *feats.shape[2:]):
            raise ValueError(
                f"oracle_labels must be (B, H, W) = {(feats.shape[0], *feats.shape[2:])} like feats, "
                f"got {tuple(labels.shape)} (resize labels with nearest interpolation first)"
            )
        num_classes = self.decoder.num_classes
        labels = labels.flatten(1).long()
        valid = (labels >= 0) & (labels < num_classes)
        one_hot = F.one_hot(labels.where(valid, 0), num_classes) * valid[..., None]  # (B, N, K)
        return one_hot.transpose(1, 2).to(feats.dtype)


def _check_label_tensor(labels: torch.Tensor, name: str) -> None:
    """An integer tensor of class ids (a float would be truncated silently, a bool read as classes 0/1)."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of integer class ids, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class ids, got dtype {labels.dtype}")
