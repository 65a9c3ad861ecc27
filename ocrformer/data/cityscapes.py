"""Cityscapes fine annotations, 19 training classes.

Layout (as the official download unpacks)::

    root/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    root/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png

The ``*_labelIds.png`` files hold the 34 label ids of cityscapesScripts ``helpers/labels.py``; they are mapped
to the 19 train ids of that table here, so no ``createTrainIdLabelImgs`` preprocessing is needed.
"""

from __future__ import annotations

from pathlib import Path

from ._io import (
    IGNORE_INDEX,
    PairedSegmentation,
    Transforms,
    make_lut,
    pair_with_labels,
    require_dir,
    require_files,
    subfolders,
)

__all__ = ["CITYSCAPES_CLASSES", "CITYSCAPES_CLASS_WEIGHTS", "CITYSCAPES_PALETTE", "CityscapesSegmentation"]

CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]
CITYSCAPES_PALETTE = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]
# Label id -> train id, from cityscapesScripts labels.py; the other 15 of the ids 0-33 are void (-> 255).
LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
# The class-balancing weights of the HRNet-Semantic-Segmentation Cityscapes loss (lib/datasets/cityscapes.py),
# in train-id order. A tuple, so nobody can change them in place: ``torch.tensor(CITYSCAPES_CLASS_WEIGHTS)``.
CITYSCAPES_CLASS_WEIGHTS = (
    0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
    0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507,
)

_IMAGE_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"
LAYOUT = (
    "  root/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}" + _IMAGE_SUFFIX + "\n"
    "  root/gtFine/{split}/{city}/{city}_{seq}_{frame}" + _LABEL_SUFFIX
)


class CityscapesSegmentation(PairedSegmentation):
    """Cityscapes ``gtFine``, label ids mapped to the 19 train ids (void -> 255).

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``"train"``, ``"val"`` or ``"test"`` (any split folder that exists).
        transforms: ``(image, label) -> (image, label)`` on uint8 (3, H, W) / int64 (H, W).

    ``dataset[i]`` -> ``{"image": uint8 (3, 1024, 2048), "label": int64 (1024, 2048), "path": str}``.
    Raw values must be label ids 0-33 (or 255, already ignore); anything else raises, naming the file.
    """

    def __init__(self, root: str | Path, split: str = "train", transforms: Transforms | None = None) -> None:
        root = require_dir(Path(root), "Cityscapes root", LAYOUT)
        image_root = root / "leftImg8bit"
        for base in (image_root, root / "gtFine"):
            if not (base / split).is_dir():
                found = subfolders(base)
                raise FileNotFoundError(
                    f"Cityscapes split {split!r} not found: {base / split} is not a folder "
                    f"(splits found there: {found or 'none'}). Expected layout:\n{LAYOUT}"
                )
        images = sorted((image_root / split).glob(f"*/*{_IMAGE_SUFFIX}"))
        require_files(images, image_root / split, f"{{city}}/*{_IMAGE_SUFFIX}", LAYOUT)
        label_root = root / "gtFine" / split

        def label_for(image: Path) -> Path:
            return label_root / image.parent.name / (image.name[: -len(_IMAGE_SUFFIX)] + _LABEL_SUFFIX)

        mapping = {label_id: LABEL_ID_TO_TRAIN_ID.get(label_id, IGNORE_INDEX) for label_id in range(34)}
        super().__init__(
            pair_with_labels(images, label_for),
            classes=CITYSCAPES_CLASSES,
            palette=CITYSCAPES_PALETTE,
            lut=make_lut({**mapping, IGNORE_INDEX: IGNORE_INDEX}),
            allowed="Cityscapes label ids 0-33, or 255 = ignore",
            transforms=transforms,
        )
        self.root = root
        self.split = split
