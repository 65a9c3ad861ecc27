"""Training and evaluation of SegFix's boundary/direction network: the ``Trainer`` (checkpoints, exact resume,
signals, DDP, progress, curves) with the SegFix task plugged in.

- model: ``create_segfix_model(config.model, **config.model_kwargs)`` (``segfix_*`` names; ``num_directions``,
  ``boundary_width`` and the loss settings are model kwargs, so they are part of the config a resume checks);
- data: any semantic dataset (``build_datasets(config)``); ``SegFixTrainer`` wraps the train and val sets in
  ``WithSegFixTargets`` with the model's ``num_directions`` and ``boundary_width`` (and direction targets beyond
  the band for ``direction_on="predicted"``), so the targets are computed on each augmented crop. Sets already
  wrapped are used as they are if their settings agree with the model's (e.g. to set ``segments_key`` for
  panoptic-style segment maps);
- losses: the model's ``{"loss_boundary", "loss_direction"}``;
- evaluation: the predicted boundary map (boundary probability > the model's ``boundary_threshold``) against the
  target boundary map, pixel for pixel -- precision, recall and F1 of the boundary pixels -- and the direction
  accuracy on the target boundary pixels (upstream's metrics, ``segmentor/tools/evaluator/tasks.py`` of
  openseg.pytorch: ``MaskTask``, ``DirectionTask``).

Upstream's Cityscapes recipe (``scripts/cityscapes/segfix/run_h_48_d_4_segfix.sh`` with
``configs/cityscapes/H_SEGFIX.json``), in ``TrainConfig`` terms: ``model="segfix_hrnet_w48"`` (ImageNet-initialised
HRNet-W48), ``iterations=80_000``, ``batch_size=16`` (over 4 GPUs: 4 per process), ``crop_size=(512, 512)``,
``lr=0.04``, ``momentum=0.9``, ``weight_decay=5e-4``, ``lr_schedule="poly"``; augmentation: random crop,
horizontal flip and a brightness shift -- no rescale (``scale_range=(1.0, 1.0)``; ``jitter`` here is a stronger
colour jitter); targets: ``dt_max_distance=5`` (``boundary_width=5``), ``dt_num_classes=8``
(``num_directions=8``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..models import create_segfix_model
from ..models.segfix import boundary_probability
from ..segfix.data import WithSegFixTargets
from .config import TrainConfig
from .trainer import Trainer

__all__ = ["SegFixTrainer", "boundary_scores"]


class SegFixTrainer(Trainer):
    """``Trainer`` for ``SegFixNet`` (``config.model`` a ``segfix_*`` name) on a semantic dataset.

    ``evaluate()`` returns, over ``val_set`` (pixels whose target is void excluded):

    * ``boundary_precision``, ``boundary_recall``, ``boundary_f1``: of the predicted boundary pixels against the
      target boundary pixels, counted over the whole set (pixel-exact: the targets are bands several pixels wide,
      the band itself is what the network learns). Conventions of upstream's ``db_eval_boundary``
      (``lib/metrics/F1_running_score.py``) when a side is empty: no prediction -> precision 1, no target ->
      recall 1. ``BoundaryEvaluator`` (``ocrformer.evaluation``) is not used: it scores the class boundaries of
      *label maps* within a distance tolerance, whereas the thing predicted here is a binary band map;
    * ``boundary_acc``: the pixel accuracy of the binary map (upstream's ``mask`` score);
    * ``direction_acc``: the share of target boundary pixels whose predicted direction (argmax) is the target's;
    * ``direction_acc_detected``: the same, counting a pixel as wrong also when it is not predicted as boundary --
      upstream's ``dir (GT)`` score, where an undetected boundary pixel gets no direction.

    All values are fractions in [0, 1].
    """

    logged_metrics = ("boundary_f1", "boundary_precision", "boundary_recall", "direction_acc")
    metric_labels = {"boundary_f1": "boundary F1", "direction_acc": "direction accuracy"}

    def __init__(
        self,
        config: TrainConfig,
        train_set: Dataset,
        val_set: Dataset | None = None,
        **kwargs,
    ) -> None:
        unused = [
            f"{name}={getattr(config, name)!r}"
            for name, off in (("oracle", False), ("ohem", False), ("class_weights", None))
            if getattr(config, name) != off
        ]
        if unused:
            raise ValueError(
                f"SegFixTrainer: {', '.join(unused)} are settings of the semantic segmentation loss; SegFix's loss "
                "is the model's (class-balanced as upstream: see ocrformer.models.segfix)"
            )
        super().__init__(config, train_set, val_set, **kwargs)
        # Wrapped once the model exists: its num_directions and boundary_width decide the targets. Nothing has
        # read a sample yet (Trainer.__init__ reads num_classes only).
        self.train_set = self._with_targets(train_set, "train_set")
        self.val_set = None if val_set is None else self._with_targets(val_set, "val_set")

    def build_model(self) -> torch.nn.Module:
        """``create_segfix_model(config.model, ignore_index=config.ignore_index, **config.model_kwargs)``, from
        ``config.weights`` when set."""
        kwargs = {"ignore_index": self.config.ignore_index, **self.config.model_kwargs}
        return create_segfix_model(self.config.model, weights=self.config.weights, **kwargs)

    def _with_targets(self, dataset: Dataset, name: str) -> WithSegFixTargets:
        model = self.module
        settings = {
            "num_directions": model.num_directions,
            "boundary_width": model.boundary_width,
            "ignore_index": model.ignore_index,
            # Upstream's loss on the predicted boundary needs direction targets beyond the band.
            "direction_everywhere": model.direction_on == "predicted",
        }
        if isinstance(dataset, WithSegFixTargets):
            differences = [
                f"{key}={getattr(dataset, key)!r} (data) vs {value!r} (model)"
                for key, value in settings.items()
                if getattr(dataset, key) != value
            ]
            if differences:
                raise ValueError(f"SegFixTrainer: {name} makes other targets than the model: {'; '.join(differences)}")
            return dataset
        return WithSegFixTargets(dataset, **settings)

    def checkpoint_extras(self) -> dict:
        model = self.module
        return {
            **super().checkpoint_extras(),
            "num_directions": model.num_directions,
            "boundary_width": model.boundary_width,
        }

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        device = self.context.device
        images = batch["image"].to(device, non_blocking=True)
        targets = {key: batch[key].to(device, non_blocking=True) for key in ("boundary", "direction")}
        with self._autocast():
            losses = self.model(images, targets)
        return {name: value.float() for name, value in losses.items()}

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Boundary precision / recall / F1 / accuracy and direction accuracies on ``val_set`` (see the class
        docstring); ranks split the images and their counts are summed."""
        loader = self.val_loader()
        model = self.module
        self._refuse_non_finite_weights()
        model.eval()
        counts = torch.zeros(len(_COUNTS), dtype=torch.float64, device=self.context.device)
        for batch in tqdm(loader, desc="evaluate", disable=not self.context.is_main, leave=False):
            images = batch["image"].to(self.context.device)
            with self._autocast():
                out = model(images)
            counts += _counts(
                boundary_probability(out["boundary_logits"]) > model.boundary_threshold,
                out["direction_logits"].float().argmax(dim=1),
                batch["boundary"].to(self.context.device),
                batch["direction"].to(self.context.device),
                model.ignore_index,
            )
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        return boundary_scores(dict(zip(_COUNTS, counts.tolist(), strict=True)))


_COUNTS = ("tp", "fp", "fn", "tn", "direction_pixels", "direction_correct", "direction_detected")


def _counts(
    predicted: torch.Tensor,
    direction_pred: torch.Tensor,
    boundary: torch.Tensor,
    direction: torch.Tensor,
    ignore_index: int,
) -> torch.Tensor:
    """(B, H, W) predicted boundary (bool), predicted direction, target boundary and direction -> the ``_COUNTS``."""
    valid = boundary != ignore_index
    target = boundary == 1
    on = target & (direction != ignore_index)  # target boundary pixels that have a direction
    correct = (direction_pred == direction) & on
    values = (
        predicted & target,
        predicted & ~target & valid,
        ~predicted & target,
        ~predicted & ~target & valid,
        on,
        correct,
        correct & predicted,
    )
    return torch.stack([v.sum() for v in values]).double()


def boundary_scores(counts: dict[str, float]) -> dict[str, float]:
    """Counts (``tp``, ``fp``, ``fn``, ``tn`` of boundary pixels; ``direction_pixels``, ``direction_correct``,
    ``direction_detected``) -> the metrics of ``SegFixTrainer.evaluate`` (fractions). Empty sides follow upstream's
    ``db_eval_boundary``: no predicted boundary pixel -> precision 1; no target boundary pixel -> recall 1; no
    direction pixel -> direction accuracies 1 (nothing to get wrong)."""
    tp, fp, fn, tn = (counts[k] for k in ("tp", "fp", "fn", "tn"))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    pixels = tp + fp + fn + tn
    n_dir = counts["direction_pixels"]
    return {
        "boundary_precision": precision,
        "boundary_recall": recall,
        "boundary_f1": f1,
        "boundary_acc": (tp + tn) / pixels if pixels else 1.0,
        "direction_acc": counts["direction_correct"] / n_dir if n_dir else 1.0,
        "direction_acc_detected": counts["direction_detected"] / n_dir if n_dir else 1.0,
        "boundary_pixels": int(tp + fn),
        "direction_pixels": int(n_dir),
    }
