"""A synthetic COCO panoptic dataset, written to disk in the real COCO 2017 panoptic format.

It exists so that the panoptic pipeline (``CocoPanoptic``, a Panoptic-FPN / Mask R-CNN model, the panoptic
evaluation) can be exercised end to end without the 20 GB download, and so that a tiny model trained for a few
minutes on a CPU learns something measurable. Layout, exactly as COCO's::

    root/annotations/panoptic_{split}2017.json
    root/annotations/panoptic_{split}2017/{image_id:012d}.png   RGB, segment id = R + 256 G + 256^2 B, 0 = void
    root/{split}2017/{image_id:012d}.jpg                        JPEG, quality 95
    root/.ocrformer_synthetic.json                              the stamp: parameters, format version, stats

Categories keep COCO's quirk of non-contiguous ids (things 1, 3, 7; stuff 92, 95, 100), so that code which
confuses category ids with contiguous indices fails here rather than on the real data.

Every scene (H x W drawn per image from ``sizes``):

* *stuff* partitions the background: 2-3 bands (stacked top to bottom or side by side, with wavy borders) of
  distinct stuff classes, each one segment: ``sky`` (vertical blue gradient), ``grass`` (green noise with
  streaks) and ``wall`` (grey bricks with light mortar).
* 1-5 *thing* instances, large (about 20-38 % of the shorter side, never under 18 px) and distinct in shape
  and colour: a red shaded ``disc``, a purple diagonally striped and slightly rotated ``square``, a yellow
  spotted ``triangle``; each with its own colour jitter and a darker 1 px rim (so that two touching instances
  of one class stay separable). Half of the placements aim near an earlier instance, so instances overlap:
  later ones are painted over earlier ones and a segment is only the *visible* pixels. A placement is refused
  if it would leave an earlier instance with fewer than ``MIN_VISIBLE_AREA`` pixels or under 35 % of its drawn
  area, so no segment is a sliver.
* about 1 image in 4 holds a *crowd*: 5-9 small (7-11 px) shapes of one thing class clustered together,
  labelled as one segment with ``iscrowd: 1`` (painted first, so instances may occlude it).
* *void* (id 0): a 1-2 px band of unlabelled stuff pixels around some instances (annotation slack at object
  borders), and in some images a small blob of grey clutter that belongs to no class.

Segment ids are random distinct ints in [1, 256^3); every segment's ``area`` and ``bbox`` are computed from the
final id map with pycocotools' RLE utilities, and every id in a PNG has exactly one ``segments_info`` entry.
Every image is drawn from its own ``numpy.random.default_rng((seed, split_index, image_index))``: the set is
deterministic (for a given NumPy version, whose ``Generator`` streams are not frozen across releases, and a
given libjpeg for the JPEG bytes) and an image does not depend on how many others are generated.

Shapes: H, W image size; images uint8 (H, W, 3); id maps int64 (H, W).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from panopticapi.utils import id2rgb
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm.auto import tqdm

from .._atomic import atomic_write_text

__all__ = ["SYNTHETIC_PANOPTIC_CATEGORIES", "write_synthetic_coco_panoptic"]

# A tuple so the module constant cannot grow or shrink; the dicts are deep-copied wherever they are handed out.
SYNTHETIC_PANOPTIC_CATEGORIES = (
    {"id": 1, "name": "disc", "supercategory": "shape", "isthing": 1, "color": [215, 50, 40]},
    {"id": 3, "name": "square", "supercategory": "shape", "isthing": 1, "color": [150, 60, 200]},
    {"id": 7, "name": "triangle", "supercategory": "shape", "isthing": 1, "color": [240, 200, 40]},
    {"id": 92, "name": "sky", "supercategory": "background", "isthing": 0, "color": [120, 175, 235]},
    {"id": 95, "name": "grass", "supercategory": "background", "isthing": 0, "color": [60, 140, 50]},
    {"id": 100, "name": "wall", "supercategory": "background", "isthing": 0, "color": [135, 130, 135]},
)
DISC, SQUARE, TRIANGLE, SKY, GRASS, WALL = (category["id"] for category in SYNTHETIC_PANOPTIC_CATEGORIES)
THING_IDS = (DISC, SQUARE, TRIANGLE)
STUFF_IDS = (SKY, GRASS, WALL)
_COLOURS = {category["id"]: np.array(category["color"], dtype=np.float64) for category in SYNTHETIC_PANOPTIC_CATEGORIES}

FORMAT_VERSION = 1  # bump whenever the drawing changes, so that old caches are not taken for current ones
STAMP_NAME = ".ocrformer_synthetic.json"
SPLITS = ("train", "val")  # the index of a split is part of every image's seed
DEFAULT_SIZES = ((96, 128), (128, 128), (128, 160), (112, 144))
MIN_SIDE = 48  # below this the shapes' minimum size no longer fits comfortably
MIN_VISIBLE_AREA = 144  # pixels a thing (or crowd) segment keeps after occlusion: at least a 12 x 12 patch
MIN_SEGMENT_AREA = 64  # safety net after the void pass: smaller segments become void rather than a tiny segment
_VISIBLE_FRACTION = 0.35  # an occluded instance keeps at least this fraction of its drawn area
_MAX_ID = 256**3  # segment ids must fit in the three 8-bit channels of the PNG


def write_synthetic_coco_panoptic(
    root: str | Path,
    *,
    num_train: int = 120,
    num_val: int = 40,
    seed: int = 0,
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write the synthetic set under ``root`` (see the module docstring) and return ``root`` as a ``Path``.

    Args:
        root: the dataset folder; created if missing.
        num_train, num_val: images per split (``>= 0``, together at least one).
        seed: selects the whole set; the same ``(seed, split, index)`` always gives the same image.
        sizes: the ``(H, W)`` options an image's size is drawn from; every side at least ``MIN_SIDE``.
        overwrite: allow writing into a ``root`` that holds something else (another generation's files, or
            files without a stamp). Only files this generator writes are ever removed.
        progress: show a tqdm progress bar over the images.

    Cached: if ``root`` holds a complete generation with the same parameters (its stamp file matches), nothing
    is written. A stamp is written first marked incomplete and rewritten as complete last, so an interrupted
    generation is never taken for a complete one; an incomplete generation of this generator is redone
    without ``overwrite``. A ``root`` with a different complete generation, or non-empty without a stamp,
    raises ``FileExistsError`` unless ``overwrite=True``.
    """
    root = Path(root)
    parameters = _parameters(num_train=num_train, num_val=num_val, seed=seed, sizes=sizes)
    stamp_path = root / STAMP_NAME
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"synthetic panoptic root {root} exists and is not a folder")
    old_stamp = _read_stamp(stamp_path)
    if old_stamp is not None and old_stamp.get("complete") and old_stamp.get("parameters") == parameters:
        return root
    if old_stamp is not None and old_stamp.get("complete") and not overwrite:
        raise FileExistsError(
            f"{root} holds a synthetic panoptic set with other parameters (stamp {stamp_path}: "
            f"{old_stamp.get('parameters')}; requested {parameters}). Pass overwrite=True to replace it, "
            "or choose another root."
        )
    if old_stamp is None and root.is_dir() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{root} is not empty and has no stamp {STAMP_NAME} of this generator, so it may hold data that is "
            "not ours. Pass overwrite=True to write the synthetic set into it anyway (only the files the "
            "generator writes are replaced), or choose another root."
        )

    if old_stamp is not None:  # ours (complete or interrupted): remove its files so no stale image survives
        _remove_generated(root, old_stamp.get("parameters"))
    root.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(stamp_path, {"complete": False, "parameters": parameters})
    counts = {"train": parameters["num_train"], "val": parameters["num_val"]}
    stats: dict[str, int] = {"occluded_instances": 0, "crowd_segments": 0, "void_pixels": 0, "dropped_segments": 0}
    with tqdm(total=sum(counts.values()), desc=f"synthetic panoptic -> {root}", disable=not progress) as bar:
        for split_index, split in enumerate(SPLITS):
            image_dir, png_dir = root / f"{split}2017", root / "annotations" / f"panoptic_{split}2017"
            image_dir.mkdir(parents=True, exist_ok=True)
            png_dir.mkdir(parents=True, exist_ok=True)
            images, annotations = [], []
            for index in range(counts[split]):
                rng = np.random.default_rng((parameters["seed"], split_index, index))
                size = tuple(parameters["sizes"][int(rng.integers(len(parameters["sizes"])))])
                scene = render_scene(rng, size)
                image_id = _image_id(split_index, index)
                name = f"{image_id:012d}"
                Image.fromarray(scene.image).save(image_dir / f"{name}.jpg", quality=95)
                Image.fromarray(id2rgb(scene.id_map)).save(png_dir / f"{name}.png")
                images.append({"id": image_id, "file_name": f"{name}.jpg", "height": size[0], "width": size[1]})
                annotations.append(
                    {"image_id": image_id, "file_name": f"{name}.png", "segments_info": scene.segments_info}
                )
                for key in stats:
                    stats[key] += scene.stats[key]
                bar.update()
            document = {
                "info": {"description": f"ocrformer synthetic COCO panoptic, {split}", "version": FORMAT_VERSION},
                "images": images,
                "annotations": annotations,
                "categories": copy.deepcopy(list(SYNTHETIC_PANOPTIC_CATEGORIES)),
            }
            _write_json_atomic(root / "annotations" / f"panoptic_{split}2017.json", document)
    _write_json_atomic(stamp_path, {"complete": True, "parameters": parameters, "stats": stats})
    return root


