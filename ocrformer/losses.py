"""Training losses: cross-entropy on the OCR output plus the auxiliary (soft-region) output, optional OHEM.

Shape legend:
    B  batch    K  classes    H, W  label size (the logits are resized to it when they differ)

``OCRLoss`` follows the HRNet-OCR reference: ``loss_main`` is cross-entropy (or OHEM cross-entropy) on the
final logits, ``loss_aux`` is plain cross-entropy on the soft object regions (``aux_logits``), weighted by
``aux_weight`` (0.4 in the paper). Both terms come back already weighted, so the total is their sum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OCRLoss"]


class OCRLoss(nn.Module):
    """Cross-entropy on ``logits`` (weight 1) and ``aux_logits`` (weight ``aux_weight``), optionally with OHEM.

    Args:
        aux_weight: weight of the auxiliary loss (>= 0). With 0 the ``aux_logits`` may be left out.
        ignore_index: label of void pixels; they contribute nothing to any term.
        class_weights: K per-class weights for the cross-entropy (as ``F.cross_entropy``'s ``weight``), or None.
        ohem: use online hard example mining on the main output (the aux output keeps plain cross-entropy).
        ohem_threshold: in (0, 1]; pixels whose softmax probability of the true class is below it are hard.
        ohem_min_kept: at least this many of the hardest valid pixels are kept (>= 0).

    ``forward(outputs, target)``:
        outputs: ``{"logits": (B, K, h, w), "aux_logits": (B, K, h', w')}``; when a size differs from the
            target's, the logits are upsampled bilinearly (``align_corners=False``) to (H, W) first.
        target: (B, H, W) integer labels in ``[0, K)`` or ``ignore_index``.
        returns: ``{"loss_main": (), "loss_aux": ()}`` scalars, already weighted (``loss_aux`` absent when
            ``aux_weight == 0`` and no ``aux_logits`` are given), computed in float32 for half-precision logits.

    Plain cross-entropy is the weighted mean of ``F.cross_entropy`` (sum of per-pixel losses over the sum of
    the class weights of the valid pixels), so it equals ``F.cross_entropy(..., reduction="mean")``.

    OHEM (HRNet-OCR's ``OhemCrossEntropy``): over the valid pixels, sort the probabilities ``p`` of the true
    class ascending; ``threshold = max(ohem_threshold, p[min(ohem_min_kept, n_valid - 1)])``; keep the pixels
    with ``p < threshold`` and average their per-pixel (class-weighted) losses with an *unweighted* mean.
    Consequences of the strict ``<``: a pixel with ``p`` exactly 1.0 is never kept, and when
    ``ohem_min_kept >= n_valid`` and the easiest pixel has ``p >= ohem_threshold``, the pixel(s) with the
    highest ``p`` are dropped, as in the reference.

    A batch in which every pixel is ignored (or OHEM keeps none) gives a loss of exactly 0 that still
    backpropagates (zero gradients, no NaN); the reference would return NaN there.
    """

    def __init__(
        self,
        *,
        aux_weight: float = 0.4,
        ignore_index: int = 255,
        class_weights: Sequence[float] | None = None,
        ohem: bool = False,
        ohem_threshold: float = 0.7,
        ohem_min_kept: int = 100_000,
    ) -> None:
        super().__init__()
        if not (isinstance(aux_weight, int | float) and math.isfinite(aux_weight) and aux_weight >= 0):
            raise ValueError(f"aux_weight must be a finite number >= 0, got {aux_weight!r}")
        if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
            raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
        if not (isinstance(ohem_threshold, int | float) and 0 < ohem_threshold <= 1):
            raise ValueError(f"ohem_threshold must be in (0, 1], got {ohem_threshold!r}")
        if not isinstance(ohem_min_kept, int) or isinstance(ohem_min_kept, bool) or ohem_min_kept < 0:
            raise ValueError(f"ohem_min_kept must be an int >= 0, got {ohem_min_kept!r}")
        self.aux_weight = float(aux_weight)
        self.ignore_index = ignore_index
        self.ohem = bool(ohem)
        self.ohem_threshold = float(ohem_threshold)
        self.ohem_min_kept = ohem_min_kept
        # A buffer so that it follows .to(device); not persistent, since it is configuration, not learned state.
        self.register_buffer("class_weights", _as_class_weights(class_weights), persistent=False)

    def forward(self, outputs: Mapping[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        target = _check_target(target)
        logits = self._resized(outputs, "logits", target)
        main = self._ohem_ce if self.ohem else self._ce
        losses = {"loss_main": main(logits, target)}
        if "aux_logits" in outputs or self.aux_weight != 0:
            losses["loss_aux"] = self.aux_weight * self._ce(self._resized(outputs, "aux_logits", target), target)
        return losses

    def extra_repr(self) -> str:
        ohem = f", ohem_threshold={self.ohem_threshold}, ohem_min_kept={self.ohem_min_kept}" if self.ohem else ""
        return f"aux_weight={self.aux_weight}, ignore_index={self.ignore_index}, ohem={self.ohem}{ohem}"

    # ------------------------------------------------------------------------------------------ terms
    def _ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted-mean cross-entropy, (B, K, H, W) x (B, H, W) -> (); 0 when no pixel is valid."""
        per_pixel = self._per_pixel_ce(logits, target)
        valid = target != self.ignore_index
        if self.class_weights is None:
            total_weight = valid.sum()
        else:
            total_weight = (self._weights(logits)[target.masked_fill(~valid, 0)] * valid).sum()
        # Dividing by 1 instead of 0 keeps the empty batch at 0 (its per-pixel losses are all 0) with finite
        # gradients; torch.where on the quotient itself would still backpropagate the 0/0 NaN.
        return per_pixel.sum() / torch.where(total_weight > 0, total_weight, torch.ones_like(total_weight))

    def _ohem_ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """OHEM cross-entropy (see the class docstring), (B, K, H, W) x (B, H, W) -> ()."""
        per_pixel = self._per_pixel_ce(logits, target)
        valid = target != self.ignore_index
        with torch.no_grad():  # the probabilities only select pixels
            prob = logits.softmax(dim=1).gather(1, target.masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)
            # Void pixels sort last (inf), so index i of the sorted list is the i-th valid probability; the
            # whole selection stays on the device without a host sync.
            ranked = prob.masked_fill(~valid, math.inf).flatten().sort().values
            index = (valid.sum() - 1).clamp(min=0, max=self.ohem_min_kept)
            threshold = ranked[index].clamp(min=self.ohem_threshold)
            kept = valid & (prob < threshold)
        return (per_pixel * kept).sum() / kept.sum().clamp(min=1)

    def _per_pixel_ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, H, W) class-weighted cross-entropy per pixel, 0 at void pixels."""
        return F.cross_entropy(
            logits, target, weight=self._weights(logits), ignore_index=self.ignore_index, reduction="none"
        )

    def _weights(self, logits: torch.Tensor) -> torch.Tensor | None:
        if self.class_weights is None:
            return None
        if self.class_weights.numel() != logits.shape[1]:
            raise ValueError(
                f"class_weights has {self.class_weights.numel()} entries but the logits have K={logits.shape[1]} "
                f"classes (shape {tuple(logits.shape)})"
            )
        return self.class_weights.to(logits.dtype)

    def _resized(self, outputs: Mapping[str, torch.Tensor], key: str, target: torch.Tensor) -> torch.Tensor:
        """``outputs[key]`` checked, in at least float32, and upsampled to the target's (H, W)."""
        if key not in outputs:
            raise ValueError(f"outputs has no {key!r} (keys: {sorted(outputs)}); set aux_weight=0 to train without it")
        logits = outputs[key]
        if not isinstance(logits, torch.Tensor) or logits.dim() != 4 or logits.shape[0] != target.shape[0]:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"outputs[{key!r}] must be (B={target.shape[0]}, K, H, W), got {shape}")
        # At least float32: half-precision sums over millions of pixels lose precision (bf16) or overflow (fp16).
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        return logits


def _as_class_weights(class_weights: Sequence[float] | None) -> torch.Tensor | None:
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32)
    if weights.dim() != 1 or weights.numel() == 0 or not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"class_weights must be a non-empty sequence of finite numbers >= 0, got {class_weights!r}")
    return weights


def _check_target(target: torch.Tensor) -> torch.Tensor:
    """(B, H, W) labels as int64 (``F.cross_entropy`` needs int64 class indices)."""
    if not isinstance(target, torch.Tensor) or target.dim() != 3:
        shape = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise ValueError(f"target must be a (B, H, W) tensor of class ids, got {shape}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class ids, got dtype {target.dtype}")
    return target.long()
