"""A synthetic segmentation set where context decides the class: the OCRNet paper's Fig. 1 in miniature.

Classes: ``background``, ``disc``, ``crate_red``, ``crate_blue``, ``rod_orange``, ``rod_purple``. Every image
holds, on a noisy background of random tint:

* two *rods*: yellow bars of 55 % of the image side with a cap at one end, orange or purple, each rod's class
  drawn on its own (so about half the images hold both rod classes): an *instance-level* fact, visible at one
  end. The two rods look the same from every pixel except those near a cap (see ``_rods``).
* a *disc*, green-and-white checks: unambiguous, a control.
* 2-4 *crates* (as many as fit; at least two in ~90 % of the images): rectangles of 15-22 % of the side with a
  striped wooden texture. All crates of an image share one class, ``crate_red`` or ``crate_blue`` (even odds),
  and the two classes look exactly alike except that exactly one crate per image carries a small tag, red or
  blue: the class is an *image-level* fact, visible in one place.

How it separates the models (a backbone of stride 4 and receptive field ~23 px, as in the reference run):

* A plain FCN head: crate pixels more than ~11 px from the tag, and rod pixels as far from the cap, are
  coin flips.
* OCR: the soft object regions are per *class* over the whole image. Both crate regions gather the
  crate-looking pixels, the tagged crate included, so the region representations carry the tag colour back to
  every crate pixel: crates are solved. Rods only when the image's rods share a class -- two rods of different
  classes look the same to class-level regions.
* GT-OCR (ground-truth regions, each pixel attending to its own class): both.

The reference numbers and their settings are in ``docs/datasets.md``. Every image is drawn from its own
``numpy`` generator seeded by ``(seed, split, index)``: deterministic (for a given NumPy version, whose
``Generator`` streams are not frozen across releases) and independent of access order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .._atomic import atomic_write_text
from ._io import IGNORE_INDEX, Transforms

__all__ = ["SyntheticContextSegmentation", "write_folder"]

CLASSES = ["background", "disc", "crate_red", "crate_blue", "rod_orange", "rod_purple"]
PALETTE = [(0, 0, 0), (0, 170, 60), (220, 40, 40), (40, 80, 220), (245, 140, 20), (130, 40, 170)]
BACKGROUND, DISC, CRATE_RED, CRATE_BLUE, ROD_ORANGE, ROD_PURPLE = range(len(CLASSES))

_SPLITS = {"train": 0, "val": 1, "test": 2}
_DEFAULT_NUM_IMAGES = {"train": 400, "val": 100, "test": 100}
_TAG_COLOURS = {CRATE_RED: (215, 35, 35), CRATE_BLUE: (35, 70, 215)}
_CAP_COLOURS = {ROD_ORANGE: (245, 140, 20), ROD_PURPLE: (130, 40, 170)}
_GAP = 3  # pixels kept free around every object, so no object's texture bleeds into another's label
_GRID = 8  # the rods sit at the same phase of any feature grid of stride 2, 4 or 8


class SyntheticContextSegmentation(Dataset):
    """Generated on the fly; no files. See the module docstring for the design.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` -- disjoint streams of images.
        num_images: length; defaults to 400 for ``"train"`` and 100 otherwise.
        size: ``(H, W)`` of every image, at least 32 x 32.
        seed: selects the whole set; the same ``(seed, split, index)`` always gives the same image.
        transforms: ``(image, label) -> (image, label)``, applied to the uint8 / int64 tensors.

    ``dataset[i]`` -> ``{"image": uint8 (3, H, W), "label": int64 (H, W), "path": "synthetic/{split}/{seed}/{i}"}``.
    """

    # Fixed for the class, so a model can be sized before any dataset exists.
    classes = CLASSES
    palette = PALETTE
    num_classes = len(CLASSES)
    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        split: str = "train",
        num_images: int | None = None,
        size: tuple[int, int] = (64, 64),
        seed: int = 0,
        transforms: Transforms | None = None,
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
        num_images = _DEFAULT_NUM_IMAGES[split] if num_images is None else num_images
        if not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images must be a positive int, got {num_images!r}")
        if len(tuple(size)) != 2 or min(size) < 32:
            raise ValueError(f"size must be (H, W) with H, W >= 32, got {size!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.split = split
        self.num_images = num_images
        self.size = (int(size[0]), int(size[1]))
        self.seed = seed
        self.transforms = transforms

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        image, label = self._render(index)
        image = torch.from_numpy(image).permute(2, 0, 1).contiguous()
        label = torch.from_numpy(label).long()
        if self.transforms is not None:
            image, label = self.transforms(image, label)
        return {"image": image, "label": label, "path": f"synthetic/{self.split}/{self.seed}/{index}"}

    def _render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``index`` as numpy arrays: uint8 (H, W, 3) and uint8 (H, W)."""
        return render(np.random.default_rng([self.seed, _SPLITS[self.split], index]), self.size)


def render(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One image: ``(image uint8 (H, W, 3), label uint8 (H, W))``."""
    height, width = size
    side = min(height, width)
    image = rng.normal(rng.uniform(70, 150) + rng.uniform(-15, 15, size=3), 14, size=(height, width, 3))
    label = np.full((height, width), BACKGROUND, dtype=np.uint8)
    occupied = np.zeros((height, width), dtype=bool)
    crate_class = CRATE_RED if rng.random() < 0.5 else CRATE_BLUE

    for box, rod_class, cap_first, horizontal in _rods(rng, height, width):
        _paint_rod(rng, image, box, horizontal, cap_first, _CAP_COLOURS[rod_class])
        label[box] = rod_class
        occupied[_grow(box, _GAP)] = True

    radius = int(rng.integers(int(0.08 * side), int(0.11 * side) + 1))
    box = _place(rng, occupied, 2 * radius + 1, 2 * radius + 1)
    if box is not None:
        disc = _paint_disc(rng, image, box, radius)
        label[box][disc] = DISC

    tag_side = max(3, round(0.08 * side))
    smallest, largest = max(tag_side + 3, int(0.15 * side)), max(tag_side + 3, int(0.22 * side))  # tag fits inside
    crates = []
    for _ in range(int(rng.integers(2, 5))):
        box = _place(rng, occupied, *(int(rng.integers(smallest, largest + 1)) for _ in range(2)))
        if box is not None:
            _paint_crate(rng, image, box)
            label[box] = crate_class
            crates.append(box)
    if crates:  # exactly one crate carries the tag
        tagged = crates[int(rng.integers(len(crates)))]
        _paint_tag(rng, image, tagged, _TAG_COLOURS[crate_class], tag_side)

    return np.clip(image, 0, 255).astype(np.uint8), label


def _rods(rng: np.random.Generator, height: int, width: int) -> list[tuple[tuple[slice, slice], int, bool, bool]]:
    """The two rods: ``[(box, class, cap_first, horizontal)] * 2``, each class drawn on its own.

    Everything a rod pixel can see within the receptive field is the same for both rods, so that only the cap
    -- 16+ px away for most of the rod -- tells which rod (and class) a pixel belongs to: the rods are parallel,
    capped at the same end, span the same stretch along their axis (same distance to the borders there), lie
    apart from each other and from the borders across it (at 64 x 64: 19+ px apart, 12+ px from the border;
    more than the ~11 px radius of the reference receptive field) and at the same phase of a stride-8 grid.
    """
    side = min(height, width)
    length, thickness = int(0.55 * side), max(4, round(0.08 * side))
    border, apart = round(0.19 * side), round(0.25 * side)
    horizontal, cap_first = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    along_size, across_size = (width, height) if horizontal else (height, width)
    start = int(rng.integers(0, along_size - length + 1))
    # Positions across the axis, in [border, last]: the second at least `thickness + apart` after the first, at
    # an offset that is a multiple of _GRID. A strided CNN is not shift invariant: rods at different phases of
    # its feature grid look different to it, and that alone would tell them apart.
    last = across_size - border - thickness
    min_offset = -(-(thickness + apart) // _GRID) * _GRID
    first = int(rng.integers(border, last - min_offset + 1))
    second = first + _GRID * int(rng.integers(min_offset // _GRID, (last - first) // _GRID + 1))
    rods = []
    for across in (first, second):
        along, span = slice(start, start + length), slice(across, across + thickness)
        box = (span, along) if horizontal else (along, span)
        rods.append((box, ROD_ORANGE if rng.random() < 0.5 else ROD_PURPLE, cap_first, horizontal))
    return rods


def _place(rng: np.random.Generator, occupied: np.ndarray, box_h: int, box_w: int) -> tuple[slice, slice] | None:
    """A random free box ``(rows, cols)`` of ``box_h x box_w`` with a ``_GAP`` margin, marked occupied; ``None``
    after 100 failed tries (the image is then simply one object short)."""
    height, width = occupied.shape
    for _ in range(100):
        top, left = int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1))
        box = slice(top, top + box_h), slice(left, left + box_w)
        if not occupied[_grow(box, _GAP)].any():
            occupied[_grow(box, _GAP)] = True
            return box
    return None


def _grow(box: tuple[slice, slice], margin: int) -> tuple[slice, slice]:
    """``box`` widened by ``margin`` pixels on every side (clipped at 0; numpy clips the far end)."""
    rows, cols = box
    return (
        slice(max(0, rows.start - margin), rows.stop + margin),
        slice(max(0, cols.start - margin), cols.stop + margin),
    )


def _paint_crate(rng: np.random.Generator, image: np.ndarray, box: tuple[slice, slice]) -> None:
    """Wooden planks: a brown base, darker stripes of random period, phase and orientation, grain noise."""
    rows, cols = np.mgrid[box]
    coord = rows if rng.random() < 0.5 else cols
    period = int(rng.integers(3, 6))
    stripes = ((coord + int(rng.integers(period))) % period) == 0
    base = np.array((150, 105, 60)) + rng.uniform(-15, 15, size=3)
    patch = base + rng.normal(0, 10, size=(*stripes.shape, 3))
    patch[stripes] -= 45
    image[box] = patch


def _paint_tag(
    rng: np.random.Generator, image: np.ndarray, box: tuple[slice, slice], colour: tuple, tag_side: int
) -> None:
    """A solid coloured square somewhere inside the crate (one pixel in from its edge)."""
    rows, cols = box
    top = int(rng.integers(rows.start + 1, rows.stop - tag_side))
    left = int(rng.integers(cols.start + 1, cols.stop - tag_side))
    tag = (slice(top, top + tag_side), slice(left, left + tag_side))
    image[tag] = rng.normal(colour, 10, size=image[tag].shape)


def _paint_disc(rng: np.random.Generator, image: np.ndarray, box: tuple[slice, slice], radius: int) -> np.ndarray:
    """A green-and-white checkered disc; returns its (h, w) mask within ``box``."""
    rows, cols = np.mgrid[box]
    centre_r, centre_c = box[0].start + radius, box[1].start + radius
    inside = (rows - centre_r) ** 2 + (cols - centre_c) ** 2 <= radius**2
    checks = ((rows // 3 + cols // 3) % 2).astype(bool)
    colours = np.where(checks[..., None], (235, 235, 225), (0, 160, 60)) + rng.normal(0, 10, size=(*inside.shape, 3))
    image[box][inside] = colours[inside]
    return inside


def _paint_rod(
    rng: np.random.Generator,
    image: np.ndarray,
    box: tuple[slice, slice],
    horizontal: bool,
    cap_first: bool,
    colour: tuple,
) -> None:
    """A yellow rod with a square coloured cap at its left/top end (``cap_first``) or its right/bottom end."""
    image[box] = rng.normal((225, 195, 45), 12, size=image[box].shape)
    rows, cols = box
    along, across = (cols, rows) if horizontal else (rows, cols)
    cap_length = across.stop - across.start
    start = along.start if cap_first else along.stop - cap_length
    cap = slice(start, start + cap_length)
    cap_box = (rows, cap) if horizontal else (cap, cols)
    image[cap_box] = rng.normal(colour, 10, size=image[cap_box].shape)


def write_folder(dataset: SyntheticContextSegmentation, out_dir: str | Path) -> Path:
    """Save ``dataset`` in the ``FolderSegmentation`` layout and return ``out_dir``.

    Writes ``out_dir/images/{i:05d}.png`` (RGB), ``out_dir/labels/{i:05d}.png`` (8-bit train ids) and
    ``out_dir/classes.json`` (classes, palette, ignore index). The dataset's transforms are bypassed: the files
    hold the raw uint8 image and the train-id label.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    for index in range(len(dataset)):
        image, label = dataset._render(index)
        Image.fromarray(image).save(out_dir / "images" / f"{index:05d}.png")
        Image.fromarray(label).save(out_dir / "labels" / f"{index:05d}.png")
    meta = {"classes": dataset.classes, "palette": [list(c) for c in dataset.palette], "ignore_index": IGNORE_INDEX}
    atomic_write_text(out_dir / "classes.json", json.dumps(meta, indent=2))
    return out_dir
