"""SemanticEvaluator: a confusion matrix and IoUs worked out by hand, ignore/NaN rules, errors, and 2-rank DDP."""

import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from ocrformer.evaluation import SemanticEvaluator

# A 3-class 4x4 example; 255 is void. Its confusion matrix, counted by hand (rows = label, cols = prediction):
#   label 0 at (0,0) (0,1) (1,0) (1,1) -> predicted 0, 1, 0, 0         -> [3, 1, 0]
#   label 1 at (0,2) (0,3) (1,2) (1,3) -> predicted 1, 1, 1, 2         -> [0, 3, 1]
#   label 2 at (2,0) (2,1) (2,2) (3,0) (3,1) -> predicted 2, 2, 0, 2, 1 -> [1, 1, 3]
# The void pixels (2,3) (3,2) (3,3) are predicted 0, 0, 1 and must count nowhere.
TARGET = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 255], [2, 2, 255, 255]])
PRED = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 2], [2, 2, 0, 0], [2, 1, 0, 1]])
CONFUSION = [[3, 1, 0], [0, 3, 1], [1, 1, 3]]
# TP = 3, 3, 3; labelled = 4, 4, 5; predicted = 4, 5, 4; union = labelled + predicted - TP = 5, 6, 6.
IOU = [3 / 5, 3 / 6, 3 / 6]
MIOU = (0.6 + 0.5 + 0.5) / 3
ACC = 9 / 13  # 13 labelled pixels, 9 on the diagonal
MACC = (3 / 4 + 3 / 4 + 3 / 5) / 3


def evaluated(pred=PRED, target=TARGET, num_classes=3):
    evaluator = SemanticEvaluator(num_classes)
    evaluator.update(pred[None], target[None])
    return evaluator.compute()


def assert_same_metrics(actual: dict, expected: dict) -> None:
    assert torch.equal(actual["confusion"], expected["confusion"])
    for key in ("miou", "acc", "macc"):
        assert actual[key] == pytest.approx(expected[key], nan_ok=True), key
    assert actual["iou"] == pytest.approx(expected["iou"], nan_ok=True)


# ------------------------------------------------------------------------------------------ the numbers
def test_hand_counted_example():
    metrics = evaluated()
    assert metrics["confusion"].tolist() == CONFUSION
    assert metrics["confusion"].dtype == torch.int64
    assert metrics["iou"] == pytest.approx(IOU)
    assert metrics["miou"] == pytest.approx(MIOU)
    assert metrics["acc"] == pytest.approx(ACC)
    assert metrics["macc"] == pytest.approx(MACC)


def test_void_pixels_count_nowhere_whatever_is_predicted_there():
    void = TARGET == 255
    for fill in (0, 1, 2):
        assert evaluated(pred=PRED.masked_fill(void, fill))["confusion"].tolist() == CONFUSION


def test_custom_ignore_index():
    evaluator = SemanticEvaluator(3, ignore_index=-1)
    evaluator.update(PRED[None], TARGET.masked_fill(TARGET == 255, -1)[None])
    assert evaluator.compute()["confusion"].tolist() == CONFUSION


def test_class_absent_from_labels_and_predictions_is_nan_and_skipped():
    metrics = evaluated(num_classes=4)  # class 3 is neither labelled nor predicted
    assert metrics["iou"][:3] == pytest.approx(IOU)
    assert math.isnan(metrics["iou"][3])
    assert metrics["miou"] == pytest.approx(MIOU)
    assert metrics["macc"] == pytest.approx(MACC)


def test_class_predicted_but_never_labelled_has_iou_zero():
    metrics = evaluated(pred=torch.where(PRED == 1, 3, PRED), num_classes=4)  # every "1" predicted as 3
    # Classes 0 and 2 keep their IoU; label 1 is never right now: IoU(1) = 0 / 4; class 3 is predicted on 5
    # labelled pixels and never labelled: IoU(3) = 0 / 5, a real zero, not NaN.
    assert metrics["iou"] == pytest.approx([3 / 5, 0.0, 3 / 6, 0.0])
    assert metrics["miou"] == pytest.approx((3 / 5 + 3 / 6) / 4)
    # Class 3 has no labelled pixel, so no accuracy: mAcc averages classes 0-2 only.
    assert metrics["macc"] == pytest.approx((3 / 4 + 0 + 3 / 5) / 3)


def test_nothing_accumulated_is_all_nan():
    metrics = SemanticEvaluator(3).compute()
    assert math.isnan(metrics["miou"]) and math.isnan(metrics["acc"]) and math.isnan(metrics["macc"])
    assert metrics["confusion"].tolist() == [[0] * 3] * 3


