"""The inference path of ``OCRHead``: the same function as its modules, computed with fewer passes and FLOPs.

``OCRHead.forward`` takes this path when nothing needs the module-by-module computation: eval mode, no autograd
recording, a CPU float32/float64 input, no autocast, no tracing (``torch.compile``, ``torch.export``, ONNX,
``torch.jit.trace``) and no GT-OCR oracle. ``OCRHead.fused_eval`` chooses it (``"winograd"``, the default;
``"direct"``) or switches it off (``None``). Everything else -- training, gradients, BatchNorm statistics -- runs
the modules, unchanged.

What it does differently (every step is exact algebra; only the floating-point rounding differs):

- **BatchNorm folded into the convs**, on the fly at every call: ``BN(W x) = (s W) x + (beta - s mean)`` with
  ``s = gamma / sqrt(var + eps)``. Nothing is cached, so weights can never be stale (``load_state_dict``, optimizer
  steps, ``.data`` writes, ``.to()``); folding costs a few milliseconds against the convs' seconds.
- **One channels-last (NHWC) layout** for the whole head: the input is transposed once (in cache-sized channel
  blocks), into a zero-padded buffer that the 3x3 conv reads without its own padding copy; every 1x1 conv then
  runs on ``(pixels, channels)`` rows -- as oneDNN's channels-last conv, bias in its epilogue -- with no permutes
  or copies between layers.
- **The 3x3 conv by Winograd F(2x2, 3x3)** (``fused_eval="winograd"``; Lavin & Gray, 2016): each 2x2 output tile
  takes 16 multiplications per (input, output) channel pair instead of 36, so the GEMM does 4/9 of the direct
  conv's multiply-adds; the input and output transforms only add and subtract (the transform matrices hold
  0, +-1, +-1/2), which keeps float32 rounding at the direct conv's level (measured relative error ~4e-7 against
  float64 at 720 -> 512 channels). It runs in bands of tile rows so the transformed data stay in cache.
  ``"direct"`` runs oneDNN's direct conv on the channels-last buffer instead.
- **Soft-region logits computed once**: the decoder's attention logits are ``aux_logits`` minus the per-class
  bias, which the spatial softmax ignores, so the regions are ``softmax(logits) @ pixels`` with no second
  ``q k^T``.
- **out_proj moved in front of the encoder's weighted sum** (when ``heads * K <= key_channels``, i.e. it saves
  FLOPs): ``out_proj`` is linear and its folded BatchNorm affine, and each attention row sums to 1, so
  ``BN(W_up (P v)) = P (BN(W_up v))``: the projection runs on the K region values instead of the N pixels.
- **No concatenation before the fuse conv**: ``W [a; b] = W_a a + W_b b``, two GEMMs accumulating in one buffer.
- **Biases inside the GEMMs' epilogues or on the K region rows** (an attention-weighted sum of rows that all carry
  the bias carries it once), never as a separate pass over the N pixels.

An explicit attention backend (``backend="matmul"|"sdpa"|...`` or a forced one) is honoured: the two attentions
then go through ``ocrformer.attend`` with it. With ``"auto"`` the fused path uses the steps above (both are the
``matmul`` backend's arithmetic, reordered), and falls back to ``attend`` for an encoder where
``heads * K > key_channels``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import _forced_backend, attend

__all__ = ["FUSED_EVAL_MODES", "fold_conv_bn", "fused_eval_applies", "fused_eval_forward", "winograd_conv3x3"]

FUSED_EVAL_MODES = ("winograd", "direct", None)
_DTYPES = (torch.float32, torch.float64)

# Winograd F(2x2, 3x3): output tile Y = A^T [(G g G^T) * (B^T d B)] A for a 4x4 input tile d, with
# B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] (applied by adds and subtracts below).
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
_AT = ((1.0, 1.0, 1.0, 0.0), (0.0, 1.0, -1.0, -1.0))
# Output tiles per Winograd band (a band's transformed input is 16 x tiles x C). Measured on 2 cores at
# 720 -> 512 channels, 128 x 256: 256 to 1024 tiles are equally fast; 512 holds 57 MB of band buffers there.
# Fewer, larger ops suffer less when other processes preempt a thread (every parallel op waits for it).
_BAND_TILES = 512
_MIN_BANDS = 8
# Channels per block of the NCHW -> NHWC transpose (measured: 19 ms at 16, 71 ms as one copy at 720 x 128 x 256).
_TRANSPOSE_CHANNELS = 16


# ------------------------------------------------------------------------------------------ when it applies
def _is_tracing() -> bool:
    return (
        torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
    )


def fused_eval_applies(head: nn.Module, feats: torch.Tensor, region_feats: torch.Tensor | None) -> bool:
    """Whether ``OCRHead.forward(feats, region_feats)`` (without the oracle) may take the fused path."""
    if head.fused_eval is None or head.training or _is_tracing():
        return False
    inputs = [feats] if region_feats is None else [feats, region_feats]
    for t in inputs:
        if type(t) is not torch.Tensor or t.dim() != 4 or t.device.type != "cpu" or t.dtype not in _DTYPES:
            return False
    if any(t.dtype != feats.dtype for t in inputs) or torch.is_autocast_enabled("cpu"):
        return False
    # The fused path writes into buffers (out=), which autograd cannot record: no gradients may be wanted.
    recording = torch.is_grad_enabled()
    if recording and any(t.requires_grad for t in inputs):
        return False
    for p in head.parameters():
        if p.dtype != feats.dtype or p.device.type != "cpu" or (recording and p.requires_grad):
            return False
    return True


# ------------------------------------------------------------------------------------------------ folding
def fold_conv_bn(conv_norm_act: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the conv with its eval-mode BatchNorm folded in: ``BN(conv(x)) = conv'(x) + bias``."""
    bn = conv_norm_act.bn
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    weight = conv_norm_act.conv.weight
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), bn.bias - bn.running_mean * scale


