"""The trainer: exact resume, interrupts, non-finite losses, bf16, outputs, and a 2-process torchrun run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ocrformer.engine import TrainConfig, Trainer, load_checkpoint

from .helpers.runs import stop_after
from .helpers.toy import ToySegmentation, toy_config

REPO = Path(__file__).resolve().parents[1]


def train(config, **kwargs):
    trainer = Trainer(config, ToySegmentation(), ToySegmentation(num_images=4, seed=9, augment=False), **kwargs)
    return trainer, trainer.fit()


def losses_by_iteration(output_dir):
    rows = [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines()]
    return {r["iter"]: r["loss"] for r in rows if "loss" in r}


def test_resume_continues_exactly(tmp_path):
    straight, summary = train(toy_config(tmp_path / "straight"))
    assert summary["iteration"] == 6 and not summary["interrupted"]

    # The same run, stopped after 3 iterations (as SIGTERM would), then resumed from its checkpoint.
    first = Trainer(toy_config(tmp_path / "resumed"), ToySegmentation(), ToySegmentation(num_images=4, seed=9))
    stop_after(first, 3)
    partial = first.fit()
    assert partial["interrupted"] and partial["iteration"] == 3
    assert load_checkpoint(tmp_path / "resumed" / "last.pth")["iteration"] == 3

    resumed, summary = train(toy_config(tmp_path / "resumed", resume="auto"))
    assert summary["iteration"] == 6

    expected, actual = straight.module.state_dict(), resumed.module.state_dict()
    assert actual.pop("_extra_state") == expected.pop("_extra_state")  # the layout entry (ocrformer.layouts)
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name
    # Iterations 1-3 from the first part, 4-6 after the resume, each equal to the uninterrupted run's.
    assert losses_by_iteration(tmp_path / "resumed") == losses_by_iteration(tmp_path / "straight")
    assert summary["miou"] == pytest.approx(straight.evaluate()["miou"])


def test_non_finite_loss_names_the_iteration_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    trainer = Trainer(toy_config(tmp_path, checkpoint_every=2), ToySegmentation())
    criterion = trainer.module.criterion  # the loss the model returns (OCRNet's loss contract)
    computed = criterion.forward

    def poisoned(outputs, target):
        losses = computed(outputs, target)
        if trainer.iteration == 2:  # computing iteration 3
            losses["loss_main"] = losses["loss_main"] * float("nan")
        return losses

    monkeypatch.setattr(criterion, "forward", poisoned)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at iteration 3 \(loss_main=nan.*last\.pth"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "last.pth")["iteration"] == 2


def test_outputs_of_a_run(tmp_path):
    _, summary = train(toy_config(tmp_path, eval_every=3))
    assert 0.0 <= summary["miou"] <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows if "miou" in r] == [3, 6]
    assert all({"loss", "loss_main", "loss_aux", "lr", "images_per_s"} <= set(r) for r in rows if "loss" in r)
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert json.loads((tmp_path / "config.json").read_text())["model"] == "ocrnet_tiny"
    state = load_checkpoint(tmp_path / "last.pth")
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "iteration", "config", "classes"} <= set(state)
    assert state["classes"] == ToySegmentation.classes
    assert not list(tmp_path.glob(".*partial"))


def test_loss_goes_down_and_poly_lr_decays(tmp_path):
    _, summary = train(toy_config(tmp_path, iterations=30, checkpoint_every=30, lr=0.02))
    losses = losses_by_iteration(tmp_path)
    assert sum(list(losses.values())[-5:]) < sum(list(losses.values())[:5])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if "lr" in line]
    lrs = [r["lr"] for r in rows]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_head_lr_mult_trains_everything_outside_the_backbone_faster(tmp_path):
    trainer = Trainer(toy_config(tmp_path, iterations=4, head_lr_mult=10.0), ToySegmentation())
    backbone, rest = trainer.optimizer.param_groups
    model = trainer.module
    assert {id(p) for p in backbone["params"]} == {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in rest["params"]} == {id(p) for n, p in model.named_parameters() if n.startswith("head.")}
    assert rest["initial_lr"] == pytest.approx(10 * backbone["initial_lr"]) and backbone["initial_lr"] == 0.01
    trainer.optimizer.step()
    trainer.scheduler.step()
    assert rest["lr"] == pytest.approx(10 * backbone["lr"]) and 0 < backbone["lr"] < 0.01  # poly decays both
    with pytest.raises(ValueError, match="head_lr_mult must be positive"):
        toy_config(tmp_path, head_lr_mult=0.0)


@pytest.mark.parametrize("flavour", ["bf16", "oracle", "fcn"])
def test_variants_train(tmp_path, flavour):
    overrides = {"bf16": {"amp": "bf16"}, "oracle": {"oracle": True}, "fcn": {"model": "fcn_tiny"}}[flavour]
    trainer = Trainer(toy_config(tmp_path, iterations=2, **overrides), ToySegmentation(),
                      ToySegmentation(num_images=4, seed=9, augment=False))
    before = {k: v.clone() for k, v in trainer.module.state_dict().items() if isinstance(v, torch.Tensor)}
    summary = trainer.fit()
    assert summary["iteration"] == 2 and torch.isfinite(torch.tensor(summary["loss"]))
    after = trainer.module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    assert set(summary) >= {"miou", "acc", "macc"}


def test_config_errors():
    with pytest.raises(ValueError, match="amp must be one of"):
        TrainConfig(amp="fp8")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="3 classes"):
        Trainer(TrainConfig(class_weights=[1.0, 2.0], device="cpu"), ToySegmentation())


def test_resume_under_other_settings_is_refused(tmp_path):
    train(toy_config(tmp_path, iterations=3))
    with pytest.raises(ValueError, match=r"other settings \(iterations: 3 -> 6; lr: 0.01 -> 0.02\).*--resume none"):
        train(toy_config(tmp_path, iterations=6, lr=0.02, resume="auto", log_every=2))


def test_resume_from_missing_or_other_world_size(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(toy_config(tmp_path, resume=str(tmp_path / "nope.pth")))
    _, _ = train(toy_config(tmp_path / "a", iterations=3))
    state = load_checkpoint(tmp_path / "a" / "last.pth")
    state["world_size"] = 2
    torch.save(state, tmp_path / "two.pth")
    with pytest.raises(ValueError, match="written by 2 processes"):
        train(toy_config(tmp_path / "b", iterations=3, resume=str(tmp_path / "two.pth")))


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.subprocess
def test_sigterm_writes_a_checkpoint_and_stops(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.signal_train", str(tmp_path)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 3, output
    state = load_checkpoint(tmp_path / "last.pth")
    assert 2 <= state["iteration"] < 100_000
    assert f"stopped by signal at iteration {state['iteration']}" in output


@pytest.mark.subprocess
@pytest.mark.distributed
@pytest.mark.parametrize("task", ["semantic", "segfix"])
def test_two_process_torchrun_gloo(tmp_path, task):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "tests.helpers.ddp_train",
            str(tmp_path),
            *(["segfix"] if task == "segfix" else []),
        ],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rank 0 of 2" in result.stdout and "rank 1 of 2" in result.stdout
    # The DDP wrapper (and its hold on the process group) is gone once fit() returns: left to interpreter exit,
    # it made gloo abort in about 1 run in 10.
    model = "SegFixNet" if task == "segfix" else "OCRNet"
    assert f"rank 0 holds {model} after fit" in result.stdout and f"rank 1 holds {model} after fit" in result.stdout
    # Each rank evaluates its shard; the counts are summed, so both ranks report the same metrics.
    evaluations = [line.split(" evaluation ", 1)[1] for line in result.stdout.splitlines() if " evaluation " in line]
    assert len(evaluations) == 2 and evaluations[0] == evaluations[1] and len(json.loads(evaluations[0])) >= 3
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["world_size"] == 2 and state["iteration"] == 3 and len(state["rng"]) == 2
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len([r for r in rows if '"loss"' in r]) == 3  # rank 0 alone writes
