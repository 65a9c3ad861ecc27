"""SegFix's network, loss, training data and trainer: shapes, the loss contract (upstream's class balancing, the
direction loss on boundary pixels only), targets on the augmented crop, a short training run and exact resume."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ocrformer.data import EvalTransform, SyntheticContextSegmentation, TrainTransform
from ocrformer.engine import SegFixTrainer, load_checkpoint
from ocrformer.engine.segfix import boundary_scores
from ocrformer.models import SegFixNet, create_segfix_model, list_segfix_models, segfix_loss
from ocrformer.segfix import WithSegFixTargets, segfix_targets

from .helpers.runs import stop_after
from .helpers.toy import toy_config

IGNORE = 255


def random_targets(generator, batch, height, width, num_directions=8):
    """Boundary 1/0 with some void, directions on the boundary pixels only (as segfix_targets makes them)."""
    boundary = torch.randint(0, 2, (batch, height, width), generator=generator)
    boundary[:, 0, :3] = IGNORE
    direction = torch.randint(0, num_directions, (batch, height, width), generator=generator)
    return {"boundary": boundary, "direction": direction.where(boundary == 1, IGNORE)}


# ------------------------------------------------------------------------------------------------- the network
@pytest.mark.parametrize("name", ["segfix_tiny", "segfix_hrnet_w18_small"])
def test_outputs_at_odd_sizes(name, rng):
    model = create_segfix_model(name).eval()
    images = torch.randn(2, 3, 45, 61, generator=rng)
    with torch.no_grad():
        out = model(images)
    assert set(out) == {"boundary_logits", "direction_logits"}
    assert out["boundary_logits"].shape == (2, 2, 45, 61)  # upstream's 2-way mask branch
    assert out["direction_logits"].shape == (2, 8, 45, 61)
    assert all(torch.isfinite(v).all() for v in out.values())
    at_stride = model.logits_at_stride(images)
    assert at_stride["direction_logits"].shape[-2:] == (12, 16)  # ceil(45 / 4), ceil(61 / 4)


def test_hrnet_branches_read_all_four_hrnet_branches_as_upstream():
    model = create_segfix_model("segfix_hrnet_w18_small", num_directions=16)
    assert model.features == "hrnet" and model.stride == 4
    # SegFix_HRNet: in_channels = width * 15 (the four branches, width x 1, 2, 4, 8), a 256-wide hidden layer,
    # no biases. (HRNet-W18-small's branches are 16, 32, 64 and 128 wide.)
    widths = model.backbone.feature_info.channels()
    assert widths == [16, 32, 64, 128]
    for branch, out_channels in ((model.boundary_head, 2), (model.direction_head, 16)):
        assert branch.conv.conv.weight.shape == (256, 15 * widths[0], 1, 1) and branch.conv.conv.bias is None
        assert branch.classifier.weight.shape == (out_channels, 256, 1, 1) and branch.classifier.bias is None


def test_losses_are_finite_and_reach_every_parameter(rng):
    model = create_segfix_model("segfix_tiny").train()
    images = torch.randn(2, 3, 45, 61, generator=rng)
    losses = model(images, random_targets(rng, 2, 45, 61))
    assert set(losses) == {"loss_boundary", "loss_direction"}
    assert all(v.dtype == torch.float32 and v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        # timm starts each residual block's last BN scale at 0 (zero_init_last): inside a block, only that scale
        # and its shift get a gradient at initialisation. Everything else -- stem, shortcuts, both branches -- does.
        if ".layer1.0." not in name or ".bn2." in name:
            assert parameter.grad.abs().sum() > 0, name


def test_direction_loss_ignores_non_boundary_pixels(rng):
    targets = random_targets(rng, 2, 20, 24)
    boundary_logits = torch.randn(2, 2, 20, 24, generator=rng)
    direction_logits = torch.randn(2, 8, 20, 24, generator=rng, requires_grad=True)
    loss = segfix_loss(boundary_logits, direction_logits, targets["boundary"], targets["direction"])
    loss["loss_direction"].backward()
    on_boundary = (targets["boundary"] == 1)[:, None].expand_as(direction_logits)
    assert direction_logits.grad[~on_boundary].abs().max() == 0
    assert direction_logits.grad[on_boundary].abs().max() > 0

    # Anything at the other pixels, even NaN, leaves the loss as it was.
    changed = direction_logits.detach().clone()
    changed[~on_boundary] = torch.randn(int((~on_boundary).sum()), generator=rng) * 100
    changed[~on_boundary & (torch.rand(changed.shape, generator=rng) < 0.1)] = float("nan")
    again = segfix_loss(boundary_logits, changed, targets["boundary"], targets["direction"])
    assert torch.equal(again["loss_direction"], loss["loss_direction"].detach())
    assert torch.equal(again["loss_boundary"], loss["loss_boundary"])

    # Direction targets beyond the band (direction_everywhere) do not enter the default loss either.
    everywhere = torch.randint(0, 8, targets["direction"].shape, generator=rng).where(
        targets["boundary"] != 1, targets["direction"]
    )
    beyond = segfix_loss(boundary_logits, changed, targets["boundary"], everywhere)
    assert torch.equal(beyond["loss_direction"], loss["loss_direction"].detach())


def test_loss_weights_classes_as_upstream(rng):
    """Both classes present: upstream's F.cross_entropy(weight=1 - frequency) (SegFixLoss.calc_weights)."""
    targets = random_targets(rng, 2, 16, 16)
    boundary, direction = targets["boundary"], targets["direction"]
    boundary_logits, direction_logits = torch.randn(2, 2, 16, 16), torch.randn(2, 8, 16, 16)
    ours = segfix_loss(boundary_logits, direction_logits, boundary, direction, boundary_weight=2.0)

    def upstream(logits, target, classes):
        counts = torch.stack([(target == c).sum() for c in range(classes)]).float()
        return F.cross_entropy(logits, target, weight=1 - counts / counts.sum(), ignore_index=IGNORE)

    assert ours["loss_boundary"] == pytest.approx(2.0 * upstream(boundary_logits, boundary, 2).item(), rel=1e-5)
    assert ours["loss_direction"] == pytest.approx(upstream(direction_logits, direction, 8).item(), rel=1e-5)
    plain = segfix_loss(boundary_logits, direction_logits, boundary, direction, class_balance=False)
    assert plain["loss_boundary"] == pytest.approx(F.cross_entropy(boundary_logits, boundary, ignore_index=IGNORE))

    # Where upstream divides 0 by 0 (one class only) or nothing is labelled: finite, and 0 for no pixel at all.
    no_boundary = torch.zeros_like(boundary)
    one_way = torch.full_like(direction, 3).where(boundary == 1, IGNORE)
    edge = segfix_loss(boundary_logits, direction_logits, no_boundary, one_way)
    assert torch.isfinite(edge["loss_boundary"]) and edge["loss_direction"] == 0
    single = segfix_loss(boundary_logits, direction_logits, boundary, one_way)
    mask = one_way != IGNORE
    expected = F.cross_entropy(direction_logits.permute(0, 2, 3, 1)[mask], one_way[mask])
    assert single["loss_direction"] == pytest.approx(expected.item(), rel=1e-5)


