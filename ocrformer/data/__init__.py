"""Semantic segmentation datasets and their paired transforms.

Every dataset is a ``torch.utils.data.Dataset`` with ``classes`` (K names), ``palette`` (K RGB triples),
``num_classes`` (K) and ``ignore_index`` (255); ``dataset[i]`` is ``{"image", "label", "path"}``: without
transforms a uint8 (3, H, W) RGB image and an int64 (H, W) label of train ids in [0, K) or 255 = ignore.

    CityscapesSegmentation    leftImg8bit/ + gtFine/, 34 label ids -> 19 train ids
    ADE20KSegmentation        ADEChallengeData2016, 150 classes
    FolderSegmentation        images/ + label PNGs + classes JSON
    SyntheticContextSegmentation   generated; a miniature where object context decides the class
    TrainTransform, EvalTransform  torchvision.transforms.v2 pipelines on (image, label)
    build_dataset(name, ...)  one entry point for configs and scripts

Panoptic segmentation (``dataset[i]`` is ``(image, target)`` with instance and semantic targets instead):

    CocoPanoptic              COCO 2017 panoptic (PNG ids + JSON) -> Panoptic-FPN targets
    PanopticTrainTransform, PanopticEvalTransform  joint v2 transforms on (image, target)
    collate_panoptic          DataLoader collate into (list of images, list of targets)
    write_synthetic_coco_panoptic  writes a small synthetic set in the real COCO panoptic layout
    SYNTHETIC_PANOPTIC_CATEGORIES  its categories (non-contiguous COCO-style ids)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ._io import Transforms
from .ade20k import ADE20K_CLASSES, ADE20K_PALETTE, ADE20KSegmentation
from .cityscapes import CITYSCAPES_CLASS_WEIGHTS, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, CityscapesSegmentation
from .coco_panoptic import CocoPanoptic, PanopticEvalTransform, PanopticTrainTransform, collate_panoptic
from .folder import FolderSegmentation, read_classes_json
from .synthetic import SyntheticContextSegmentation, write_folder
from .synthetic_panoptic import SYNTHETIC_PANOPTIC_CATEGORIES, write_synthetic_coco_panoptic
from .transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, RandomRescale, TrainTransform

__all__ = [
    "ADE20K_CLASSES",
    "ADE20K_PALETTE",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_CLASS_WEIGHTS",
    "CITYSCAPES_PALETTE",
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SYNTHETIC_PANOPTIC_CATEGORIES",
    "ADE20KSegmentation",
    "CityscapesSegmentation",
    "CocoPanoptic",
    "EvalTransform",
    "FolderSegmentation",
    "PanopticEvalTransform",
    "PanopticTrainTransform",
    "RandomRescale",
    "SyntheticContextSegmentation",
    "TrainTransform",
    "build_dataset",
    "collate_panoptic",
    "read_classes_json",
    "write_folder",
    "write_synthetic_coco_panoptic",
]

DATASETS = ("synthetic", "cityscapes", "ade20k", "folder")


def build_dataset(
    name: str,
    root: str | Path | None = None,
    split: str | None = None,
    transforms: Transforms | None = None,
    **kwargs: Any,
) -> Dataset:
    """A dataset by name.

    Args:
        name: one of ``DATASETS``.
        root: the dataset folder -- Cityscapes root, ``ADEChallengeData2016``, or for ``"folder"`` a folder
            holding ``images/``, ``labels/`` and ``classes.json`` (the ``write_folder`` layout; override each
            with ``image_dir=``, ``label_dir=``, ``classes_json=``, where ``None`` keeps the default). Must be
            ``None`` for ``"synthetic"``.
        split: the dataset's split name, or ``None`` for its default (``"train"``; ``"training"`` for ADE20K,
            which also takes ``"train"``/``"val"``). For ``"folder"``, a split is a subfolder of ``root``.
        transforms: ``(image, label) -> (image, label)``.
        **kwargs: passed to the constructor (e.g. ``num_images``, ``size``, ``seed`` for ``"synthetic"``).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")
    if name == "synthetic":
        if root is not None:
            raise ValueError("the synthetic dataset is generated and takes no root; pass root=None")
        return SyntheticContextSegmentation(split or "train", transforms=transforms, **kwargs)
    if root is None:
        raise ValueError(f"dataset {name!r} needs root= (the folder it is stored in)")
    if name == "cityscapes":
        return CityscapesSegmentation(root, split or "train", transforms=transforms, **kwargs)
    if name == "ade20k":
        return ADE20KSegmentation(root, split or "training", transforms=transforms, **kwargs)
    folder = Path(root) / split if split is not None else Path(root)
    paths = {"image_dir": folder / "images", "label_dir": folder / "labels", "classes_json": folder / "classes.json"}
    paths.update({key: value for key, value in kwargs.items() if not (key in paths and value is None)})
    return FolderSegmentation(**paths, transforms=transforms)