def test_logits_and_probabilities_give_the_same_result_as_ids():
    ids = evaluated()
    logits = 5 * F.one_hot(PRED, 3).permute(2, 0, 1).float() + torch.randn(3, 4, 4)  # argmax is still PRED
    assert_same_metrics(evaluated(pred=logits), ids)
    assert_same_metrics(evaluated(pred=logits.softmax(dim=0)), ids)


def test_updates_accumulate_and_reset_clears():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (6, 9, 11), generator=g).masked_fill(torch.rand(6, 9, 11, generator=g) < 0.2, 255)
    pred = torch.randint(0, 4, (6, 9, 11), generator=g)
    whole = SemanticEvaluator(4)
    whole.update(pred, target)
    pieces = SemanticEvaluator(4)
    for i in range(0, 6, 2):
        pieces.update(pred[i : i + 2], target[i : i + 2])
    assert_same_metrics(pieces.compute(), whole.compute())
    assert pieces.compute()["confusion"].sum() == (target != 255).sum()
    pieces.reset()
    assert pieces.compute()["confusion"].sum() == 0


def test_format_table():
    evaluator = SemanticEvaluator(4)
    evaluator.update(PRED[None], TARGET[None])
    table = evaluator.format_table(["road", "car", "sky", "bus"]).splitlines()
    assert table[:2] == ["| class | IoU (%) |", "|:--|--:|"]
    assert table[2:] == [
        "| road | 60.00 |",
        "| car | 50.00 |",
        "| sky | 50.00 |",
        "| bus | n/a |",
        "| **mIoU** | 53.33 |",
        "| **acc** | 69.23 |",
        "| **mAcc** | 70.00 |",
    ]


# --------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "pred, target, match",
    [
        (PRED[None], TARGET[None, :3], "target must have shape"),
        (torch.zeros(1, 3, 4, 5), TARGET[None], "target must have shape"),
        (torch.zeros(1, 4, 4, 4), TARGET[None], "pred has 4 classes"),
        (PRED[None].float(), TARGET[None], "pred of shape .* integer class ids"),
        (PRED, TARGET, r"pred must be \(B, H, W\)"),
        (PRED[None, None, None], TARGET[None], r"pred must be \(B, H, W\)"),
        (PRED[None], TARGET[None].float(), "target must hold integer labels"),
        (torch.where(PRED == 2, 7, PRED)[None], TARGET[None], r"pred has class ids \[7\] outside \[0, 3\)"),
        (PRED[None], torch.where(TARGET == 2, 5, TARGET).masked_fill(TARGET == 0, -1)[None], r"\[-1, 5\]"),
    ],
)
def test_errors_name_the_argument(pred, target, match):
    evaluator = SemanticEvaluator(3)
    with pytest.raises(ValueError, match=match):
        evaluator.update(pred, target)
    assert evaluator.compute()["confusion"].sum() == 0  # a rejected batch leaves no trace


def test_constructor_and_table_errors():
    with pytest.raises(ValueError, match="num_classes"):
        SemanticEvaluator(0)
    with pytest.raises(ValueError, match="ignore_index"):
        SemanticEvaluator(3, ignore_index=None)
    with pytest.raises(ValueError, match="class_names has 2 names"):
        SemanticEvaluator(3).format_table(["a", "b"])


# ---------------------------------------------------------------------------------------- distributed
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank: int, world_size: int, port: int, preds, targets, out_dir) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        evaluator = SemanticEvaluator(5)
        for pred, target in zip(preds[rank], targets[rank], strict=True):  # each rank sees only its own shard
            evaluator.update(pred, target)
        first, second = evaluator.compute(), evaluator.compute()  # a second compute must not sum twice
        torch.save((first, second), out_dir / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_two_process_gloo_compute_equals_single_process(tmp_path):
    g = torch.Generator().manual_seed(0)

    def batch(b):
        target = torch.randint(0, 5, (b, 8, 10), generator=g)
        return torch.randn(b, 5, 8, 10, generator=g), target.masked_fill(torch.rand(b, 8, 10, generator=g) < 0.1, 255)

    shards = [[batch(2), batch(1)], [batch(3)]]  # uneven shards
    preds = [[p for p, _ in shard] for shard in shards]
    targets = [[t for _, t in shard] for shard in shards]
    single = SemanticEvaluator(5)
    for p, t in zip(sum(preds, []), sum(targets, []), strict=True):
        single.update(p, t)
    expected = single.compute()

    mp.spawn(_rank_worker, args=(2, _free_port(), preds, targets, tmp_path), nprocs=2, join=True)
    for rank in range(2):
        first, second = torch.load(tmp_path / f"rank{rank}.pt")
        assert_same_metrics(first, expected)
        assert_same_metrics(second, expected)