def test_direction_loss_on_predicted_boundary_is_upstreams(rng):
    targets = random_targets(rng, 1, 12, 12)
    direction_everywhere = torch.randint(0, 8, (1, 12, 12), generator=rng)
    boundary_logits = torch.randn(1, 2, 12, 12, generator=rng)
    direction_logits = torch.randn(1, 8, 12, 12, generator=rng)
    loss = segfix_loss(
        boundary_logits, direction_logits, targets["boundary"], direction_everywhere, direction_on="predicted"
    )
    predicted = boundary_logits.softmax(1)[:, 1] > 0.5
    target = direction_everywhere.where(predicted, IGNORE)
    counts = torch.stack([(target == c).sum() for c in range(8)]).float()
    expected = F.cross_entropy(direction_logits, target, weight=1 - counts / counts.sum(), ignore_index=IGNORE)
    assert loss["loss_direction"] == pytest.approx(expected.item(), rel=1e-5)


def test_presets_weights_and_errors(tmp_path):
    assert "segfix_tiny" in list_segfix_models() and "segfix_hrnet_w48" in list_segfix_models()
    assert len(list_segfix_models()) == len(set(list_segfix_models()))
    model = create_segfix_model("segfix_tiny", num_directions=4, boundary_width=3)
    assert isinstance(model, SegFixNet) and model.direction_head.classifier.out_channels == 4
    torch.save(model.state_dict(), tmp_path / "segfix.pth")
    loaded = create_segfix_model("segfix_tiny", num_directions=4, boundary_width=3, weights=tmp_path / "segfix.pth")
    for name, value in model.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(loaded.state_dict()[name], value), name
    with pytest.raises(ValueError, match="boundary_width: 3 \\(weights\\), 5 \\(model\\)"):
        create_segfix_model("segfix_tiny", num_directions=4, boundary_width=5, weights=model.state_dict())
    with pytest.raises(ValueError, match="unknown SegFix model 'segfix_nope'"):
        create_segfix_model("segfix_nope")
    with pytest.raises(ValueError, match="direction_on must be one of"):
        create_segfix_model("segfix_tiny", direction_on="everywhere")
    with pytest.raises(ValueError, match=r"targets\['direction'\] must be \(B, H, W\)"):
        model(
            torch.zeros(1, 3, 32, 32), {"boundary": torch.zeros(1, 32, 32).long(), "direction": torch.zeros(32).long()}
        )


def test_refine_moves_labels_with_the_network_outputs(rng):
    model = create_segfix_model("segfix_tiny").eval()
    images = torch.randn(2, 3, 33, 35, generator=rng)
    labels = torch.randint(0, 3, (2, 33, 35), generator=rng)
    refined = model.refine(images, labels)
    assert refined.shape == labels.shape and refined.dtype == labels.dtype
    # A threshold no probability exceeds: no pixel is a boundary pixel, nothing moves.
    assert torch.equal(model.refine(images, labels, boundary_threshold=1.0), labels)


# ------------------------------------------------------------------------------------------------------ data
class Tiles(Dataset):
    """Two touching squares of one class, told apart by a segment map (panoptic style), and LIP-like flip pairs."""

    classes, palette, num_classes, ignore_index, flip_pairs = ["bg", "thing"], [(0, 0, 0), (9, 9, 9)], 2, 255, ()

    def __len__(self):
        return 1

    def __getitem__(self, index):
        label = torch.zeros(24, 24, dtype=torch.long)
        label[4:20, 4:20] = 1
        segments = torch.zeros(24, 24, dtype=torch.long)
        segments[4:20, 4:12], segments[4:20, 12:20] = 1, 2
        return {"image": torch.zeros(3, 24, 24), "label": label, "segments": segments, "path": "tiles/0"}


def test_with_segfix_targets_on_the_synthetic_set():
    base = SyntheticContextSegmentation("train", num_images=3, size=(48, 56), transforms=TrainTransform((40, 44)))
    data = WithSegFixTargets(base, boundary_width=3)
    torch.manual_seed(5)
    sample = data[1]
    assert {"image", "label", "path", "boundary", "direction"} <= set(sample)
    assert sample["boundary"].shape == sample["direction"].shape == sample["label"].shape == (40, 44)
    assert sample["boundary"].dtype == sample["direction"].dtype == torch.int64
    # Computed on the augmented crop: the targets are those of the label the sample carries.
    expected = segfix_targets(sample["label"], boundary_width=3)
    assert torch.equal(sample["boundary"], expected["boundary"])
    assert torch.equal(sample["direction"], expected["direction"])
    void = sample["label"] == IGNORE
    assert (sample["boundary"][void] == IGNORE).all() and set(sample["boundary"][~void].unique().tolist()) <= {0, 1}
    on = sample["direction"] != IGNORE
    assert on.any() and (sample["boundary"][on] == 1).all() and (sample["direction"][on] < 8).all()
    # The wrapped set's description passes through.
    assert (data.classes, data.num_classes, data.palette) == (base.classes, base.num_classes, base.palette)
    assert data.ignore_index == 255 and not hasattr(data, "flip_pairs") and len(data) == 3
    with pytest.raises(ValueError, match="marks void pixels with 255"):
        WithSegFixTargets(base, ignore_index=0)


def test_segments_key_separates_touching_objects_of_one_class():
    semantic, panoptic = WithSegFixTargets(Tiles())[0], WithSegFixTargets(Tiles(), segments_key="segments")[0]
    # Column 11 | 12 is where the two squares touch: a boundary only when the segments are read.
    assert (semantic["boundary"][10, 10:14] == 0).all()
    assert (panoptic["boundary"][10, 10:14] == 1).all()
    assert WithSegFixTargets(Tiles()).flip_pairs == ()


# --------------------------------------------------------------------------------------------------- trainer
def synthetic_sets():
    train = SyntheticContextSegmentation(
        "train", num_images=8, size=(40, 40), transforms=TrainTransform((32, 32), scale_range=(0.75, 1.25))
    )
    val = SyntheticContextSegmentation("val", num_images=2, size=(32, 36), transforms=EvalTransform())
    return train, val


def segfix_config(output_dir, **overrides):
    """The trainer tests' toy settings (``tests/helpers/toy.py``) for ``segfix_tiny``."""
    settings = {"model": "segfix_tiny", "model_kwargs": {"boundary_width": 2}, "iterations": 4, "checkpoint_every": 2}
    return toy_config(output_dir, **{**settings, **overrides})


def losses_by_iteration(output_dir):
    rows = [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines()]
    return {r["iter"]: (r["loss"], r["loss_boundary"], r["loss_direction"]) for r in rows if "loss" in r}


def test_segfix_trainer_trains_and_evaluates(tmp_path):
    trainer = SegFixTrainer(segfix_config(tmp_path, eval_every=2), *synthetic_sets())
    assert isinstance(trainer.train_set, WithSegFixTargets) and trainer.train_set.boundary_width == 2
    before = {k: v.clone() for k, v in trainer.module.state_dict().items() if isinstance(v, torch.Tensor)}
    summary = trainer.fit()
    assert summary["iteration"] == 4 and not summary["interrupted"]
    assert any(not torch.equal(before[k], v) for k, v in trainer.module.state_dict().items() if k in before)
    for key in SegFixTrainer.logged_metrics:
        assert 0.0 <= summary[key] <= 1.0, key
    metrics = trainer.evaluate()
    for key in (
        "boundary_precision",
        "boundary_recall",
        "boundary_f1",
        "boundary_acc",
        "direction_acc",
        "direction_acc_detected",
    ):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["direction_acc_detected"] <= metrics["direction_acc"] and metrics["direction_pixels"] > 0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows if "boundary_f1" in r] == [2, 4]
    assert all({"loss", "loss_boundary", "loss_direction"} <= set(r) for r in rows if "loss" in r)
    assert (tmp_path / "curves.png").stat().st_size > 1000
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["num_directions"] == 8 and state["boundary_width"] == 2 and state["classes"][0] == "background"


def test_segfix_trainer_resumes_exactly(tmp_path):
    straight = SegFixTrainer(segfix_config(tmp_path / "straight"), *synthetic_sets())
    straight.fit()

    first = SegFixTrainer(segfix_config(tmp_path / "resumed"), *synthetic_sets())
    stop_after(first, 2)
    partial = first.fit()
    assert partial["interrupted"] and partial["iteration"] == 2
    resumed = SegFixTrainer(segfix_config(tmp_path / "resumed", resume="auto"), *synthetic_sets())
    summary = resumed.fit()
    assert summary["iteration"] == 4

    expected, actual = straight.module.state_dict(), resumed.module.state_dict()
    assert actual.pop("_extra_state") == expected.pop("_extra_state")
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name
    assert losses_by_iteration(tmp_path / "resumed") == losses_by_iteration(tmp_path / "straight")
    assert summary["boundary_f1"] == straight.last_evaluation["boundary_f1"]

    with pytest.raises(ValueError, match=r"other settings \(model_kwargs"):
        SegFixTrainer(
            segfix_config(tmp_path / "resumed", resume="auto", model_kwargs={"boundary_width": 3}), *synthetic_sets()
        ).fit()


def test_segfix_trainer_refuses_what_does_not_apply(tmp_path):
    train, val = synthetic_sets()
    with pytest.raises(ValueError, match="ohem=True are settings of the semantic segmentation loss"):
        SegFixTrainer(segfix_config(tmp_path, ohem=True), train)
    with pytest.raises(ValueError, match="num_directions=4 \\(data\\) vs 8 \\(model\\)"):
        SegFixTrainer(segfix_config(tmp_path), WithSegFixTargets(train, num_directions=4, boundary_width=2))
    wrapped = WithSegFixTargets(train, boundary_width=2)
    assert SegFixTrainer(segfix_config(tmp_path), wrapped).train_set is wrapped


def test_boundary_scores_conventions():
    counts = dict(tp=0, fp=0, fn=0, tn=10, direction_pixels=0, direction_correct=0, direction_detected=0)
    scores = boundary_scores(counts)
    assert scores["boundary_precision"] == scores["boundary_recall"] == scores["boundary_f1"] == 1.0
    scores = boundary_scores(
        {**counts, "tp": 3, "fp": 1, "fn": 2, "direction_pixels": 5, "direction_correct": 4, "direction_detected": 3}
    )
    assert scores["boundary_precision"] == 0.75 and scores["boundary_recall"] == 0.6
    assert scores["boundary_f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert scores["direction_acc"] == 0.8 and scores["direction_acc_detected"] == 0.6
