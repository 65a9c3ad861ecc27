"""Shared machinery of the file-backed datasets: reading images and label maps, pairing them, checking them.

Every error names the file (or folder) it is about and says what was expected, because a bad file deep inside
a 20,000-image dataset is otherwise a needle in a haystack.

Shapes: H, W image size; images are uint8 (3, H, W) RGB, labels int64 (H, W).

Images: ``read_rgb`` is the one image reader of the package (the datasets and ``python -m ocrformer.predict``).
8-bit images of any PIL mode are converted to RGB. 16-bit greyscale images (PIL modes ``I;16``, ``I;16B``, ...,
and ``I``, which older Pillow versions give 16-bit PNGs) are reduced to 8 bits by their high byte, ``v >> 8``
(0..65535 -> 0..255 linearly over the type's full range: 0, 32768, 65535 -> 0, 128, 255), and replicated to
three channels: Pillow itself reduces 16-bit RGB PNGs this way, so grey and colour 16-bit files read alike. The
range is the type's, not the image's (no per-image stretching: the same value reads the same in every file), so
12-bit data stored in 16 bits reads dark (0..15); scale such data to the full range first. Mode ``I`` values
outside 0..65535 and floating-point images (mode ``F``, whose range is unknown) are refused, naming the file.

Pairing: a label file whose name differs from the expected one only in its Unicode normalisation (NFC ``café``
against NFD ``cafe`` + U+0301, as files copied from macOS often are) is found: names are compared after NFC
normalisation when the exact name does not exist; several candidates and no exact one are an error naming them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
IGNORE_INDEX = 255
INVALID = -1  # marks label values that a lookup table does not accept

Transforms = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def require_dir(path: Path, what: str, layout: str) -> Path:
    """``path`` if it is a folder, else ``FileNotFoundError`` naming it and the expected layout."""
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path} is not a folder. Expected layout:\n{layout}")
    return path


def subfolders(path: Path) -> list[str]:
    """Names of the folders inside ``path`` (empty if ``path`` is not a folder): for 'found ...' hints."""
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []



def split_folders(root: Path, split: str, what: str, layout: str) -> tuple[Path, Path]:
    """``(root/images/split, root/annotations/split)`` -- the layout of ADE20K and COCO-Stuff-164k -- or
    ``FileNotFoundError`` naming ``what``'s split, the missing folder and the splits that do exist there."""
    for base in (root / "images", root / "annotations"):
        if not (base / split).is_dir():
            raise FileNotFoundError(
                f"{what} split {split!r} not found: {base / split} is not a folder "
                f"(splits found there: {subfolders(base) or 'none'}). Expected layout:\n{layout}"
            )
    return root / "images" / split, root / "annotations" / split

def require_files(files: list[Path], folder: Path, pattern: str, layout: str) -> list[Path]:
    """``files`` if not empty, else ``FileNotFoundError`` naming the folder and the pattern searched."""
    if not files:
        raise FileNotFoundError(f"no images matching {pattern!r} in {folder}. Expected layout:\n{layout}")
    return files


def nfc(name: str) -> str:
    """``name`` in Unicode normalisation form C (precomposed characters): the key file names are matched by."""
    return unicodedata.normalize("NFC", name)


def find_normalised(path: Path, what: str, listings: dict[Path, dict[str, list[str]]] | None = None) -> Path:
    """``path`` if it exists; else the existing path whose every component equals ``path``'s after NFC
    normalisation (e.g. an NFD-named folder or file for an NFC-named expectation); else ``path`` unchanged.

    ``ValueError`` naming ``what`` if a component matches several entries of its folder and none exactly (their
    names are shown with ``ascii()``: on screen they look identical). ``listings`` caches the folders' entries
    (NFC name -> names) across calls.
    """
    if path.exists():
        return path
    listings = {} if listings is None else listings
    base, missing = path, []
    while not base.exists():
        if base == base.parent:
            return path
        missing.append(base.name)
        base = base.parent
    for name in reversed(missing):
        if not base.is_dir():
            return path
        if base not in listings:
            listings[base] = {}
            for entry in sorted(base.iterdir()):
                listings[base].setdefault(nfc(entry.name), []).append(entry.name)
        matches = listings[base].get(nfc(name), [])
        if not matches:
            return path
        if len(matches) > 1 and name not in matches:
            shown = ", ".join(ascii(m) for m in matches)
            raise ValueError(
                f"{what}: {len(matches)} files in {base} match {ascii(name)} after Unicode NFC normalisation and "
                f"none is exactly it: {shown}; rename or remove all but one"
            )
        base = base / (name if name in matches else matches[0])
    return base


