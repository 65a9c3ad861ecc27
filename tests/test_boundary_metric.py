"""Boundary F-score: perfect = 1, a shifted boundary below 1 at tolerance 1 and 1 once the tolerance covers the
shift, a partly shifted boundary counted by hand, the empty / void conventions, accumulation == one shot."""

import math

import numpy as np
import pytest
import torch

from ocrformer.evaluation import BoundaryEvaluator, boundary_f_score

IGNORE = 255


def stripe(first_col_of_class_1: int, height: int = 8, width: int = 16) -> torch.Tensor:
    labels = torch.zeros(height, width, dtype=torch.long)
    labels[:, first_col_of_class_1:] = 1
    return labels


def blocks() -> torch.Tensor:
    """A 3-class map: class 0 left, class 1 top right, class 2 bottom right with a class-0 hole."""
    labels = torch.zeros(12, 12, dtype=torch.long)
    labels[:6, 6:] = 1
    labels[6:, 6:] = 2
    labels[8:10, 8:10] = 0
    return labels


def test_perfect_prediction_scores_1():
    target = blocks()
    scores = boundary_f_score(target, target, num_classes=4)
    for t in (1, 3, 5):
        assert scores[f"bf{t}"] == scores[f"bp{t}"] == scores[f"br{t}"] == 1.0
        per_class = scores[f"bf{t}_per_class"]
        assert per_class[:3] == [1.0, 1.0, 1.0] and math.isnan(per_class[3])  # class 3 is absent


def test_shifted_boundary_scores_below_1_within_the_shift_and_1_beyond():
    target, pred = stripe(8), stripe(10)  # every boundary pixel moved by 2 px
    scores = boundary_f_score(pred, target, num_classes=2, tolerances=(1, 2, 3, 5))
    assert scores["bf1"] == 0.0  # nothing within 1 px
    assert scores["bf2"] == scores["bf3"] == scores["bf5"] == 1.0
    # A square shifted by 2 overlaps partly at tolerance 1 (the rows of its top and bottom edges line up).
    target = torch.zeros(16, 16, dtype=torch.long)
    target[4:12, 4:12] = 1
    pred = torch.roll(target, 2, dims=1)
    scores = boundary_f_score(pred, target, num_classes=2)
    assert 0 < scores["bf1"] < 1
    assert scores["bf3"] == scores["bf5"] == 1.0


def test_half_shifted_boundary_counted_by_hand():
    # Class 0 | class 1 at col 4 (6 x 8); the prediction moves the border 2 px right in rows 0..2.
    target = stripe(4, height=6, width=8)
    pred = target.clone()
    pred[:3, 4:6] = 0
    # Boundary pixels (class pixels with a 4-neighbour of another label):
    #   target class 0: col 3, rows 0..5 (6)    target class 1: col 4, rows 0..5 (6)
    #   pred class 0: (0,5) (1,5) (2,5) (2,4) (3,3) (4,3) (5,3)
    #   pred class 1: (0,6) (1,6) (2,6) (3,4) (3,5) (4,4) (5,4)
    # Tolerance 1, class 0: pred matched = (2,4) (3,3) (4,3) (5,3) -> 4/7; target matched = rows 2..5 -> 4/6.
    #   class 1 mirrors it: 4/7 and 4/6. F = 2 (4/7)(4/6) / (4/7 + 4/6) = 8/13 for both.
    # Tolerance 1.5: class 0 target (1,3) now reaches (2,4) at sqrt(2) -> recall 5/6, F = 40/59; class 1 target
    #   (1,4) still has nothing within 1.5 ((3,4), (1,6) are 2 away) -> F = 8/13.
    # Tolerance 2: every pixel is within 2 of the other map -> 1.
    scores = boundary_f_score(pred, target, num_classes=2, tolerances=(1, 1.5, 2))
    assert scores["counts"][0].tolist() == [[4, 7, 4, 6], [4, 7, 4, 6]]
    assert scores["bf1"] == pytest.approx(8 / 13)
    assert scores["bp1"] == pytest.approx(4 / 7) and scores["br1"] == pytest.approx(4 / 6)
    assert scores["bf1.5_per_class"] == pytest.approx([40 / 59, 8 / 13])
    assert scores["bf1.5"] == pytest.approx((40 / 59 + 8 / 13) / 2)
    assert scores["bf2"] == 1.0


