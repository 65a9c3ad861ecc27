"""PASCAL-Context: PASCAL VOC 2010 images with whole-scene labels; the 59- and 60-class benchmarks.

Layout (mmsegmentation's: the VOC2010 release plus the converted PASCAL-Context labels and split lists)::

    VOCdevkit/VOC2010/JPEGImages/{id}.jpg
    VOCdevkit/VOC2010/SegmentationClassContext/{id}.png       values 0-59: 0 = background, 1-59 the classes
    VOCdevkit/VOC2010/ImageSets/SegmentationContext/{train,val}.txt    ids, one per line

``root`` is the ``VOC2010`` folder (mmsegmentation's ``data_root``); the ``VOCdevkit`` folder or the one holding
``VOCdevkit/`` are accepted too.

Labels: the release (``trainval.tar.gz``) annotates every pixel with one of 459 labels (the 1-based line numbers
of its ``labels.txt``; 0 = unlabelled). The benchmarks keep the 59 most frequent; the PNG value of a pixel is
the position of its raw label in the sorted list ``PASCAL_CONTEXT_RAW_IDS`` (mmsegmentation's converter
``_mapping``, sorted), so 1-59 are the 59 classes in ascending raw id -- alphabetical order -- and 0 is
background: unlabelled pixels and the other 400 labels.

- 59 classes (``"pascal_context"``): 0 -> 255 (ignore), v -> v - 1 (mmsegmentation's PascalContextDataset59,
  ``reduce_zero_label``).
- 60 classes (``"pascal_context_60"``): v -> v, background is class 0.

Class names here follow the label values. (mmsegmentation's ``PascalContextDataset`` lists the same names in
the order of ``59_labels.txt`` -- aeroplane, bicycle, bird, ... -- which is not the order of its converter's
values: value 2 is bag, not bicycle; open-mmlab/mmsegmentation#3021.)

The PNGs come from the release's ``trainval/{id}.mat`` files (field ``LabelMap``, 459-label ids) through::

    python -m ocrformer.data.convert_pascal_context --raw-dir trainval \\
        --out VOCdevkit/VOC2010/SegmentationClassContext [--image-sets VOCdevkit/VOC2010/ImageSets]

(``convert_raw_annotations``). With ``--image-sets`` it also writes ``SegmentationContext/{train,val}.txt`` from
VOC2010's ``Main/{train,val}.txt``: the PASCAL-Context split is VOC2010's main train/val split (4998 / 5105
images).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

from .._atomic import atomic_write, atomic_write_text
from ._io import IGNORE_INDEX, PairedSegmentation, Transforms, make_lut, pair_with_labels, read_id_list, require_dir
from .ade20k import ADE20K_PALETTE

__all__ = [
    "PASCAL_CONTEXT_59_CLASSES",
    "PASCAL_CONTEXT_59_PALETTE",
    "PASCAL_CONTEXT_60_CLASSES",
    "PASCAL_CONTEXT_60_PALETTE",
    "PASCAL_CONTEXT_RAW_IDS",
    "PascalContextSegmentation",
    "convert_label_map",
    "convert_raw_annotations",
    "write_split_lists",
]

# Label value v (0-59) <- raw label PASCAL_CONTEXT_RAW_IDS[v] (a 1-based line of the release's labels.txt;
# 0 = unlabelled). mmsegmentation's tools/dataset_converters/pascal_context.py ``_mapping``, sorted.
PASCAL_CONTEXT_RAW_IDS = (
    0, 2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115, 144,
    158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349, 354, 355,
    360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458,
)
# The names of those labels in labels.txt, label values 1-59 (train ids 0-58 of the 59-class benchmark).
PASCAL_CONTEXT_59_CLASSES = [
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building",
    "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog",
    "door", "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike",
    "mountain", "mouse", "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves",
    "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall",
    "water", "window", "wood",
]
PASCAL_CONTEXT_60_CLASSES = ["background", *PASCAL_CONTEXT_59_CLASSES]
# mmsegmentation's PascalContextDataset palette, which is the first 60 colours of its ADE20K palette.
PASCAL_CONTEXT_60_PALETTE = ADE20K_PALETTE[:60]
PASCAL_CONTEXT_59_PALETTE = ADE20K_PALETTE[1:60]

RAW_LABELS = 459  # labels.txt of the release: raw ids 1-459, 0 = unlabelled
_LABEL_DIR, _SPLIT_DIR = "SegmentationClassContext", Path("ImageSets", "SegmentationContext")
LAYOUT = (
    "  VOC2010/JPEGImages/{id}.jpg\n"
    f"  VOC2010/{_LABEL_DIR}/{{id}}.png   (python -m ocrformer.data.convert_pascal_context)\n"
    f"  VOC2010/{_SPLIT_DIR.as_posix()}/{{split}}.txt\n"
    "root: the VOC2010 folder, VOCdevkit/, or the folder holding VOCdevkit/"
)


def _voc2010(root: Path) -> Path:
    """The ``VOC2010`` folder among ``root``, ``root/VOC2010`` and ``root/VOCdevkit/VOC2010``."""
    for candidate in (root, root / "VOC2010", root / "VOCdevkit" / "VOC2010"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise FileNotFoundError(
        f"PASCAL-Context root not found: no JPEGImages/ in {root}, {root / 'VOC2010'} or "
        f"{root / 'VOCdevkit' / 'VOC2010'}. Expected layout:\n{LAYOUT}"
    )


class PascalContextSegmentation(PairedSegmentation):
    """PASCAL-Context, 59 classes (background ignored) or 60 (background as class 0).

    Args:
        root: the ``VOC2010`` folder (or ``VOCdevkit/``, or the folder holding ``VOCdevkit/``).
        split: ``"train"`` or ``"val"`` (any ``ImageSets/SegmentationContext/{split}.txt``).
        transforms: ``(image, label) -> (image, label)`` on uint8 (3, H, W) / int64 (H, W).
        num_classes: 59 (label 0 -> 255, v -> v - 1) or 60 (v -> v).

    ``dataset[i]`` -> ``{"image": uint8 (3, H, W), "label": int64 (H, W), "path": str}``; sizes vary per image
    (at most 500 x 500). Label values must be 0-59 (or 255, already ignore); anything else raises, naming the file.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms: Transforms | None = None,
        *,
        num_classes: int = 59,
    ) -> None:
        if num_classes not in (59, 60):
            raise ValueError(
                f"num_classes must be 59 (background ignored) or 60 (background as class 0), got {num_classes!r}"
            )
        voc = _voc2010(require_dir(Path(root), "PASCAL-Context root", LAYOUT))
        label_dir = require_dir(voc / _LABEL_DIR, "PASCAL-Context labels", LAYOUT)
        split_list = voc / _SPLIT_DIR / f"{split}.txt"
        if not split_list.is_file():
            found = sorted(p.stem for p in (voc / _SPLIT_DIR).glob("*.txt")) if (voc / _SPLIT_DIR).is_dir() else []
            raise FileNotFoundError(
                f"PASCAL-Context split {split!r} not found: no {split_list} (splits found there: {found or 'none'}). "
                f"Expected layout:\n{LAYOUT}"
            )
        images = read_id_list(split_list, lambda image_id: voc / "JPEGImages" / f"{image_id}.jpg", LAYOUT)
        if num_classes == 59:
            mapping = {0: IGNORE_INDEX, **{value: value - 1 for value in range(1, 60)}}
            classes, palette = PASCAL_CONTEXT_59_CLASSES, PASCAL_CONTEXT_59_PALETTE
            allowed = "PASCAL-Context label values 0-59 (0 = background, ignored), or 255 = ignore"
        else:
            mapping = {value: value for value in range(60)}
            classes, palette = PASCAL_CONTEXT_60_CLASSES, PASCAL_CONTEXT_60_PALETTE
            allowed = "PASCAL-Context label values 0-59, or 255 = ignore"
        super().__init__(
            pair_with_labels(images, lambda image: label_dir / f"{image.stem}.png"),
            classes=classes,
            palette=palette,
            lut=make_lut({**mapping, IGNORE_INDEX: IGNORE_INDEX}),
            allowed=allowed,
            transforms=transforms,
        )
        self.root = voc
        self.split = split