def pair_with_labels(images: Sequence[Path], label_for: Callable[[Path], Path]) -> list[tuple[Path, Path]]:
    """``[(image, label file)]``, the label file being ``label_for(image)`` or its Unicode variant (see
    ``find_normalised``); ``FileNotFoundError`` naming the first image whose label file is missing and the path
    it was expected at."""
    listings: dict[Path, dict[str, list[str]]] = {}
    pairs = [(image, find_normalised(label_for(image), f"label for image {image}", listings)) for image in images]
    missing = [(image, label) for image, label in pairs if not label.is_file()]
    if missing:
        image, label = missing[0]
        more = f" (and {len(missing) - 1} more images without labels)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"no label for image {image}: expected {label}{more}")
    return pairs


def read_id_list(path: Path, image_for: Callable[[str], Path], layout: str) -> list[Path]:
    """The images a split list names, in its order: one id per line (blank lines and surrounding spaces ignored,
    Windows line ends too), ``image_for(id)`` its image -- LIP's ``*_id.txt``, PASCAL-Context's
    ``SegmentationContext/*.txt``, COCO-Stuff-10k's ``imageLists/*.txt``.

    ``FileNotFoundError`` naming the list, the line and the path of the first missing image; ``ValueError`` for a
    list that is not UTF-8 text, names an id twice (both lines) or names nothing (with ``layout``).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"id list {path} is not UTF-8 text: {exc}") from exc
    images, seen, missing = [], {}, []
    for number, line in enumerate(lines, start=1):
        image_id = line.strip()
        if not image_id:
            continue
        if image_id in seen:
            raise ValueError(f"id list {path} names {image_id!r} twice (lines {seen[image_id]} and {number})")
        seen[image_id] = number
        image = image_for(image_id)
        if not image.is_file():
            missing.append((number, image))
        images.append(image)
    if missing:
        number, image = missing[0]
        more = f" (and {len(missing) - 1} more missing images)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"id list {path} line {number} names an image that does not exist: {image}{more}")
    if not images:
        raise ValueError(f"id list {path} names no images. Expected layout:\n{layout}")
    return images


def read_rgb(path: Path) -> np.ndarray:
    """An image file -> uint8 (H, W, 3) RGB, writable; 16-bit images reduced to 8 bits by their high byte (see
    the module docstring). ``ValueError`` naming the file if it cannot be decoded or its pixels have no known
    range (mode ``F``, or mode ``I`` outside 0..65535)."""
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode == "I" or mode.startswith("I;16"):
                array = np.asarray(image)
            elif mode == "F":
                array = None
            else:
                array = np.array(image.convert("RGB"))  # a writable copy
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:  # unknown, truncated, corrupt
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    if array is None:
        raise ValueError(
            f"image {path} has PIL mode 'F' (32-bit floating point), whose range is unknown; expected 8- or 16-bit "
            "integer pixels (scale it to 0..255 or 0..65535 and save it as 8 or 16 bits)"
        )
    if array.dtype == np.uint8:
        return array
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if low < 0 or high > 65535:
        raise ValueError(
            f"image {path} has PIL mode {mode!r} with values {low}..{high}; expected 8- or 16-bit pixels "
            "(mode 'I' is read as 16 bits, 0..65535)"
        )
    grey = (array.astype(np.uint16) >> 8).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def read_image(path: Path) -> torch.Tensor:
    """An image file -> uint8 (3, H, W) RGB (``read_rgb``); ``ValueError`` naming the file if it cannot be read."""
    return torch.from_numpy(read_rgb(path)).permute(2, 0, 1).contiguous()


def read_pixels(path: Path, modes: tuple[str, ...], what: str, expected: str) -> np.ndarray:
    """The raw pixel array of an image file whose PIL mode is one of ``modes`` (no conversion: ids must not be
    changed by a colour conversion); ``ValueError`` naming ``what`` and the file if it cannot be decoded or has
    another mode (``expected`` says what was wanted)."""
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.asarray(image) if mode in modes else None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read {what} {path}: {exc}") from exc
    if array is None:
        raise ValueError(f"{what} {path} has PIL mode {mode!r}; expected {expected}")
    return array


def read_label(path: Path) -> torch.Tensor:
    """A single-channel label image (8- or 16-bit grey, or palette indices) -> int64 (H, W) of raw values."""
    expected = (
        "a single-channel image of class ids (mode 'L', 'P', 'I;16' or 'I'). Colour-coded masks must be "
        "converted to ids first."
    )
    array = read_pixels(path, ("L", "P", "I;16", "I"), "label", expected)
    return torch.from_numpy(array.astype(np.int64))


def check_same_size(image: torch.Tensor, label: torch.Tensor, image_path: Path, label_path: Path) -> None:
    """``ValueError`` naming both files and both sizes if the label is not the image's size."""
    if tuple(image.shape[-2:]) != tuple(label.shape):
        raise ValueError(
            f"label {label_path} is {tuple(label.shape)} (H, W) but image {image_path} is "
            f"{tuple(image.shape[-2:])}: every label must have its image's size"
        )


