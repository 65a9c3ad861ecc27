"""Semantic segmentation datasets and their paired transforms.

Every dataset is a ``torch.utils.data.Dataset`` with ``classes`` (K names), ``palette`` (K RGB triples),
``num_classes`` (K) and ``ignore_index`` (255); ``dataset[i]`` is ``{"image", "label", "path"}``: without
transforms a uint8 (3, H, W) RGB image and an int64 (H, W) label of train ids in [0, K) or 255 = ignore.

    CityscapesSegmentation    leftImg8bit/ + gtFine/, 34 label ids -> 19 train ids
    ADE20KSegmentation        ADEChallengeData2016, 150 classes
    LIPSegmentation           LIP human parsing, 20 classes; flip_pairs: left/right parts a flip exchanges
    PascalContextSegmentation PASCAL-Context, 59 or 60 classes (VOC2010 + converted labels; a .mat converter)
    CocoStuff164k, CocoStuff10k  COCO-Stuff, 171 classes: stuffthingmaps PNGs / the 10k release's .mat files
    FolderSegmentation        images/ + label PNGs + classes JSON
    SyntheticContextSegmentation   generated; a miniature where object context decides the class
    TrainTransform, EvalTransform  torchvision.transforms.v2 pipelines on (image, label)
    build_dataset(name, ...)  one entry point for configs and scripts; DATASETS, register_dataset: the registry

Panoptic segmentation (``dataset[i]`` is ``(image, target)`` with instance and semantic targets instead):

    CocoPanoptic              COCO 2017 panoptic (PNG ids + JSON) -> Panoptic-FPN targets
    PanopticTrainTransform, PanopticEvalTransform  joint v2 transforms on (image, target)
    collate_panoptic          DataLoader collate into (list of images, list of targets)
    write_synthetic_coco_panoptic  writes a small synthetic set in the real COCO panoptic layout
    SYNTHETIC_PANOPTIC_CATEGORIES  its categories (non-contiguous COCO-style ids)
"""

from __future__ import annotations

from .ade20k import ADE20K_CLASSES, ADE20K_PALETTE, ADE20KSegmentation
from .cityscapes import CITYSCAPES_CLASS_WEIGHTS, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, CityscapesSegmentation
from .coco_panoptic import CocoPanoptic, PanopticEvalTransform, PanopticTrainTransform, collate_panoptic
from .coco_stuff import COCO_STUFF_CLASSES, COCO_STUFF_ID_TO_TRAIN_ID, CocoStuff10k, CocoStuff164k
from .folder import FolderSegmentation, read_classes_json
from .lip import LIP_CLASSES, LIP_FLIP_PAIRS, LIP_PALETTE, LIPSegmentation
from .pascal_context import (
    PASCAL_CONTEXT_59_CLASSES,
    PASCAL_CONTEXT_60_CLASSES,
    PASCAL_CONTEXT_RAW_IDS,
    PascalContextSegmentation,
)
from .registry import DATASETS, DatasetEntry, build_dataset, dataset_names, register_dataset
from .synthetic import SyntheticContextSegmentation, write_folder
from .synthetic_panoptic import SYNTHETIC_PANOPTIC_CATEGORIES, write_synthetic_coco_panoptic
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    RandomHorizontalFlipSwap,
    RandomRescale,
    TrainTransform,
    check_flip_pairs,
    swap_flip_pairs,
)

__all__ = [
    "ADE20K_CLASSES",
    "ADE20K_PALETTE",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_CLASS_WEIGHTS",
    "CITYSCAPES_PALETTE",
    "COCO_STUFF_CLASSES",
    "COCO_STUFF_ID_TO_TRAIN_ID",
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LIP_CLASSES",
    "LIP_FLIP_PAIRS",
    "LIP_PALETTE",
    "PASCAL_CONTEXT_59_CLASSES",
    "PASCAL_CONTEXT_60_CLASSES",
    "PASCAL_CONTEXT_RAW_IDS",
    "SYNTHETIC_PANOPTIC_CATEGORIES",
    "ADE20KSegmentation",
    "CityscapesSegmentation",
    "CocoPanoptic",
    "CocoStuff10k",
    "CocoStuff164k",
    "DatasetEntry",
    "EvalTransform",
    "FolderSegmentation",
    "LIPSegmentation",
    "PanopticEvalTransform",
    "PanopticTrainTransform",
    "PascalContextSegmentation",
    "RandomHorizontalFlipSwap",
    "RandomRescale",
    "SyntheticContextSegmentation",
    "TrainTransform",
    "build_dataset",
    "check_flip_pairs",
    "collate_panoptic",
    "dataset_names",
    "read_classes_json",
    "register_dataset",
    "swap_flip_pairs",
    "write_folder",
    "write_synthetic_coco_panoptic",
]

