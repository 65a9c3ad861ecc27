"""SegFix ground truth on hand-made label maps: the bin convention, a square's boundary band and inward
directions, touching segments (panoptic vs semantic mode) and void handling."""

import inspect

import numpy as np
import pytest
import torch

from ocrformer.segfix import direction_offsets, direction_vectors, segfix_targets

IGNORE = 255
LEFT, UP_LEFT, UP, UP_RIGHT, RIGHT, DOWN_RIGHT, DOWN, DOWN_LEFT = range(8)
R2 = 2**-0.5


# ------------------------------------------------------------------------------------------- conventions
def test_direction_vectors_follow_the_documented_table():
    expected = [(0, -1), (-R2, -R2), (-1, 0), (-R2, R2), (0, 1), (R2, R2), (1, 0), (R2, -R2)]
    vectors = direction_vectors(8)
    assert vectors.shape == (8, 2) and vectors.dtype == torch.float32
    assert torch.allclose(vectors, torch.tensor(expected), atol=1e-6)


def test_direction_offsets_are_the_8_neighbours_in_bin_order():
    offsets = direction_offsets(8)
    assert offsets.dtype == torch.int64
    # left, up-left, up, up-right, right, down-right, down, down-left (upstream's label_to_vector_mapping[8])
    assert offsets.tolist() == [[0, -1], [-1, -1], [-1, 0], [-1, 1], [0, 1], [1, 1], [1, 0], [1, -1]]
    assert direction_offsets().tolist() == offsets.tolist()  # m = 8 is the default


def test_direction_offsets_for_other_bin_counts():
    assert direction_offsets(4).tolist() == [[0, -1], [-1, 0], [0, 1], [1, 0]]
    # Upstream's label_to_vector_mapping[16] starts with these (the 5x5 square ring, anticlockwise on screen).
    assert direction_offsets(16)[:5].tolist() == [[0, -2], [-1, -2], [-2, -2], [-2, -1], [-2, 0]]
    assert direction_offsets(32)[17].tolist() == [1, 4]
    for m in (4, 8, 16, 32, 12):
        offsets, vectors = direction_offsets(m).double(), direction_vectors(m).double()
        assert len({tuple(row) for row in offsets.tolist()}) == m
        # Each step points within half a bin of its bin centre.
        cos = (offsets * vectors).sum(1) / offsets.norm(dim=1)
        assert (cos > np.cos(np.pi / m) - 1e-9).all(), m


# ----------------------------------------------------------------------------------- a square on background
def square_map(size=16, top=4, side=8):
    """Background 0 with a (side x side) square of class 1 whose top-left pixel is (top, top)."""
    labels = np.zeros((size, size), dtype=np.int64)
    labels[top : top + side, top : top + side] = 1
    return labels


def test_boundary_width_default_is_upstreams_5():
    assert inspect.signature(segfix_targets).parameters["boundary_width"].default == 5
    labels = square_map(size=30, top=7, side=16)
    boundary = segfix_targets(labels)["boundary"].numpy()
    inside = labels == 1
    # The inner ring of width 5 of a 16x16 square: 16^2 - 6^2 pixels.
    assert (boundary[inside] == 1).sum() == 16**2 - 6**2


def test_square_boundary_band_is_exactly_the_ring():
    labels = square_map()  # square rows/cols 4..11
    targets = segfix_targets(labels, boundary_width=2)
    boundary, distance = targets["boundary"].numpy(), targets["distance"].numpy()
    assert boundary.dtype == np.int64 and distance.dtype == np.float32

    # Inside: a square pixel's distance to the outside is 1 + its distance to the nearest edge row / column.
    rows, cols = np.mgrid[0:16, 0:16]
    inner_distance = np.minimum.reduce([rows - 3, cols - 3, 12 - rows, 12 - cols])
    inside = labels == 1
    assert np.array_equal(distance[inside], inner_distance[inside].astype(np.float32))
    ring = np.zeros_like(inside)
    ring[4:12, 4:12] = True
    ring[6:10, 6:10] = False  # the 4x4 core is farther than 2 from the outside
    assert np.array_equal(boundary[inside] == 1, ring[inside])
    assert (boundary[inside] == 1).sum() == 8 * 8 - 4 * 4  # 48

    # Outside: the background is a region too, its band is the pixels within Euclidean distance 2 of the square,
    # found here by brute force over the square's pixels.
    square_pixels = np.argwhere(inside)
    brute = np.sqrt(((np.argwhere(np.ones_like(inside))[:, None, :] - square_pixels[None]) ** 2).sum(-1)).min(1)
    brute = brute.reshape(16, 16)
    assert np.allclose(distance[~inside], brute[~inside])
    assert np.array_equal(boundary[~inside] == 1, brute[~inside] <= 2)
    # By hand: the 12x12 square around it minus the square, minus 3 pixels per corner ((2,2), (2,3), (3,2) are
    # sqrt(8), sqrt(5), sqrt(5) away from the corner pixel (4,4)).
    assert (boundary[~inside] == 1).sum() == 12 * 12 - 8 * 8 - 4 * 3  # 68
    assert set(np.unique(boundary)) == {0, 1}  # no void here


