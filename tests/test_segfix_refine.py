"""SegFix refinement on hand-made predictions, with the *true* boundary / direction maps (from segfix_targets of the
ground truth) standing in for the network: shifted boundaries get fixed to exactly the accuracy worked out by hand,
pixels at or below the threshold stay, batched and unbatched agree, and bad inputs raise."""

import pytest
import torch
import torch.nn.functional as F

from ocrformer.segfix import segfix_refine, segfix_targets

IGNORE = 255
LEFT, UP_LEFT, UP, UP_RIGHT, RIGHT, DOWN_RIGHT, DOWN, DOWN_LEFT = range(8)


def oracle(gt: torch.Tensor, boundary_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A perfect SegFix network for ground truth ``gt`` (H, W): boundary prob (H, W) and direction logits (8, H, W)."""
    targets = segfix_targets(gt, boundary_width=boundary_width)
    on_band = targets["boundary"] == 1
    assert (targets["direction"][on_band] != IGNORE).all()  # every band pixel has a direction in these maps
    direction = targets["direction"].clone()
    direction[direction == IGNORE] = 0  # off the band the direction is never read
    return on_band.float(), F.one_hot(direction, 8).permute(2, 0, 1).float()


def accuracy(pred: torch.Tensor, gt: torch.Tensor) -> float:
    return (pred == gt).double().mean().item()


def stripe(first_col_of_class_1: int, height: int = 8, width: int = 16) -> torch.Tensor:
    labels = torch.zeros(height, width, dtype=torch.long)
    labels[:, first_col_of_class_1:] = 1
    return labels


def square(top: int, bottom: int, size: int = 16) -> torch.Tensor:
    labels = torch.zeros(size, size, dtype=torch.long)
    labels[top : bottom + 1, top : bottom + 1] = 1
    return labels


# --------------------------------------------------------------------------------- fixes, worked by hand
def test_boundary_shifted_by_2_is_fully_fixed():
    gt, pred = stripe(8), stripe(6)  # cols 6, 7 wrongly predicted as class 1: 16 of 128 pixels
    assert accuracy(pred, gt) == 112 / 128
    prob, logits = oracle(gt, boundary_width=2)
    # Band: cols 6, 7 (class 0, pointing left) and 8, 9 (class 1, pointing right). With the upstream step of
    # 2 px, cols 6, 7 read cols 4, 5 (predicted 0: right) and cols 8, 9 read cols 10, 11 (predicted 1: right).
    refined = segfix_refine(pred, prob, logits)
    assert torch.equal(refined, gt)


def test_boundary_shifted_by_3_is_partly_fixed_in_one_gather():
    gt, pred = stripe(8), stripe(5)  # cols 5, 6, 7 wrong: 24 of 128 pixels
    assert accuracy(pred, gt) == 104 / 128
    prob, logits = oracle(gt, boundary_width=2)
    refined = segfix_refine(pred, prob, logits)  # offset_scale = 2
    # col 5: outside the band, stays wrong. col 6 reads col 4 (0: fixed). col 7 reads col 5 (1: the *input*
    # label, which is still wrong - no second pass). cols 8, 9 read cols 10, 11 (1). Wrong: cols 5 and 7.
    assert accuracy(refined, gt) == 112 / 128
    assert refined[:, 6].eq(0).all() and refined[:, 7].eq(1).all() and refined[:, 5].eq(1).all()
    # With 1-pixel steps nothing improves: col 6 reads col 5, col 7 reads col 6, both predicted 1.
    assert accuracy(segfix_refine(pred, prob, logits, offset_scale=1), gt) == 104 / 128


def test_dilated_square_is_fixed_including_its_corners():
    gt, pred = square(4, 11), square(3, 12)  # a 1-px ring around the 8x8 square is wrong: 10^2 - 8^2 = 36
    assert accuracy(pred, gt) == 220 / 256
    prob, logits = oracle(gt, boundary_width=2)
    # The wrong ring lies 1 (edges) or sqrt(2) (the 4 outer corners) from the square: in the band, pointing away
    # from it, so a 2-px step reads background predicted as background.
    assert torch.equal(segfix_refine(pred, prob, logits), gt)
    # With a band of width 1 the 4 outer corner pixels (distance sqrt(2) > 1) are not on the band and stay wrong.
    prob, logits = oracle(gt, boundary_width=1)
    refined = segfix_refine(pred, prob, logits)
    assert accuracy(refined, gt) == 252 / 256
    wrong = (refined != gt).nonzero().tolist()
    assert wrong == [[3, 3], [3, 12], [12, 3], [12, 12]]


def test_hand_checked_gather_convention_and_border_clamp():
    labels = torch.arange(9).view(3, 3)
    prob = torch.zeros(3, 3)
    prob[1, 1] = prob[0, 0] = 1.0
    logits = torch.zeros(8, 3, 3)
    logits[RIGHT, 1, 1] = 5.0
    logits[DOWN_RIGHT, 0, 0] = 5.0
    one_step = segfix_refine(labels, prob, logits, offset_scale=1)
    assert one_step.tolist() == [[4, 1, 2], [3, 5, 5], [6, 7, 8]]  # (1,1) reads (1,2); (0,0) reads (1,1)
    two_steps = segfix_refine(labels, prob, logits)  # (1,1) -> (1,3) clamped to (1,2); (0,0) -> (2,2)
    assert two_steps.tolist() == [[8, 1, 2], [3, 5, 5], [6, 7, 8]]
    logits[LEFT, 1, 1] = 9.0
    logits[UP, 0, 0] = 9.0  # (0,0) -> (-2,0) clamped to itself
    assert segfix_refine(labels, prob, logits).tolist() == [[0, 1, 2], [3, 3, 5], [6, 7, 8]]


# ------------------------------------------------------------------------------------------- threshold
def test_pixels_at_or_below_the_threshold_do_not_move():
    gt, pred = stripe(8), stripe(6)
    prob, logits = oracle(gt, boundary_width=2)
    prob[:4, 6] = 0.5  # exactly the threshold: not strictly above it
    prob[4:, 6] = 0.3
    refined = segfix_refine(pred, prob, logits)
    assert refined[:, 6].eq(1).all()  # still wrong: they did not move
    assert accuracy(refined, gt) == 120 / 128  # only col 6 remains wrong
    assert torch.equal(segfix_refine(pred, prob, logits, boundary_threshold=0.2), gt)
    assert torch.equal(segfix_refine(pred, prob, logits, boundary_threshold=1.0), pred)


def test_random_inputs_only_change_pixels_above_the_threshold(rng):
    labels = torch.randint(0, 5, (3, 12, 10), generator=rng)
    prob = torch.rand(3, 12, 10, generator=rng)
    logits = torch.randn(3, 8, 12, 10, generator=rng)
    refined = segfix_refine(labels, prob, logits, boundary_threshold=0.7)
    still = prob <= 0.7
    assert torch.equal(refined[still], labels[still])
    assert (refined != labels).any()


# ------------------------------------------------------------------------------------ batch and dtypes
def test_batched_and_unbatched_agree():
    gts = [stripe(8), stripe(8, height=8, width=16), stripe(4)]
    preds = [stripe(6), stripe(5), stripe(7)]
    outputs = [oracle(gt, boundary_width=2) for gt in gts]
    singles = [segfix_refine(p, prob, logits) for p, (prob, logits) in zip(preds, outputs, strict=True)]
    batched = segfix_refine(
        torch.stack(preds), torch.stack([o[0] for o in outputs]), torch.stack([o[1] for o in outputs])
    )
    assert batched.shape == (3, 8, 16)
    assert torch.equal(batched, torch.stack(singles))
    assert singles[0].shape == (8, 16)


def test_dtype_and_void_labels_are_kept():
    gt, pred = stripe(8), stripe(6).to(torch.int32)
    prob, logits = oracle(gt, boundary_width=2)
    pred[0, 4] = IGNORE  # the source of pixel (0, 6)
    pred[1, 8] = IGNORE  # a void pixel on the band
    refined = segfix_refine(pred, prob, logits)
    assert refined.dtype == torch.int32
    assert refined[0, 6] == 1  # would have read void: keeps its own label
    assert refined[1, 8] == IGNORE
    assert (refined != IGNORE).sum() == pred.numel() - 2


def test_more_direction_bins():
    gt, pred = stripe(8), stripe(6)
    targets = segfix_targets(gt, boundary_width=2, num_directions=16)
    direction = targets["direction"].clone()
    direction[direction == IGNORE] = 0
    logits = F.one_hot(direction, 16).permute(2, 0, 1).float()
    # 16 bins step 2 px along the axes (the 5x5 ring), so offset_scale=1 already reaches the interior.
    refined = segfix_refine(pred, (targets["boundary"] == 1).float(), logits, offset_scale=1)
    assert torch.equal(refined, gt)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": torch.zeros(4, 4)}, "labels must hold integer"),
        ({"labels": torch.zeros(1, 1, 4, 4, dtype=torch.long)}, "labels must be"),
        ({"boundary_prob": torch.zeros(4, 5)}, "boundary_prob must have the shape"),
        ({"boundary_prob": torch.zeros(4, 4, dtype=torch.long)}, "boundary_prob must hold probabilities"),
        ({"boundary_prob": torch.full((4, 4), 1.5)}, r"boundary_prob must lie in \[0, 1\]"),
        ({"boundary_prob": torch.full((4, 4), float("nan"))}, r"boundary_prob must lie in \[0, 1\]"),
        ({"direction_logits": torch.zeros(1, 8, 4, 4)}, "direction_logits must have shape"),
        ({"direction_logits": torch.zeros(8, 4, 5)}, "direction_logits must have shape"),
        ({"direction_logits": torch.zeros(1, 4, 4)}, "m >= 2"),
        ({"direction_logits": torch.zeros(8, 4, 4, dtype=torch.long)}, "direction_logits must hold real"),
        ({"direction_logits": torch.full((8, 4, 4), float("nan"))}, "non-finite"),
        ({"boundary_threshold": 1.5}, "boundary_threshold"),
        ({"offset_scale": 0}, "offset_scale"),
        ({"offset_scale": True}, "offset_scale"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(change, message):
    args = {
        "labels": torch.zeros(4, 4, dtype=torch.long),
        "boundary_prob": torch.zeros(4, 4),
        "direction_logits": torch.zeros(8, 4, 4),
    }
    args.update(change)
    kwargs = {k: args.pop(k) for k in ("boundary_threshold", "offset_scale") if k in args}
    with pytest.raises(ValueError, match=message):
        segfix_refine(args["labels"], args["boundary_prob"], args["direction_logits"], **kwargs)


def test_batched_shape_mismatch_names_direction_logits():
    with pytest.raises(ValueError, match="direction_logits"):
        segfix_refine(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 4), torch.zeros(3, 8, 4, 4))
