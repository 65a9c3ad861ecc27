"""The training configuration (one flat dataclass, turned into command-line flags by the experiment scripts)
and the datasets it names."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch.utils.data import Dataset

__all__ = ["TrainConfig", "build_datasets"]

_AMP = ("none", "bf16", "fp16")
_FLOATS = (
    "lr", "head_lr_mult", "momentum", "weight_decay", "poly_power", "lr_gamma", "warmup_factor", "aux_weight",
    "ohem_threshold",
)


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved in every checkpoint and as ``config.json``.

    Sizes are (height, width) in pixels; ``batch_size`` is per process; ``iterations`` counts optimizer steps.
    """

    model: str = "ocrnet_tiny"
    model_kwargs: dict = field(default_factory=dict)
    weights: str | None = None  # start from these weights (ocrformer state dict or converted checkpoint file)
    dataset: str = "synthetic"
    data_root: str | None = None
    train_split: str | None = None
    val_split: str | None = None
    classes_json: str | None = None  # the folder dataset's class list
    crop_size: tuple[int, int] = (64, 64)
    scale_range: tuple[float, float] = (0.5, 2.0)
    jitter: bool = True
    flip: bool = True
    batch_size: int = 8
    val_batch_size: int = 1
    iterations: int = 300
    lr: float = 0.01
    head_lr_mult: float = 1.0  # everything outside ``model.backbone`` trains at lr * this (openseg's --nbb_mult)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "poly"  # "poly" or "step" (see engine/schedule.py)
    poly_power: float = 0.9
    lr_steps: tuple[int, ...] = ()  # "step": iterations at which the lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    warmup_iters: int = 0  # "step": linear warm-up from warmup_factor * lr
    warmup_factor: float = 0.001
    aux_weight: float = 0.4
    ignore_index: int = 255
    class_weights: str | list[float] | None = None  # None, "cityscapes", or K floats
    ohem: bool = False
    ohem_threshold: float = 0.7
    ohem_min_kept: int = 100_000
    oracle: bool = False  # GT-OCR: ground-truth regions in training and evaluation (analysis only)
    amp: str = "none"
    device: str = "auto"
    workers: int = 0
    seed: int = 0
    output_dir: str = "outputs/train"
    resume: str | None = None  # a checkpoint path, or "auto" (output_dir/last.pth when it exists)
    checkpoint_every: int = 100
    eval_every: int = 0  # 0: evaluate once, at the end
    log_every: int = 10

    def __post_init__(self) -> None:
        from ..data import dataset_names

        if self.amp not in _AMP:
            raise ValueError(f"amp must be one of {_AMP}, got {self.amp!r}")
        if self.dataset not in dataset_names():
            raise ValueError(f"dataset must be one of {dataset_names()} (ocrformer.data), got {self.dataset!r}")
        for name in ("batch_size", "val_batch_size", "iterations", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("eval_every", "workers", "seed", "warmup_iters", "ohem_min_kept"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        # Every float setting is finite: NaN passes every comparison below (nan <= 0 is False) and a NaN setting
        # would even make a run refuse its own checkpoint (nan != nan).
        floats = {name: getattr(self, name) for name in _FLOATS}
        floats |= {f"scale_range[{i}]": v for i, v in enumerate(self.scale_range)}
        if isinstance(self.class_weights, list | tuple):
            floats |= {f"class_weights[{i}]": v for i, v in enumerate(self.class_weights)}
        for name, value in floats.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.head_lr_mult <= 0:
            raise ValueError(f"head_lr_mult must be positive, got {self.head_lr_mult}")
        from .schedule import SCHEDULES

        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if any(not 0 < step < self.iterations for step in self.lr_steps) or list(self.lr_steps) != sorted(
            self.lr_steps
        ):
            raise ValueError(f"lr_steps must be increasing iterations in (0, {self.iterations}), got {self.lr_steps}")
        if self.warmup_iters < 0 or not 0 < self.warmup_factor <= 1:
            raise ValueError("warmup_iters must be >= 0 and warmup_factor in (0, 1]")
        self.lr_steps = tuple(self.lr_steps)
        self.crop_size = tuple(self.crop_size)
        self.scale_range = tuple(self.scale_range)

    def resolved_class_weights(self, num_classes: int) -> list[float] | None:
        if self.class_weights is None:
            return None
        if self.class_weights == "cityscapes":
            from ..data import CITYSCAPES_CLASS_WEIGHTS

            weights = list(CITYSCAPES_CLASS_WEIGHTS)
        elif isinstance(self.class_weights, str):
            raise ValueError(f"class_weights must be None, 'cityscapes' or a list, got {self.class_weights!r}")
        else:
            weights = [float(w) for w in self.class_weights]
        if len(weights) != num_classes:
            raise ValueError(f"class_weights has {len(weights)} entries but the dataset has {num_classes} classes")
        return weights


def build_datasets(config: TrainConfig) -> tuple[Dataset, Dataset]:
    """The (train, val) datasets the config names (``ocrformer.data.DATASETS``: its default splits unless the
    config names others), with the task's training augmentation and evaluation transforms.

    Semantic datasets: random rescale, crop, flip and jitter (``TrainTransform``), none for evaluation; the flip
    exchanges the dataset's ``flip_pairs`` (LIP's left/right parts). Panoptic ones: random flips only -- scale
    augmentation is Mask R-CNN's own, which resizes every image to its ``min_size`` (one drawn per image when
    that is a tuple) and would undo a rescale here."""
    from ..data import (
        DATASETS,
        EvalTransform,
        PanopticEvalTransform,
        PanopticTrainTransform,
        TrainTransform,
        build_dataset,
    )

    entry = DATASETS[config.dataset]
    extra = {"classes_json": config.classes_json} if config.dataset == "folder" else {}
    train_split, val_split = config.train_split or entry.splits[0], config.val_split or entry.splits[1]

    def build(split: str, transforms) -> Dataset:
        return build_dataset(config.dataset, root=config.data_root, split=split, transforms=transforms, **extra)

    if entry.task == "panoptic":
        return build(train_split, PanopticTrainTransform(flip=config.flip)), build(val_split, PanopticEvalTransform())
    # The val set first: the training flip needs the dataset's flip_pairs, which only the built dataset knows.
    val = build(val_split, EvalTransform())
    train_transform = TrainTransform(
        config.crop_size,
        scale_range=config.scale_range,
        flip=config.flip,
        flip_pairs=getattr(val, "flip_pairs", ()),
        jitter=config.jitter,
        ignore_index=config.ignore_index,
    )
    return build(train_split, train_transform), val