def make_lut(mapping: dict[int, int], size: int = 256) -> torch.Tensor:
    """A lookup table raw value -> train id of ``size`` entries; values not in ``mapping`` are ``INVALID``."""
    lut = torch.full((size,), INVALID, dtype=torch.int64)
    for raw, train_id in mapping.items():
        lut[raw] = train_id
    return lut


def map_label(raw: torch.Tensor, lut: torch.Tensor, path: Path, allowed: str) -> torch.Tensor:
    """Raw label values (H, W) -> train ids (H, W) through ``lut``; ``ValueError`` naming the file and the
    offending values if any value is outside the table or marked ``INVALID``.

    ``allowed`` describes the valid values for the message, e.g. ``"ids 0-33 or 255 (ignore)"``.
    """
    inside = (raw >= 0) & (raw < len(lut))
    mapped = lut[raw.clamp(0, len(lut) - 1)]
    bad = ~inside | (mapped == INVALID)
    if bad.any():
        values = torch.unique(raw[bad]).tolist()
        shown = ", ".join(map(str, values[:10])) + (", ..." if len(values) > 10 else "")
        raise ValueError(f"label {path} has values outside the valid range ({allowed}): {shown}")
    return mapped


def voc_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map (bits of the class index spread over R, G, B): deterministic, class 0 black,
    neighbouring classes far apart in colour."""
    palette = []
    for index in range(num_classes):
        bits, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (bits & 1) << shift
            g |= ((bits >> 1) & 1) << shift
            b |= ((bits >> 2) & 1) << shift
            bits >>= 3
        palette.append((r, g, b))
    return palette


class PairedSegmentation(Dataset):
    """Base of the file-backed datasets: ``(image file, label file)`` pairs and a raw-value -> train-id table.

    Subclasses set ``classes``, ``palette`` and pass the pairs, the table and a description of the valid raw
    values. The pixel checks (decodable files, equal sizes, valid values) run in ``__getitem__``, where the
    pixels are read anyway; the pairing is checked by the subclass at construction.

    ``dataset[i]`` -> ``{"image": uint8 (3, H, W), "label": int64 (H, W) train ids or 255, "path": str}``, or
    what ``transforms(image, label)`` returns in their place.

    ``flip_pairs``: the train ids a horizontal flip exchanges (left/right classes); ``()`` here, set by datasets
    that have such classes (LIP). Read by ``build_datasets`` (training flip) and ``Trainer.evaluate`` (flip test).
    """

    ignore_index = IGNORE_INDEX
    flip_pairs: tuple[tuple[int, int], ...] = ()

    def __init__(
        self,
        samples: list[tuple[Path, Path]],
        *,
        classes: Sequence[str],
        palette: Sequence[tuple[int, int, int]],
        lut: torch.Tensor,
        allowed: str,
        transforms: Transforms | None = None,
    ) -> None:
        assert len(classes) == len(palette), "one colour per class"
        self.samples = samples
        self.classes = list(classes)
        self.palette = [tuple(colour) for colour in palette]
        self.num_classes = len(self.classes)
        self.lut = lut
        self.allowed = allowed
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.samples)

    def read_raw_label(self, path: Path) -> torch.Tensor:
        """The raw label values (H, W) int64 of one label file: a single-channel image (``read_label``); a
        dataset whose labels are stored otherwise overrides this."""
        return read_label(path)

    def __getitem__(self, index: int) -> dict:
        image_path, label_path = self.samples[index]
        image = read_image(image_path)
        raw = self.read_raw_label(label_path)
        check_same_size(image, raw, image_path, label_path)
        label = map_label(raw, self.lut, label_path, self.allowed)
        if self.transforms is not None:
            image, label = self.transforms(image, label)
        return {"image": image, "label": label, "path": str(image_path)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {self.num_classes} classes)"
