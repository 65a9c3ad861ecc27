"""LIP (Look Into Person) human parsing: background + 19 body parts and clothes, 20 classes.

Layout (as ``TrainVal_images.zip`` and ``TrainVal_parsing_annotations.zip`` of the LIP release unpack)::

    root/TrainVal_images/{train,val}_images/{id}.jpg
    root/TrainVal_images/{train,val}_id.txt                  the split's ids, one per line (optional)
    root/TrainVal_parsing_annotations/{train,val}_segmentations/{id}.png

The split's images are the ids of ``{split}_id.txt``, looked for in ``TrainVal_images/`` (where the release
puts it) and then in ``root/`` (where some codebases move it); without either list, every ``*.jpg`` of
``{split}_images/``. Annotation values 0-19 are the train ids themselves (0 = background); 255 is ignore.

Left/right classes: a mirrored person's left arm is where the right arm was, so a horizontal flip must exchange
Left-arm/Right-arm (14/15), Left-leg/Right-leg (16/17) and Left-shoe/Right-shoe (18/19) -- ``LIP_FLIP_PAIRS``,
the ``swap_pair`` of openseg.pytorch's ``configs/lip/*.json`` and the ids HRNet-Semantic-Segmentation's
``lib/datasets/lip.py`` swaps. ``LIPSegmentation.flip_pairs`` carries them to the training flip and the flip test.
"""

from __future__ import annotations

from pathlib import Path

from ._io import (
    IGNORE_INDEX,
    PairedSegmentation,
    Transforms,
    make_lut,
    pair_with_labels,
    read_id_list,
    require_dir,
    require_files,
    subfolders,
)

__all__ = ["LIP_CLASSES", "LIP_FLIP_PAIRS", "LIP_PALETTE", "LIPSegmentation"]

# The release's class names, in annotation-value order (as mmsegmentation's LIPDataset lists them).
LIP_CLASSES = [
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "UpperClothes", "Dress", "Coat", "Socks", "Pants",
    "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg", "Left-shoe",
    "Right-shoe",
]
# The palette of mmsegmentation's LIPDataset (also openseg.pytorch's configs/lip ``color_list``).
LIP_PALETTE = [
    (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0), (0, 0, 85), (0, 119, 221),
    (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255), (51, 170, 221),
    (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0),
]
LIP_FLIP_PAIRS = ((14, 15), (16, 17), (18, 19))

_IMAGES, _LABELS = "TrainVal_images", "TrainVal_parsing_annotations"
LAYOUT = (
    f"  root/{_IMAGES}/{{split}}_images/{{id}}.jpg\n"
    f"  root/{_IMAGES}/{{split}}_id.txt   (optional: the split's ids, one per line)\n"
    f"  root/{_LABELS}/{{split}}_segmentations/{{id}}.png"
)


def _splits_found(folder: Path, suffix: str) -> list[str]:
    """The split names whose ``{split}{suffix}`` folder exists in ``folder``: for the 'found ...' hint. (Not
    ``TrainVal_images/TrainVal_images``, which ends in ``_images`` too: that is ``_nested_hint``'s case.)"""
    return [name[: -len(suffix)] for name in subfolders(folder) if name.endswith(suffix) and name != folder.name]


def _nested_hint(folder: Path) -> str:
    """A hint for archives unpacked into a folder of their own name (``TrainVal_images/TrainVal_images/``)."""
    if (folder / folder.name).is_dir():
        return f" ({folder} holds another {folder.name}/ folder: the archive was unpacked one level too deep)"
    return ""


class LIPSegmentation(PairedSegmentation):
    """LIP single-person human parsing: 20 classes, annotation values are the train ids (255 = ignore).

    Args:
        root: the folder holding ``TrainVal_images/`` and ``TrainVal_parsing_annotations/``.
        split: ``"train"`` or ``"val"`` (any split with ``{split}_images/`` and ``{split}_segmentations/``).
        transforms: ``(image, label) -> (image, label)`` on uint8 (3, H, W) / int64 (H, W).

    ``dataset[i]`` -> ``{"image": uint8 (3, H, W), "label": int64 (H, W), "path": str}``; sizes vary per image.
    Annotation values must be 0-19 (or 255); anything else raises, naming the file. ``flip_pairs`` are the
    left/right part ids a horizontal flip exchanges (``LIP_FLIP_PAIRS``). ``id_list`` is the id list read, or
    ``None`` when every jpg of the split was taken.
    """

    flip_pairs = LIP_FLIP_PAIRS

    def __init__(self, root: str | Path, split: str = "train", transforms: Transforms | None = None) -> None:
        root = require_dir(Path(root), "LIP root", LAYOUT)
        for base, suffix in ((root / _IMAGES, "_images"), (root / _LABELS, "_segmentations")):
            if not (base / f"{split}{suffix}").is_dir():
                found = _splits_found(base, suffix)
                raise FileNotFoundError(
                    f"LIP split {split!r} not found: {base / f'{split}{suffix}'} is not a folder "
                    f"(splits found there: {found or 'none'}){_nested_hint(base)}. Expected layout:\n{LAYOUT}"
                )
        image_dir = root / _IMAGES / f"{split}_images"
        label_dir = root / _LABELS / f"{split}_segmentations"
        lists = [root / _IMAGES / f"{split}_id.txt", root / f"{split}_id.txt"]
        self.id_list = next((path for path in lists if path.is_file()), None)
        if self.id_list is not None:
            images = read_id_list(self.id_list, lambda image_id: image_dir / f"{image_id}.jpg", LAYOUT)
        else:
            images = require_files(sorted(image_dir.glob("*.jpg")), image_dir, "*.jpg", LAYOUT)
        mapping = {value: value for value in range(len(LIP_CLASSES))}
        super().__init__(
            pair_with_labels(images, lambda image: label_dir / f"{image.stem}.png"),
            classes=LIP_CLASSES,
            palette=LIP_PALETTE,
            lut=make_lut({**mapping, IGNORE_INDEX: IGNORE_INDEX}),
            allowed="LIP part ids 0-19, or 255 = ignore",
            transforms=transforms,
        )
        self.root = root
        self.split = split
