"""Tiny dataset trees in the real layouts of the releases, for the loader tests: the one place that writes them.

Written independently of the package's loaders (the paths are the releases'). Every label cycles through all of
the dataset's values, so each value (and each mapping) is exercised; images are seeded random RGB. Each writer
returns ``root`` (PASCAL-Context: the ``VOC2010`` folder).

Writers and the layout each writes:

- ``write_cityscapes_tree(root)``: ``CITYSCAPES_SIZE`` (8 x 16) files, train: aachen, bochum; val: frankfurt::

      root/leftImg8bit/{split}/{city}/{city}_000000_{i:06d}_leftImg8bit.png
      root/gtFine/{split}/{city}/{city}_000000_{i:06d}_gtFine_labelIds.png    label ids cycling through 0-33

- ``write_ade20k_tree(root)`` (``root`` is ``ADEChallengeData2016``): ``ADE20K_SIZE`` (10 x 16) files, two per
  split::

      root/images/{training,validation}/ADE_{train,valid}_{i:08d}.jpg
      root/annotations/{training,validation}/ADE_{train,valid}_{i:08d}.png    values cycling through 0-150

- ``write_lip_tree(root, splits, id_lists=)``: 8 x 12 files (``H, W``), as the release's two zips unpack::

      root/TrainVal_images/{split}_images/{id}.jpg
      root/TrainVal_images/{split}_id.txt                                (or root/{split}_id.txt, or none)
      root/TrainVal_parsing_annotations/{split}_segmentations/{id}.png     values cycling through 0-19

- ``write_pascal_context_tree(root, splits)``: 8 x 12 files, mmsegmentation's layout (VOC2010 + converted
  labels)::

      root/VOCdevkit/VOC2010/JPEGImages/{id}.jpg
      root/VOCdevkit/VOC2010/SegmentationClassContext/{id}.png              values cycling through 0-59
      root/VOCdevkit/VOC2010/ImageSets/SegmentationContext/{split}.txt

- ``write_coco_stuff164k_tree(root, splits, size, values)``: ``COCO_STUFF_SIZE`` (12 x 16: 192 pixels hold the
  172 values) files, as ``stuffthingmaps_trainval2017.zip`` unpacks::

      root/images/{train2017,val2017}/{n:012d}.jpg
      root/annotations/{train2017,val2017}/{n:012d}.png     COCO-Stuff id - 1 (0-181), 255 = unlabeled (VALUES_164K)

- ``write_coco_stuff10k_tree(root, splits, size, values)``: 12 x 16 files, as ``cocostuff-10k-v1.1.zip``
  unpacks::

      root/images/COCO_train2014_{n:012d}.jpg
      root/annotations/COCO_train2014_{n:012d}.mat     S: ids 1-182, 0 = unlabeled (VALUES_10K); names: LABELS[1:]
      root/imageLists/{train,test}.txt

Building blocks: ``save_image`` (seeded RGB; JPEG at quality 95), ``save_label`` (a uint8 PNG of ids), ``ramp``
(an (H, W) map cycling through a sequence of values), ``save_mat`` (a COCO-Stuff-10k ``.mat``), ``lip_ids`` and
``context_ids`` (the releases' id styles); the COCO-Stuff constants ``LABELS``, ``UNUSED_IDS``, ``USED_IDS``,
``VALUES_164K``, ``VALUES_10K``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

H, W = 8, 12  # LIP and PASCAL-Context, and the default of the building blocks
CITYSCAPES_SIZE = (8, 16)
ADE20K_SIZE = (10, 16)  # 160 pixels hold all 151 annotation values
COCO_STUFF_SIZE = (12, 16)  # 192 pixels hold the 172 values

# ---------------------------------------------------------------------------------------- COCO-Stuff constants
# labels.txt of nightrome/cocostuff: index = COCO-Stuff id, 0 = unlabeled.
LABELS = (
    "unlabeled", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "hat", "backpack", "umbrella", "shoe",
    "eye glasses", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass",
    "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "mirror", "dining table",
    "window", "desk", "toilet", "door", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave",
    "oven", "toaster", "sink", "refrigerator", "blender", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", "hair brush", "banner", "blanket", "branch", "bridge", "building-other", "bush",
    "cabinet", "cage", "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble", "floor-other",
    "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass",
    "gravel", "ground-other", "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss",
    "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform",
    "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf",
    "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw", "structural-other", "table",
    "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other",
    "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind",
    "window-other", "wood",
)
# The thing classes COCO never annotated (COCO-Stuff README, "Labels"): named, so the ids follow from LABELS.
UNANNOTATED = (
    "street sign", "hat", "shoe", "eye glasses", "plate", "mirror", "window", "desk", "door", "blender", "hair brush",
)
UNUSED_IDS = tuple(LABELS.index(name) for name in UNANNOTATED)
USED_IDS = tuple(i for i in range(1, len(LABELS)) if i not in UNUSED_IDS)
VALUES_164K = tuple(i - 1 for i in USED_IDS) + (255,)  # what a stuffthingmaps PNG may hold
VALUES_10K = (0, *USED_IDS)  # what a v1.1 S field may hold


# ---------------------------------------------------------------------------------------- building blocks
def save_image(path: Path, seed: int = 0, size: tuple[int, int] = (H, W)) -> Path:
    """Seeded random RGB pixels of ``size`` (H, W) at ``path`` (format by suffix; a JPEG at quality 95)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return path