@dataclass
class Scene:
    """One rendered image: ``image`` uint8 (H, W, 3), ``id_map`` int64 (H, W) of segment ids (0 = void),
    ``segments_info`` as in the COCO JSON, and counts of what it holds (``stats``)."""

    image: np.ndarray
    id_map: np.ndarray
    segments_info: list[dict[str, Any]]
    stats: dict[str, int] = field(default_factory=dict)


@dataclass
class _Segment:
    category_id: int
    iscrowd: int
    drawn_area: int = 0  # the shape's full area, before later shapes covered parts of it


def render_scene(rng: np.random.Generator, size: tuple[int, int]) -> Scene:
    """Draw one scene of ``size = (H, W)`` from ``rng`` (see the module docstring)."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width]
    # `owner` holds local segment numbers: 0 = void, k = segments[k - 1]; turned into random COCO ids at the end.
    owner = np.zeros((height, width), dtype=np.int64)
    segments: list[_Segment] = []
    image = _paint_stuff(rng, owner, segments, rows, cols)

    crowd = None
    if rng.random() < 0.25:
        crowd = _paint_crowd(rng, image, owner, segments, rows, cols)

    instances: list[int] = []
    for _ in range(int(rng.integers(1, 6))):
        number = _paint_instance(rng, image, owner, segments, instances, crowd, rows, cols)
        if number is not None:
            instances.append(number)

    _paint_void(rng, image, owner, segments, instances, rows, cols)
    occluded = sum(int((owner == number).sum() < segments[number - 1].drawn_area) for number in instances)

    # Safety net: a segment that the void pass (or stacked occluders) left tiny becomes void.
    areas = np.bincount(owner.ravel(), minlength=len(segments) + 1)
    dropped = [number for number in range(1, len(segments) + 1) if 0 < areas[number] < MIN_SEGMENT_AREA]
    for number in dropped:
        owner[owner == number] = 0
    present = [number for number in range(1, len(segments) + 1) if (owner == number).any()]

    ids = _distinct_ids(rng, len(present))
    id_map = np.zeros((height, width), dtype=np.int64)
    masks = np.zeros((height, width, len(present)), dtype=np.uint8, order="F")
    for column, (number, segment_id) in enumerate(zip(present, ids, strict=True)):
        id_map[owner == number] = segment_id
        masks[:, :, column] = owner == number
    rles = mask_utils.encode(masks) if present else []
    areas_rle = mask_utils.area(rles) if present else []
    boxes = mask_utils.toBbox(rles) if present else []
    segments_info = [
        {
            "id": int(segment_id),
            "category_id": segments[number - 1].category_id,
            "iscrowd": segments[number - 1].iscrowd,
            "bbox": [int(round(float(value))) for value in box],
            "area": int(area),
        }
        for number, segment_id, box, area in zip(present, ids, boxes, areas_rle, strict=True)
    ]
    stats = {
        "occluded_instances": occluded,
        "crowd_segments": int(crowd is not None and crowd in present),
        "void_pixels": int((id_map == 0).sum()),
        "dropped_segments": len(dropped),
    }
    return Scene(np.clip(image, 0, 255).astype(np.uint8), id_map, segments_info, stats)


# ---------------------------------------------------------------------------------------------------- stuff


def _paint_stuff(
    rng: np.random.Generator, owner: np.ndarray, segments: list[_Segment], rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Fill the whole image with 2-3 bands of distinct stuff classes; returns the float image (H, W, 3)."""
    height, width = owner.shape
    num_bands = int(rng.integers(2, 4))
    classes = [STUFF_IDS[i] for i in rng.permutation(len(STUFF_IDS))[:num_bands]]
    stacked = rng.random() < 0.6  # bands top to bottom (like a horizon) or side by side
    across, along = (rows, cols) if stacked else (cols, rows)
    extent, length = (height, width) if stacked else (width, height)
    # Band widths from weights in [1, 2.5]: every band gets at least 1/6 of the extent, no border is crossed by
    # its neighbour's wave (amplitude <= 4 px).
    weights = 1.0 + 1.5 * rng.random(num_bands)
    cuts = np.cumsum(weights)[:-1] / weights.sum() * extent
    band = np.zeros_like(owner)
    for cut in cuts:
        amplitude, period, phase = rng.uniform(0, 4), rng.uniform(0.3, 0.8) * length, rng.uniform(0, 2 * np.pi)
        border = cut + amplitude * np.sin(2 * np.pi * along / period + phase)
        band += across >= border
    image = np.zeros((*owner.shape, 3))
    painters = {SKY: _sky, GRASS: _grass, WALL: _wall}
    for index, category_id in enumerate(classes):
        inside = band == index
        image[inside] = painters[category_id](rng, rows, cols)[inside]
        segments.append(_Segment(category_id, 0, int(inside.sum())))
        owner[inside] = len(segments)
    return image


