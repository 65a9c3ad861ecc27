"""COCO-Stuff, 171 classes, in its two releases: COCO-Stuff-164k (PNG maps) and COCO-Stuff-10k (MATLAB files).

Ids. COCO-Stuff numbers its classes as COCO does (``labels.txt`` of the release): 0 = unlabeled, 1-91 things,
92-182 stuff. Eleven of the 91 COCO thing ids were never annotated in COCO (street sign 12, hat 26, shoe 29,
eye glasses 30, plate 45, mirror 66, window 68, desk 69, door 71, blender 83, hair brush 91), so no pixel of
either release carries them and 171 classes are used: train id = the rank of the id among the 171
(``COCO_STUFF_IDS``), person (1) -> 0, banner (92, the first stuff class) -> 80, wood (182) -> 170. This is the
numbering of mmsegmentation's converters and of openseg.pytorch's ``label_list``, so models trained with either
read the same way.

COCO-Stuff-164k, as the README of the release sets it up (``train2017.zip`` and ``val2017.zip`` unzipped into
``images/``, ``stuffthingmaps_trainval2017.zip`` into ``annotations/``; mmsegmentation uses the same tree)::

    root/images/{train2017,val2017}/{id:012d}.jpg
    root/annotations/{train2017,val2017}/{id:012d}.png     one byte per pixel: COCO-Stuff id - 1 (0-181), 255

The PNG value is the id minus one (person = 0, wood = 181) and 255 is unlabeled; they are mapped to train ids on
loading, so mmsegmentation's ``coco_stuff164k.py`` conversion step is not needed (its ``*_labelTrainIds.png``
outputs, written next to the originals, are not read).

COCO-Stuff-10k v1.1, as ``cocostuff-10k-v1.1.zip`` unpacks::

    root/images/COCO_train2014_{id:012d}.jpg
    root/annotations/COCO_train2014_{id:012d}.mat          MATLAB file, field ``S``: (H, W) ids, 0 = unlabeled
    root/imageLists/{train,test}.txt                       one image name (no extension) per line, 9000 / 1000

``S`` holds the ids themselves (1-182) and 0 for unlabeled, which becomes 255. Version 1.0 numbered differently
(1 = unlabeled, 2-81 things, 82-172 stuff, 172 entries in the ``names`` field); such files are refused rather
than read as wrong classes.

Unused ids are refused, not ignored: they cannot occur in the released data, so a file holding one is not what
this loader expects (an already converted train-id map, a 1-based map, another dataset) and reading it would
train on wrong classes without a word. The error names the file and the values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch

from ._io import (
    IGNORE_INDEX,
    PairedSegmentation,
    Transforms,
    make_lut,
    pair_with_labels,
    read_id_list,
    require_dir,
    require_files,
    split_folders,
    voc_palette,
)

__all__ = [
    "COCO_STUFF_CLASSES",
    "COCO_STUFF_IDS",
    "COCO_STUFF_ID_TO_TRAIN_ID",
    "COCO_STUFF_PALETTE",
    "COCO_STUFF_UNUSED_IDS",
    "CocoStuff10k",
    "CocoStuff164k",
    "build_coco_stuff10k",
    "build_coco_stuff164k",
    "read_mat_label",
]

# The 11 COCO thing ids without any segmentation in COCO (COCO-Stuff README, "Labels").
COCO_STUFF_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
# The 171 ids in use, ascending: train id i is COCO_STUFF_IDS[i].
COCO_STUFF_IDS = tuple(i for i in range(1, 183) if i not in COCO_STUFF_UNUSED_IDS)
COCO_STUFF_ID_TO_TRAIN_ID = {coco_id: train_id for train_id, coco_id in enumerate(COCO_STUFF_IDS)}
# labels.txt names of COCO_STUFF_IDS, in train-id order: 80 things, then 91 stuff classes from banner (train id 80).
COCO_STUFF_CLASSES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood",
    "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad", "river",
    "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow",
    "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel",
    "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
]
assert len(COCO_STUFF_IDS) == len(COCO_STUFF_CLASSES) == 171
# The PASCAL VOC colour map: 171 distinct colours (mmsegmentation's COCO-Stuff palette repeats some).
COCO_STUFF_PALETTE = voc_palette(len(COCO_STUFF_CLASSES))

_UNUSED_164K = ", ".join(str(i - 1) for i in COCO_STUFF_UNUSED_IDS)
_UNUSED_10K = ", ".join(map(str, COCO_STUFF_UNUSED_IDS))

LAYOUT_164K = (
    "  root/images/{train2017,val2017}/*.jpg\n"
    "  root/annotations/{train2017,val2017}/*.png   (stuffthingmaps_trainval2017.zip unzipped into annotations/)"
)
LAYOUT_10K = (
    "  root/images/*.jpg\n"
    "  root/annotations/*.mat   (field S)\n"
    "  root/imageLists/{train,test}.txt   (image names without extension)"
)
_SPLIT_ALIASES_164K = {"train": "train2017", "val": "val2017"}
_SPLIT_ALIASES_10K = {"val": "test"}  # the 1000 test images are the evaluation set of the 10k papers


class CocoStuff164k(PairedSegmentation):
    """COCO-Stuff-164k: the official ``stuffthingmaps`` PNGs (COCO-Stuff id - 1, 255 = unlabeled) -> 171 train ids.

    Args:
        root: the folder holding ``images/`` and ``annotations/`` (see the module docstring).
        split: ``"train2017"`` or ``"val2017"`` (``"train"`` / ``"val"`` are aliases).
        transforms: ``(image, label) -> (image, label)`` on uint8 (3, H, W) / int64 (H, W).

    ``dataset[i]`` -> ``{"image": uint8 (3, H, W), "label": int64 (H, W) train ids 0-170 or 255, "path": str}``;
    sizes vary per image. PNG values must be 0-181 minus the 11 unused ids, or 255; others raise, naming the file.
    """

    def __init__(self, root: str | Path, split: str = "train2017", transforms: Transforms | None = None) -> None:
        root = require_dir(Path(root), "COCO-Stuff-164k root", LAYOUT_164K)
        split = _SPLIT_ALIASES_164K.get(split, split)
        image_dir, label_dir = split_folders(root, split, "COCO-Stuff-164k", LAYOUT_164K)
        images = require_files(sorted(image_dir.glob("*.jpg")), image_dir, "*.jpg", LAYOUT_164K)
        try:
            samples = pair_with_labels(images, lambda image: label_dir / f"{image.stem}.png")
        except FileNotFoundError as exc:
            # A tree holding only mmsegmentation's converted maps fails here; say what is missing and why.
            if next(label_dir.glob("*_labelTrainIds.png"), None) is None:
                raise
            raise FileNotFoundError(
                f"{exc}. {label_dir} holds mmsegmentation's converted *_labelTrainIds.png maps; this loader reads "
                "the official stuffthingmaps PNGs ({name}.png, values 0-181) and maps them itself: unzip "
                f"stuffthingmaps_trainval2017.zip into {root / 'annotations'}"
            ) from exc
        mapping = {coco_id - 1: train_id for coco_id, train_id in COCO_STUFF_ID_TO_TRAIN_ID.items()}
        super().__init__(
            samples,
            classes=COCO_STUFF_CLASSES,
            palette=COCO_STUFF_PALETTE,
            lut=make_lut({**mapping, IGNORE_INDEX: IGNORE_INDEX}),
            allowed=(
                f"COCO-Stuff-164k stuffthingmaps values 0-181 (COCO-Stuff id - 1) except {_UNUSED_164K} "
                "(ids COCO never annotated), or 255 = unlabeled"
            ),
            transforms=transforms,
        )
        self.root = root
        self.split = split


class CocoStuff10k(PairedSegmentation):
    """COCO-Stuff-10k v1.1: the ``.mat`` label maps (field ``S``, 0 = unlabeled, COCO-Stuff ids) -> 171 train ids.

    Args:
        root: the unpacked ``cocostuff-10k-v1.1.zip``: ``images/``, ``annotations/``, ``imageLists/``.
        split: the name of a list in ``imageLists/``: ``"train"`` (9000 images) or ``"test"`` (1000; ``"val"`` is
            an alias), or any other ``{split}.txt`` there (e.g. ``"all"``).
        transforms: ``(image, label) -> (image, label)`` on uint8 (3, H, W) / int64 (H, W).

    ``dataset[i]`` -> ``{"image": uint8 (3, H, W), "label": int64 (H, W) train ids 0-170 or 255, "path": str}``.
    The list and the files it names are checked at construction; each ``.mat`` file when its sample is read
    (``read_mat_label``): unreadable files, a missing or malformed ``S``, an ``S`` of another size than the image,
    v1.0 files and ids outside 0-182 or unused raise ``ValueError`` naming the file.
    """

    def __init__(self, root: str | Path, split: str = "train", transforms: Transforms | None = None) -> None:
        root = require_dir(Path(root), "COCO-Stuff-10k root", LAYOUT_10K)
        split = _SPLIT_ALIASES_10K.get(split, split)
        list_dir = root / "imageLists"
        list_file = list_dir / f"{split}.txt"
        if not list_file.is_file():
            found = sorted(p.stem for p in list_dir.glob("*.txt")) if list_dir.is_dir() else []
            raise FileNotFoundError(
                f"COCO-Stuff-10k split {split!r} not found: {list_file} is not a file "
                f"(lists found in {list_dir}: {found or 'none'}). Expected layout:\n{LAYOUT_10K}"
            )
        image_dir = require_dir(root / "images", "COCO-Stuff-10k images folder", LAYOUT_10K)
        label_dir = require_dir(root / "annotations", "COCO-Stuff-10k annotations folder", LAYOUT_10K)
        images = read_id_list(list_file, lambda name: image_dir / f"{name}.jpg", LAYOUT_10K)
        mapping = {0: IGNORE_INDEX, **COCO_STUFF_ID_TO_TRAIN_ID}
        super().__init__(
            pair_with_labels(images, lambda image: label_dir / f"{image.stem}.mat"),
            classes=COCO_STUFF_CLASSES,
            palette=COCO_STUFF_PALETTE,
            lut=make_lut(mapping),
            allowed=(
                f"COCO-Stuff-10k v1.1 ids 0 = unlabeled and 1-182 except {_UNUSED_10K} (ids COCO never annotated)"
            ),
            transforms=transforms,
        )
        self.root = root
        self.split = split
        self.list_file = list_file

    def read_raw_label(self, path: Path) -> torch.Tensor:
        return read_mat_label(path)  # the label map comes out of a MATLAB file, not an image


def read_mat_label(path: Path) -> torch.Tensor:
    """A COCO-Stuff-10k ``.mat`` annotation -> int64 (H, W) of its raw ids (field ``S``).

    ``ValueError`` naming the file if it cannot be parsed, has no ``S``, its ``S`` is not a 2-D map of integral
    numbers, or it is a v1.0 file (172 entries in ``names``: another numbering).
    """
    try:
        mat = scipy.io.loadmat(path, variable_names=("S", "names"))
    except Exception as exc:  # scipy raises OSError, ValueError, IndexError, MatReadError... for corrupt files
        raise ValueError(f"cannot read COCO-Stuff-10k annotation {path}: {type(exc).__name__}: {exc}") from exc
    if "S" not in mat:
        try:
            fields = sorted(name for name, _, _ in scipy.io.whosmat(path))
        except Exception:  # the listing only decorates the message
            fields = []
        raise ValueError(
            f"COCO-Stuff-10k annotation {path} has no field 'S' (the label map); fields found: {fields or 'none'}"
        )
    names = mat.get("names")
    if isinstance(names, np.ndarray) and names.size == 172:
        raise ValueError(
            f"COCO-Stuff-10k annotation {path} is a version 1.0 file (172 class names, 1 = unlabeled); this loader "
            "reads version 1.1 (0 = unlabeled, ids 1-182): use cocostuff-10k-v1.1.zip"
        )
    labels = mat["S"]
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or labels.dtype.kind not in "uif":
        shape = getattr(labels, "shape", None)
        kind = getattr(labels, "dtype", type(labels).__name__)
        raise ValueError(
            f"COCO-Stuff-10k annotation {path}: field 'S' must be a 2-D (H, W) map of class ids, got shape {shape} "
            f"of {kind}"
        )
    if labels.dtype.kind == "f":
        # MATLAB saves doubles by default: accept them when every value is a whole number.
        bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            shown = ", ".join(map(str, np.unique(labels[bad])[:5].tolist()))
            raise ValueError(f"COCO-Stuff-10k annotation {path}: field 'S' has non-integer values: {shown}")
    return torch.from_numpy(labels.astype(np.int64))


# Builders for ocrformer.data.registry: (root, split, transforms, **kwargs) -> Dataset; split None = training split.
def build_coco_stuff164k(root, split, transforms, **kwargs) -> CocoStuff164k:
    return CocoStuff164k(root, split or "train2017", transforms=transforms, **kwargs)


def build_coco_stuff10k(root, split, transforms, **kwargs) -> CocoStuff10k:
    return CocoStuff10k(root, split or "train", transforms=transforms, **kwargs)
