"""Panoptic training end to end: the PanopticTrainer on generated COCO-panoptic files (both variants, a few
iterations), and experiments/panoptic_coco.py (tiny budget, eval-only, and the --quick default)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from ocrformer.data import write_synthetic_coco_panoptic
from ocrformer.engine import TrainConfig, build_datasets
from ocrformer.engine.panoptic import PanopticTrainer

from .helpers.runs import REPO, run_script, stop_after

SCRIPT = REPO / "experiments" / "panoptic_coco.py"
TINY = {"backbone": "resnet10t", "min_size": 96, "max_size": 128}


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    return write_synthetic_coco_panoptic(root, num_train=6, num_val=3, seed=3, progress=False)


@pytest.mark.parametrize("ocr", [False, True])
def test_trainer_few_iterations_then_pq(coco_root, tmp_path, ocr):
    config = TrainConfig(model="panoptic_fpn_tiny", model_kwargs={"ocr": ocr, **TINY}, dataset="coco_panoptic",
                         data_root=str(coco_root), batch_size=2, iterations=3, lr=0.01, lr_schedule="step",
                         lr_steps=(2,), warmup_iters=1, output_dir=str(tmp_path), log_every=1)
    train_set, val_set = build_datasets(config)
    trainer = PanopticTrainer(config, train_set, val_set)
    before = {k: v.clone() for k, v in trainer.module.state_dict().items() if v.is_floating_point()}
    summary = trainer.fit()
    assert summary["iteration"] == 3 and not summary["interrupted"]
    assert all(0.0 <= summary[k] <= 1.0 for k in ("pq", "pq_th", "pq_st", "miou"))
    after = trainer.module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "loss_sem_seg" in rows[0] and ("loss_sem_seg_aux" in rows[0]) == ocr
    # The step schedule: warm-up at iteration 1, full lr at 2, x0.1 from step 2 on.
    assert [round(r["lr"] / config.lr, 6) for r in rows if "lr" in r] == [1.0, 0.1, 0.1]
    # The predictions are in the official format, one PNG per validation image.
    predictions = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    assert len(predictions["annotations"]) == len(val_set) == len(list((tmp_path / "eval/predictions").glob("*.png")))
    checkpoint = torch.load(tmp_path / "last.pth", weights_only=False)
    assert checkpoint["thing_category_ids"] == train_set.thing_category_ids


def _config(coco_root, output_dir, **overrides):
    settings = {"model": "panoptic_fpn_tiny", "model_kwargs": {"ocr": True, **TINY}, "dataset": "coco_panoptic",
                "data_root": str(coco_root), "batch_size": 2, "iterations": 4, "lr": 0.01, "lr_schedule": "step",
                "lr_steps": (3,), "warmup_iters": 2, "output_dir": str(output_dir), "log_every": 1}
    return TrainConfig(**{**settings, **overrides})


def test_resume_continues_exactly(coco_root, tmp_path):
    """Stopped after 2 of 4 iterations (as SIGTERM would stop it) and resumed: the same weights and losses as
    the uninterrupted run -- the RPN/RoI samplers' random draws are restored with the RNG state."""
    straight = PanopticTrainer(_config(coco_root, tmp_path / "straight"), *build_datasets(
        _config(coco_root, tmp_path)))
    straight.val_set = None
    straight.fit()

    config = _config(coco_root, tmp_path / "resumed")
    first = PanopticTrainer(config, build_datasets(config)[0])
    stop_after(first, 2)
    assert first.fit()["interrupted"]
    resumed_config = _config(coco_root, tmp_path / "resumed", resume="auto")
    resumed = PanopticTrainer(resumed_config, build_datasets(resumed_config)[0])
    assert resumed.fit()["iteration"] == 4
    expected, actual = straight.module.state_dict(), resumed.module.state_dict()
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name

    def losses(folder):
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        return {r["iter"]: r["loss"] for r in rows if "loss" in r}

    assert losses(tmp_path / "resumed") == losses(tmp_path / "straight")


def test_trainer_refuses_a_semantic_dataset(tmp_path):
    from ocrformer.data import SyntheticContextSegmentation

    config = TrainConfig(model="panoptic_fpn_tiny", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="num_thing_classes"):
        PanopticTrainer(config, SyntheticContextSegmentation("train", num_images=2))


def run(*args, timeout=600):
    return run_script(SCRIPT, *args, timeout=timeout).stdout


@pytest.mark.subprocess
def test_experiment_tiny_budget_then_eval_only(coco_root, tmp_path):
    out = run("--data-root", str(coco_root), "--model", "panoptic_fpn_tiny", "--iterations", "2",
              "--batch-size", "2", "--lr-steps", "", "--warmup", "1", "--out", str(tmp_path))
    assert "| fpn |" in out and "| ocr |" in out
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(results) == {"fpn", "ocr"} and all(r["iterations"] == 2 for r in results.values())
    for name in ("results.md", "pq.png", "panoptic.png", "ocr/curves.png", "ocr/last.pth", "fpn/eval/predictions.json"):
        assert (tmp_path / name).is_file(), name
    training_reports = {name: (tmp_path / name).read_bytes() for name in ("results.json", "results.md", "pq.png")}
    predictions = (tmp_path / "ocr" / "eval" / "predictions.json").read_bytes()
    # The same --out as the training run: the evaluation writes into a folder of its own.
    evaluated = run("--data-root", str(coco_root), "--eval-only", "--checkpoint", str(tmp_path / "ocr" / "last.pth"),
                    "--out", str(tmp_path))
    assert "| ocr |" in evaluated
    again = json.loads((tmp_path / "eval_ocr_last" / "results.json").read_text())["results"]["ocr"]
    assert again["pq"] == pytest.approx(results["ocr"]["pq"])  # the same weights give the same PQ
    assert (tmp_path / "eval_ocr_last" / "eval" / "predictions.json").is_file()
    assert all((tmp_path / name).read_bytes() == data for name, data in training_reports.items())
    assert (tmp_path / "ocr" / "eval" / "predictions.json").read_bytes() == predictions


@pytest.mark.subprocess
def test_experiment_names_bad_arguments(tmp_path):
    result = run_script(SCRIPT, "--variants", "fpn,detr", "--out", str(tmp_path), expect=2)
    assert "--variants: unknown ['detr']" in result.stderr


@pytest.mark.subprocess
@pytest.mark.slow
def test_quick_default_run(tmp_path):
    out = run("--quick", "--out", str(tmp_path / "out"), "--synthetic-root", str(tmp_path / "data"), timeout=900)
    assert "| fpn |" in out and "| ocr |" in out
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert all(r["pq"] > 0.2 for r in results.values())  # the default learns something measurable


@pytest.mark.subprocess
@pytest.mark.distributed
def test_experiment_two_process_torchrun_gloo(coco_root, tmp_path):
    """DDP over gloo: both ranks train, rank 0 writes; the evaluation gathers every rank's predictions."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = [*launcher, str(SCRIPT), "--data-root", str(coco_root), "--model", "panoptic_fpn_tiny",
               "--variants", "ocr", "--iterations", "2", "--batch-size", "1", "--lr-steps", "", "--warmup", "0",
               "--examples", "1", "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    state = torch.load(tmp_path / "ocr" / "last.pth", weights_only=False)
    assert state["world_size"] == 2 and state["iteration"] == 2
    predictions = json.loads((tmp_path / "ocr" / "eval" / "predictions.json").read_text())
    assert len(predictions["annotations"]) == 3  # 3 validation images split over 2 ranks, gathered on rank 0
