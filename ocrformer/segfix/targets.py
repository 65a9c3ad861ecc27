"""SegFix ground truth: distance to the region border, boundary band and quantised inward direction.

SegFix (Yuan, Xie, Chen & Wang, ECCV 2020) learns, for every pixel, whether it lies in a band around a region
border (``boundary``) and in which direction the interior of its own region lies (``direction``). This module
builds those targets from a label map; :func:`ocrformer.segfix.segfix_refine` consumes the predicted ones.

Shape legend:
    H, W  image size    m  number of direction bins

Direction convention (the one of the authors' ``DTOffsetHelper``, ``lib/utils/helpers/offset_helper.py``)
    A direction is the angle ``theta = atan2(dy, dx)`` in *image* coordinates: x grows to the right, y grows
    *downwards*, so ``theta = +90`` degrees points down. With ``m`` bins of width ``s = 360 / m``, bin ``k`` is
    centred on ``theta_k = -180 + k * s`` degrees and covers ``(theta_k - s/2, theta_k + s/2]`` (bin 0 wraps
    round: it also covers ``(180 - s/2, 180]``). For ``m = 8``::

        bin  centre   (dy, dx)   points      bin  centre   (dy, dx)   points
        0    -180     ( 0, -1)   left        4       0     ( 0,  1)   right
        1    -135     (-1, -1)   up-left     5      45     ( 1,  1)   down-right
        2     -90     (-1,  0)   up          6      90     ( 1,  0)   down
        3     -45     (-1,  1)   up-right    7     135     ( 1, -1)   down-left

    :func:`direction_vectors` gives the unit ``(dy, dx)`` of each bin centre, :func:`direction_offsets` the integer
    pixel step (the 8 neighbours for ``m = 8``; for ``m = 16`` / ``32`` the points of the 5x5 / 9x9 square ring,
    which reproduces upstream's ``label_to_vector_mapping`` tables).

Upstream facts followed (openseg-group/openseg.pytorch):
    * ``lib/datasets/preprocess/cityscapes/dt_offset_generator.py`` (semantic ground truth): one region per *class*
      (all pixels of a class id, not its connected components); ``distance_transform_edt`` of the binary class
      mask, so the distance is to the nearest pixel *outside* the class, void pixels included (void is encoded as
      a label no class has, so it counts as outside), and the image border is not a border; the direction is a
      5x5 Sobel-like gradient ``k[j, i] = (i or j) / (i**2 + j**2)`` of that distance map, zeroed outside the
      region, i.e. it points towards increasing distance = into the interior.
    * ``lib/datasets/preprocess/cityscapes/instance_dt_offset_generator.py`` (panoptic / instance ground truth): the
      same, one region per instance/stuff segment id -> ``segments=`` here.
    * ``DTOffsetHelper.distance_to_mask_label``: boundary = ``min_distance <= distance <= max_distance`` with
      ``max_distance = 5``, ``min_distance = 0`` by default (env ``dt_max_distance``) -> ``boundary_width=5``;
      void pixels get the ignore label. ``align_angle`` / ``label_to_vector_mapping``: the bin convention above.

Deviations from upstream (each deliberate):
    * Upstream skips classes with fewer than 100 pixels in semantic mode; their pixels keep distance 0 and so land
      in the boundary band with a meaningless direction. Here every region is processed.
    * Where the distance gradient vanishes (e.g. the middle of a 1-pixel-wide stripe) upstream's ``atan2(0, 0)``
      silently yields "right"; here such a pixel gets ``ignore_index`` as direction target.
    * The gradient filter pads by replicating the edge (``mode="nearest"``) instead of upstream's zero padding, so
      the image border does not bend the directions of pixels next to it - consistent with the distance transform,
      for which the image border is not a region border either.
    * Upstream's default for ``m = 4`` bins is the 4 diagonals; here ``m = 4`` means the 4 axis directions (the
      general formula above; upstream's ``c4_align_axis`` variant).
    * Upstream keeps the distance as uint8 clipped at 250; here it is float32 and unclipped, except that a region
      with no pixel outside it (one region covering every pixel) has no border at all: its pixels get the
      distance ``H + W``, more than any distance inside the image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from ..evaluation.boundary import integer_ids

__all__ = ["direction_offsets", "direction_vectors", "segfix_targets"]

# Gradients with a norm below this have no direction (the distance map is locally flat or symmetric).
_FLAT_GRADIENT = 1e-6


def _check_num_directions(num_directions: int) -> int:
    if not isinstance(num_directions, int) or isinstance(num_directions, bool) or num_directions < 2:
        raise ValueError(f"num_directions must be an int >= 2, got {num_directions!r}")
    return num_directions


def _bin_centres(num_directions: int) -> np.ndarray:
    """(m,) float64 centre angles in radians: bin k is centred on -pi + k * 2 pi / m."""
    return -math.pi + np.arange(num_directions, dtype=np.float64) * (2 * math.pi / num_directions)


def direction_vectors(num_directions: int = 8) -> torch.Tensor:
    """Unit vectors of the bin centres.

    Args:
        num_directions: m, the number of direction bins (>= 2).

    Returns:
        (m, 2) float32 tensor, row k = ``(dy, dx)`` of bin k's centre in image coordinates (y down); for m = 8:
        left, up-left, up, up-right, right, down-right, down, down-left (see the module docstring).
    """
    _check_num_directions(num_directions)
    centres = _bin_centres(num_directions)
    vectors = np.stack([np.sin(centres), np.cos(centres)], axis=1)
    # sin(-pi) is -1.2e-16, not 0: snap the float noise so that the axis directions are exact.
    vectors[np.abs(vectors) < 1e-12] = 0.0
    return torch.from_numpy(vectors).float()


def direction_offsets(num_directions: int = 8) -> torch.Tensor:
    """Integer pixel steps ``(dy, dx)`` of the bins.

    Each bin centre's direction is scaled until its larger component is ``r`` pixels and rounded, with
    ``r = max(1, m // 8)`` (grown further only if two bins would share a step). So m = 8 gives the 8 neighbours,
    m = 4 the 4 axis neighbours, m = 16 / 32 the points of the 5x5 / 9x9 square ring - upstream's
    ``label_to_vector_mapping`` for 8, 16 and 32 bins.

    Args:
        num_directions: m, the number of direction bins (>= 2).

    Returns:
        (m, 2) int64 tensor, row k = the step ``(dy, dx)`` of bin k (y down).
    """
    _check_num_directions(num_directions)
    centres = _bin_centres(num_directions)
    unit = np.stack([np.sin(centres), np.cos(centres)], axis=1)
    # Scale to the square ring (chessboard radius r) so that the steps fall on whole pixels.
    on_square = unit / np.abs(unit).max(axis=1, keepdims=True)
    radius = max(1, num_directions // 8)
    while True:
        steps = np.rint(on_square * radius).astype(np.int64)
        if len(np.unique(steps, axis=0)) == num_directions:
            return torch.from_numpy(steps)
        radius += 1


def angle_to_bin(dy: np.ndarray, dx: np.ndarray, num_directions: int) -> np.ndarray:
    """Bin index of the direction ``(dy, dx)`` (any shape, float), with upstream's half-open bins.

    Bin k covers angles in ``(theta_k - s/2, theta_k + s/2]``: ``k = ceil((theta + 180) / s - 1/2) mod m``.
    """
    step = 360.0 / num_directions
    theta = np.degrees(np.arctan2(dy, dx))
    return np.mod(np.ceil((theta + 180.0) / step - 0.5), num_directions).astype(np.int64)


def _gradient_kernels(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, size) kernels ``k_y, k_x`` with ``k[j, i] = (j or i) / (i**2 + j**2)`` around the centre.

    The large-support Sobel of upstream's generators: every neighbour votes for its offset direction, weighted by
    1 / distance, so the response estimates the gradient over a 5x5 window and resolves corners diagonally.
    """
    half = size // 2
    j, i = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    norm2 = i * i + j * j
    norm2[half, half] = 1.0  # the centre weight is 0 either way (i = j = 0)
    return j / norm2, i / norm2


def _as_label_array(value, name: str) -> np.ndarray:
    """A (H, W) int64 numpy copy of an integer label map given as np.ndarray or torch.Tensor."""
    array = integer_ids(value, name, "(H, W)")
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must have shape (H, W) with H, W > 0, got {tuple(array.shape)}")
    return array.astype(np.int64)


def _region_map(labels: np.ndarray, segments: np.ndarray | None, valid: np.ndarray) -> np.ndarray:
    """(H, W) int64 region ids: 0 on void pixels, 1..R on the R regions (one per class, or per segment)."""
    region = np.zeros(labels.shape, dtype=np.int64)
    if segments is None:
        keys = labels[valid]
    else:
        # The pair (class, segment id) names a region, so a segment id reused by two classes (as when stuff ids
        # are per class) still gives two regions.
        keys = np.stack([labels[valid], segments[valid]], axis=1)
    if keys.shape[0]:
        _, inverse = np.unique(keys, axis=0, return_inverse=True)
        region[valid] = inverse.reshape(-1) + 1
    return region


def segfix_targets(
    labels,
    *,
    num_directions: int = 8,
    boundary_width: float = 5,
    ignore_index: int = 255,
    segments=None,
    ignore_as_border: bool = True,
    direction_everywhere: bool = False,
    gradient_size: int = 5,
) -> dict[str, torch.Tensor]:
    """SegFix targets of one label map.

    Each region (a class in semantic mode, a segment when ``segments`` is given) gets its own Euclidean distance
    transform: a pixel's ``distance`` is how far it is from the nearest pixel outside its region (>= 1 for every
    labelled pixel). Pixels with ``distance <= boundary_width`` form the ``boundary`` band - on *both* sides of a
    border, since the neighbouring region has its own band. The ``direction`` is the gradient of the distance map
    (towards increasing distance, i.e. into the region), quantised into ``num_directions`` bins (module docstring).

    Args:
        labels: (H, W) integer class ids (np.ndarray or torch.Tensor); ``ignore_index`` marks void pixels.
        num_directions: m, the number of direction bins (upstream: 8).
        boundary_width: the band half-width in pixels; upstream's ``dt_max_distance`` default, 5. A square's
            inner ring of width w is exactly the pixels within w of its outline.
        ignore_index: the void label; void pixels get ``ignore_index`` as boundary and direction target and
            distance 0.
        segments: optional (H, W) integer segment ids (panoptic: one id per instance / stuff segment). When given,
            the regions are the segments (a pair (class, segment id) is one region), so touching instances of
            one class are separated by a boundary; otherwise each class is one region (upstream's semantic mode:
            per class, not per connected component).
        ignore_as_border: True (upstream): void pixels count as outside every region, so labelled pixels next to
            void get a boundary target pointing away from it. False: void is transparent - the distance runs
            through void pixels to the nearest pixel of another region.
        direction_everywhere: False: direction targets only inside the boundary band. True: on every labelled
            pixel with a defined gradient (upstream's loss supervises the direction wherever the *predicted*
            boundary is positive, which may lie outside the true band).
        gradient_size: odd size of the gradient filter (upstream's generator: 5).

    Returns:
        ``{"distance": float32 (H, W), "boundary": int64 (H, W) in {0, 1, ignore_index},
        "direction": int64 (H, W) in [0, m) or ignore_index}``, CPU tensors. ``direction`` is ``ignore_index``
        on void pixels, outside the band (unless ``direction_everywhere``) and where the gradient vanishes.
    """
    num_directions = _check_num_directions(num_directions)
    if isinstance(boundary_width, bool) or not isinstance(boundary_width, (int, float)) or not boundary_width >= 0:
        raise ValueError(f"boundary_width must be a number >= 0, got {boundary_width!r}")
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
    if 0 <= ignore_index < num_directions:
        # A direction target equal to ignore_index would be read as "no target".
        raise ValueError(f"ignore_index={ignore_index} is a direction bin in [0, {num_directions}); use e.g. 255")
    if (
        not isinstance(gradient_size, int)
        or isinstance(gradient_size, bool)
        or gradient_size < 3
        or not gradient_size % 2
    ):
        raise ValueError(f"gradient_size must be an odd int >= 3, got {gradient_size!r}")

    label_map = _as_label_array(labels, "labels")
    height, width = label_map.shape
    segment_map = None
    if segments is not None:
        segment_map = _as_label_array(segments, "segments")
        if segment_map.shape != label_map.shape:
            raise ValueError(f"segments has shape {segment_map.shape} but labels has shape {label_map.shape}")

    valid = label_map != ignore_index
    region = _region_map(label_map, segment_map, valid)
    kernel_y, kernel_x = _gradient_kernels(gradient_size)
    distance = np.zeros((height, width), dtype=np.float64)
    grad_y = np.zeros((height, width), dtype=np.float64)
    grad_x = np.zeros((height, width), dtype=np.float64)
    no_border = float(height + width)
    # Work on each region's bounding box grown by the filter radius: every pixel just outside the box is outside
    # the region, so the nearest outside pixel of a region pixel is always inside the grown box (clamping any
    # farther one onto the box only brings it closer), and the filter never reads beyond the box from a region
    # pixel unless the box already reaches the image border. With transparent void the nearest outside pixel may
    # lie across a void area of any size, so that mode uses the whole image.
    pad = gradient_size // 2
    for index, box in enumerate(ndimage.find_objects(region), start=1):
        if box is None:
            continue
        if ignore_as_border:
            window = tuple(
                slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(box, (height, width), strict=True)
            )
        else:
            window = (slice(0, height), slice(0, width))
        member = region[window] == index
        inside = member if ignore_as_border else member | ~valid[window]
        if inside.all():
            depth = np.full(inside.shape, no_border)
        else:
            # distance_transform_edt measures, for each nonzero pixel, the distance to the nearest zero pixel;
            # it is 0 outside, which is what the gradient filter must see there (upstream zeroes it the same way).
            depth = ndimage.distance_transform_edt(inside)
        gy = ndimage.correlate(depth, kernel_y, mode="nearest")
        gx = ndimage.correlate(depth, kernel_x, mode="nearest")
        distance[window][member] = depth[member]
        grad_y[window][member] = gy[member]
        grad_x[window][member] = gx[member]

    boundary = np.where(valid, (distance <= boundary_width).astype(np.int64), ignore_index)
    bins = angle_to_bin(grad_y, grad_x, num_directions)
    has_direction = valid & (np.hypot(grad_y, grad_x) > _FLAT_GRADIENT)
    if not direction_everywhere:
        has_direction &= boundary == 1
    direction = np.where(has_direction, bins, ignore_index)
    return {
        "distance": torch.from_numpy(distance.astype(np.float32)),
        "boundary": torch.from_numpy(boundary.astype(np.int64)),
        "direction": torch.from_numpy(direction.astype(np.int64)),
    }
