"""Tiny dataset trees in the real layouts of the releases, for the loader tests (a few 8 x 12 files each).

Every label cycles through all of the dataset's values, so each value (and each mapping) is exercised; images
are seeded random RGB. Written independently of the package's loaders: the paths are the releases'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 8, 12


def save_image(path: Path, seed: int, size: tuple[int, int] = (H, W)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def save_label(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(values, dtype=np.uint8)).save(path)


def ramp(count: int, size: tuple[int, int] = (H, W), start: int = 0) -> np.ndarray:
    """An (H, W) uint8 label cycling through ``count`` values from ``start`` (row-major)."""
    return ((np.arange(size[0] * size[1]) + start) % count).reshape(size).astype(np.uint8)


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
            label = ramp(20, start=index)
            save_label(root / "TrainVal_parsing_annotations" / f"{split}_segmentations" / f"{image_id}.png", label)
        if id_lists is not None:
            folder = root / "TrainVal_images" if id_lists == "release" else root
            (folder / f"{split}_id.txt").write_text("".join(f"{image_id}\n" for image_id in ids))
    return root


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
            save_label(voc / "SegmentationClassContext" / f"{image_id}.png", ramp(60, start=index))
        (lists / f"{split}.txt").write_text("".join(f"{image_id}\n" for image_id in ids))
    return voc