def save_label(path: Path, values: np.ndarray) -> Path:
    """``values`` as a single-channel uint8 PNG (ids, not colours)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(values, dtype=np.uint8)).save(path)
    return path


def ramp(values: Sequence[float], size: tuple[int, int] = (H, W), start: int = 0, dtype=np.uint8) -> np.ndarray:
    """An (H, W) map cycling through ``values`` row-major, from ``values[start % len(values)]`` on."""
    values = np.asarray(values, dtype=dtype)
    return values[(np.arange(size[0] * size[1]) + start) % len(values)].reshape(size)


def save_mat(path: Path, labels: np.ndarray, names: Sequence[str] | None = LABELS[1:]) -> None:
    """A COCO-Stuff-10k style ``.mat``: ``S`` (as given) and ``names`` (a cell array; ``None``: no field)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {"S": labels}
    if names is not None:
        fields["names"] = np.array(list(names), dtype=object)
    scipy.io.savemat(path, fields)


# ---------------------------------------------------------------------------------------- Cityscapes, ADE20K
def write_cityscapes_tree(root: Path) -> Path:
    """A Cityscapes tree (train: aachen, bochum; val: frankfurt; one image each), labels cycling through the 34
    label ids. Returns ``root``."""
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt",))):
        for i, city in enumerate(cities):
            stem = f"{city}_000000_{i:06d}"
            save_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", seed=i, size=CITYSCAPES_SIZE)
            label = ramp(range(34), size=CITYSCAPES_SIZE)
            save_label(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label)
    return root


def write_ade20k_tree(root: Path) -> Path:
    """An ADEChallengeData2016 tree (two images per split), labels cycling through all 151 annotation values.
    Returns ``root``."""
    for split in ("training", "validation"):
        for i in range(2):
            stem = f"ADE_{split[:5]}_{i:08d}"
            save_image(root / "images" / split / f"{stem}.jpg", seed=i, size=ADE20K_SIZE)
            save_label(root / "annotations" / split / f"{stem}.png", ramp(range(151), size=ADE20K_SIZE))
    return root


# ---------------------------------------------------------------------------------------- LIP
def lip_ids(split: str, count: int) -> list[str]:
    """LIP-style ids (``{n}_{m}``, as ``77_471474``) of one split."""
    return [f"{10 * index + (split == 'val')}_{4700 + index}" for index in range(count)]


def write_lip_tree(root: Path, splits: dict[str, int] | None = None, *, id_lists: str | None = "release") -> Path:
    """A LIP tree under ``root`` as the release's two zips unpack::

        root/TrainVal_images/{split}_images/{id}.jpg
        root/TrainVal_images/{split}_id.txt                           (id_lists="release")
        root/{split}_id.txt                                           (id_lists="root")
        root/TrainVal_parsing_annotations/{split}_segmentations/{id}.png

    ``splits``: images per split (default ``{"train": 2, "val": 1}``); ``id_lists=None`` writes no lists. Labels
    cycle through 0-19, the n-th image's shifted by n. Returns ``root``.
    """
    splits = {"train": 2, "val": 1} if splits is None else splits
    for split_index, (split, count) in enumerate(splits.items()):
        ids = lip_ids(split, count)
        for index, image_id in enumerate(ids):
            save_image(root / "TrainVal_images" / f"{split}_images" / f"{image_id}.jpg", seed=10 * split_index + index)
            label = ramp(range(20), start=index)
            save_label(root / "TrainVal_parsing_annotations" / f"{split}_segmentations" / f"{image_id}.png", label)
        if id_lists is not None:
            folder = root / "TrainVal_images" if id_lists == "release" else root
            (folder / f"{split}_id.txt").write_text("".join(f"{image_id}\n" for image_id in ids))
    return root


