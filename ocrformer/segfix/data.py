"""SegFix training data: any semantic segmentation dataset, with the boundary and direction targets of each sample.

The targets are computed from the label *after* the dataset's own transforms, i.e. on the augmented crop that the
network sees: a boundary map computed before a rescale or a crop would not be the crop's boundary (the crop's
border is no boundary, a rescale changes the band width in pixels, a flip mirrors the directions).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .targets import segfix_targets

__all__ = ["WithSegFixTargets"]


class WithSegFixTargets(Dataset):
    """Wraps a semantic dataset and adds SegFix's targets to every sample.

    Args:
        dataset: a dataset whose ``dataset[i]`` is ``{"image", "label" (H, W) int, "path", ...}`` after its
            transforms (every ``ocrformer.data`` semantic dataset).
        num_directions: m, the direction classes (``segfix_targets(num_directions=...)``).
        boundary_width: the boundary band width (``segfix_targets(boundary_width=...)``); ``None``: that
            function's default.
        ignore_index: the label's void value, which the targets keep as void; ``None`` (default): the dataset's
            ``ignore_index`` (255 when it has none). A value other than the dataset's is refused: the targets
            would treat void pixels as a class.
        segments_key: for panoptic-style data, the sample key of a per-pixel *segment* id map (H, W) (e.g.
            instance ids). When the sample holds it, it is passed to ``segfix_targets(segments=...)``, so that
            the boundaries between two touching objects of the same class (two cars) are boundaries too, and
            directions point into each pixel's own object; samples without the key use the label alone.
            ``None`` (default): the label alone.
        direction_everywhere: direction targets on every labelled pixel with a defined direction, not only in the
            boundary band (``segfix_targets(direction_everywhere=True)``): what upstream's loss reads, which
            supervises the directions wherever the network *predicts* a boundary (``SegFixNet(direction_on=
            "predicted")``).

    ``dataset[i]`` -> the wrapped sample plus ``"boundary"`` (int64 (H, W): 1 boundary, 0 interior,
    ``ignore_index`` void) and ``"direction"`` (int64 (H, W): in [0, m) on boundary pixels -- everywhere with
    ``direction_everywhere`` --, ``ignore_index`` elsewhere and where the direction is undefined). ``classes``,
    ``num_classes``, ``palette``, ``ignore_index`` and ``flip_pairs`` are the wrapped dataset's (absent when it
    has none; ``ignore_index`` is always there).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        num_directions: int = 8,
        boundary_width: float | None = None,
        ignore_index: int | None = None,
        segments_key: str | None = None,
        direction_everywhere: bool = False,
    ) -> None:
        if isinstance(num_directions, bool) or not isinstance(num_directions, int) or num_directions < 2:
            raise ValueError(f"num_directions must be an int >= 2, got {num_directions!r}")
        if boundary_width is not None and (
            isinstance(boundary_width, bool) or not isinstance(boundary_width, int | float) or not boundary_width >= 0
        ):
            raise ValueError(f"boundary_width must be a number >= 0 or None, got {boundary_width!r}")
        own = getattr(dataset, "ignore_index", None)
        if ignore_index is not None and own is not None and ignore_index != own:
            raise ValueError(
                f"ignore_index={ignore_index}, but the dataset marks void pixels with {own}: the targets would "
                "treat its void pixels as a class"
            )
        self.dataset = dataset
        self.num_directions = num_directions
        self.boundary_width = boundary_width
        self.ignore_index = ignore_index if ignore_index is not None else (own if own is not None else 255)
        self.segments_key = segments_key
        self.direction_everywhere = bool(direction_everywhere)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = self.dataset[index]
        if not isinstance(sample, dict) or "label" not in sample:
            kind = sorted(sample) if isinstance(sample, dict) else type(sample).__name__
            raise ValueError(f"WithSegFixTargets needs samples with a 'label' map (a semantic dataset), got {kind}")
        options: dict = {"num_directions": self.num_directions, "ignore_index": self.ignore_index}
        if self.direction_everywhere:
            options["direction_everywhere"] = True
        if self.boundary_width is not None:
            options["boundary_width"] = self.boundary_width
        if self.segments_key is not None and sample.get(self.segments_key) is not None:
            options["segments"] = sample[self.segments_key]
        targets = segfix_targets(sample["label"], **options)
        return {
            **sample,
            "boundary": torch.as_tensor(targets["boundary"], dtype=torch.int64),
            "direction": torch.as_tensor(targets["direction"], dtype=torch.int64),
        }

    # The wrapped dataset's description, so that trainers, checkpoints and reports see the same classes.
    @property
    def classes(self):
        return self.dataset.classes

    @property
    def num_classes(self):
        return self.dataset.num_classes

    @property
    def palette(self):
        return self.dataset.palette

    @property
    def flip_pairs(self):
        return self.dataset.flip_pairs

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.dataset!r}, num_directions={self.num_directions}, "
            f"boundary_width={self.boundary_width}, ignore_index={self.ignore_index}, "
            f"segments_key={self.segments_key!r}, direction_everywhere={self.direction_everywhere})"
        )
