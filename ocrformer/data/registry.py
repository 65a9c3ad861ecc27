"""Datasets by name: each is declared once, here, and read by ``build_dataset``, ``TrainConfig``,
``ocrformer.engine.build_datasets`` and the experiments' ``--dataset`` choices.

Adding a dataset is one ``register_dataset`` call (``docs/architecture.md`` shows it with the synthetic set)::

    register_dataset(DatasetEntry("mydata", "semantic", build_mydata, splits=("train", "val")))

where ``build_mydata(root, split, transforms, **kwargs)`` returns the ``Dataset``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ._io import Transforms
from .ade20k import ADE20KSegmentation
from .cityscapes import CityscapesSegmentation
from .coco_panoptic import CocoPanoptic
from .coco_stuff import build_coco_stuff10k, build_coco_stuff164k
from .folder import FolderSegmentation
from .lip import LIPSegmentation
from .pascal_context import PascalContextSegmentation
from .synthetic import SyntheticContextSegmentation

__all__ = ["DATASETS", "TASKS", "DatasetEntry", "build_dataset", "dataset_names", "register_dataset"]

TASKS = ("semantic", "panoptic")


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset's name, task, constructor and default (train, val) split names.

    ``build(root, split, transforms, **kwargs)`` -> the ``Dataset`` (``split=None``: the training split, or for
    ``"folder"`` the root itself); ``needs_root=False`` for generated data (``root`` must then be ``None``).
    ``task`` says which trainer and transforms apply: ``"semantic"`` datasets give ``{"image", "label",
    "path"}``, ``"panoptic"`` ones ``(image, target)``.
    """

    name: str
    task: str
    build: Callable[..., Dataset]
    splits: tuple[str, str] = ("train", "val")
    needs_root: bool = True


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    if entry.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {entry.task!r}")
    if entry.name in DATASETS:
        raise ValueError(f"dataset {entry.name!r} is registered already")
    DATASETS[entry.name] = entry
    return entry


def dataset_names(task: str | None = None) -> list[str]:
    """The registered names (of one task)."""
    return [name for name, entry in DATASETS.items() if task is None or entry.task == task]


def build_dataset(
    name: str,
    root: str | Path | None = None,
    split: str | None = None,
    transforms: Transforms | None = None,
    **kwargs: Any,
) -> Dataset:
    """A dataset by name.

    Args:
        name: a registered name (``dataset_names()``).
        root: the dataset folder -- Cityscapes root, ``ADEChallengeData2016``, the LIP root (holding
            ``TrainVal_images/``), PASCAL-Context's ``VOC2010`` folder, a COCO-Stuff-164k or -10k root, a COCO
            panoptic root, or for ``"folder"`` a folder holding ``images/``, ``labels/`` and ``classes.json``
            (the ``write_folder`` layout; override each with ``image_dir=``, ``label_dir=``, ``classes_json=``,
            where ``None`` keeps the default). Must be ``None`` for ``"synthetic"``.
        split: the dataset's split name, or ``None`` for its default training split (``"training"`` for ADE20K,
            which also takes ``"train"``/``"val"``). For ``"folder"``, a split is a subfolder of ``root``.
        transforms: ``(image, label) -> (image, label)`` (panoptic: ``(image, target)``).
        **kwargs: passed to the constructor (e.g. ``num_images``, ``size``, ``seed`` for ``"synthetic"``).
    """
    entry = DATASETS.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(f"unknown dataset {name!r}; choose one of {dataset_names()}")
    if not entry.needs_root and root is not None:
        raise ValueError(f"the {name} dataset is generated and takes no root; pass root=None")
    if entry.needs_root and root is None:
        raise ValueError(f"dataset {name!r} needs root= (the folder it is stored in)")
    return entry.build(root, split, transforms, **kwargs)


# Builders: (root, split, transforms, **kwargs) -> Dataset; split None = the training split.
def _synthetic(root, split, transforms, **kwargs) -> SyntheticContextSegmentation:
    return SyntheticContextSegmentation(split or "train", transforms=transforms, **kwargs)


def _cityscapes(root, split, transforms, **kwargs) -> CityscapesSegmentation:
    return CityscapesSegmentation(root, split or "train", transforms=transforms, **kwargs)


def _ade20k(root, split, transforms, **kwargs) -> ADE20KSegmentation:
    return ADE20KSegmentation(root, split or "training", transforms=transforms, **kwargs)


def _folder(root, split, transforms, **kwargs) -> FolderSegmentation:
    folder = Path(root) / split if split is not None else Path(root)  # no split: root is the split folder
    paths = {"image_dir": folder / "images", "label_dir": folder / "labels", "classes_json": folder / "classes.json"}
    paths.update({key: value for key, value in kwargs.items() if not (key in paths and value is None)})
    return FolderSegmentation(**paths, transforms=transforms)


def _coco_panoptic(root, split, transforms, **kwargs) -> CocoPanoptic:
    return CocoPanoptic(root, split or "train", transforms=transforms, **kwargs)


def _lip(root, split, transforms, **kwargs) -> LIPSegmentation:
    return LIPSegmentation(root, split or "train", transforms=transforms, **kwargs)


def _pascal_context(num_classes: int) -> Callable[..., Dataset]:
    """The builder of one PASCAL-Context benchmark (59 or 60 classes)."""

    def build(root, split, transforms, **kwargs) -> PascalContextSegmentation:
        return PascalContextSegmentation(root, split or "train", transforms, num_classes=num_classes, **kwargs)

    return build


# Each dataset's layout and classes: docs/datasets.md.
for _entry in (
    DatasetEntry("synthetic", "semantic", _synthetic, needs_root=False),
    DatasetEntry("cityscapes", "semantic", _cityscapes),
    DatasetEntry("ade20k", "semantic", _ade20k, splits=("training", "validation")),
    DatasetEntry("folder", "semantic", _folder),
    DatasetEntry("coco_panoptic", "panoptic", _coco_panoptic),
    DatasetEntry("lip", "semantic", _lip),
    DatasetEntry("pascal_context", "semantic", _pascal_context(59)),  # background ignored
    DatasetEntry("pascal_context_60", "semantic", _pascal_context(60)),  # background as class 0
    DatasetEntry("coco_stuff164k", "semantic", build_coco_stuff164k, splits=("train2017", "val2017")),
    DatasetEntry("coco_stuff10k", "semantic", build_coco_stuff10k, splits=("train", "test")),
):
    register_dataset(_entry)