# ---------------------------------------------------------------------------------------- PASCAL-Context
def context_ids(split: str, count: int) -> list[str]:
    """VOC-style ids (``2008_000002``) of one split."""
    return [f"{2008 + (split == 'val')}_{index:06d}" for index in range(count)]


def write_pascal_context_tree(root: Path, splits: dict[str, int] | None = None) -> Path:
    """A PASCAL-Context tree in mmsegmentation's layout (VOC2010 plus the converted labels)::

        root/VOCdevkit/VOC2010/JPEGImages/{id}.jpg
        root/VOCdevkit/VOC2010/SegmentationClassContext/{id}.png     values cycling through 0-59
        root/VOCdevkit/VOC2010/ImageSets/SegmentationContext/{split}.txt

    ``splits``: images per split (default ``{"train": 2, "val": 1}``). Returns the ``VOC2010`` folder.
    """
    splits = {"train": 2, "val": 1} if splits is None else splits
    voc = root / "VOCdevkit" / "VOC2010"
    lists = voc / "ImageSets" / "SegmentationContext"
    lists.mkdir(parents=True, exist_ok=True)
    for split_index, (split, count) in enumerate(splits.items()):
        ids = context_ids(split, count)
        for index, image_id in enumerate(ids):
            save_image(voc / "JPEGImages" / f"{image_id}.jpg", seed=10 * split_index + index)
            save_label(voc / "SegmentationClassContext" / f"{image_id}.png", ramp(range(60), start=index))
        (lists / f"{split}.txt").write_text("".join(f"{image_id}\n" for image_id in ids))
    return voc


# ---------------------------------------------------------------------------------------- COCO-Stuff
def write_coco_stuff164k_tree(
    root: Path,
    splits: dict[str, int] | None = None,
    size: tuple[int, int] = COCO_STUFF_SIZE,
    values: Sequence[int] = VALUES_164K,
) -> Path:
    """``root/images/{split}/{n:012d}.jpg`` + ``root/annotations/{split}/{n:012d}.png`` (labels cycling through
    ``values``) for each split and image count of ``splits`` (default: 2 train2017, 1 val2017). Returns ``root``."""
    n = 0
    for split, count in (splits or {"train2017": 2, "val2017": 1}).items():
        for _ in range(count):
            n += 1
            save_image(root / "images" / split / f"{n:012d}.jpg", seed=n, size=size)
            save_label(root / "annotations" / split / f"{n:012d}.png", ramp(values, size))
    return root


def write_coco_stuff10k_tree(
    root: Path,
    splits: dict[str, int] | None = None,
    size: tuple[int, int] = COCO_STUFF_SIZE,
    values: Sequence[int] = VALUES_10K,
) -> Path:
    """``root/images/COCO_train2014_{n:012d}.jpg``, ``root/annotations/<same>.mat`` (``S``: uint8 ids cycling
    through ``values``) and ``root/imageLists/{split}.txt`` for each split and image count of ``splits`` (default:
    2 train, 1 test). Returns ``root``."""
    n = 0
    for split, count in (splits or {"train": 2, "test": 1}).items():
        names = []
        for _ in range(count):
            n += 1
            name = f"COCO_train2014_{n:012d}"
            save_image(root / "images" / f"{name}.jpg", seed=n, size=size)
            save_mat(root / "annotations" / f"{name}.mat", ramp(values, size))
            names.append(name)
        (root / "imageLists").mkdir(parents=True, exist_ok=True)
        (root / "imageLists" / f"{split}.txt").write_text("".join(f"{name}\n" for name in names))
    return root
