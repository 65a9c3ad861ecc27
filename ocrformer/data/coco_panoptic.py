"""COCO panoptic segmentation (2017 format) for a Panoptic-FPN model: instance targets for the Mask R-CNN
branch and a stuff-plus-"thing" semantic map for the semantic branch, as detectron2's Panoptic-FPN trains.

Layout (as the official ``panoptic_annotations_trainval2017`` unpacks next to the images)::

    root/annotations/panoptic_{split}2017.json
    root/annotations/panoptic_{split}2017/{name}.png    RGB, segment id = R + 256 G + 256^2 B, 0 = void
    root/{split}2017/{name}.jpg

One sample per entry of the JSON's ``"annotations"`` (the images they refer to; an image without an annotation
entry is not a sample). ``dataset[i] -> (image, target)``, without transforms:

    image                    tv_tensors.Image uint8 (3, H, W) RGB
    target["sem_seg"]        tv_tensors.Mask int64 (H, W): stuff -> contiguous stuff index 0..S-1, every thing
                             pixel (crowd included) -> S, void -> 255
    target["boxes"]          tv_tensors.BoundingBoxes float32 (M, 4) XYXY, one per non-crowd thing segment
    target["labels"]         int64 (M,) contiguous thing index + 1 (1..T; 0 is torchvision's background)
    target["masks"]          tv_tensors.Mask uint8 (M, H, W), in the order of the boxes
    target["segments_info"]  the JSON's list for the image, crowd included (for evaluation and visualisation)
    target["image_id"], target["file_name"] (the PNG's name), target["orig_size"] ((H, W) ints)

S stuff and T thing classes are numbered by ascending COCO category id (COCO's ids have gaps: things 1-90,
stuff 92-200). Crowd segments are regions of many small objects: they are "thing" pixels in ``sem_seg`` but no
instance, as in torchvision's and detectron2's Mask R-CNN training (which otherwise match them to anchors as if
they were one object). Boxes come from the segment's pixels through pycocotools' RLE ``toBbox`` (x2 = x + w),
not from the JSON's ``bbox``, so they agree with the masks by construction.

Checks: the layout, every listed image and PNG file, the categories (``id`` int, ``name`` string, ``isthing``
0/1 or false/true, ``color`` three ints in [0, 255]), the segments (``id`` int, a known ``category_id``, ``iscrowd``
0/1 or false/true) and the image ids (listed once; ``height``/``width`` positive ints) run at construction (cheap:
one ``is_file`` per file); the pixel checks (the PNG's ids against ``segments_info``, equal sizes) run in
``__getitem__``, where the pixels are read anyway. Every error names the file (and the segment or category id) and
what was expected.

Transforms ``(image, target) -> (image, target)`` work on the tv_tensors jointly (``torchvision.transforms.v2``
moves boxes, instance masks and ``sem_seg`` with the image and passes the other entries through), see
``PanopticTrainTransform`` / ``PanopticEvalTransform``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from panopticapi.utils import rgb2id
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ._io import IGNORE_INDEX, read_image, read_pixels, require_dir, voc_palette
from .transforms import RandomRescale

__all__ = ["CocoPanoptic", "PanopticEvalTransform", "PanopticTrainTransform", "collate_panoptic"]

LAYOUT = (
    "  root/annotations/panoptic_{split}2017.json\n"
    "  root/annotations/panoptic_{split}2017/{name}.png   (RGB segment ids, 0 = void)\n"
    "  root/{split}2017/{name}.jpg"
)
PanopticTransforms = Callable[[tv_tensors.Image, dict[str, Any]], tuple[Any, dict[str, Any]]]
_MAX_SEGMENT_ID = 256**3  # an id is stored in the PNG's three 8-bit channels


class CocoPanoptic(Dataset):
    """COCO panoptic (2017 layout) as Panoptic-FPN targets; see the module docstring for the sample format.

    Args:
        root: the folder holding ``annotations/`` and ``{split}2017/``.
        split: ``"train"`` or ``"val"`` (any ``{split}`` the layout holds).
        transforms: ``(image, target) -> (image, target)``, e.g. ``PanopticTrainTransform()``.

    Attributes: ``categories`` (the JSON list), ``thing_category_ids`` / ``stuff_category_ids`` (contiguous
    index -> COCO id), ``thing_classes`` / ``stuff_classes`` (names), ``num_thing_classes`` (T),
    ``num_stuff_classes`` (S), ``thing_colors`` / ``stuff_colors`` (RGB, the JSON's ``color`` or the VOC
    palette), ``sem_seg_classes`` (the S stuff names and ``"things"``), ``ignore_index`` (255), ``gt_json``,
    ``gt_folder`` and ``image_dir`` (for the panoptic evaluation).
    """

    ignore_index = IGNORE_INDEX

    def __init__(self, root: str | Path, split: str = "train", transforms: PanopticTransforms | None = None) -> None:
        root = require_dir(Path(root), "COCO panoptic root", LAYOUT)
        self.root, self.split, self.transforms = root, split, transforms
        self.gt_json = root / "annotations" / f"panoptic_{split}2017.json"
        self.gt_folder = root / "annotations" / f"panoptic_{split}2017"
        self.image_dir = root / f"{split}2017"
        if not self.gt_json.is_file():
            found = sorted(p.name for p in (root / "annotations").glob("panoptic_*2017.json"))
            raise FileNotFoundError(
                f"COCO panoptic annotation JSON for split {split!r} not found: {self.gt_json} "
                f"(panoptic JSONs found in {root / 'annotations'}: {found or 'none'}). Expected layout:\n{LAYOUT}"
            )
        require_dir(self.gt_folder, f"COCO panoptic PNG folder of split {split!r}", LAYOUT)
        require_dir(self.image_dir, f"COCO image folder of split {split!r}", LAYOUT)
        document = self._read_json()

        self.categories: list[dict[str, Any]] = document["categories"]
        self._category_by_id = self._check_categories()
        things = sorted(c["id"] for c in self.categories if c["isthing"])
        stuff = sorted(c["id"] for c in self.categories if not c["isthing"])
        self.thing_category_ids, self.stuff_category_ids = things, stuff
        self.thing_classes = [self._category_by_id[i]["name"] for i in things]
        self.stuff_classes = [self._category_by_id[i]["name"] for i in stuff]
        self.num_thing_classes, self.num_stuff_classes = len(things), len(stuff)
        self.sem_seg_classes = [*self.stuff_classes, "things"]
        # Fallback colours by position among all categories (sorted by id), skipping the VOC map's black.
        fallback = dict(zip(sorted(self._category_by_id), voc_palette(len(self.categories) + 1)[1:], strict=True))
        colour = {i: tuple(int(v) for v in c.get("color", fallback[i])) for i, c in self._category_by_id.items()}
        self.thing_colors = [colour[i] for i in things]
        self.stuff_colors = [colour[i] for i in stuff]
        self._contiguous = {i: (True, k) for k, i in enumerate(things)} | {i: (False, k) for k, i in enumerate(stuff)}

        images = self._check_images(document["images"])
        self.samples = [self._check_annotation(annotation, images) for annotation in document["annotations"]]

    # ------------------------------------------------------------------------------------------ construction

    def _read_json(self) -> dict[str, Any]:
        try:
            document = json.loads(self.gt_json.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"COCO panoptic JSON {self.gt_json} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict) or not all(
            isinstance(document.get(key), list) for key in ("images", "annotations", "categories")
        ):
            raise ValueError(
                f"COCO panoptic JSON {self.gt_json}: expected an object with the lists "
                '"images", "annotations" and "categories"'
            )
        for key, fields in (("images", ("id", "file_name")), ("annotations", ("image_id", "file_name"))):
            for entry in document[key]:
                if not isinstance(entry, dict) or any(name not in entry for name in fields):
                    raise ValueError(
                        f"COCO panoptic JSON {self.gt_json}: an entry of {key!r} lacks {fields}: {entry!r}"
                    )
        return document

    def _check_categories(self) -> dict[int, dict[str, Any]]:
        """Categories by id, after checking each holds what the COCO panoptic format defines: ``id`` an int,
        ``name`` a string, ``isthing`` 0/1 (or false/true) and, if present, ``color`` three ints in [0, 255]."""
        by_id: dict[int, dict[str, Any]] = {}
        for category in self.categories:
            if not isinstance(category, dict) or any(key not in category for key in ("id", "name", "isthing")):
                raise ValueError(
                    f"COCO panoptic JSON {self.gt_json}: every category needs 'id', 'name' and 'isthing' "
                    f"(0 or 1), got {category!r}"
                )
            category_id = category["id"]
            if not _is_int(category_id):
                raise ValueError(
                    f"COCO panoptic JSON {self.gt_json}: category id {category_id!r} is not an int ({category!r})"
                )
            if category_id in by_id:
                raise ValueError(f"COCO panoptic JSON {self.gt_json}: category id {category_id} is listed twice")
            if not isinstance(category["name"], str):
                raise ValueError(
                    f"COCO panoptic JSON {self.gt_json}: category id {category_id} has name {category['name']!r}; "
                    "expected a string"
                )
            where = f"COCO panoptic JSON {self.gt_json}: category id {category_id} ({category['name']!r})"
            if not _is_flag(category["isthing"]):
                # A string such as "false" is truthy: it would silently make a stuff class a thing.
                raise ValueError(f"{where} has isthing {category['isthing']!r}; expected 0, 1, false or true")
            colour = category.get("color")
            if colour is not None and not (
                isinstance(colour, list) and len(colour) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in colour)
            ):
                raise ValueError(f"{where} has color {colour!r}; expected [R, G, B], three ints in [0, 255]")
            by_id[category_id] = category
        return by_id

    def _check_images(self, entries: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        """The ``"images"`` entries by id: ids listed once, sizes (when given) positive ints."""
        images: dict[Any, dict[str, Any]] = {}
        for image in entries:
            if not isinstance(image["id"], Hashable) or isinstance(image["id"], bool):
                raise ValueError(
                    f"COCO panoptic JSON {self.gt_json}: image {image['file_name']} has id {image['id']!r}; "
                    "expected an int (or a string)"
                )
            if image["id"] in images:
                raise ValueError(
                    f'COCO panoptic JSON {self.gt_json}: image id {image["id"]!r} is listed twice in "images" '
                    f"({images[image['id']]['file_name']} and {image['file_name']})"
                )
            for key in ("height", "width"):
                if key in image and not (_is_int(image[key]) and image[key] > 0):
                    raise ValueError(
                        f"COCO panoptic JSON {self.gt_json}: image {image['file_name']} has {key} {image[key]!r}; "
                        "expected a positive int"
                    )
            images[image["id"]] = image
        return images

    def _check_annotation(self, annotation: dict[str, Any], images: dict[Any, dict[str, Any]]) -> dict[str, Any]:
        """One sample's paths and metadata, after checking the files exist and every segment is valid."""
        png = self.gt_folder / annotation["file_name"]
        image_id = annotation["image_id"]
        image_info = images.get(image_id) if isinstance(image_id, Hashable) and not isinstance(image_id, bool) else None
        if image_info is None:
            raise ValueError(
                f"COCO panoptic JSON {self.gt_json}: the annotation of {annotation['file_name']} has image_id "
                f'{annotation["image_id"]!r}, which is not in its "images" list'
            )
        image_path = self.image_dir / image_info["file_name"]
        if not image_path.is_file():
            raise FileNotFoundError(
                f"image {image_path} (image_id {annotation['image_id']!r}, listed in {self.gt_json}) not found"
            )
        if not png.is_file():
            raise FileNotFoundError(
                f"panoptic annotation PNG {png} (image_id {annotation['image_id']!r}, listed in {self.gt_json}) "
                "not found"
            )
        segments = annotation.get("segments_info")
        if not isinstance(segments, list):
            raise ValueError(f"COCO panoptic JSON {self.gt_json}: annotation of {png} has no 'segments_info' list")
        seen: set[int] = set()
        for segment in segments:
            if not isinstance(segment, dict) or "id" not in segment or "category_id" not in segment:
                raise ValueError(f"segments_info of {png}: every segment needs 'id' and 'category_id', got {segment!r}")
            segment_id = segment["id"]
            if not _is_int(segment_id) or not 0 < segment_id < _MAX_SEGMENT_ID:
                raise ValueError(f"segments_info of {png}: segment id {segment_id!r} is not an int in [1, 256^3)")
            if segment_id in seen:
                raise ValueError(f"segments_info of {png}: segment id {segment_id} is listed twice")
            seen.add(segment_id)
            if not _is_int(segment["category_id"]) or segment["category_id"] not in self._category_by_id:
                raise ValueError(
                    f"segments_info of {png}: segment id {segment_id} has category_id {segment['category_id']!r}, "
                    f"which is not among the categories of {self.gt_json} ({sorted(self._category_by_id)})"
                )
            if "iscrowd" in segment and not _is_flag(segment["iscrowd"]):
                # A string such as "0" is truthy: it would silently make an instance a crowd (no instance target).
                raise ValueError(
                    f"segments_info of {png}: segment id {segment_id} has iscrowd {segment['iscrowd']!r}; "
                    "expected 0, 1, false or true"
                )
        return {
            "image": image_path,
            "png": png,
            "image_id": annotation["image_id"],
            "file_name": annotation["file_name"],
            "size": (image_info.get("height"), image_info.get("width")),
            "segments_info": segments,
        }

    # --------------------------------------------------------------------------------------------- mapping

    def category_to_contiguous(self, category_id: int) -> tuple[bool, int]:
        """COCO category id -> ``(isthing, index)``: the contiguous thing index (0..T-1; the detection label is
        ``index + 1``) or stuff index (0..S-1, the ``sem_seg`` value)."""
        if category_id not in self._contiguous:
            raise ValueError(
                f"unknown category id {category_id!r}; the categories of {self.gt_json} are {sorted(self._contiguous)}"
            )
        return self._contiguous[category_id]

    def contiguous_to_category(self, isthing: bool, index: int) -> int:
        """``(isthing, contiguous index)`` -> COCO category id; the inverse of ``category_to_contiguous``."""
        ids = self.thing_category_ids if isthing else self.stuff_category_ids
        if not 0 <= index < len(ids):
            kind = "thing" if isthing else "stuff"
            raise ValueError(f"{kind} index {index!r} out of range: there are {len(ids)} {kind} classes")
        return ids[index]

    # ------------------------------------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        sample = self.samples[index]
        image = read_image(sample["image"])
        segment_map = self.segment_ids(index)
        height, width = segment_map.shape
        if tuple(image.shape[-2:]) != (height, width):
            raise ValueError(
                f"panoptic PNG {sample['png']} is {(height, width)} (H, W) but image {sample['image']} is "
                f"{tuple(image.shape[-2:])}: the PNG must have its image's size"
            )
        if None not in sample["size"] and tuple(sample["size"]) != (height, width):
            raise ValueError(
                f"image {sample['image']} is {(height, width)} (H, W) but {self.gt_json} lists it as "
                f"{tuple(sample['size'])} (height, width)"
            )
        target = self._target(segment_map, sample)
        image = tv_tensors.Image(image)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def segment_ids(self, index: int) -> np.ndarray:
        """Sample ``index``'s ground-truth panoptic PNG as int64 (H, W) segment ids (``rgb2id``; 0 = void), at
        the original size (no transforms)."""
        expected = "an 8-bit RGB PNG whose pixels are segment ids R + 256 G + 256^2 B"
        rgb = read_pixels(self.samples[index]["png"], ("RGB",), "panoptic PNG", expected)
        return rgb2id(rgb).astype(np.int64)

    def _target(self, segment_map: np.ndarray, sample: dict[str, Any]) -> dict[str, Any]:
        """The target dict of one image from its segment id map (H, W) and its ``segments_info``."""
        png, segments = sample["png"], sample["segments_info"]
        height, width = segment_map.shape
        ids, inverse = np.unique(segment_map, return_inverse=True)
        inverse = inverse.reshape(height, width)
        listed = {segment["id"] for segment in segments}
        if unlisted := [int(i) for i in ids if i != 0 and i not in listed]:
            raise ValueError(
                f"panoptic PNG {png} holds segment id {unlisted[0]} (of {len(unlisted)} ids without an entry: "
                f"{unlisted[:5]}), which has no entry in its segments_info in {self.gt_json}"
            )
        present = set(ids.tolist())
        if absent := [segment["id"] for segment in segments if segment["id"] not in present]:
            raise ValueError(
                f"segments_info of {png} lists segment id {absent[0]} (of {len(absent)} absent ids: {absent[:5]}), "
                f"which does not occur in the PNG"
            )

        # sem_seg through a table over the unique ids: one value per id rather than one comparison per segment.
        semantic = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
        position = {int(segment_id): k for k, segment_id in enumerate(ids)}
        instances, labels = [], []
        for segment in segments:
            isthing, contiguous = self._contiguous[segment["category_id"]]
            semantic[position[segment["id"]]] = self.num_stuff_classes if isthing else contiguous
            if isthing and not segment.get("iscrowd", 0):
                instances.append(position[segment["id"]])
                labels.append(contiguous + 1)
        masks = (inverse[None] == np.asarray(instances, dtype=np.int64)[:, None, None]).astype(np.uint8)
        if instances:
            rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
            boxes = mask_utils.toBbox(rles).astype(np.float32).reshape(-1, 4)  # (M, 4) x, y, w, h
            boxes[:, 2:] += boxes[:, :2]
        else:
            boxes = np.zeros((0, 4), dtype=np.float32)
        return {
            "sem_seg": tv_tensors.Mask(torch.from_numpy(semantic[inverse])),
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": tv_tensors.Mask(torch.from_numpy(masks)),
            "segments_info": segments,
            "image_id": sample["image_id"],
            "file_name": sample["file_name"],
            "orig_size": (height, width),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, {len(self)} images, {self.num_thing_classes} thing + "
            f"{self.num_stuff_classes} stuff classes, root={str(self.root)!r})"
        )