# ------------------------------------------------------------------------------------------- converter
def _raw_lut() -> np.ndarray:
    """Raw label (0-459) -> label value (0-59), uint8 (460,): the 59 classes to 1-59, everything else to 0."""
    lut = np.zeros(RAW_LABELS + 1, dtype=np.uint8)
    lut[list(PASCAL_CONTEXT_RAW_IDS)] = np.arange(len(PASCAL_CONTEXT_RAW_IDS), dtype=np.uint8)
    return lut


def convert_label_map(label_map: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
    """A release ``LabelMap`` (H, W) of raw labels 0-459 -> uint8 (H, W) label values 0-59: each of the 59
    classes to its position in ``PASCAL_CONTEXT_RAW_IDS``, unlabelled (0) and the other 400 labels to 0
    (background). ``ValueError`` naming ``path`` for a non-integer or non-2-D array or values outside 0-459."""
    if not isinstance(label_map, np.ndarray) or label_map.ndim != 2 or label_map.dtype.kind not in "iu":
        shape = getattr(label_map, "shape", None)
        dtype = getattr(label_map, "dtype", type(label_map).__name__)
        raise ValueError(f"{path}: LabelMap must be a 2-D integer array, got {dtype} of shape {shape}")
    bad = (label_map < 0) | (label_map > RAW_LABELS)
    if bad.any():
        values = np.unique(label_map[bad]).tolist()
        shown = ", ".join(map(str, values[:10])) + (", ..." if len(values) > 10 else "")
        raise ValueError(f"{path}: LabelMap has values outside the raw labels 0-{RAW_LABELS}: {shown}")
    return _raw_lut()[label_map]


def _read_label_map(path: Path) -> np.ndarray:
    """The ``LabelMap`` array of one release ``.mat`` file; ``ValueError`` naming the file if it cannot be read
    or has no ``LabelMap``."""
    try:
        contents = scipy.io.loadmat(path)
    except (OSError, ValueError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as error:
        raise ValueError(f"cannot read {path} as a MATLAB file: {error}") from error
    if "LabelMap" not in contents:
        fields = sorted(key for key in contents if not key.startswith("__"))  # "__header__" etc. are scipy's
        raise ValueError(f"{path} has no LabelMap field (fields: {fields or 'none'}); expected a PASCAL-Context .mat")
    return contents["LabelMap"]


def convert_raw_annotations(raw_dir: str | Path, out_dir: str | Path, *, progress: bool = True) -> list[str]:
    """Every ``raw_dir/{id}.mat`` of the release -> ``out_dir/{id}.png`` (8-bit grey, values 0-59, see
    ``convert_label_map``); returns the ids written, sorted. Each PNG is written atomically (an interrupted run
    leaves no torn file; rerunning overwrites). ``FileNotFoundError`` for a missing folder or one without
    ``.mat`` files; ``ValueError`` naming the first bad file (unreadable, no ``LabelMap``, values out of range)."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(
            f"raw annotation folder not found: {raw_dir} is not a folder (expected the trainval/ folder of the "
            "PASCAL-Context release, trainval.tar.gz, holding {id}.mat files)"
        )
    mats = sorted(raw_dir.glob("*.mat"))
    if not mats:
        raise FileNotFoundError(f"no *.mat files in {raw_dir} (expected the release's trainval/{{id}}.mat files)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for mat in tqdm(mats, desc="PASCAL-Context labels", unit="file", disable=not progress):
        values = convert_label_map(_read_label_map(mat), mat)
        atomic_write(out_dir / f"{mat.stem}.png", lambda partial, v=values: Image.fromarray(v).save(partial, "PNG"))
    return [mat.stem for mat in mats]


def write_split_lists(image_sets: str | Path, ids: Sequence[str], splits: Sequence[str] = ("train", "val")) -> dict:
    """``image_sets/SegmentationContext/{split}.txt`` from VOC2010's ``image_sets/Main/{split}.txt`` (the
    PASCAL-Context split is VOC2010's main one); returns ``{split: number of ids}``. Every id of a Main list must
    be in ``ids`` (the labels converted): ``ValueError`` naming the list and the first id that is not."""
    image_sets, converted = Path(image_sets), set(ids)
    counts = {}
    for split in splits:
        main = image_sets / "Main" / f"{split}.txt"
        if not main.is_file():
            raise FileNotFoundError(f"VOC2010 split list not found: {main} (expected VOC2010/ImageSets/Main/)")
        split_ids = [line.split()[0] for line in main.read_text().splitlines() if line.strip()]
        missing = [image_id for image_id in split_ids if image_id not in converted]
        if missing:
            raise ValueError(
                f"{main} names {len(missing)} images without a converted label, first {missing[0]!r}: is the "
                "raw folder complete (the release annotates all 10,103 VOC2010 trainval images)?"
            )
        atomic_write_text(image_sets / "SegmentationContext" / f"{split}.txt", "".join(f"{i}\n" for i in split_ids))
        counts[split] = len(split_ids)
    return counts
