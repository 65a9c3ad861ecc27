"""The 3x3 convolution by Winograd's minimal filtering (Lavin & Gray, 2016), channels-last, for ``FusedOCRHead``.

F(m x m, 3 x 3) computes an m x m output tile from an (m + 2) x (m + 2) input tile ``d`` as

    Y = A^T [ U * V ] A,   V = B^T d B (input transform),   U = G g G^T (filter transform, once per weight),

where ``*`` is elementwise per tile position and a sum over input channels, i.e. (m + 2)^2 independent GEMMs of
(tiles, Cin) x (Cin, Cout). Direct convolution does 9 multiply-adds per output pixel and channel pair; F(2x2)
does 16 / 4 = 4 and F(4x4) 36 / 16 = 2.25.

Two choices here, both measured on this project's 2-core AVX-512 CPU (AMD EPYC; the whole head's timings are in
``benchmarks/inference_speed.py``):

- **The GEMMs are oneDNN 1x1 convolutions**, one per tile position, not ``torch.bmm``: PyTorch's CPU BLAS (MKL)
  ran these shapes at ~185 GFLOP/s there against oneDNN's 330-410 (720 -> 512 channels).
- **The transforms are short chains of adds** on strided views (no gathers): rows first, then columns, each
  output row a combination of a few input rows with coefficients that are exact in binary (0, +-1, +-2, ...);
  the inexact fractions (1/6, 1/15, ...) sit in ``G`` and are applied once, to the weights, in float64.

Rounding: F(2x2) keeps float32 at the direct conv's level (~4e-7 relative error against float64 at 720 channels).
F(4x4)'s larger transform coefficients cost precision; its interpolation points (0, 1, -1, 1/2, -2) were chosen
for it (Barabasz et al., 2020, "Error analysis and improving the accuracy of Winograd convolution for deep neural
networks"): ~3e-6 relative against the usual (0, +-1, +-2)'s ~6e-6 and the direct conv's ~3e-7
(``tests/test_fused_head.py`` bounds it).

How the matrices were made (``tests/test_fused_head.py`` checks the identity ``A^T[(G g) * (B^T d)] =
correlate(d, g)`` in exact rational arithmetic): Toom-Cook at the points and infinity -- ``A^T``'s columns evaluate
the output polynomial at the points, ``G``'s rows evaluate the filter there, ``B^T`` is the transposed inverse of
the Vandermonde matrix; each ``B^T`` row is then divided by its smallest-magnitude coefficient (which becomes 1)
and ``G``'s row multiplied by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

__all__ = ["WINOGRAD", "WinogradTiles", "copy_nhwc", "padded_nhwc", "winograd_conv3x3", "winograd_weight"]


@dataclass(frozen=True)
class WinogradTiles:
    """The matrices of F(m x m, 3 x 3); ``n = m + 2`` input pixels per tile side.

    at: A^T (m, n); g: G (n, 3); bt: B^T (n, n). Every row of ``at`` and ``bt`` holds a coefficient 1 (the
    transforms start from it) and only coefficients exact in binary floating point."""

    m: int
    at: tuple[tuple[Fraction, ...], ...]
    g: tuple[tuple[Fraction, ...], ...]
    bt: tuple[tuple[Fraction, ...], ...]

    @property
    def n(self) -> int:
        return self.m + 2

    @property
    def bias_position(self) -> int:
        """The tile position (a row/column of ``U * V``) whose A^T column is all ones: every output pixel takes
        it with coefficient 1, so the bias is added to that position's GEMM only (in oneDNN's epilogue)."""
        return next(i for i in range(self.n) if all(row[i] == 1 for row in self.at))


def _fractions(rows: str) -> tuple[tuple[Fraction, ...], ...]:
    return tuple(tuple(Fraction(v) for v in row.split()) for row in rows.strip().split(";"))


WINOGRAD = {
    # points 0, 1, -1 and infinity
    2: WinogradTiles(
        2,
        at=_fractions("1 1 1 0; 0 1 -1 1"),
        g=_fractions("1 0 0; 1/2 1/2 1/2; -1/2 1/2 -1/2; 0 0 -1"),
        bt=_fractions("1 0 -1 0; 0 1 1 0; 0 1 -1 0; 0 1 0 -1"),
    ),
    # points 0, 1, -1, 1/2, -2 and infinity
    4: WinogradTiles(
        4,
        at=_fractions("1 1 1 1 1 0; 0 1 -1 1/2 -2 0; 0 1 1 1/4 4 0; 0 1 -1 1/8 -8 1"),
        g=_fractions("1 0 0; 1/6 1/6 1/6; -1/6 1/6 -1/6; 16/15 8/15 4/15; 1/30 -1/15 2/15; 0 0 1"),
        bt=_fractions(
            "1 -3/2 -2 3/2 1 0; 0 -2 1 5 2 0; 0 2 -5 1 2 0; 0 2 1 -2 -1 0; 0 1 -2 -1 2 0; 0 1 -3/2 -2 3/2 1"
        ),
    ),
}

# Tile positions (tiles x n^2) per band of tile rows, so that a band's transformed input (positions x Cin) and GEMM
# outputs (positions x Cout) stay near the L3 cache. Measured on 2 cores at 720 -> 512 channels, 128 x 256:
# F(2x2) 410 / 344 / 307 / 302 ms at 128 / 256 / 512 / 1024 tiles a band (2k to 16k positions), F(4x4)
# 264 / 239 / 236 / 259 ms (4.6k to 37k positions). Smaller maps are not split further: at 32 x 64, F(4x4) took
# 16 ms in one band, 21 ms in two and 36 ms in four (per-op overhead).
_BAND_POSITIONS = 8192
# Channels per block of the NCHW -> NHWC transpose (measured: 19 ms at 16, 71 ms as one copy at 720 x 128 x 256).
_TRANSPOSE_CHANNELS = 16


def padded_nhwc(feats: torch.Tensor, tiles: WinogradTiles) -> torch.Tensor:
    """feats (B, C, H, W) -> the input of ``winograd_conv3x3``: (B, m th + 2, m tw + 2, C) with th = ceil(H / m),
    tw = ceil(W / m), ``feats`` at [1:H+1, 1:W+1] and zeros around it."""
    batch, channels, h, w = feats.shape
    out = feats.new_empty(batch, -(-h // tiles.m) * tiles.m + 2, -(-w // tiles.m) * tiles.m + 2, channels)
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


def winograd_weight(weight: torch.Tensor, tiles: WinogradTiles) -> torch.Tensor:
    """(Cout, Cin, 3, 3) -> (n^2, Cout, Cin, 1, 1): ``G g G^T`` per channel pair, one 1x1-conv weight per tile
    position (row-major over the n x n tile), computed in float64 and rounded once to the weight's dtype."""
    g = torch.tensor([[float(v) for v in row] for row in tiles.g], dtype=torch.float64)
    transform = torch.kron(g, g)  # (n^2, 9): vec(G w G^T) = (G kron G) vec(w), row-major
    cout, cin = weight.shape[:2]
    u = transform @ weight.detach().double().reshape(cout * cin, 9).t()
    return u.view(-1, cout, cin, 1, 1).to(weight.dtype).contiguous()