def _is_int(value: Any) -> bool:
    """A JSON integer (``true``/``false`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_flag(value: Any) -> bool:
    """A COCO 0/1 flag (``isthing``, ``iscrowd``): the ints 0 and 1, or a JSON boolean."""
    return isinstance(value, bool) or (isinstance(value, int) and value in (0, 1))


# ------------------------------------------------------------------------------------------------ transforms


def _labels_and_masks(inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``SanitizeBoundingBoxes``'s ``labels_getter``: what is dropped together with a degenerate box."""
    target = inputs[1] if isinstance(inputs, tuple) else inputs
    return target["labels"], target["masks"]


class _SanitizeInstances:
    """``v2.SanitizeBoundingBoxes`` on the instance entries only.

    v2's sanitizer indexes *every* ``tv_tensors.Mask`` in its input with the keep-vector of the boxes (recent
    torchvision) or those it is told about. ``sem_seg`` is a ``Mask`` of shape (H, W): indexed by an (M,) vector
    it raises, or -- when M happens to equal H -- silently loses rows. So the sanitizer sees only boxes, labels
    and masks (the latter named in ``labels_getter``, so every torchvision version drops them), and the rest of
    the target is put back untouched.
    """

    def __init__(self, min_size: float = 1.0) -> None:
        self.sanitize = v2.SanitizeBoundingBoxes(min_size=min_size, labels_getter=_labels_and_masks)

    def __call__(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        instances = {key: target[key] for key in ("boxes", "labels", "masks")}
        kept = self.sanitize(instances)
        # An entry named by labels_getter comes back as a plain tensor on some versions: re-wrap the masks.
        kept["masks"] = tv_tensors.Mask(kept["masks"])
        return image, {**target, **kept}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sanitize})"


