"""Tiny COCO-Stuff trees in the released layouts, written independently of ``ocrformer.data.coco_stuff``.

- ``write_coco_stuff164k_tree``: ``images/{split}/*.jpg`` + ``annotations/{split}/*.png`` holding COCO-Stuff id - 1
  (0-181) and 255 = unlabeled, as ``stuffthingmaps_trainval2017.zip`` does;
- ``write_coco_stuff10k_tree``: ``images/*.jpg`` + ``annotations/*.mat`` (field ``S``: ids 1-182, 0 = unlabeled;
  ``names``: the 182 v1.1 class names) + ``imageLists/{train,test}.txt``, as ``cocostuff-10k-v1.1.zip`` does.

By default every label cycles through all the values a real file may hold, so one sample exercises the whole
mapping. Images are 12 x 16: 192 pixels hold the 172 values.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

SIZE = (12, 16)  # (H, W)

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


def ramp(values: Sequence[int], size: tuple[int, int] = SIZE, dtype=np.uint8) -> np.ndarray:
    """An (H, W) map cycling through ``values``."""
    return np.resize(np.asarray(values, dtype=dtype), size)


def save_jpg(path: Path, size: tuple[int, int] = SIZE, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


def save_png(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(values, dtype=np.uint8)).save(path)


def save_mat(path: Path, labels: np.ndarray, names: Sequence[str] | None = LABELS[1:]) -> None:
    """A COCO-Stuff-10k style ``.mat``: ``S`` (as given) and ``names`` (a cell array; ``None``: no field)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {"S": labels}
    if names is not None:
        fields["names"] = np.array(list(names), dtype=object)
    scipy.io.savemat(path, fields)


def write_coco_stuff164k_tree(
    root: Path,
    splits: dict[str, int] | None = None,
    size: tuple[int, int] = SIZE,
    values: Sequence[int] = VALUES_164K,
) -> Path:
    """``root/images/{split}/{n:012d}.jpg`` + ``root/annotations/{split}/{n:012d}.png`` (labels cycling through
    ``values``) for each split and image count of ``splits`` (default: 2 train2017, 1 val2017). Returns ``root``."""
    n = 0
    for split, count in (splits or {"train2017": 2, "val2017": 1}).items():
        for _ in range(count):
            n += 1
            save_jpg(root / "images" / split / f"{n:012d}.jpg", size, seed=n)
            save_png(root / "annotations" / split / f"{n:012d}.png", ramp(values, size))
    return root


def write_coco_stuff10k_tree(
    root: Path,
    splits: dict[str, int] | None = None,
    size: tuple[int, int] = SIZE,
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
            save_jpg(root / "images" / f"{name}.jpg", size, seed=n)
            save_mat(root / "annotations" / f"{name}.mat", ramp(values, size))
            names.append(name)
        (root / "imageLists").mkdir(parents=True, exist_ok=True)
        (root / "imageLists" / f"{split}.txt").write_text("".join(f"{name}\n" for name in names))
    return root