def test_square_directions_point_inwards():
    labels = square_map()
    direction = segfix_targets(labels, boundary_width=2)["direction"].numpy()
    # Edges of the square (away from the corners), both rings: towards the square's centre.
    for row in (4, 5):
        assert (direction[row, 6:10] == DOWN).all()  # top edge
    for row in (11, 10):
        assert (direction[row, 6:10] == UP).all()  # bottom edge
    for col in (4, 5):
        assert (direction[6:10, col] == RIGHT).all()  # left edge
    for col in (11, 10):
        assert (direction[6:10, col] == LEFT).all()  # right edge
    # Corners: diagonal.
    assert direction[4, 4] == DOWN_RIGHT and direction[4, 11] == DOWN_LEFT
    assert direction[11, 4] == UP_RIGHT and direction[11, 11] == UP_LEFT
    # The background band points into the background, i.e. away from the square.
    assert (direction[3, 6:10] == UP).all() and (direction[12, 6:10] == DOWN).all()
    assert (direction[6:10, 3] == LEFT).all() and (direction[6:10, 12] == RIGHT).all()
    assert direction[3, 3] == UP_LEFT and direction[12, 12] == DOWN_RIGHT
    # Targets only on the band.
    boundary = segfix_targets(labels, boundary_width=2)["boundary"].numpy()
    assert (direction[boundary == 0] == IGNORE).all()
    assert (direction[boundary == 1] < 8).all()


def test_one_step_along_the_direction_never_moves_towards_the_border():
    labels = square_map(size=20, top=5, side=10)
    targets = segfix_targets(labels, boundary_width=3)
    distance, direction = targets["distance"].numpy(), targets["direction"].numpy()
    steps = direction_offsets(8).numpy()
    for row, col in np.argwhere(direction != IGNORE):
        dy, dx = steps[direction[row, col]]
        nxt = (min(max(row + dy, 0), 19), min(max(col + dx, 0), 19))
        assert labels[nxt] == labels[row, col]  # stays in its own region
        assert distance[nxt] >= distance[row, col]  # and does not get closer to its border


# ------------------------------------------------------------------------------ panoptic vs semantic mode
def two_touching_squares():
    """Background 0 (segment 0) with two class-1 squares side by side: rows 4..11, cols 4..11 (segment 1) and
    cols 12..19 (segment 2)."""
    labels = np.zeros((16, 24), dtype=np.int64)
    labels[4:12, 4:20] = 1
    segments = np.zeros_like(labels)
    segments[4:12, 4:12] = 1
    segments[4:12, 12:20] = 2
    return labels, segments


def test_touching_segments_of_one_class_get_a_boundary_only_in_panoptic_mode():
    labels, segments = two_touching_squares()
    semantic = segfix_targets(labels, boundary_width=2)
    panoptic = segfix_targets(labels, boundary_width=2, segments=segments)
    # Rows 6..9 are more than 2 px from the background above and below; cols 10..13 straddle the shared edge.
    shared = (slice(6, 10), slice(10, 14))
    assert (semantic["boundary"][shared] == 0).all()
    assert (semantic["direction"][shared] == IGNORE).all()
    assert (panoptic["boundary"][shared] == 1).all()
    # Each side points into its own segment: left for segment 1, right for segment 2.
    assert (panoptic["direction"][6:10, 10:12] == LEFT).all()
    assert (panoptic["direction"][6:10, 12:14] == RIGHT).all()
    assert panoptic["distance"][7, 11] == 1 and panoptic["distance"][7, 12] == 1
    assert semantic["distance"][7, 11] == 4  # row 7 is 4 px from the background above (row 3)
    # Away from the shared edge both modes agree.
    away = np.ones(labels.shape, dtype=bool)
    away[:, 9:15] = False
    for key in ("distance", "boundary", "direction"):
        assert torch.equal(semantic[key][away], panoptic[key][away]), key


def test_segment_ids_reused_by_another_class_are_still_separate_regions():
    labels, segments = two_touching_squares()
    reference = segfix_targets(labels, boundary_width=2, segments=segments)
    reused = segments.copy()
    reused[labels == 0] = 1  # the background now shares id 1 with the left square
    again = segfix_targets(labels, boundary_width=2, segments=reused)
    for key in reference:
        assert torch.equal(reference[key], again[key]), key


