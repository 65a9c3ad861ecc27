"""Training and evaluation of Panoptic-FPN (+ OCR): the ``Trainer`` (checkpoints, resume, signals, DDP,
progress) with the panoptic task plugged in.

- model: ``create_panoptic_model(config.model, T, S, **config.model_kwargs)`` (``ocr`` is a model kwarg);
- batches: ``(list of images, list of targets)`` from ``CocoPanoptic`` + ``collate_panoptic``; the model
  returns its named, weighted losses;
- evaluation: every validation image through the model, the fused panoptic result written in the COCO format
  and scored by the official evaluator (``PanopticEvaluator``), plus the semantic branch's mIoU over its S + 1
  classes; ranks split the images and rank 0 scores.
"""

from __future__ import annotations

import time

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data import collate_panoptic
from ..evaluation import PanopticEvaluator, SemanticEvaluator, summarize_pq
from ..models import create_panoptic_model
from .config import TrainConfig
from .trainer import Trainer

__all__ = ["PanopticTrainer"]


class PanopticTrainer(Trainer):
    """``Trainer`` for ``PanopticFPN`` on ``CocoPanoptic`` data. ``evaluate()`` returns PQ/SQ/RQ (All, Things,
    Stuff: ``pq``, ``pq_th``, ``pq_st``...), the semantic branch's ``miou`` and per-class ``semantic_iou`` (S stuff
    classes + "thing"), ``images_per_s`` and panopticapi's full result under ``"pq_results"``."""

    collate_fn = staticmethod(collate_panoptic)
    logged_metrics = ("pq", "sq", "rq", "pq_th", "pq_st", "miou")
    metric_labels = {"pq": "PQ", "pq_th": "PQ things", "pq_st": "PQ stuff", "miou": "semantic mIoU"}

    def __init__(
        self,
        config: TrainConfig,
        train_set: Dataset,
        val_set: Dataset | None = None,
        *,
        max_eval_images: int | None = None,
        **kwargs,
    ) -> None:
        """``max_eval_images``: evaluate on the first that many validation images only (``None``: all)."""
        self.max_eval_images = max_eval_images
        for name in ("num_thing_classes", "num_stuff_classes"):
            if not hasattr(train_set, name):
                raise ValueError(f"PanopticTrainer needs a panoptic dataset (CocoPanoptic); train_set has no {name}")
        super().__init__(config, train_set, val_set, **kwargs)

    def build_model(self) -> torch.nn.Module:
        data = self.train_set
        return create_panoptic_model(
            self.config.model, data.num_thing_classes, data.num_stuff_classes, **self.config.model_kwargs
        )

    def checkpoint_extras(self) -> dict:
        data = self.train_set
        return {
            "thing_classes": list(data.thing_classes),
            "stuff_classes": list(data.stuff_classes),
            "thing_category_ids": list(data.thing_category_ids),
            "stuff_category_ids": list(data.stuff_category_ids),
        }

    def losses(self, batch: tuple[list, list[dict]]) -> dict[str, torch.Tensor]:
        images, targets = batch
        device = self.context.device
        images = [image.to(device, non_blocking=True) for image in images]
        targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
        with self._autocast():
            losses = self.model(images, targets)
        return {name: value.float() for name, value in losses.items()}

    @torch.no_grad()
    def evaluate(self, *, max_images: int | None = None, output_dir: str | None = None) -> dict:
        """PQ of the fused predictions and mIoU of the semantic branch on ``val_set`` (its first ``max_images``
        images; default ``max_eval_images``, else all). Predictions are written under ``output_dir`` (default
        ``<output_dir>/eval``) in the COCO panoptic format."""
        loader = self.val_loader(self.max_eval_images if max_images is None else max_images)
        data = self.val_set
        panoptic = PanopticEvaluator(
            data.gt_json,
            data.gt_folder,
            output_dir or self.output_dir / "eval",
            data.thing_category_ids,
            data.stuff_category_ids,
        )
        semantic = SemanticEvaluator(data.num_stuff_classes + 1, ignore_index=data.ignore_index)
        self._refuse_non_finite_weights()
        model = self.module.eval()
        seconds, images_seen = 0.0, 0
        for images, targets in tqdm(loader, desc="evaluate", disable=not self.context.is_main, leave=False):
            started = time.perf_counter()
            with self._autocast():
                results = model([image.to(self.context.device) for image in images])
            seconds += time.perf_counter() - started
            images_seen += len(images)
            for result, target in zip(results, targets, strict=True):
                panoptic.update(
                    target["image_id"], target["file_name"], result["panoptic_seg"], result["segments_info"]
                )
                label = torch.as_tensor(target["sem_seg"]).as_subclass(torch.Tensor)
                semantic.update(result["sem_seg"][None].float().cpu(), label[None])
        pq_results = panoptic.compute()
        semantic_metrics = semantic.compute()
        metrics = {**summarize_pq(pq_results), "pq_results": pq_results}
        metrics.update(miou=semantic_metrics["miou"], semantic_iou=semantic_metrics["iou"])
        metrics["images_per_s"] = images_seen / seconds if seconds else None
        return metrics