def _combine(matrix, inputs, outputs) -> None:
    """outputs[i] = sum_s matrix[i][s] * inputs[s], as adds starting from the row's coefficient 1 (tensors or
    views; ``outputs`` may alias nothing in ``inputs``)."""
    for row, out in zip(matrix, outputs, strict=True):
        terms = [(float(c), x) for c, x in zip(row, inputs, strict=True) if c != 0]
        first = next(i for i, (c, _) in enumerate(terms) if c == 1)
        _, base = terms.pop(first)
        if not terms:
            out.copy_(base)
            continue
        coefficient, other = terms.pop(0)
        torch.add(base, other, alpha=coefficient, out=out)
        for coefficient, other in terms:
            out.add_(other, alpha=coefficient)


def winograd_conv3x3(
    padded: torch.Tensor, u: torch.Tensor, bias: torch.Tensor, *, relu: bool, tiles: WinogradTiles
) -> torch.Tensor:
    """3x3 conv (stride 1, padding 1) by Winograd F(m x m, 3 x 3), channels-last.

    Args:
        padded: (B, m th + 2, m tw + 2, C): the input with its zero border (more zero rows/columns where the
            output's height/width is not a multiple of m), as ``padded_nhwc`` builds it.
        u: the weights transformed once by ``winograd_weight(weight, tiles)``: (n^2, Cout, C, 1, 1);
        bias: (Cout,); relu: apply ReLU; tiles: ``WINOGRAD[m]``.

    Returns:
        (B, m th, m tw, Cout) contiguous; crop to the real output size.
    """
    m, n = tiles.m, tiles.n
    batch, hp, wp, channels = padded.shape
    th, tw = (hp - 2) // m, (wp - 2) // m
    cout = u.shape[1]
    out = padded.new_empty(batch, m * th, m * tw, cout)
    rows = max(1, min(th, _BAND_POSITIONS // n**2 // (batch * tw)))  # tile rows per band
    row_buf = padded.new_empty(n, rows, batch, wp, channels)
    tile_buf = padded.new_empty(n, n, rows, batch, tw, channels)
    half_buf = padded.new_empty(n, m, rows, batch, tw, cout)
    row_stride = wp * channels
    bias_position = tiles.bias_position * (n + 1)
    for i0 in range(0, th, rows):
        count = min(rows, th - i0)
        # d[s] = input row m (i0 + i) + s of tile row i, for every tile row of the band: (n, count, B, Wp, C)
        d = padded.as_strided(
            (n, count, batch, wp, channels),
            (row_stride, m * row_stride, hp * row_stride, channels, 1),
            padded.storage_offset() + m * i0 * row_stride,
        )
        t = row_buf[:, :count]
        _combine(tiles.bt, d, t)  # B^T along the rows
        # e[s][a] = t[a] at column m j + s: (n, n, count, B, tw, C)
        e = t.as_strided(
            (n, n, count, batch, tw, channels),
            (channels, *t.stride()[:3], m * channels, 1),
            t.storage_offset(),
        )
        v = tile_buf[:, :, :count]
        _combine(tiles.bt, e, v.transpose(0, 1))  # B^T along the columns: v[a, b] (count, B, tw, C)
        tile_count = count * batch * tw
        products = [
            F.conv2d(
                v[a, b].reshape(1, tile_count, 1, channels).permute(0, 3, 1, 2),
                u[a * n + b],
                bias if a * n + b == bias_position else None,
            )
            .permute(0, 2, 3, 1)
            .view(count, batch, tw, cout)
            for a in range(n)
            for b in range(n)
        ]
        half = half_buf[:, :, :count]
        for a in range(n):  # A^T along the columns: half[a, q]
            _combine(tiles.at, products[a * n : (a + 1) * n], half[a])
        del products
        band = out[:, m * i0 : m * (i0 + count)]
        target = band.view(batch, count, m, tw, m, cout).permute(2, 4, 1, 0, 3, 5)  # (p, q, count, B, tw, C)
        _combine(tiles.at, half, target)  # A^T along the rows: output pixel (m (i0 + i) + p, m j + q)
        if relu:
            band.relu_()
    return out
