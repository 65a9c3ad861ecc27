"""``FusedOCRHead``: ``OCRHead``'s eval function computed with fewer passes and FLOPs, for inference.

Built explicitly -- ``FusedOCRHead(head)``, or for a whole model ``ocrformer.optimize_for_inference(model)`` --
from an ``OCRHead`` whose weights it snapshots; ``OCRHead`` itself always runs its modules (the reference, and
the only path that trains). Rebuild it after changing the head's weights.

What it does differently (every step is exact algebra; only the floating-point rounding differs):

- **BatchNorm folded into the convs** once, when it is built (``torch.nn.utils.fusion.fuse_conv_bn_weights``):
  ``BN(W x) = (s W) x + (beta - s mean)`` with ``s = gamma / sqrt(var + eps)``.
- **One channels-last (NHWC) layout** for the whole head: the input is transposed once (in cache-sized channel
  blocks; not at all when it is channels-last already, as in an ``optimize_for_inference`` model); every 1x1
  conv then runs on ``(pixels, channels)`` rows as oneDNN's channels-last conv, bias in its epilogue, with no
  permutes between layers.
- **The 3x3 conv** as oneDNN's direct conv on that buffer (``conv="direct"``) or by Winograd F(2x2, 3x3) or
  F(4x4, 3x3) (``conv="winograd2"`` / ``"winograd4"``, ``ocrformer.winograd``: 4/9 or 1/4 of the multiply-adds;
  F(4x4) rounds ~10x more than the direct conv: 3.3e-6 relative at the head's output against 9.4e-7, measured).
  ``conv="auto"`` (the default) chooses by the map's size (``AUTO_CONV``): the fastest of the three at each size
  ``benchmarks/inference_speed.py`` measured -- F(4x4) on large maps, F(2x2) on small ones, direct on tiny ones.
- **out_proj moved in front of the encoder's weighted sum** (one head and ``K <= key_channels``, i.e. it saves
  FLOPs): ``out_proj`` is linear and its folded BatchNorm affine, and each attention row sums to 1, so
  ``ReLU(W_up (P v) + b) = ReLU(P (W_up v) + b)``: the projection runs on the K region values instead of the N
  pixels.
- **No concatenation before the fuse conv**: ``W [a; b] = W_a a + W_b b``, two 1x1 convs added in one buffer.

Both attention steps go through ``ocrformer.attend`` with the head's backend (``"auto"``: the measured table,
e.g. ``split_keys`` for the decoder's few queries over many keys on the CPU).

Shape legend as in ``ocrformer.ocr``: B batch, K classes, Cin input channels, C mid channels, Dr region-branch
channels, Dk key channels, h heads, N = H * W pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .attention import attend
from .ocr import OCRHead, _check_feature_map
from .winograd import WINOGRAD, copy_nhwc, padded_nhwc, winograd_conv3x3, winograd_weight

__all__ = ["AUTO_CONV", "CONV_MODES", "FusedOCRHead", "auto_conv"]

CONV_MODES = ("auto", "direct", "winograd2", "winograd4")
# ``conv="auto"``: the first conv whose pixel count (B * H * W of the map) is reached, else the direct conv: at each
# size the fastest of the three in one run of ``benchmarks/inference_speed.py`` (2026-11-30, 2 cores, 720 -> 512
# channels; the whole head, ms, direct / F(2x2) / F(4x4)): 128 x 256: 824 / 693 / 634; 64 x 128: 176 / 140 / 118;
# 32 x 64: 45.0 / 35.2 / 32.9; 16 x 32: 13.2 / 12.2 / 15.0. Below 512 pixels, the 3x3 conv alone at 8 x 16:
# 2.2 / 3.9 / 6.9 ms (the transforms' per-op overhead dominates small maps). The 3x3 conv alone at other input
# widths kept the order, except 270 channels (HRNet-W18) at 16 x 32: direct 2.8 ms, F(2x2) 3.2 ms.
AUTO_CONV = ((32 * 64, "winograd4"), (16 * 32, "winograd2"))


_TILE_SIZE = {"winograd2": 2, "winograd4": 4}  # the Winograd modes' output tile sizes m


def _convs_run_by(mode: str) -> tuple[str, ...]:
    """The convs a head built with ``conv=mode`` may run: ``mode`` itself, or for ``"auto"`` all it chooses from."""
    return ("direct", *(conv for _, conv in AUTO_CONV)) if mode == "auto" else (mode,)


def auto_conv(pixels: int, device_type: str = "cpu", dtype: torch.dtype = torch.float32) -> str:
    """What ``conv="auto"`` runs on a map of ``pixels`` = B * H * W pixels. ``AUTO_CONV`` was measured on the CPU in
    float32; elsewhere it is the direct conv (cuDNN picks its own algorithm, Winograd among them; in half precision
    Winograd's larger transform coefficients would cost more of the few mantissa bits)."""
    if device_type != "cpu" or dtype not in (torch.float32, torch.float64):
        return "direct"
    return next((conv for threshold, conv in AUTO_CONV if pixels >= threshold), "direct")


def _folded(conv_norm_act: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a ``ConvNormAct``'s conv with its eval-mode BatchNorm folded in."""
    conv, bn = conv_norm_act.conv, conv_norm_act.bn
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    return weight.detach().clone(), bias.detach().clone()


# Pixel maps live as rows (B * H * W, C) of a channels-last layout: 1x1 convs, bmm and addmm all read them
# without copies.
def _as_map(rows: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Rows (B * H * W, C) -> a channels-last (B, C, H, W) view of the same memory; shape = (B, H, W)."""
    return rows.view(*shape, -1).permute(0, 3, 1, 2)


def _as_rows(feature_map: torch.Tensor) -> torch.Tensor:
    """A (B, C, H, W) map -> rows (B * H * W, C); a view when the map is channels-last (a copy otherwise)."""
    return feature_map.permute(0, 2, 3, 1).reshape(-1, feature_map.shape[1])


def _conv1x1(rows: torch.Tensor, shape: tuple[int, int, int], weight: torch.Tensor, bias: torch.Tensor | None):
    """A 1x1 conv on rows -> rows, as a channels-last ``F.conv2d``: oneDNN adds the bias in its epilogue and was
    ~10% faster than ``torch.addmm`` here at every width of the head (measured)."""
    return _as_rows(F.conv2d(_as_map(rows, shape), weight, bias))


def _linear_relu(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A folded 1x1 conv + ReLU on a few rows (the K region vectors): (M, Cin) -> (M, Cout)."""
    return torch.addmm(bias, rows, weight.flatten(1).t()).relu_()


class FusedOCRHead(nn.Module):
    """An inference snapshot of ``head`` (see the module docstring).

    Args:
        head: the ``OCRHead`` to compute; its weights and BatchNorm statistics are read once, here.
        conv: the 3x3 conv's algorithm: ``"direct"`` (oneDNN), ``"winograd2"`` / ``"winograd4"`` (Winograd
            F(2x2, 3x3) / F(4x4, 3x3)), or ``"auto"``: by the map's size (see the module docstring). The
            Winograd weights are (m + 2)^2 / 9 times the conv's (F(4x4): 4x; ``"auto"`` keeps all three forms:
            90 MB at 720 -> 512 channels against the direct conv's 13 MB).

    ``forward(feats (B, Cin, H, W), region_feats=None)`` -> ``{"logits", "aux_logits"}`` (B, K, H, W), the
    function of ``head.eval()``. Inference only: it refuses to run in training mode or on inputs that require
    gradients, and has no GT-OCR oracle (use the ``OCRHead``). It computes in its own dtype, under autocast too
    (autocast's half-precision features are cast back; ``.to(dtype)`` converts the snapshot itself).
    """

    def __init__(self, head: OCRHead, *, conv: str = "auto") -> None:
        super().__init__()
        if not isinstance(head, OCRHead):
            raise TypeError(f"FusedOCRHead needs an OCRHead, got {type(head).__name__}")
        if conv not in CONV_MODES:
            raise ValueError(f"conv must be one of {CONV_MODES}, got {conv!r}")
        decoder, encoder = head.decoder, head.encoder
        self.conv = conv
        self.in_channels, self.region_in_channels = decoder.in_channels, decoder.region_in_channels
        self.num_classes, self.num_heads, self.backend = decoder.num_classes, encoder.num_heads, head.backend
        self.region_kernel_size = decoder.key_proj.conv.kernel_size[0]
        with torch.no_grad():
            value_weight, value_bias = _folded(decoder.value_proj)
            self.register_buffer("value_bias", value_bias)
            for run in _convs_run_by(conv):  # the 3x3 weight in the form each conv this head may run reads
                if run == "direct":
                    self.register_buffer("value_weight", value_weight.contiguous(memory_format=torch.channels_last))
                else:  # transformed once: (n^2, C, Cin, 1, 1)
                    m = _TILE_SIZE[run]
                    self.register_buffer(f"value_weight_winograd{m}", winograd_weight(value_weight, WINOGRAD[m]))
            for name, module in (
                ("key", decoder.key_proj),
                ("query0", encoder.query_proj[0]),
                ("query1", encoder.query_proj[1]),
                ("region_key0", encoder.key_proj[0]),
                ("region_key1", encoder.key_proj[1]),
                ("region_value", encoder.value_proj),
                ("up", encoder.out_proj),
            ):
                weight, bias = _folded(module)
                self.register_buffer(f"{name}_weight", weight)
                self.register_buffer(f"{name}_bias", bias)
            # The fuse conv's input is cat([context, pixels]): its weight split into the two halves, contiguous.
            weight, bias = _folded(encoder.fuse)
            context_channels = encoder.out_proj.conv.out_channels
            self.register_buffer("fuse_context_weight", weight[:, :context_channels].contiguous())
            self.register_buffer("fuse_pixel_weight", weight[:, context_channels:].contiguous())
            self.register_buffer("fuse_bias", bias)
            self.register_buffer("queries", decoder.queries.detach().clone())  # (K, Dr)
            self.register_buffer("query_bias", decoder.query_bias.detach().clone())
            self.register_buffer("classifier_weight", head.classifier.weight.detach().flatten(1).clone())
            self.register_buffer("classifier_bias", head.classifier.bias.detach().clone())
        self.eval()  # an inference snapshot: built in eval mode

    def conv_for(self, batch: int, height: int, width: int, device_type: str = "cpu") -> str:
        """The 3x3 conv this head runs on a (batch, height, width) map on ``device_type``: ``conv``, or for
        ``"auto"`` what ``auto_conv`` chooses in the head's dtype."""
        if self.conv != "auto":
            return self.conv
        return auto_conv(batch * height * width, device_type, self.queries.dtype)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, num_classes={self.num_classes}, conv={self.conv!r}, " + (
            f"num_heads={self.num_heads}, backend={self.backend!r}"
        )

    # ------------------------------------------------------------------------------------------ forward
    def forward(self, feats: torch.Tensor, region_feats: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        dtype = self.queries.dtype
        _check_feature_map(feats, self.in_channels, "feats", "in_channels", dtype)
        batch, _, height, width = feats.shape
        if region_feats is not None:
            _check_feature_map(region_feats, self.region_in_channels, "region_feats", "region_in_channels", dtype)
            if region_feats.shape[0] != batch or region_feats.shape[2:] != feats.shape[2:]:
                raise ValueError(
                    f"region_feats {tuple(region_feats.shape)} must match feats {tuple(feats.shape)} "
                    "in batch size and spatial size"
                )
        if self.training or (torch.is_grad_enabled() and feats.requires_grad):
            raise RuntimeError(
                "FusedOCRHead is an inference snapshot (no training mode, no gradients): train the OCRHead it was "
                "built from, then build it again"
            )
        # No autograd: its buffers are written in place (out=). No autocast: the snapshot computes in its own dtype
        # (convert it with ``.to(dtype)`` for another), so features that autocast made bf16/fp16 are cast back.
        with torch.no_grad(), torch.autocast(feats.device.type, enabled=False):
            region_feats = None if region_feats is None else region_feats.to(dtype)
            return self._forward(feats.to(dtype), region_feats, (batch, height, width))

    def _forward(self, feats, region_feats, shape):
        batch, height, width = shape
        pixel_count = height * width
        pixel_rows, keys = self._pixels_and_keys(feats, region_feats, shape)  # (B * N, C), (B, N, Dr)
        # The soft regions: aux logits (the attention logits plus the per-class bias, which the spatial softmax
        # ignores), and the regions as the decoder's cross-attention of the K queries over the N pixels.
        logits = torch.matmul(self.queries, keys.transpose(1, 2))  # (B, K, N)
        region_logits = (logits + self.query_bias[:, None]).view(batch, -1, height, width)
        del logits
        q = self.queries.expand(batch, 1, *self.queries.shape)  # (B, 1, K, Dr)
        regions = attend(q, keys[:, None], pixel_rows.view(batch, 1, pixel_count, -1), scale=1.0,
                         backend=self.backend)[:, 0]  # (B, K, C)
        del keys, q
        fused = self._encoder(pixel_rows, regions, shape)  # rows (B * N, C)
        logits_out = torch.baddbmm(
            self.classifier_bias[:, None],
            self.classifier_weight.expand(batch, *self.classifier_weight.shape),
            fused.view(batch, pixel_count, -1).transpose(1, 2),
        )
        return {"logits": logits_out.view(batch, -1, height, width), "aux_logits": region_logits}

    def _pixels_and_keys(self, feats, region_feats, shape) -> tuple[torch.Tensor, torch.Tensor]:
        """value_proj = ReLU(BN(conv3x3(feats))) as rows (B * N, C), and the decoder's keys, ReLU(BN(conv(region
        features))), as (B, N, Dr)."""
        batch, height, width = shape
        padding = self.region_kernel_size // 2
        conv = self.conv_for(batch, height, width, feats.device.type)
        if conv == "direct":
            # One channels-last copy of feats (none if it is channels-last already, as in an optimized model),
            # which both convs read, padding in oneDNN's kernels.
            x = feats
            if not feats.is_contiguous(memory_format=torch.channels_last):
                x = copy_nhwc(feats, feats.new_empty(batch, height, width, feats.shape[1])).permute(0, 3, 1, 2)
            pixels = _as_rows(F.conv2d(x, self.value_weight, self.value_bias, padding=1).relu_())
            source = x if region_feats is None else region_feats
            keys = _as_rows(F.conv2d(source, self.key_weight, self.key_bias, padding=padding).relu_())
            return pixels, keys.view(batch, height * width, -1)
        tiles = WINOGRAD[_TILE_SIZE[conv]]
        padded = padded_nhwc(feats, tiles)
        weight = getattr(self, f"value_weight_winograd{tiles.m}")
        pixels = winograd_conv3x3(padded, weight, self.value_bias, relu=True, tiles=tiles)
        if pixels.shape[1:3] != (height, width):
            pixels = pixels[:, :height, :width].contiguous()
        source = region_feats
        if source is None:  # channels-last feats as they are (an optimized model's; no copy), else padded's NHWC copy
            channels_last = feats.is_contiguous(memory_format=torch.channels_last)
            source = feats if channels_last else padded[:, 1 : height + 1, 1 : width + 1].permute(0, 3, 1, 2)
        keys = F.conv2d(source, self.key_weight, self.key_bias, padding=padding)
        return pixels.view(batch * height * width, -1), _as_rows(keys.relu_()).view(batch, height * width, -1)

    def _encoder(self, pixel_rows: torch.Tensor, regions: torch.Tensor, shape) -> torch.Tensor:
        """OCREncoder on pixel rows (B * N, C) and regions (B, K, C) -> fused rows (B * N, C_out)."""
        heads, channels = self.num_heads, pixel_rows.shape[1]
        batch, n = shape[0], shape[1] * shape[2]
        num_regions = regions.shape[1]
        q = _conv1x1(pixel_rows, shape, self.query0_weight, self.query0_bias).relu_()
        q = _conv1x1(q, shape, self.query1_weight, self.query1_bias).relu_()  # (B * N, Dk)
        region_rows = regions.reshape(-1, channels)
        k = _linear_relu(_linear_relu(region_rows, self.region_key0_weight, self.region_key0_bias),
                         self.region_key1_weight, self.region_key1_bias)  # (B * K, Dk)
        v = _linear_relu(region_rows, self.region_value_weight, self.region_value_bias)  # (B * K, Dk)
        key_channels = q.shape[1]
        d = key_channels // heads
        q = q.view(batch, n, heads, d).transpose(1, 2)  # (B, h, N, d), a view
        k = k.view(batch, num_regions, heads, d).transpose(1, 2)  # (B, h, K, d)
        v = v.view(batch, num_regions, heads, d).transpose(1, 2)
        if heads == 1 and num_regions <= key_channels:
            # out_proj on the K region values (B, 1, K, C), then the attention-weighted sum: fewer FLOPs than
            # projecting N contexts. (With several heads the projected contexts would be h copies of (N, C).)
            projected = torch.matmul(v, self.up_weight.flatten(1).t())
            up = attend(q, k, projected, scale=d**-0.5, backend=self.backend)  # (B, 1, N, C)
            up = up.view(batch * n, -1).add_(self.up_bias).relu_()
        else:
            context = attend(q, k, v, scale=d**-0.5, backend=self.backend)  # (B, h, N, d)
            context = context.transpose(1, 2).reshape(batch * n, key_channels)
            up = _conv1x1(context, shape, self.up_weight, self.up_bias).relu_()
        del q
        # fuse(cat([context, pixels])) without the concatenation: two 1x1 convs summed. (oneDNN's conv ran this
        # 1.35x faster than accumulating the second half with addmm_, whose BLAS is slower here: measured.)
        fused = _conv1x1(up, shape, self.fuse_context_weight, self.fuse_bias)
        del up
        return fused.add_(_conv1x1(pixel_rows, shape, self.fuse_pixel_weight, None)).relu_()