# ------------------------------------------------------------------------------------- empty and void
def test_no_boundary_anywhere_scores_1():
    uniform = torch.full((5, 7), 2, dtype=torch.long)
    scores = boundary_f_score(uniform, uniform, num_classes=3)
    assert scores["bf1"] == scores["bf3"] == scores["bf5"] == 1.0
    assert all(math.isnan(v) for v in scores["bf1_per_class"])


def test_one_empty_side_scores_0():
    target, uniform = stripe(8), torch.zeros(8, 16, dtype=torch.long)
    missed = boundary_f_score(uniform, target, num_classes=2)  # no predicted boundary: P = 1, R = 0
    assert (missed["bf3"], missed["bp3"], missed["br3"]) == (0.0, 1.0, 0.0)
    invented = boundary_f_score(target, uniform, num_classes=2)  # no true boundary: P = 0, R = 1
    assert (invented["bf3"], invented["bp3"], invented["br3"]) == (0.0, 0.0, 1.0)


def test_nothing_accumulated_is_nan():
    scores = BoundaryEvaluator(3).compute()
    assert math.isnan(scores["bf1"]) and math.isnan(scores["bf5"])


def test_void_pixels_are_excluded():
    target = blocks()
    target[:, 3:5] = IGNORE  # a void stripe through class 0
    pred = blocks()
    noisy = pred.clone()
    noisy[:, 3:5] = torch.tensor([[1, 2], [0, 1]]).repeat(6, 1)  # anything at all under the void
    for p in (pred, noisy):
        scores = boundary_f_score(p, target, num_classes=3)
        assert scores["bf1"] == 1.0
    # An all-void target leaves nothing to score: no boundary on either side.
    all_void = torch.full((12, 12), IGNORE)
    assert boundary_f_score(noisy, all_void, num_classes=3)["bf1"] == 1.0
    # Void pixels are never boundary pixels, so they never appear in the counts.
    counts = boundary_f_score(noisy, target, num_classes=3)["counts"]
    assert torch.equal(counts, boundary_f_score(pred, target, num_classes=3)["counts"])


# ---------------------------------------------------------------------------------------- accumulation
def test_accumulation_equals_one_shot_on_the_concatenation(rng):
    targets = torch.stack([blocks(), blocks().flip(1), blocks().T.contiguous(), stripe(5, 12, 12)])
    preds = targets.clone()
    preds[0] = torch.roll(preds[0], 1, dims=0)
    preds[1, 2:5, 2:9] = 2
    preds[2] = torch.randint(0, 3, (12, 12), generator=rng)
    targets[3, :2] = IGNORE
    evaluator = BoundaryEvaluator(3, tolerances=(1, 2, 4))
    evaluator.update(preds[:1], targets[:1])
    evaluator.update(preds[1:3], targets[1:3])
    evaluator.update(preds[3].numpy(), targets[3].numpy())  # numpy, unbatched
    accumulated = evaluator.compute()
    one_shot = boundary_f_score(preds, targets, num_classes=3, tolerances=(1, 2, 4))
    assert accumulated.keys() == one_shot.keys()
    assert torch.equal(accumulated["counts"], one_shot["counts"])
    for key, value in one_shot.items():
        if key != "counts":
            assert accumulated[key] == pytest.approx(value, nan_ok=True), key
    assert 0 < one_shot["bf1"] < one_shot["bf4"] <= 1
    evaluator.reset()
    assert math.isnan(evaluator.compute()["bf1"])


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        (torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 5, dtype=torch.long), "shape"),
        (torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.long), "pred must hold integer"),
        (torch.zeros(4, 4, dtype=torch.long), np.zeros((4, 4), dtype=np.float32), "target must hold integer"),
        (torch.full((4, 4), 7), torch.zeros(4, 4, dtype=torch.long), r"pred has ids \[7\]"),
        (torch.zeros(4, 4, dtype=torch.long), torch.full((4, 4), -1), r"target has ids \[-1\]"),
        (torch.zeros(1, 1, 4, 4, dtype=torch.long), torch.zeros(1, 1, 4, 4, dtype=torch.long), "pred must have"),
    ],
)
def test_bad_inputs_raise(pred, target, message):
    with pytest.raises(ValueError, match=message):
        boundary_f_score(pred, target, num_classes=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 3, "ignore_index": 1}, "ignore_index"),
        ({"num_classes": 3, "tolerances": ()}, "tolerances"),
        ({"num_classes": 3, "tolerances": (1, -2)}, "tolerances"),
        ({"num_classes": 3, "tolerances": (1, 1.0)}, "duplicates"),
    ],
)
def test_bad_settings_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BoundaryEvaluator(**kwargs)
