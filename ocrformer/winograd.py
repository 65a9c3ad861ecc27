"""The 3x3 convolution by Winograd F(2x2, 3x3) (Lavin & Gray, 2016), channels-last, for ``FusedOCRHead``.

Each 2x2 output tile takes 16 multiplications per (input, output) channel pair instead of 36, so the GEMM does
4/9 of the direct conv's multiply-adds; the input and output transforms only add and subtract (the transform
matrices hold 0, +-1, +-1/2), which keeps float32 rounding at the direct conv's level (measured relative error
~4e-7 against float64 at 720 -> 512 channels). It runs in bands of tile rows so that the transformed data stay
in cache. Whether it beats oneDNN's direct conv depends on the machine and the size: ``benchmarks/`` measures it,
and ``optimize_for_inference(conv=...)`` chooses.
"""

from __future__ import annotations

import math

import torch

__all__ = ["copy_nhwc", "padded_nhwc", "winograd_conv3x3", "winograd_weight"]

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



def padded_nhwc(feats: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """feats (B, C, H, W) -> (B, height, width, C), ``feats`` at [1:H+1, 1:W+1] and zeros around it."""
    batch, channels, h, w = feats.shape
    out = feats.new_empty(batch, height, width, channels)
    out[:, 0].zero_()
    out[:, h + 1 :].zero_()
    out[:, 1 : h + 1, 0].zero_()
    out[:, 1 : h + 1, w + 1 :].zero_()
    copy_nhwc(feats, out[:, 1 : h + 1, 1 : w + 1])
    return out


def copy_nhwc(feats: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Copy feats (B, C, H, W) into ``out`` (B, H, W, C) (a view into a larger buffer is fine) and return ``out``.
    From channels-first memory the transpose runs in blocks of channels, so that each block's reads and writes
    stay in cache (measured 19 ms against 71 ms as one copy at 720 x 128 x 256); channels-last memory is one copy."""
    source = feats.permute(0, 2, 3, 1)
    if feats.is_contiguous(memory_format=torch.channels_last):
        return out.copy_(source)
    step = _TRANSPOSE_CHANNELS
    for c in range(0, feats.shape[1], step):
        out[..., c : c + step].copy_(source[..., c : c + step])
    return out


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, 3, 3) -> (16, Cin, Cout): ``G g G^T`` per channel pair, as a (strided) batch of GEMM operands."""
    g = weight.new_tensor(_G)
    transform = torch.kron(g, g)  # (16, 9): vec(G g G^T) = (G kron G) vec(g), row-major
    cout, cin = weight.shape[:2]
    return (transform @ weight.reshape(cout * cin, 9).t()).view(16, cout, cin).transpose(1, 2)


def winograd_conv3x3(padded: torch.Tensor, u: torch.Tensor, bias: torch.Tensor, *, relu: bool) -> torch.Tensor:
    """3x3 conv (stride 1, padding 1) by Winograd F(2x2, 3x3), channels-last.

    Args:
        padded: (B, 2 th + 2, 2 tw + 2, C): the input with its zero border (one more zero row/column where
            the output's height/width is odd), as ``padded_nhwc`` builds it.
        u: the weights transformed once by ``winograd_weight``: (16, C, Cout); bias: (Cout,); relu: apply ReLU.

    Returns:
        (B, 2 th, 2 tw, Cout) contiguous; crop to the real output size.
    """
    batch, hp, wp, channels = padded.shape
    th, tw = (hp - 2) // 2, (wp - 2) // 2
    cout = u.shape[2]
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