def _sky(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """A vertical gradient from deep to pale blue over the whole image height, with faint noise."""
    top = np.array((70, 130, 220)) + rng.uniform(-12, 12, 3)
    bottom = np.array((185, 215, 245)) + rng.uniform(-8, 8, 3)
    t = (rows / max(1, rows.shape[0] - 1))[..., None]
    return top * (1 - t) + bottom * t + rng.normal(0, 3, (*rows.shape, 3))


def _grass(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Green with strong per-pixel noise and vertical streaks (blades)."""
    base = np.array((55, 135, 45)) + rng.uniform(-10, 10, 3)
    streaks = rng.normal(0, 14, (1, rows.shape[1], 1))
    noise = rng.normal(0, 22, (*rows.shape, 1)) * np.array((0.6, 1.0, 0.5))
    return base + streaks + noise


def _wall(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Grey bricks in running bond, each brick its own shade, with light 1 px mortar lines."""
    brick_h = int(rng.integers(6, 9))
    brick_w = 2 * brick_h + int(rng.integers(0, 4))
    course = rows // brick_h
    shifted = cols + (course % 2) * (brick_w // 2)  # every other course offset by half a brick
    brick = course * 1000 + shifted // brick_w
    shades = rng.normal(0, 10, int(brick.max()) + 1)
    grey = np.array((125, 120, 128)) + rng.uniform(-10, 10, 3)
    image = grey + shades[brick][..., None] + rng.normal(0, 4, (*rows.shape, 3))
    mortar = (rows % brick_h == 0) | (shifted % brick_w == 0)
    image[mortar] = np.array((205, 200, 190)) + rng.normal(0, 4, (int(mortar.sum()), 3))
    return image


# --------------------------------------------------------------------------------------------------- things


def _shape_mask(
    category_id: int, centre: tuple[float, float], extent: float, angle: float, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """The (H, W) mask of a thing of ``extent`` pixels across, centred at ``centre = (row, col)``."""
    dr, dc = rows - centre[0], cols - centre[1]
    half = extent / 2
    if category_id == DISC:
        return dr**2 + dc**2 <= half**2
    if category_id == SQUARE:  # slightly rotated, so squares are not just axis-aligned boxes
        u, v = np.cos(angle) * dc + np.sin(angle) * dr, -np.sin(angle) * dc + np.cos(angle) * dr
        return (np.abs(u) <= half * 0.9) & (np.abs(v) <= half * 0.9)
    # triangle, apex up: the half-width grows linearly from 0 at the top row to `half` at the base
    depth = (dr + half) / extent
    return (depth >= 0) & (depth <= 1) & (np.abs(dc) <= half * depth)


def _shape_texture(
    rng: np.random.Generator, category_id: int, centre: tuple[float, float], extent: float, rows, cols
) -> np.ndarray:
    """The full-image (H, W, 3) texture of one instance: its class's pattern with per-instance colour jitter."""
    base = _COLOURS[category_id] + rng.uniform(-25, 25, 3)
    noise = rng.normal(0, 5, (*rows.shape, 3))
    if category_id == DISC:  # shaded like a ball: darker towards the rim
        distance = np.sqrt((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (extent / 2)
        return base * (1 - 0.35 * np.clip(distance, 0, 1) ** 2)[..., None] + noise
    if category_id == SQUARE:  # diagonal stripes of random period and phase
        period = int(rng.integers(4, 8))
        stripes = ((rows + cols + int(rng.integers(period))) // (period // 2 + 1)) % 2 == 0
        return base * np.where(stripes, 0.72, 1.0)[..., None] + noise
    spots = rng.random(rows.shape) < 0.07  # triangle: sparse dark spots
    return base * np.where(spots, 0.45, 1.0)[..., None] + noise


def _paint_shape(
    rng: np.random.Generator,
    image: np.ndarray,
    category_id: int,
    mask: np.ndarray,
    centre: tuple[float, float],
    extent: float,
    rows: np.ndarray,
    cols: np.ndarray,
) -> None:
    """Paint one shape's texture into ``mask`` with a darker 1 px rim, which keeps touching instances apart."""
    texture = _shape_texture(rng, category_id, centre, extent, rows, cols)
    rim = mask & ~_erode(mask)
    texture[rim] *= 0.6
    image[mask] = texture[mask]


def _paint_crowd(
    rng: np.random.Generator,
    image: np.ndarray,
    owner: np.ndarray,
    segments: list[_Segment],
    rows: np.ndarray,
    cols: np.ndarray,
) -> int | None:
    """A cluster of 5-9 small shapes of one thing class, all one ``iscrowd`` segment; its number, or ``None``
    if no cluster large enough fit in 10 tries."""
    height, width = owner.shape
    side = min(height, width)
    category_id = THING_IDS[int(rng.integers(len(THING_IDS)))]
    for _ in range(10):
        centre = rng.uniform(0.25, 0.75) * height, rng.uniform(0.25, 0.75) * width
        pieces = []
        for _ in range(int(rng.integers(5, 10))):
            extent = float(rng.integers(7, 12))
            spread = rng.normal(0, 0.09 * side, 2)
            piece_centre = (
                float(np.clip(centre[0] + spread[0], extent, height - extent)),
                float(np.clip(centre[1] + spread[1], extent, width - extent)),
            )
            pieces.append((piece_centre, extent, rng.uniform(-0.4, 0.4)))
        masks = [_shape_mask(category_id, piece_centre, extent, angle, rows, cols)
                 for piece_centre, extent, angle in pieces]
        union = np.logical_or.reduce(masks)
        if union.sum() < 1.5 * MIN_VISIBLE_AREA:  # too scattered or too small to be read as one region
            continue
        for mask, (piece_centre, extent, _) in zip(masks, pieces, strict=True):
            _paint_shape(rng, image, category_id, mask, piece_centre, extent, rows, cols)
        segments.append(_Segment(category_id, 1, int(union.sum())))
        owner[union] = len(segments)
        return len(segments)
    return None


def _paint_instance(
    rng: np.random.Generator,
    image: np.ndarray,
    owner: np.ndarray,
    segments: list[_Segment],
    instances: list[int],
    crowd: int | None,
    rows: np.ndarray,
    cols: np.ndarray,
) -> int | None:
    """Place and paint one thing instance on top of everything so far; its number, or ``None`` if 30 tries
    found no place that leaves every earlier thing segment enough visible area."""
    height, width = owner.shape
    side = min(height, width)
    category_id = THING_IDS[int(rng.integers(len(THING_IDS)))]
    covered = [*instances, *([crowd] if crowd is not None else [])]
    for _ in range(30):
        extent = max(18.0, rng.uniform(0.2, 0.38) * side)
        margin = extent / 2 + 1  # the whole shape lies inside the image
        if instances and rng.random() < 0.5:  # aim at an earlier instance, to make overlaps common
            target = instances[int(rng.integers(len(instances)))]
            target_rows, target_cols = np.nonzero(owner == target)
            direction = rng.uniform(0, 2 * np.pi)
            offset = rng.uniform(0.5, 0.9) * extent
            centre = target_rows.mean() + offset * np.sin(direction), target_cols.mean() + offset * np.cos(direction)
        else:
            centre = rng.uniform(0, height), rng.uniform(0, width)
        centre = float(np.clip(centre[0], margin, height - margin)), float(np.clip(centre[1], margin, width - margin))
        angle = rng.uniform(-0.4, 0.4)
        mask = _shape_mask(category_id, centre, extent, angle, rows, cols)
        if mask.sum() < MIN_VISIBLE_AREA:
            continue
        left_visible = [int(((owner == number) & ~mask).sum()) for number in covered]
        if any(
            visible < max(MIN_VISIBLE_AREA, _VISIBLE_FRACTION * segments[number - 1].drawn_area)
            for number, visible in zip(covered, left_visible, strict=True)
        ):
            continue
        _paint_shape(rng, image, category_id, mask, centre, extent, rows, cols)
        segments.append(_Segment(category_id, 0, int(mask.sum())))
        owner[mask] = len(segments)
        return len(segments)
    return None


# ----------------------------------------------------------------------------------------------------- void


def _paint_void(
    rng: np.random.Generator,
    image: np.ndarray,
    owner: np.ndarray,
    segments: list[_Segment],
    instances: list[int],
    rows: np.ndarray,
    cols: np.ndarray,
) -> None:
    """Unlabel a 1-2 px band of stuff around some instances, and maybe a small clutter blob. Only stuff pixels
    turn void, so thing segments keep their area (and touching instances stay touching)."""
    is_stuff = np.isin(owner, [n for n, s in enumerate(segments, start=1) if s.category_id in STUFF_IDS])
    for number in instances:
        if rng.random() < 0.4:
            grown = owner == number
            for _ in range(int(rng.integers(1, 3))):
                grown = _dilate(grown)
            owner[grown & is_stuff] = 0
    if rng.random() < 0.4:  # clutter that belongs to no class: a grey noisy blob on stuff
        height, width = owner.shape
        centre = rng.uniform(0, height), rng.uniform(0, width)
        radii = rng.uniform(3, 7, 2)
        blob = ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1
        blob &= is_stuff
        image[blob] = rng.uniform(60, 200) + rng.normal(0, 30, (int(blob.sum()), 3))
        owner[blob] = 0


def _erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion (pixels outside the image count as outside the mask)."""
    padded = np.pad(mask, 1, constant_values=False)
    return mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def _dilate(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary dilation."""
    padded = np.pad(mask, 1, constant_values=False)
    return mask | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]


# ------------------------------------------------------------------------------------------------ bookkeeping


def _distinct_ids(rng: np.random.Generator, count: int) -> list[int]:
    """``count`` distinct random segment ids in [1, 256^3)."""
    ids: list[int] = []
    while len(ids) < count:
        candidate = int(rng.integers(1, _MAX_ID))
        if candidate not in ids:
            ids.append(candidate)
    return ids


def _image_id(split_index: int, index: int) -> int:
    """COCO-style int image ids, unique across the splits (train 1, 2, ...; val 1000001, ...)."""
    return split_index * 1_000_000 + index + 1


def _parameters(*, num_train: int, num_val: int, seed: int, sizes: Any) -> dict[str, Any]:
    """The checked parameters, in the JSON form the stamp stores (so stamps compare with ``==``)."""
    for name, value in (("num_train", num_train), ("num_val", num_val), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if num_train + num_val < 1:
        raise ValueError("num_train + num_val must be at least 1")
    try:
        pairs = [[int(h), int(w)] for h, w in sizes]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sizes must be a sequence of (H, W) pairs, got {sizes!r}") from exc
    if not pairs or any(min(pair) < MIN_SIDE for pair in pairs):
        raise ValueError(f"sizes must be a non-empty sequence of (H, W) with H, W >= {MIN_SIDE}, got {sizes!r}")
    return {"format_version": FORMAT_VERSION, "num_train": num_train, "num_val": num_val, "seed": seed, "sizes": pairs}


def _read_stamp(path: Path) -> dict[str, Any] | None:
    """The stamp's contents, or ``None`` if there is none (an unreadable stamp counts as none: not ours)."""
    if not path.is_file():
        return None
    try:
        stamp = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _remove_generated(root: Path, parameters: Any) -> None:
    """Delete the files a generation with ``parameters`` wrote (by their names; nothing else), and the stamp."""
    if isinstance(parameters, dict):
        for split_index, split in enumerate(SPLITS):
            count = parameters.get(f"num_{split}", 0)
            for index in range(count if isinstance(count, int) else 0):
                name = f"{_image_id(split_index, index):012d}"
                (root / f"{split}2017" / f"{name}.jpg").unlink(missing_ok=True)
                (root / "annotations" / f"panoptic_{split}2017" / f"{name}.png").unlink(missing_ok=True)
            (root / "annotations" / f"panoptic_{split}2017.json").unlink(missing_ok=True)
    (root / STAMP_NAME).unlink(missing_ok=True)


def _write_json_atomic(path: Path, document: Any) -> None:
    """Write JSON so that a reader never sees half a file (``ocrformer._atomic``)."""
    atomic_write_text(path, json.dumps(document, indent=1) + "\n")