def test_a_region_without_border_has_no_boundary():
    labels = np.full((6, 9), 3, dtype=np.int64)
    targets = segfix_targets(labels)
    assert (targets["boundary"] == 0).all()
    assert (targets["direction"] == IGNORE).all()
    assert (targets["distance"] == 6 + 9).all()  # the documented "no border" distance, H + W


# --------------------------------------------------------------------------------------------------- void
def void_stripe():
    """Class 0 at cols 0..6, void at cols 7..8, class 1 at cols 9..15 (10 rows)."""
    labels = np.zeros((10, 16), dtype=np.int64)
    labels[:, 7:9] = IGNORE
    labels[:, 9:] = 1
    return labels


def test_void_pixels_get_no_targets():
    labels = void_stripe()
    for as_border in (True, False):
        targets = segfix_targets(labels, boundary_width=2, ignore_as_border=as_border, direction_everywhere=True)
        assert (targets["boundary"][:, 7:9] == IGNORE).all()
        assert (targets["direction"][:, 7:9] == IGNORE).all()
        assert (targets["distance"][:, 7:9] == 0).all()
        assert (targets["boundary"][:, [c for c in range(16) if c not in (7, 8)]] != IGNORE).all()


def test_void_counts_as_outside_by_default():
    targets = segfix_targets(void_stripe(), boundary_width=2)
    boundary, direction = targets["boundary"], targets["direction"]
    # The two columns next to the void on each side are a border band, pointing away from the void.
    assert (boundary[:, 5:7] == 1).all() and (boundary[:, 9:11] == 1).all()
    assert (boundary[:, :5] == 0).all() and (boundary[:, 11:] == 0).all()
    assert (direction[:, 5:7] == LEFT).all() and (direction[:, 9:11] == RIGHT).all()
    assert targets["distance"][0, :7].tolist() == [7, 6, 5, 4, 3, 2, 1]


def test_void_can_be_transparent():
    targets = segfix_targets(void_stripe(), boundary_width=3, ignore_as_border=False)
    # The distance now runs through the void to the other class: class 0 at col c is 9 - c away from col 9.
    assert targets["distance"][0, :7].tolist() == [9, 8, 7, 6, 5, 4, 3]
    assert targets["distance"][0, 9:].tolist() == [3, 4, 5, 6, 7, 8, 9]
    assert (targets["boundary"][:, 6] == 1).all() and (targets["boundary"][:, :6] == 0).all()
    assert (targets["direction"][:, 6] == LEFT).all() and (targets["direction"][:, 9] == RIGHT).all()
    # Void inside a single class is then no border at all.
    labels = np.zeros((8, 8), dtype=np.int64)
    labels[3:5, 3:5] = IGNORE
    assert (segfix_targets(labels, ignore_as_border=False)["boundary"][labels == 0] == 0).all()
    assert (segfix_targets(labels, boundary_width=1)["boundary"][2, 3:5] == 1).all()


# ------------------------------------------------------------------------------------- inputs and errors
def test_torch_and_numpy_inputs_agree_and_outputs_are_cpu_tensors():
    labels, segments = two_touching_squares()
    from_numpy = segfix_targets(labels.astype(np.uint8), segments=segments)
    from_torch = segfix_targets(torch.from_numpy(labels), segments=torch.from_numpy(segments))
    assert set(from_numpy) == {"distance", "boundary", "direction"}
    for key, value in from_numpy.items():
        assert value.device.type == "cpu" and value.shape == labels.shape
        assert torch.equal(value, from_torch[key]), key
    assert from_numpy["boundary"].dtype == torch.int64 and from_numpy["direction"].dtype == torch.int64


def test_direction_everywhere_covers_all_labelled_pixels_with_a_gradient():
    labels = square_map()
    targets = segfix_targets(labels, boundary_width=2, direction_everywhere=True)
    direction = targets["direction"].numpy()
    assert direction[8, 1] == LEFT and direction[1, 8] == UP  # far out in the background
    assert (direction[targets["boundary"].numpy() == 1] < 8).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": np.zeros((4, 4), dtype=np.float32)}, "labels must hold integer"),
        ({"labels": torch.zeros(4, 4, dtype=torch.bool)}, "labels must hold integer"),
        ({"labels": np.zeros((2, 4, 4), dtype=np.int64)}, r"labels must have shape \(H, W\)"),
        ({"labels": [[0, 1]]}, "labels must be"),
        ({"segments": np.zeros((4, 5), dtype=np.int64)}, "segments has shape"),
        ({"num_directions": 1}, "num_directions"),
        ({"boundary_width": -1}, "boundary_width"),
        ({"ignore_index": 3}, "ignore_index"),
        ({"gradient_size": 4}, "gradient_size"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(kwargs, message):
    kwargs = {"labels": np.zeros((4, 4), dtype=np.int64), **kwargs}
    with pytest.raises(ValueError, match=message):
        segfix_targets(kwargs.pop("labels"), **kwargs)
