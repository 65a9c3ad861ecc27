"""Training and evaluation of segmentation models, on one CPU or many GPUs, losing nothing.

- SGD (momentum 0.9), weight decay, and a poly or step (with warm-up) learning-rate schedule (``schedule.py``).
- bf16 autocast on CPU and GPU (``amp="bf16"``); fp16 with a GradScaler on GPU (``amp="fp16"``).
- ``torchrun`` launches several processes: DistributedDataParallel over gloo (CPU) or NCCL (GPU), with
  SyncBatchNorm on GPU. PyTorch's SyncBatchNorm has no CPU kernel, so CPU processes keep per-process
  BatchNorm statistics (a warning says so). One process needs no process group at all.
- Checkpoints hold model, optimizer, scheduler, scaler, every rank's RNG state, the iteration and the config;
  they are written atomically. ``resume`` continues the exact same run: the data stream and the augmentation
  seeds are functions of (seed, epoch, position) (see ``sampler.py``).
- SIGTERM / SIGINT: the current iteration finishes, a checkpoint is written, ``fit`` returns
  ``{"interrupted": True, ...}``.
- A non-finite loss stops training with ``FloatingPointError`` naming the iteration and the last good
  checkpoint, which is left untouched; no checkpoint with a non-finite tensor is ever written, and
  ``evaluate`` refuses non-finite weights.
- Progress bar (rank 0) with loss, lr and images/s; metrics in ``metrics.jsonl``, cut back on resume to the
  iterations the checkpoint has seen (``metrics_log.py``); a PNG of the loss and mIoU curves at the end.
- Resuming is bit for bit with the same number of threads (float sums depend on it); a different number is
  warned about.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .._atomic import atomic_write_text
from ..evaluation import SemanticEvaluator
from ..inference import predict
from ..losses import OCRLoss
from ..models import create_model
from .checkpoint import (
    atomic_save,
    capture_rng_state,
    is_training_checkpoint,
    load_checkpoint,
    non_finite_tensors,
    restore_rng_state,
)
from .config import TrainConfig
from .distributed import DistributedContext, setup_distributed
from .metrics_log import MetricsLog
from .plots import plot_curves
from .sampler import ResumableSampler, SeededSamples
from .schedule import build_scheduler

__all__ = ["Trainer"]

LAST_CHECKPOINT = "last.pth"


class Trainer:
    """Train ``config.model`` on ``train_set`` and evaluate on ``val_set``.

    Datasets return dicts with ``"image"`` (3, H, W) float and ``"label"`` (H, W) int64 (ignore = the model's
    ``ignore_index``) after their transforms, and carry ``num_classes``, ``classes`` and ``palette``.
    ``ocrformer.engine.build_datasets(config)`` makes them from the config.
    """

    def __init__(
        self,
        config: TrainConfig,
        train_set: Dataset,
        val_set: Dataset | None = None,
        *,
        context: DistributedContext | None = None,
    ) -> None:
        self.config = config
        self.context = context or setup_distributed(config.device)
        self.train_set, self.val_set = train_set, val_set
        self.num_classes = getattr(train_set, "num_classes", None)
        self.output_dir = Path(config.output_dir)
        self.metrics_path = self.output_dir / "metrics.jsonl"
        self.metrics_log = MetricsLog(self.metrics_path, enabled=self.context.is_main)
        torch.manual_seed(config.seed + self.context.rank)

        model = self.build_model().to(self.context.device)
        if self.context.is_distributed:
            model = self._prepare_for_ranks(model)
        self.model = model  # wrapped in DistributedDataParallel only while fit() trains
        self.optimizer = torch.optim.SGD(
            self._parameter_groups(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self.scheduler = build_scheduler(self.optimizer, config)
        self.scaler = torch.amp.GradScaler(self.context.device.type, enabled=config.amp == "fp16")
        self.iteration = 0
        self.last_evaluation: dict | None = None  # the latest evaluate() inside fit(), with its "iter"
        self._stop_signal: int | None = None

    # ------------------------------------------------------------------------------- the task's hooks
    # What a task (semantic segmentation here; ``PanopticTrainer`` overrides them for Panoptic-FPN) decides:
    # the model (which returns its named, weighted losses when given targets), how a batch is collated and fed
    # to it, the evaluation and the metrics logged from it, and what a checkpoint carries besides the state.
    collate_fn = None  # the DataLoader default: stack the dicts' tensors
    logged_metrics: tuple[str, ...] = ("miou", "acc", "macc")
    metric_labels: dict[str, str] = {"miou": "mIoU"}  # plotted in curves.png

    def build_model(self) -> torch.nn.Module:
        """The model to train: ``create_model(config.model)`` with the config's loss (``OCRLoss``)."""
        config = self.config
        loss = OCRLoss(
            aux_weight=config.aux_weight,
            ignore_index=config.ignore_index,
            class_weights=config.resolved_class_weights(self.num_classes),
            ohem=config.ohem,
            ohem_threshold=config.ohem_threshold,
            ohem_min_kept=config.ohem_min_kept,
        )
        return create_model(config.model, self.num_classes, weights=config.weights, loss=loss, **config.model_kwargs)

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """One training batch -> the model's named, weighted loss terms (float32; their sum is optimised)."""
        images = batch["image"].to(self.context.device, non_blocking=True)
        labels = batch["label"].to(self.context.device, non_blocking=True)
        with self._autocast():
            losses = self.model(images, labels, **self._oracle(labels))
        return {name: value.float() for name, value in losses.items()}

    def checkpoint_extras(self) -> dict:
        """Saved beside the training state, for tools that read a checkpoint without the dataset."""
        return {
            "classes": list(getattr(self.train_set, "classes", [])),
            "palette": [list(c) for c in getattr(self.train_set, "palette", [])],
            "num_classes": self.num_classes,
        }

    @property
    def module(self) -> torch.nn.Module:
        """The model without its DistributedDataParallel wrapper."""
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

    def _prepare_for_ranks(self, model: torch.nn.Module) -> torch.nn.Module:
        """SyncBatchNorm on GPUs; on CPU (no SyncBatchNorm kernel) a warning that BN statistics stay per rank."""
        if self.context.device.type == "cuda":
            from timm.layers import convert_sync_batchnorm  # knows timm's BatchNormAct2d

            return convert_sync_batchnorm(model)
        if self.context.is_main:
            warnings.warn(
                "training on CPU with several processes: PyTorch's SyncBatchNorm has no CPU kernel, so each "
                "process normalises with its own batch statistics",
                stacklevel=3,
            )
        return model

    @contextlib.contextmanager
    def _distributed_training(self) -> Iterator[None]:
        """``self.model`` is the DistributedDataParallel wrapper inside this block and the bare module after it.

        The wrapper's reducer holds the process group. Left alive until interpreter exit, its destruction made
        gloo processes abort ("terminate called without an active exception") in about 1 run in 10 of
        tests/test_trainer.py's two-process run; released here, while everything it needs still exists.
        """
        if not self.context.is_distributed:
            yield
            return
        device_ids = [self.context.local_rank] if self.context.device.type == "cuda" else None
        self.model = DistributedDataParallel(self.module, device_ids=device_ids)
        try:
            yield
        finally:
            self.model = self.module

    def _autocast(self):
        if self.config.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.context.device.type, dtype=dtype)

    def _train_batches(self) -> Iterator[dict]:
        sampler = ResumableSampler(
            len(self.train_set),
            seed=self.config.seed,
            rank=self.context.rank,
            world_size=self.context.world_size,
            start=self.iteration * self.config.batch_size,
        )
        loader = DataLoader(
            SeededSamples(self.train_set),
            batch_size=self.config.batch_size,
            sampler=sampler,
            num_workers=self.config.workers,
            pin_memory=self.context.device.type == "cuda",
            drop_last=True,
            persistent_workers=self.config.workers > 0,
            collate_fn=self.collate_fn,
            # Its own generator: creating the iterator must not draw from the global RNG, or a resumed run's
            # dropout masks would be shifted by one draw against the uninterrupted run.
            generator=torch.Generator().manual_seed(self.config.seed),
        )
        return iter(loader)

    # ------------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, name: str = LAST_CHECKPOINT) -> Path | None:
        """Write the full training state (rank 0 writes; every rank's RNG state is gathered).

        Raises ``FloatingPointError`` (on every rank) instead of writing weights or optimizer state that hold a
        NaN or an infinity: the checkpoint on disk stays the last good one."""
        self._check_finite_state()
        rng = [capture_rng_state()]
        if self.context.is_distributed:
            rng = [None] * self.context.world_size
            dist.all_gather_object(rng, capture_rng_state())
        if not self.context.is_main:
            return None
        state = {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "iteration": self.iteration,
            "config": dataclasses.asdict(self.config),
            **self.checkpoint_extras(),
            "world_size": self.context.world_size,
            "num_threads": torch.get_num_threads(),
        }
        return atomic_save(state, self.output_dir / name)

    def _check_finite_state(self) -> None:
        """Every rank checks its own weights and optimizer state; all stop together if any has a non-finite one."""
        bad = non_finite_tensors(self.module.state_dict()) + non_finite_tensors(self.optimizer.state_dict()["state"])
        finite = torch.tensor(0.0 if bad else 1.0, device=self.context.device)
        if self.context.is_distributed:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            where = f": {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}" if bad else " on another rank"
            kept = self.output_dir / LAST_CHECKPOINT
            kept = f"the last good checkpoint, {kept}, is kept" if kept.exists() else "no checkpoint was written"
            raise FloatingPointError(
                f"non-finite weights or optimizer state after iteration {self.iteration}{where}; training stopped "
                f"and {kept}. Lower the learning rate or check the data for corrupt labels."
            )

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written by ``save_checkpoint`` (same model and world size) to continue it."""
        state = load_checkpoint(path, map_location=self.context.device)
        if not is_training_checkpoint(state):
            kind = "a model's weights (a state dict)" if "_extra_state" in state or "model" not in state else "a file"
            raise ValueError(
                f"{path} is {kind}, not a training checkpoint (no optimizer, scheduler, iteration and config): it "
                "cannot be resumed. Start a run from these weights with TrainConfig(weights=...) (--weights), or "
                "evaluate them with --eval-only --checkpoint; a released checkpoint is converted first "
                "(python -m ocrformer.convert)."
            )
        self._check_same_run(path, state.get("config", {}))
        self._check_same_classes(path, state)
        if state.get("world_size", 1) != self.context.world_size:
            raise ValueError(
                f"checkpoint {path} was written by {state['world_size']} processes but this run has "
                f"{self.context.world_size}: the data stream would not continue where it stopped"
            )
        threads = state.get("num_threads")
        if threads is not None and threads != torch.get_num_threads() and self.context.is_main:
            warnings.warn(
                f"checkpoint {path} was written with {threads} threads per process, this run has "
                f"{torch.get_num_threads()}: it continues, but not bit for bit (float sums depend on the thread "
                "count); set torch.set_num_threads / OMP_NUM_THREADS as before for an exact continuation",
                stacklevel=2,
            )
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"][self.context.rank])
        self.iteration = state["iteration"]

    def _check_same_classes(self, path: str | Path, state: dict) -> None:
        """A dataset whose classes changed since the checkpoint (a folder dataset gained a class) is another run."""
        saved = state.get("classes") or None
        current = list(getattr(self.train_set, "classes", [])) or None
        saved_count, count = state.get("num_classes"), self.num_classes
        if (saved is not None and current is not None and list(saved) != current) or (
            saved_count is not None and count is not None and saved_count != count
        ):
            added = sorted(set(current or []) - set(saved or []))
            removed = sorted(set(saved or []) - set(current or []))
            change = "; ".join(
                part
                for part in (
                    f"{saved_count} -> {count} classes",
                    f"added {added}" if added else "",
                    f"removed {removed}" if removed else "",
                )
                if part
            )
            raise ValueError(
                f"checkpoint {path} belongs to a run with other settings (the dataset's classes changed: "
                f"{change}). Use a new output folder, or do not resume (--resume none), to start this one afresh."
            )

    # Settings that may change between a run and its resumption without changing what is being trained.
    _RESUMABLE_CHANGES = frozenset(
        {"resume", "output_dir", "device", "workers", "eval_every", "log_every", "checkpoint_every", "val_batch_size"}
    )

    def _check_same_run(self, path: str | Path, saved: dict) -> None:
        """Refuse to continue a checkpoint under different settings (another schedule length, learning rate,
        model...): the result would be neither run. Names every difference and the way out."""
        current = dataclasses.asdict(self.config)
        differences = [
            f"{key}: {saved[key]!r} -> {current[key]!r}"
            for key in sorted(current)
            if key in saved and key not in self._RESUMABLE_CHANGES and _as_lists(saved[key]) != _as_lists(current[key])
        ]
        if differences:
            raise ValueError(
                f"checkpoint {path} belongs to a run with other settings ({'; '.join(differences)}). "
                "Use a new output folder, or do not resume (--resume none), to start this one afresh."
            )

    def _resume_path(self) -> Path | None:
        resume = self.config.resume
        if not resume:
            return None
        if resume == "auto":
            path = self.output_dir / LAST_CHECKPOINT
            return path if path.is_file() else None
        return Path(resume)

    # --------------------------------------------------------------------------------------- training
    def fit(self) -> dict:
        """Train until ``config.iterations`` (or a stop signal). Returns the last logged metrics."""
        resume = self._resume_path()
        if resume is not None:
            self.load_checkpoint(resume)
        config, main = self.config, self.context.is_main
        if main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.output_dir / "config.json", json.dumps(dataclasses.asdict(config), indent=2))
        # The log holds exactly what the checkpoint has seen: rows past it (logged after it was written) go.
        self.metrics_log.start(self.iteration if resume is not None else None)
        last_good = (self.output_dir / LAST_CHECKPOINT) if resume is not None else None
        summary: dict = {"iteration": self.iteration, "interrupted": False}
        batches = self._train_batches()
        evaluated = None
        steps, train_seconds = 0, 0.0
        images_per_step = config.batch_size * self.context.world_size
        self.model.train()
        with (
            self._distributed_training(),
            self._signals_caught(),
            tqdm(
                total=config.iterations, initial=self.iteration, disable=not main, desc=config.model, unit="it"
            ) as progress,
        ):
            while self.iteration < config.iterations:
                started = time.perf_counter()
                losses = self._step(next(batches), last_good)
                self.iteration += 1
                seconds = time.perf_counter() - started
                steps, train_seconds = steps + 1, train_seconds + seconds
                throughput = images_per_step / seconds
                row = {"iter": self.iteration, **losses, "lr": self.scheduler.get_last_lr()[0]}
                row["images_per_s"] = throughput
                progress.update(1)
                progress.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{row['lr']:.2e}", img_s=f"{throughput:.1f}")
                if self.iteration % config.log_every == 0 or self.iteration == config.iterations:
                    self._log(row)
                if config.eval_every and self.iteration % config.eval_every == 0 and self.val_set is not None:
                    evaluated = self._evaluate_and_log()
                    self.model.train()
                if self.iteration % config.checkpoint_every == 0 or self.iteration == config.iterations:
                    last_good = self.save_checkpoint()
                if self._should_stop():
                    last_good = self.save_checkpoint()
                    summary["interrupted"] = True
                    if main:
                        tqdm.write(f"stopped by signal at iteration {self.iteration}; checkpoint: {last_good}")
                    break
                summary.update(row)
        if not summary["interrupted"] and self.val_set is not None:
            if evaluated is None or evaluated["iter"] != self.iteration:
                evaluated = self._evaluate_and_log()
            summary.update(evaluated)
        if main and self.metrics_path.exists():
            try:  # a damaged log never costs a finished training its reports
                plot_curves(
                    self.metrics_path, self.output_dir / "curves.png", title=config.model, metrics=self.metric_labels
                )
            except (OSError, ValueError) as error:
                warnings.warn(f"curves.png not drawn from {self.metrics_path}: {error}", stacklevel=2)
        summary["iteration"] = self.iteration
        if steps:  # the whole run's rate (data loading included), not the last iteration's
            summary["images_per_s"] = steps * images_per_step / train_seconds
        return summary

    def _parameter_groups(self) -> list[dict]:
        """The optimizer's groups: ``model.backbone`` at ``lr``, the rest (neck, heads) at ``lr * head_lr_mult``
        -- openseg.pytorch's ``--nbb_mult``, which its PASCAL-Context and COCO-Stuff recipes set to 10. One group
        when the multiplier is 1 or the model has no ``backbone``."""
        backbone = getattr(self.module, "backbone", None)
        if self.config.head_lr_mult == 1 or not isinstance(backbone, torch.nn.Module):
            return [{"params": list(self.module.parameters())}]
        in_backbone = {id(p) for p in backbone.parameters()}
        rest = [p for p in self.module.parameters() if id(p) not in in_backbone]
        head_lr = self.config.lr * self.config.head_lr_mult
        return [{"params": list(backbone.parameters())}, {"params": rest, "lr": head_lr}]

    def _step(self, batch, last_good: Path | None) -> dict:
        losses = self.losses(batch)
        loss = sum(losses.values())
        self._check_finite(loss, losses, last_good)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {"loss": loss.item(), **{name: value.item() for name, value in losses.items()}}

    def _oracle(self, labels: torch.Tensor) -> dict:
        return {"oracle_labels": labels} if self.config.oracle else {}

    def _check_finite(self, loss: torch.Tensor, losses: dict, last_good: Path | None) -> None:
        finite = torch.isfinite(loss.detach()).float()
        if self.context.is_distributed:  # every rank stops together
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            terms = ", ".join(f"{name}={value.item():.4g}" for name, value in losses.items())
            kept = f"the last good checkpoint, {last_good}, is kept" if last_good else "no checkpoint was written yet"
            raise FloatingPointError(
                f"non-finite loss at iteration {self.iteration + 1} ({terms}); training stopped and {kept}. "
                "Lower the learning rate or check the data for corrupt labels."
            )

    # ------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, *, scales: tuple[float, ...] = (1.0,), flip: bool = False) -> dict:
        """mIoU and accuracies on ``val_set`` (sharded over ranks, confusion matrices summed). With ``flip``, the
        flipped pass exchanges the class channels of the val set's ``flip_pairs`` (LIP's left/right parts)."""
        loader = self.val_loader()
        evaluator = SemanticEvaluator(self.num_classes, ignore_index=self.config.ignore_index)
        flip_pairs = getattr(self.val_set, "flip_pairs", ())
        model = self.module
        self._refuse_non_finite_weights()
        model.eval()
        for batch in tqdm(loader, desc="evaluate", disable=not self.context.is_main, leave=False):
            images = batch["image"].to(self.context.device)
            labels = batch["label"].to(self.context.device)
            with self._autocast():
                if self.config.oracle:
                    scores = model(images, oracle_labels=labels)["logits"]
                else:
                    scores = predict(
                        model,
                        images,
                        scales=scales,
                        flip=flip,
                        flip_pairs=flip_pairs,
                        align_corners=model.align_corners,
                    )
            evaluator.update(scores.float(), labels)
        return evaluator.compute()

    def val_loader(self, max_images: int | None = None) -> DataLoader:
        """This rank's shard of ``val_set`` -- of its first ``max_images`` images if given -- (every
        ``world_size``-th image from ``rank``), in order, unshuffled, batched by the task's ``collate_fn``: what
        ``evaluate`` reads; the task's evaluation sums the counts of all ranks."""
        if self.val_set is None:
            raise ValueError("evaluate() needs a val_set")
        count = len(self.val_set) if max_images is None else min(max_images, len(self.val_set))
        return DataLoader(
            Subset(self.val_set, list(range(self.context.rank, count, self.context.world_size))),
            batch_size=self.config.val_batch_size,
            num_workers=self.config.workers,
            collate_fn=self.collate_fn,
        )

    def _refuse_non_finite_weights(self) -> None:
        bad = non_finite_tensors(self.module.state_dict())
        if bad:
            raise FloatingPointError(
                f"the model's weights hold non-finite values ({', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}): "
                "its predictions would be meaningless, so it is not evaluated"
            )

    def _evaluate_and_log(self) -> dict:
        metrics = self.evaluate()
        self.last_evaluation = {"iter": self.iteration, **metrics}
        row = {"iter": self.iteration, **{k: metrics[k] for k in self.logged_metrics}}
        self.metrics_log.evaluation(row)
        return row

    def _log(self, row: dict) -> None:
        self.metrics_log.append(row)

    # ---------------------------------------------------------------------------------------- signals
    @contextlib.contextmanager
    def _signals_caught(self) -> Iterator[None]:
        """Turn SIGTERM/SIGINT into "finish this iteration, checkpoint, return" (main thread only)."""

        def request_stop(signum, frame):
            self._stop_signal = signum

        previous = {}
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, request_stop)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _should_stop(self) -> bool:
        stop = torch.tensor(float(self._stop_signal is not None))
        if self.context.is_distributed:  # a signal to any rank stops all of them at the same iteration
            stop = stop.to(self.context.device)
            dist.all_reduce(stop, op=dist.ReduceOp.MAX)
        return bool(stop.item())


def _as_lists(value):
    """Tuples and lists compare equal (a config read back from JSON or a checkpoint has lists)."""
    return [_as_lists(v) for v in value] if isinstance(value, list | tuple) else value
