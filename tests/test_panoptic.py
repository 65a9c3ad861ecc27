"""Panoptic-FPN (+ OCR): the fusion rule on hand-made cases, PQ against panopticapi on a hand-checked case, and
the model's training/inference contract on tiny images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from panopticapi.evaluation import pq_compute
from panopticapi.utils import id2rgb
from PIL import Image

from ocrformer import PanopticFPN, combine_panoptic, create_panoptic_model
from ocrformer.evaluation import PanopticEvaluator, panoptic_quality, summarize_pq
from ocrformer.models import scaled_stuff_area

THING = 3  # the semantic class meaning "thing" in the fusion cases (stuff classes 0, 1, 2)


def _box_mask(shape, top, left, bottom, right):
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[top:bottom, left:right] = True
    return mask


# ---------------------------------------------------------------------------------------------------- fusion
def test_fusion_overlap_rule_and_free_pixels():
    shape = (10, 10)
    semantic = torch.full(shape, THING)
    first = _box_mask(shape, 0, 0, 4, 4)  # 16 px, score 0.9
    mostly_covered = _box_mask(shape, 0, 1, 4, 5)  # 16 px, 12 of them taken by `first` (75% > 50%)
    partly_covered = _box_mask(shape, 2, 2, 6, 6)  # 16 px, 4 taken (25%): painted on its 12 free pixels only
    masks = torch.stack([mostly_covered, partly_covered, first])
    scores = torch.tensor([0.8, 0.7, 0.9])
    labels = torch.tensor([1, 2, 0])
    panoptic, segments = combine_panoptic(semantic, masks, scores, labels, thing_class=THING, stuff_area_threshold=1)

    assert [(s["id"], s["category_id"], s["isthing"]) for s in segments] == [(1, 0, True), (2, 2, True)]
    assert torch.equal(panoptic == 1, first)  # the first keeps all its pixels
    assert torch.equal(panoptic == 2, partly_covered & ~first)
    assert segments[1]["area"] == 12 and segments[1]["score"] == pytest.approx(0.7)
    assert int((panoptic > 0).sum()) == 16 + 12  # the rest is "thing" in the semantic map: void, not stuff


def test_fusion_overlap_exactly_half_is_kept():
    shape = (4, 8)
    first = _box_mask(shape, 0, 0, 4, 4)
    half = _box_mask(shape, 0, 2, 4, 6)  # 16 px, 8 taken: 0.5 is not "more than 0.5"
    panoptic, segments = combine_panoptic(
        torch.full(shape, THING), torch.stack([first, half]), torch.tensor([0.9, 0.8]), torch.tensor([0, 1]),
        thing_class=THING,
    )
    assert len(segments) == 2 and int((panoptic == 2).sum()) == 8


def test_fusion_score_threshold_and_order():
    shape = (6, 6)
    low = _box_mask(shape, 0, 0, 3, 3)
    high = _box_mask(shape, 3, 3, 6, 6)
    empty = torch.zeros(shape, dtype=torch.bool)
    panoptic, segments = combine_panoptic(
        torch.full(shape, THING),
        torch.stack([low, empty, high]),
        torch.tensor([0.49, 0.95, 0.5]),
        torch.tensor([0, 1, 2]),
        thing_class=THING,
    )
    # The empty mask is skipped although it scores highest; 0.5 passes, 0.49 does not.
    assert [(s["id"], s["category_id"]) for s in segments] == [(1, 2)]
    assert torch.equal(panoptic == 1, high) and not bool((panoptic > 0)[low].any())
    custom, segments = combine_panoptic(
        torch.full(shape, THING), torch.stack([low]), torch.tensor([0.49]), torch.tensor([0]),
        thing_class=THING, score_threshold=0.4,
    )
    assert len(segments) == 1


def test_fusion_stuff_area_threshold_and_thing_class():
    semantic = torch.zeros(10, 10, dtype=torch.long)  # stuff 0 everywhere ...
    semantic[:, 6:] = 1  # ... stuff 1 on 40 px, 16 of which the instance takes: 24 left
    semantic[0, :3] = 2  # stuff 2 on 3 px
    semantic[9, :4] = THING  # "thing" pixels without an instance: void
    instance = _box_mask((10, 10), 0, 5, 4, 10)  # 20 px: 4 on stuff 0, 16 on stuff 1

    def areas(threshold):
        panoptic, segments = combine_panoptic(semantic, instance[None], torch.tensor([0.9]), torch.tensor([1]),
                                              thing_class=THING, stuff_area_threshold=threshold)
        return panoptic, {(s["isthing"], s["category_id"]): s["area"] for s in segments}

    panoptic, kept = areas(24)  # 24 free pixels of stuff 1: "under the threshold" drops only fewer
    assert kept == {(True, 1): 20, (False, 0): 100 - 40 - 3 - 4 - 4, (False, 1): 24}
    assert bool((panoptic[0, :3] == 0).all())  # stuff 2 (3 px) dropped: void
    assert bool((panoptic[9, :4] == 0).all())  # the "thing" class never becomes a stuff segment
    panoptic, kept = areas(25)
    assert set(kept) == {(True, 1), (False, 0)} and bool((panoptic[4:, 6:] == 0).all())


def test_scaled_stuff_area():
    assert scaled_stuff_area(480, 640) == 4096
    assert scaled_stuff_area(128, 128) == round(4096 * 128 * 128 / (640 * 480))
    assert scaled_stuff_area(1, 1) == 1


def test_fusion_rejects_bad_shapes():
    with pytest.raises(ValueError, match="masks must be"):
        combine_panoptic(torch.zeros(4, 4), torch.zeros(1, 4, 5, dtype=torch.bool), torch.ones(1), torch.zeros(1),
                         thing_class=1)
    with pytest.raises(ValueError, match="scores and labels"):
        combine_panoptic(torch.zeros(4, 4), torch.zeros(2, 4, 4, dtype=torch.bool), torch.ones(1), torch.zeros(2),
                         thing_class=1)


# ------------------------------------------------------------------------------------------------ evaluation
CATEGORIES = [
    {"id": 1, "name": "a", "supercategory": "a", "isthing": 1, "color": [200, 0, 0]},
    {"id": 7, "name": "b", "supercategory": "b", "isthing": 0, "color": [0, 200, 0]},
]


def _write_png(path, ids):
    Image.fromarray(id2rgb(np.asarray(ids, dtype=np.int64)).astype(np.uint8)).save(path)


@pytest.fixture
def hand_case(tmp_path):
    """One 10x10 image. Ground truth: stuff b on the left half (50 px), thing a top right (25 px) and bottom
    right (25 px). Prediction: b on columns 0-5 (60 px), a on rows 0-4 x columns 6-9 (20 px) and on rows 8-9
    x columns 6-9 (8 px); rows 5-7 x columns 6-9 void.

    By hand: b matches with IoU 50/60; the top a with IoU 20/25 = 0.8; the bottom pair has IoU 8/25 < 0.5,
    so one FP and one FN. PQ_b = SQ_b = 5/6, RQ_b = 1; SQ_a = 0.8, RQ_a = 1/(1 + 0.5 + 0.5) = 0.5,
    PQ_a = 0.4; All = the means."""
    gt = np.zeros((10, 10), np.int64)
    gt[:, :5], gt[:5, 5:], gt[5:, 5:] = 11, 12, 13
    pred = np.zeros((10, 10), np.int64)
    pred[:, :6], pred[:5, 6:], pred[8:, 6:] = 3, 1, 2
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    _write_png(tmp_path / "gt" / "img.png", gt)
    _write_png(tmp_path / "pred" / "img.png", pred)
    segments = [{"id": 11, "category_id": 7, "iscrowd": 0, "area": 50, "bbox": [0, 0, 5, 10]},
                {"id": 12, "category_id": 1, "iscrowd": 0, "area": 25, "bbox": [5, 0, 5, 5]},
                {"id": 13, "category_id": 1, "iscrowd": 0, "area": 25, "bbox": [5, 5, 5, 5]}]
    image = {"id": 5, "file_name": "img.jpg", "height": 10, "width": 10}
    ann = {"image_id": 5, "file_name": "img.png", "segments_info": segments}
    gt_json = tmp_path / "gt.json"
    gt_json.write_text(json.dumps({"images": [image], "annotations": [ann], "categories": CATEGORIES}))
    pred_segments = [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}, {"id": 3, "category_id": 7}]
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps({"annotations": [{"image_id": 5, "file_name": "img.png",
                                                      "segments_info": pred_segments}]}))
    return tmp_path, gt_json, pred_json, pred


def test_panoptic_quality_matches_hand_computation_and_panopticapi(hand_case):
    root, gt_json, pred_json, _ = hand_case
    results = panoptic_quality(gt_json, root / "gt", pred_json, root / "pred")
    expected = {
        "Things": (0.4, 0.8, 0.5),
        "Stuff": (5 / 6, 5 / 6, 1.0),
        "All": ((0.4 + 5 / 6) / 2, (0.8 + 5 / 6) / 2, 0.75),
    }
    for group, (pq, sq, rq) in expected.items():
        assert results[group]["pq"] == pytest.approx(pq)
        assert results[group]["sq"] == pytest.approx(sq)
        assert results[group]["rq"] == pytest.approx(rq)
    assert results["per_class"][1]["pq"] == pytest.approx(0.4)
    official = pq_compute(str(gt_json), str(pred_json), gt_folder=str(root / "gt"), pred_folder=str(root / "pred"))
    assert results == official
    summary = summarize_pq(results)
    assert summary["pq_th"] == pytest.approx(0.4) and summary["rq_st"] == pytest.approx(1.0)


def test_panoptic_evaluator_writes_the_official_format(hand_case):
    root, gt_json, _, pred = hand_case
    # The same prediction as the fusion returns it: contiguous category ids, isthing flags.
    segments = [{"id": 1, "isthing": True, "category_id": 0}, {"id": 2, "isthing": True, "category_id": 0},
                {"id": 3, "isthing": False, "category_id": 0}]
    evaluator = PanopticEvaluator(gt_json, root / "gt", root / "eval", thing_category_ids=[1], stuff_category_ids=[7])
    evaluator.update(5, "img.png", torch.from_numpy(pred).int(), segments)
    results = evaluator.compute()
    assert results["All"]["pq"] == pytest.approx((0.4 + 5 / 6) / 2)
    written = json.loads((root / "eval" / "predictions.json").read_text())
    assert written["annotations"][0]["segments_info"][2] == {"id": 3, "category_id": 7}
    assert (root / "eval" / "predictions" / "img.png").is_file()


def test_panoptic_quality_reports_bad_predictions(hand_case):
    root, gt_json, pred_json, pred = hand_case
    pred[0, 0] = 9  # an id with no segments_info entry
    _write_png(root / "pred" / "img.png", pred)
    with pytest.raises(RuntimeError, match="9"):
        panoptic_quality(gt_json, root / "gt", pred_json, root / "pred")
    with pytest.raises(FileNotFoundError, match="pred_folder"):
        panoptic_quality(gt_json, root / "gt", pred_json, root / "missing")


# ---------------------------------------------------------------------------------------------------- model
TINY = {"backbone": "resnet10t", "min_size": 64, "max_size": 96, "stuff_area_threshold": 16}


def _tiny_batch(seed=0, sizes=((64, 80), (72, 64))):
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for height, width in sizes:
        masks = torch.zeros(2, height, width, dtype=torch.uint8)
        masks[0, 4:30, 6:40] = 1
        masks[1, 34:60, 20:58] = 1
        sem = torch.randint(0, 2, (height, width), generator=g)
        sem[masks.bool().any(0)] = 2  # "thing"
        sem[0, :] = 255
        images.append(torch.rand(3, height, width, generator=g))
        targets.append({"boxes": torch.tensor([[6.0, 4, 40, 30], [20, 34, 58, 60]]), "labels": torch.tensor([1, 3]),
                        "masks": masks, "sem_seg": sem})
    return images, targets


@pytest.mark.parametrize("ocr", [False, True])
def test_panoptic_fpn_training_losses_and_a_few_steps(ocr):
    torch.manual_seed(0)
    model = create_panoptic_model("panoptic_fpn_tiny", 3, 2, ocr=ocr, **TINY)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    images, targets = _tiny_batch()
    for _ in range(3):
        losses = model(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    expected = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask", "loss_sem_seg"}
    assert set(losses) == expected | ({"loss_sem_seg_aux"} if ocr else set())
    assert all(torch.isfinite(v) for v in losses.values())
    head = model.semantic_head
    assert isinstance(head, torch.nn.Conv2d) != ocr
    if ocr:  # the OCR head was trained: its queries received gradients
        assert head.decoder.queries.grad is not None and head.decoder.queries.grad.abs().sum() > 0


def test_panoptic_fpn_semantic_loss_is_weighted_cross_entropy():
    """loss_sem_seg = 0.5 x CE of the semantic logits, upsampled x4, against sem_seg resized and padded with
    void; the OCR aux term = 0.5 x 0.4 x CE of the soft regions."""
    torch.manual_seed(0)
    model = create_panoptic_model("panoptic_fpn_tiny", 3, 2, ocr=True, **TINY).train()
    images, targets = _tiny_batch(sizes=((64, 64), (64, 64)))  # no resize (min_size 64), padding to 64
    seen = {}
    model.semantic_logits = lambda features, f=model.semantic_logits: seen.setdefault("out", f(features))
    losses = model(images, targets)
    target = torch.stack([t["sem_seg"] for t in targets])
    for key, weight in (("logits", 0.5), ("aux_logits", 0.2)):
        logits = torch.nn.functional.interpolate(seen["out"][key], scale_factor=4, mode="bilinear")
        expected = weight * torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
        name = "loss_sem_seg" if key == "logits" else "loss_sem_seg_aux"
        torch.testing.assert_close(losses[name], expected)


def test_panoptic_fpn_inference_outputs():
    torch.manual_seed(0)
    model = create_panoptic_model("panoptic_fpn_tiny", 3, 2, ocr=True, **TINY).eval()
    images, _ = _tiny_batch(sizes=((50, 70), (64, 64)))
    with torch.no_grad():
        results = model(images)
    assert len(results) == 2
    for image, result in zip(images, results, strict=True):
        height, width = image.shape[-2:]
        assert result["sem_seg"].shape == (3, height, width)
        assert result["panoptic_seg"].shape == (height, width) and result["panoptic_seg"].dtype == torch.int32
        instances = result["instances"]
        assert instances["masks"].shape[1:] == (height, width)
        ids = {s["id"] for s in result["segments_info"]}
        assert set(torch.unique(result["panoptic_seg"]).tolist()) - {0} == ids
        for segment in result["segments_info"]:
            limit = 3 if segment["isthing"] else 2
            assert 0 <= segment["category_id"] < limit


def test_panoptic_fpn_input_errors():
    model = PanopticFPN(2, 2, backbone="resnet10t", fpn_channels=32, semantic_channels=32, min_size=64, max_size=64)
    with pytest.raises(ValueError, match="needs targets"):
        model.train()([torch.rand(3, 64, 64)])
    with pytest.raises(ValueError, match="list of"):
        model.eval()(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="anchor_sizes"):
        PanopticFPN(2, 2, backbone="resnet10t", anchor_sizes=(8, 16))
    with pytest.raises(ValueError, match="unknown panoptic model"):
        create_panoptic_model("panoptic_fpn_r9", 2, 2)


def test_backbone_batchnorm_frozen_when_initialised_from_weights(tmp_path):
    from timm.layers import FrozenBatchNormAct2d
    from torchvision.ops.misc import FrozenBatchNorm2d

    from ocrformer.backbones import FPNBackbone

    def frozen(trunk):
        return any(isinstance(m, FrozenBatchNorm2d | FrozenBatchNormAct2d) for m in trunk.body.modules())

    scratch = FPNBackbone("resnet10t", out_channels=16)
    assert not frozen(scratch)  # random init: the statistics must be learned
    weights = tmp_path / "resnet10t.pth"
    torch.save(scratch.body.state_dict(), weights)
    assert frozen(FPNBackbone("resnet10t", out_channels=16, checkpoint_path=weights))
    assert not frozen(FPNBackbone("resnet10t", out_channels=16, checkpoint_path=weights, freeze_bn=False))
    with pytest.raises(ValueError, match="strides"):
        FPNBackbone("vit_tiny_patch16_224", out_channels=16)