def _to_float_image() -> v2.ToDtype:
    """uint8 image -> float32 in [0, 1]; masks, boxes and labels keep their dtypes."""
    return v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)


class _PanopticTransform:
    pipeline: v2.Compose

    def __call__(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return self.pipeline(image, target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline})"


class PanopticTrainTransform(_PanopticTransform):
    """Training augmentation on ``(image, target)``: [random rescale] -> [horizontal flip] -> drop degenerate
    boxes (with their labels and masks) -> image to float32 in [0, 1].

    Args:
        flip: random horizontal flip with probability 0.5.
        scale_range: ``(low, high)``: rescale the whole sample by a factor drawn uniformly from it (image bilinear
            with antialiasing, masks and ``sem_seg`` nearest); ``None`` keeps the size.

    No normalisation: torchvision's Mask R-CNN normalises inside the model. ``orig_size`` and ``segments_info``
    keep describing the original image (they are for evaluation). All randomness is the global torch RNG.
    """

    def __init__(self, *, flip: bool = True, scale_range: tuple[float, float] | None = None) -> None:
        steps: list[Any] = [RandomRescale(scale_range)] if scale_range is not None else []
        if flip:
            steps.append(v2.RandomHorizontalFlip(0.5))
        steps += [_SanitizeInstances(), _to_float_image()]
        self.pipeline = v2.Compose(steps)


class PanopticEvalTransform(_PanopticTransform):
    """Evaluation: image to float32 in [0, 1]; nothing else changes (evaluate at the annotation's size)."""

    def __init__(self) -> None:
        self.pipeline = v2.Compose([_to_float_image()])


def collate_panoptic(batch: Sequence[tuple[Any, dict[str, Any]]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """``DataLoader`` collate: ``[(image, target)] -> ([image], [target])``; images may differ in size, so
    nothing is stacked (torchvision's detection models take lists)."""
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets
