"""Any dataset as two folders and a class list: images matched to label PNGs by file name stem.

Layout::

    image_dir/{name}.png|.jpg|.jpeg|.bmp|.tif     RGB (or grey, converted) images
    label_dir/{name}.png                           single-channel class ids 0..K-1, ignore_index = ignore
    classes_json                                   {"classes": [...], "palette": [[r, g, b], ...], "ignore_index": 255}

``palette`` is optional (the PASCAL VOC colour map is used) and so is ``ignore_index`` (255). Label files may
mark ignored pixels with any value outside 0..K-1 named as ``ignore_index``; it becomes 255 on loading, so
every dataset of this package hands out the same ignore value.

Names are matched after Unicode NFC normalisation: an image ``café.png`` whose name has a precomposed ``é``
(NFC) finds its label ``café.png`` written with ``e`` + combining acute (NFD, as names from macOS often are),
and two images whose stems are equal after normalisation are refused like any two images of one stem (the
message shows both names with ``ascii()``, since they look identical).
"""

from __future__ import annotations

import json
from pathlib import Path

from ._io import (
    IGNORE_INDEX,
    IMAGE_EXTENSIONS,
    PairedSegmentation,
    Transforms,
    make_lut,
    nfc,
    pair_with_labels,
    require_dir,
    require_files,
    voc_palette,
)

__all__ = ["FolderSegmentation", "read_classes_json"]

LAYOUT = (
    "  image_dir/{name}" + "|".join(IMAGE_EXTENSIONS) + "\n  label_dir/{name}.png\n"
    '  classes_json: {"classes": ["background", ...], "palette": [[0, 0, 0], ...], "ignore_index": 255}'
)
_KEYS = {"classes", "palette", "ignore_index"}


def read_classes_json(path: str | Path) -> tuple[list[str], list[tuple[int, int, int]], int]:
    """Read and check a classes file -> ``(classes, palette, ignore_index)``; ``ValueError`` naming the file
    and the problem otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"classes_json not found: {path}. Expected a JSON file like\n{LAYOUT.splitlines()[-1]}")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"classes_json {path} is not valid JSON: {exc}") from exc

    def fail(problem: str) -> ValueError:
        return ValueError(f"classes_json {path}: {problem}")

    if not isinstance(meta, dict) or "classes" not in meta:
        raise fail('expected an object with a "classes" list, e.g. {"classes": ["background", "cat"]}')
    if unknown := sorted(set(meta) - _KEYS):
        raise fail(f"unknown keys {unknown}; allowed are {sorted(_KEYS)}")
    classes = meta["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise fail(f'"classes" must be a non-empty list of names, got {classes!r}')
    if len(set(classes)) != len(classes):
        raise fail(f'"classes" has duplicate names: {sorted({c for c in classes if classes.count(c) > 1})}')
    if len(classes) > IGNORE_INDEX:
        raise fail(f"at most {IGNORE_INDEX} classes are supported (255 is the ignore value), got {len(classes)}")

    palette = meta.get("palette")
    if palette is None:
        palette = voc_palette(len(classes))
    elif not (
        isinstance(palette, list)
        and len(palette) == len(classes)
        and all(
            isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in palette
        )
    ):
        raise fail(f'"palette" must be {len(classes)} [r, g, b] lists of ints 0-255 (one per class), got {palette!r}')

    ignore_index = meta.get("ignore_index", IGNORE_INDEX)
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool) or not 0 <= ignore_index <= 65535:
        raise fail(f'"ignore_index" must be an int 0-65535, got {ignore_index!r}')
    if ignore_index < len(classes):
        raise fail(f'"ignore_index" {ignore_index} is a class id (class ids are 0-{len(classes) - 1}); use e.g. 255')
    return classes, [tuple(c) for c in palette], ignore_index


class FolderSegmentation(PairedSegmentation):
    """Images in one folder, label PNGs of the same stem in another, classes from a JSON file.

    Args:
        image_dir: the images (``.png .jpg .jpeg .bmp .tif .tiff``, not searched recursively).
        label_dir: ``{stem}.png`` per image (compared after Unicode NFC normalisation), class ids 0..K-1 and
            ``ignore_index``.
        classes_json: see ``read_classes_json`` and the module docstring.
        transforms: ``(image, label) -> (image, label)`` on uint8 (3, H, W) / int64 (H, W).

    ``dataset[i]`` -> ``{"image": uint8 (3, H, W), "label": int64 (H, W) in 0..K-1 or 255, "path": str}``.
    """

    def __init__(
        self,
        image_dir: str | Path,
        label_dir: str | Path,
        classes_json: str | Path,
        transforms: Transforms | None = None,
    ) -> None:
        image_dir = require_dir(Path(image_dir), "image_dir", LAYOUT)
        label_dir = require_dir(Path(label_dir), "label_dir", LAYOUT)
        classes, palette, ignore_index = read_classes_json(classes_json)
        images = sorted(p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        require_files(images, image_dir, "*" + "|*".join(IMAGE_EXTENSIONS), LAYOUT)
        stems: dict[str, Path] = {}
        for image in images:
            other = stems.get(nfc(image.stem))
            if other is not None:  # two images would share one label file
                shown = (
                    f" after Unicode NFC normalisation ({ascii(other.stem)} and {ascii(image.stem)} look alike)"
                    if other.stem != image.stem
                    else ""
                )
                raise ValueError(f"images {other} and {image} have the same stem{shown}; rename one")
            stems[nfc(image.stem)] = image
        mapping = {**{c: c for c in range(len(classes))}, ignore_index: IGNORE_INDEX}
        super().__init__(
            pair_with_labels(images, lambda image: label_dir / f"{image.stem}.png"),
            classes=classes,
            palette=palette,
            lut=make_lut(mapping, size=max(256, ignore_index + 1)),
            allowed=f"class ids 0-{len(classes) - 1}, or {ignore_index} = ignore",
            transforms=transforms,
        )
        self.image_dir = image_dir
        self.label_dir = label_dir