def _folded_matrix(conv_norm_act: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A folded 1x1 conv as (weight^T of shape (Cin, Cout), bias): ``x @ weight^T + bias`` for rows."""
    weight, bias = fold_conv_bn(conv_norm_act)
    return weight.flatten(1).t(), bias


def _linear_relu(x: torch.Tensor, conv_norm_act: nn.Module) -> torch.Tensor:
    """Conv1x1 + BN + ReLU on a few rows ``x`` (M, Cin) -> (M, Cout): the K region vectors."""
    weight_t, bias = _folded_matrix(conv_norm_act)
    return torch.addmm(bias, x, weight_t).relu_()


# ---------------------------------------------------------------------------------------------- pixel rows
# Pixel maps live as rows (B * H * W, C) of a channels-last layout: 1x1 convs, bmm and addmm all read them
# without copies.
def _as_map(rows: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Rows (B * H * W, C) -> a channels-last (B, C, H, W) view of the same memory; shape = (B, H, W)."""
    return rows.view(*shape, -1).permute(0, 3, 1, 2)


def _as_rows(feature_map: torch.Tensor) -> torch.Tensor:
    """A (B, C, H, W) map -> rows (B * H * W, C); a view when the map is channels-last (a copy otherwise)."""
    return feature_map.permute(0, 2, 3, 1).reshape(-1, feature_map.shape[1])


def _conv1x1(rows: torch.Tensor, shape: tuple[int, int, int], weight: torch.Tensor, bias: torch.Tensor | None):
    """A 1x1 conv on rows -> rows, run as a channels-last ``F.conv2d``: oneDNN adds the bias in its epilogue and
    was ~10% faster than ``torch.addmm`` here at every width of the head (measured)."""
    return _as_rows(F.conv2d(_as_map(rows, shape), weight.reshape(*weight.shape[:2], 1, 1), bias))


def _conv1x1_relu(rows: torch.Tensor, shape: tuple[int, int, int], conv_norm_act: nn.Module) -> torch.Tensor:
    """Conv1x1 + BN + ReLU on rows."""
    return _conv1x1(rows, shape, *fold_conv_bn(conv_norm_act)).relu_()


# ---------------------------------------------------------------------------------------------- the 3x3 conv
def _padded_nhwc(feats: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """feats (B, C, H, W) -> (B, height, width, C), ``feats`` at [1:H+1, 1:W+1] and zeros around it."""
    batch, channels, h, w = feats.shape
    out = feats.new_empty(batch, height, width, channels)
    out[:, 0].zero_()
    out[:, h + 1 :].zero_()
    out[:, 1 : h + 1, 0].zero_()
    out[:, 1 : h + 1, w + 1 :].zero_()
    interior = out[:, 1 : h + 1, 1 : w + 1]
    step = _TRANSPOSE_CHANNELS
    for c in range(0, channels, step):  # blocks of channels: each block's reads and writes stay in cache
        interior[..., c : c + step].copy_(feats[:, c : c + step].permute(0, 2, 3, 1))
    return out


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, 3, 3) -> (16, Cin, Cout): ``G g G^T`` per channel pair, as a (strided) batch of GEMM operands."""
    g = weight.new_tensor(_G)
    transform = torch.kron(g, g)  # (16, 9): vec(G g G^T) = (G kron G) vec(g), row-major
    cout, cin = weight.shape[:2]
    return (transform @ weight.reshape(cout * cin, 9).t()).view(16, cout, cin).transpose(1, 2)


def winograd_conv3x3(padded: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *, relu: bool) -> torch.Tensor:
    """3x3 conv (stride 1, padding 1) by Winograd F(2x2, 3x3), channels-last.

    Args:
        padded: (B, 2 th + 2, 2 tw + 2, C): the input with its zero border (one more zero row/column where
            the output's height/width is odd), as ``_padded_nhwc`` builds it.
        weight: (Cout, C, 3, 3); bias: (Cout,); relu: apply ReLU to the output.

    Returns:
        (B, 2 th, 2 tw, Cout) contiguous; crop to the real output size.
    """
    batch, hp, wp, channels = padded.shape
    th, tw = (hp - 2) // 2, (wp - 2) // 2
    cout = weight.shape[0]
    u = winograd_weight(weight)  # (16, C, Cout)
    at = padded.new_tensor(_AT)
    out_transform = torch.kron(at, at)  # (4, 16): y[(p, q)] = sum over (a, b) of A^T[p, a] A^T[q, b] m[(a, b)]
    out = padded.new_empty(batch, 2 * th, 2 * tw, cout)
    # Tile rows per band: about _BAND_TILES tiles, and at least _MIN_BANDS bands, so that on small maps the
    # band buffers (16 transformed copies of the band's input and of its output) stay small beside the map.
    band_tiles = min(_BAND_TILES, math.ceil(th * tw * batch / _MIN_BANDS))
    rows = max(1, min(th, band_tiles // (batch * tw)))
    t_buf = padded.new_empty(4, rows, batch, wp, channels)
    v_buf = padded.new_empty(4, 4, rows, batch, tw, channels)
    m_buf = padded.new_empty(16, rows * batch * tw, cout)
    y_buf = padded.new_empty(4, rows * batch * tw * cout)
    row_stride = wp * channels
    for i0 in range(0, th, rows):
        n = min(rows, th - i0)
        tiles = n * batch * tw
        # d[s, i, b] = input row 2 (i0 + i) + s: (4, n, B, Wp, C), a strided view of the padded input
        d = padded.as_strided(
            (4, n, batch, wp, channels),
            (row_stride, 2 * row_stride, hp * row_stride, channels, 1),
            padded.storage_offset() + 2 * i0 * row_stride,
        )
        t = t_buf[:, :n]
        # rows: t = B^T d  ->  t0 = d0 - d2, t3 = d1 - d3, t1 = d2 + d1, t2 = d2 - d1
        torch.sub(d[0:2], d[2:4], out=t[0::3])
        torch.add(d[2], d[1], out=t[1])
        torch.sub(d[2], d[1], out=t[2])
        # columns: the same along W; e[..., j, s, :] = t[..., 2 j + s, :]
        e = t.unflatten(3, (tw + 1, 2))  # (4, n, B, tw + 1, 2, C)
        v = v_buf[:, :, :n]  # (4a, 4b, n, B, tw, C)
        torch.sub(e[:, :, :, :tw], e[:, :, :, 1:], out=v[:, 0::3].permute(0, 2, 3, 4, 1, 5))
        torch.add(e[:, :, :, 1:, 0], e[:, :, :, :tw, 1], out=v[:, 1])
        torch.sub(e[:, :, :, 1:, 0], e[:, :, :, :tw, 1], out=v[:, 2])
        if n == rows:
            m = torch.bmm(v_buf.view(16, tiles, channels), u, out=m_buf)
            y = torch.mm(out_transform, m.view(16, -1), out=y_buf)
        else:
            m = torch.bmm(v.reshape(16, tiles, channels), u)
            y = torch.mm(out_transform, m.view(16, -1))
        # y[(p, q), (i, b, j), :] is output pixel (2 (i0 + i) + p, 2 j + q) of image b
        band = out[:, 2 * i0 : 2 * (i0 + n)]
        target = band.view(batch, n, 2, tw, 2, cout).permute(2, 4, 1, 0, 3, 5)
        torch.add(y.view(2, 2, n, batch, tw, cout), bias, out=target)
        if relu:
            band.relu_()
    return out


def _conv3x3_relu(feats: torch.Tensor, conv_norm_act: nn.Module, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """value_proj = ReLU(BN(conv3x3(feats))): (the padded NHWC input, the pixels as rows (B * H * W, C))."""
    batch, _, height, width = feats.shape
    weight, bias = fold_conv_bn(conv_norm_act)
    if mode == "winograd":
        padded = _padded_nhwc(feats, height + 2 + height % 2, width + 2 + width % 2)
        pixels = winograd_conv3x3(padded, weight, bias, relu=True)
        if height % 2 or width % 2:
            pixels = pixels[:, :height, :width].contiguous()
        return padded, pixels.view(batch * height * width, -1)
    padded = _padded_nhwc(feats, height + 2, width + 2)
    as_map = padded.permute(0, 3, 1, 2)  # channels-last (B, C, H + 2, W + 2): oneDNN's preferred layout
    pixels = F.conv2d(as_map, weight.contiguous(memory_format=torch.channels_last), bias).relu_()
    return padded, _as_rows(pixels)


# ----------------------------------------------------------------------------------------------- the head
def _resolved(backend: str) -> str:
    """The backend name when the user chose one (argument, context or environment); "auto" otherwise."""
    return backend if backend != "auto" else _forced_backend()


def fused_eval_forward(
    head: nn.Module, feats: torch.Tensor, region_feats: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """``OCRHead.forward(feats, region_feats)`` in eval mode, fused (see the module docstring)."""
    decoder, encoder = head.decoder, head.encoder
    # The modules' own input checks, so errors read the same on both paths.
    from .ocr import _check_feature_map  # noqa: PLC0415 - ocr imports this module

    _check_feature_map(feats, decoder.in_channels, "feats", "in_channels", decoder.queries.dtype)
    batch, _, height, width = feats.shape
    pixel_count = height * width
    if region_feats is not None:
        _check_feature_map(
            region_feats, decoder.region_in_channels, "region_feats", "region_in_channels", decoder.queries.dtype
        )
        if region_feats.shape[0] != batch or region_feats.shape[2:] != feats.shape[2:]:
            raise ValueError(
                f"region_feats {tuple(region_feats.shape)} must match feats {tuple(feats.shape)} "
                "in batch size and spatial size"
            )

    padded, pixel_rows = _conv3x3_relu(feats, decoder.value_proj, head.fused_eval)  # rows (B * N, C)
    pixel_batch = pixel_rows.view(batch, pixel_count, -1)

    # Decoder keys. A 1x1 key conv on feats runs over the padded grid (no copy of the interior: the border is
    # cropped from the logits, which are K wide instead of Cin); a 3x3 one reads the padded grid as its padding.
    pointwise = decoder.key_proj.conv.kernel_size == (1, 1)
    keys_on_padded_grid = region_feats is None and pointwise
    grid = (batch, *padded.shape[1:3]) if keys_on_padded_grid else (batch, height, width)
    if keys_on_padded_grid:
        keys = _conv1x1_relu(padded.view(-1, padded.shape[-1]), grid, decoder.key_proj)
    elif pointwise:
        keys = _conv1x1_relu(_as_rows(region_feats), grid, decoder.key_proj)
    else:  # 3x3: on feats, the padded buffer is its padding; separate region features are padded by the conv
        weight, bias = fold_conv_bn(decoder.key_proj)
        if region_feats is None:
            source = padded[:, : height + 2, : width + 2].permute(0, 3, 1, 2)  # channels-last (B, C, H+2, W+2)
            keys = F.conv2d(source, weight.contiguous(memory_format=torch.channels_last), bias)
        else:
            keys = F.conv2d(region_feats, weight, bias, padding=1)
        keys = _as_rows(keys.relu_())
    logits = torch.matmul(decoder.queries, keys.view(batch, grid[1] * grid[2], -1).transpose(1, 2))
    logits = logits.view(batch, -1, *grid[1:])
    if keys_on_padded_grid:
        logits = logits[:, :, 1 : height + 1, 1 : width + 1].contiguous()
    region_logits = logits + decoder.query_bias[:, None, None]

    backend = _resolved(decoder.backend)
    if backend == "auto":  # the softmax ignores the per-class bias: the logits are the attention logits
        del padded, keys  # free them before the encoder's buffers are allocated
        regions = torch.bmm(torch.softmax(logits.view(batch, -1, pixel_count), dim=-1), pixel_batch)
    else:
        del padded
        if keys_on_padded_grid:  # the interior keys, as the attention's (B, 1, N, Dr)
            keys = keys.view(*grid, -1)[:, 1 : height + 1, 1 : width + 1].contiguous()
        q = decoder.queries.expand(batch, 1, *decoder.queries.shape)
        k = keys.view(batch, 1, pixel_count, -1)
        regions = attend(q, k, pixel_batch[:, None], scale=1.0, backend=backend)[:, 0]
        del q, k, keys

    fused = _encoder(encoder, pixel_rows, regions, (batch, height, width))  # rows (B * N, C)
    classifier = head.classifier
    weight = classifier.weight.flatten(1)
    logits_out = torch.baddbmm(
        classifier.bias[:, None],
        weight.expand(batch, *weight.shape),
        fused.view(batch, pixel_count, -1).transpose(1, 2),
    )
    return {"logits": logits_out.view(batch, -1, height, width), "aux_logits": region_logits}


def _encoder(
    encoder: nn.Module, pixel_rows: torch.Tensor, regions: torch.Tensor, shape: tuple[int, int, int]
) -> torch.Tensor:
    """OCREncoder in eval on pixel rows (B * N, C) and regions (B, K, C) -> fused rows (B * N, C_out)."""
    heads, channels = encoder.num_heads, pixel_rows.shape[1]
    batch, n = shape[0], shape[1] * shape[2]
    q = _conv1x1_relu(_conv1x1_relu(pixel_rows, shape, encoder.query_proj[0]), shape, encoder.query_proj[1])
    k = _linear_relu(_linear_relu(regions.reshape(-1, channels), encoder.key_proj[0]), encoder.key_proj[1])
    v = _linear_relu(regions.reshape(-1, channels), encoder.value_proj)  # (B * K, Dk)
    key_channels = q.shape[1]
    d = key_channels // heads
    num_regions = regions.shape[1]
    q = q.view(batch, n, heads, d).transpose(1, 2)  # (B, h, N, d), a view
    k = k.view(batch, num_regions, heads, d).transpose(1, 2)  # (B, h, K, d)
    v = v.view(batch, num_regions, heads, d).transpose(1, 2)
    up_weight, up_bias = fold_conv_bn(encoder.out_proj)  # (C, Dk, 1, 1), (C,)
    backend = _resolved(encoder.backend)
    if backend == "auto" and heads * num_regions <= key_channels:
        # out_proj (with its folded BN) on the K region values of each head, then the attention-weighted sum.
        weights = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * d**-0.5, dim=-1)  # (B, h, N, K)
        del q
        projected = torch.matmul(v, up_weight.flatten(1).t().view(heads, d, -1))  # (B, h, K, C)
        # Each head's weights sum to 1 over its K rows: the bias, added to one head's rows, comes out once.
        projected[:, 0] += up_bias
        weights = weights.transpose(1, 2).reshape(batch, n, heads * num_regions)
        up = torch.bmm(weights, projected.reshape(batch, heads * num_regions, -1)).view(batch * n, -1).relu_()
    else:
        context = attend(q, k, v, backend=backend)  # (B, h, N, d)
        del q
        context = context.transpose(1, 2).reshape(batch * n, key_channels)
        up = _conv1x1(context, shape, up_weight, up_bias).relu_()
    fuse_weight, fuse_bias = fold_conv_bn(encoder.fuse)  # (C_out, 2 C, 1, 1): input channels [context, pixels]
    fused = _conv1x1(up, shape, fuse_weight[:, :channels], fuse_bias)
    del up
    return fused.addmm_(pixel_rows, fuse_weight[:, channels:].flatten(1).t()).relu_()
