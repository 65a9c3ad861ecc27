"""Semantic segmentation metrics (mIoU, pixel accuracy) from an accumulated confusion matrix.

Shape legend:
    B  batch    K  classes    H, W  image size (of the prediction and the label map, which must agree)

The state is one int64 (K, K) confusion matrix (rows = ground truth, columns = prediction), so updates are
exact, order-free and cheap to all-reduce: every metric is computed from it at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist

__all__ = ["SemanticEvaluator"]


class SemanticEvaluator:
    """Accumulates a confusion matrix over batches and reports mIoU, pixel accuracy and mean class accuracy.

    Args:
        num_classes: K, the number of classes; labels and predicted ids live in ``[0, K)``.
        ignore_index: the label of void pixels in the ground truth; they count nowhere. It must lie outside
            ``[0, K)`` (a class id there would hide that class's labels while its predictions still count).

    Usage::

        evaluator = SemanticEvaluator(19)
        for images, labels in loader:
            evaluator.update(model(images)["logits"], labels)
        metrics = evaluator.compute()    # all ranks agree when torch.distributed is initialised
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
            raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
        if 0 <= ignore_index < num_classes:
            # Its labels would be skipped while its predictions still count: the class's IoU would read 0.
            raise ValueError(
                f"ignore_index={ignore_index} is a class id in [0, {num_classes}): the labels of that class would be "
                f"ignored while its predictions still count; use a value outside [0, {num_classes}) (e.g. 255)"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch.

        Args:
            pred: (B, H, W) integer class ids, or (B, K, H, W) logits / probabilities (argmax over K).
            target: (B, H, W) integer labels in ``[0, K)`` or ``ignore_index``.

        The counting runs on ``pred``'s device (``target`` is moved there).

        Raises:
            ValueError: mismatched shapes, K != ``num_classes``, labels outside ``[0, K)`` that are not
                ``ignore_index`` (the offending values are listed), predicted ids outside ``[0, K)``, or
                (B, K, H, W) scores that are not real numbers or hold NaN/inf (an argmax would silently read
                them as some class; the count of non-finite values is given).
        """
        pred = self._class_ids(pred)
        target = self._check_target(target, pred)
        valid = target != self.ignore_index
        k = self.num_classes
        # One bincount over the flattened (target, pred) pair index fills the whole matrix at once.
        counts = torch.bincount(target[valid] * k + pred[valid], minlength=k * k).reshape(k, k)
        self._confusion = self._confusion.to(counts.device) + counts

    def compute(self) -> dict:
        """The metrics over everything accumulated (summed over all ranks when distributed).

        Returns a dict with
            ``"miou"``       mean over classes of IoU, ignoring NaN (float, a fraction in [0, 1])
            ``"iou"``        list of K per-class IoU = TP / (TP + FP + FN); NaN for a class absent from both
                             the labels and the predictions
            ``"acc"``        pixel accuracy: correct / labelled pixels
            ``"macc"``       mean over classes of the per-class accuracy TP / (TP + FN), ignoring NaN
                             (classes absent from the labels)
            ``"confusion"``  (K, K) int64 tensor on the CPU, rows = ground truth, columns = prediction

        With nothing accumulated every number is NaN. The local state is left untouched, so calling
        ``compute()`` again (on every rank) gives the same answer.
        """
        confusion = _all_reduce_sum(self._confusion.clone())
        conf = confusion.double()
        tp = conf.diagonal()
        labelled = conf.sum(dim=1)
        predicted = conf.sum(dim=0)
        # 0 / 0 = NaN marks a class that no pixel was labelled or predicted as: it has no IoU to average.
        iou = tp / (labelled + predicted - tp)
        class_acc = tp / labelled
        return {
            "miou": torch.nanmean(iou).item(),
            "iou": iou.tolist(),
            "acc": (tp.sum() / conf.sum()).item(),
            "macc": torch.nanmean(class_acc).item(),
            "confusion": confusion.cpu(),
        }

    def format_table(self, class_names: Sequence[str]) -> str:
        """A Markdown table of the per-class IoU followed by mIoU, acc and mAcc, all in percent (n/a: NaN)."""
        if len(class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(class_names)} names but num_classes is {self.num_classes}")
        metrics = self.compute()
        rows = list(zip(class_names, metrics["iou"], strict=True))
        rows += [("**mIoU**", metrics["miou"]), ("**acc**", metrics["acc"]), ("**mAcc**", metrics["macc"])]
        lines = ["| class | IoU (%) |", "|:--|--:|"]
        lines += [f"| {name} | {_percent(value)} |" for name, value in rows]
        return "\n".join(lines)

    # -------------------------------------------------------------------------------------- validation
    def _class_ids(self, pred: torch.Tensor) -> torch.Tensor:
        """(B, H, W) int64 class ids from ids or (B, K, H, W) scores."""
        if not isinstance(pred, torch.Tensor) or pred.dim() not in (3, 4):
            shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
            raise ValueError(f"pred must be (B, H, W) class ids or (B, K, H, W) logits, got {shape}")
        if pred.dim() == 4:
            if pred.shape[1] != self.num_classes:
                raise ValueError(
                    f"pred has {pred.shape[1]} classes (shape {tuple(pred.shape)}) but num_classes is "
                    f"{self.num_classes}"
                )
            if pred.dtype == torch.bool or pred.is_complex():
                raise ValueError(
                    f"pred of shape (B, K, H, W) must hold real scores (logits or probabilities), "
                    f"got dtype {pred.dtype}"
                )
            if pred.is_floating_point():
                # argmax reads NaN as the largest value: a NaN pixel would silently count as some class.
                non_finite = int((~torch.isfinite(pred)).sum())
                if non_finite:
                    raise ValueError(
                        f"pred has {non_finite} non-finite values (NaN or inf) among its {pred.numel()} logits "
                        f"(shape {tuple(pred.shape)}); expected finite logits or probabilities"
                    )
            return pred.argmax(dim=1)
        if pred.is_floating_point() or pred.is_complex() or pred.dtype == torch.bool:
            raise ValueError(f"pred of shape (B, H, W) must hold integer class ids, got dtype {pred.dtype}")
        out_of_range = (pred < 0) | (pred >= self.num_classes)
        if out_of_range.any():
            bad = torch.unique(pred[out_of_range]).tolist()
            raise ValueError(f"pred has class ids {bad} outside [0, {self.num_classes})")
        return pred.long()

    def _check_target(self, target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """``target`` as int64 on ``pred``'s device, after checking its shape and values."""
        if not isinstance(target, torch.Tensor) or target.shape != pred.shape:
            shape = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
            raise ValueError(f"target must have shape (B, H, W) = {tuple(pred.shape)} to match pred, got {shape}")
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise ValueError(f"target must hold integer labels, got dtype {target.dtype}")
        target = target.to(device=pred.device, dtype=torch.int64)
        invalid = ((target < 0) | (target >= self.num_classes)) & (target != self.ignore_index)
        if invalid.any():
            bad = torch.unique(target[invalid]).tolist()
            raise ValueError(
                f"target has labels {bad} outside [0, {self.num_classes}) that are not ignore_index="
                f"{self.ignore_index}; remap them or set ignore_index"
            )
        return target


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks (in place, returned); a no-op outside ``torch.distributed``."""
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    # NCCL reduces CUDA tensors only; the state is still on the CPU on a rank that saw no batch.
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        tensor = tensor.to(torch.device("cuda", torch.cuda.current_device()))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f}"
