"""Failure catalogue, training engine: what a careless or hostile run did to the results, and what it does now.

Issue 10's items for this area, one test (or group) each:

- (1) ``--eval-only`` overwrote the training run's reports: tests/test_semantic_experiment.py and
  tests/test_panoptic_experiment.py run it with the training run's ``--out`` and check every training report
  byte for byte; ``test_eval_only_writes_to_a_folder_of_its_own`` here checks the folder rule.
- (3) ``metrics.jsonl``: duplicate rows after a resume and after rerunning a finished run; a torn last line
  crashed the run's reports.
- (4) temporary checkpoint files of killed writers were never removed; a full disk surfaced as
  ``RuntimeError: [enforce fail at inline_container.cc:672] unexpected pos``.
- (5) non-finite weights were checkpointed and called good, evaluated to plausible numbers; NaN/inf settings
  were accepted (and made a run refuse its own checkpoint).
- (11) a state dict, or ``torch.save([1, 2, 3])``, as a training checkpoint gave ``KeyError``/``AttributeError``;
  a dataset that gained a class before a resume gave a size mismatch instead of the "other settings" refusal.
- (12) ``--seed -1`` gave a message without the flag's name.
- (13) a resume with another thread count is not bit for bit: warned.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from ocrformer.engine import TrainConfig, Trainer, atomic_save, load_checkpoint
from ocrformer.engine.plots import plot_curves

from .helpers.runs import REPO, run_script, stop_after
from .helpers.toy import ToySegmentation, toy_config


def make_trainer(config: TrainConfig, train_set=None) -> Trainer:
    return Trainer(config, train_set or ToySegmentation(), ToySegmentation(num_images=2, seed=9, augment=False))


def log_rows(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------ (1) eval-only
def test_eval_only_writes_to_a_folder_of_its_own(tmp_path):
    from ocrformer.engine.cli import eval_only_folder

    class Args:
        out, checkpoint = tmp_path, str(tmp_path / "ocr" / "last.pth")

    folder = eval_only_folder(Args)
    assert folder == tmp_path / "eval_ocr_last" and folder.parent == tmp_path


# ----------------------------------------------------------------------------------- (3) the metrics log
def test_resume_leaves_one_row_per_iteration(tmp_path):
    """Rows logged after the checkpoint (by a run killed before its next checkpoint) are cut on resume: the log
    then equals an uninterrupted run's."""
    straight = make_trainer(toy_config(tmp_path / "straight"))
    straight.fit()
    first = make_trainer(toy_config(tmp_path / "resumed"))
    stop_after(first, 3)
    first.fit()
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as log:  # what a killed continuation leaves behind
        for it in (4, 5):
            log.write(json.dumps({"iter": it, "loss": 9.0, "lr": 0.0}) + "\n")
    make_trainer(toy_config(tmp_path / "resumed", resume="auto")).fit()
    rows, expected = log_rows(tmp_path / "resumed"), log_rows(tmp_path / "straight")
    key = [(r["iter"], "loss" in r) for r in rows]
    assert key == [(r["iter"], "loss" in r) for r in expected] and len(set(key)) == len(key)
    assert [r.get("loss") for r in rows] == [r.get("loss") for r in expected]


def test_rerunning_a_finished_run_adds_no_rows(tmp_path):
    make_trainer(toy_config(tmp_path)).fit()
    before = (tmp_path / "metrics.jsonl").read_text()
    summary = make_trainer(toy_config(tmp_path, resume="auto")).fit()
    assert summary["iteration"] == 6 and "miou" in summary  # evaluated again, for the caller
    assert (tmp_path / "metrics.jsonl").read_text() == before


def test_a_torn_log_line_costs_neither_the_reports_nor_the_resume(tmp_path):
    make_trainer(toy_config(tmp_path)).fit()
    (tmp_path / "curves.png").unlink()
    with open(tmp_path / "metrics.jsonl", "a") as log:
        log.write('{"iter": 7, "lo')  # power cut mid-write
    with pytest.warns(UserWarning, match=r"metrics.jsonl, line \d+: not a log row"):
        plot_curves(tmp_path / "metrics.jsonl", tmp_path / "direct.png")
    with pytest.warns(UserWarning, match="metrics.jsonl, line"):
        make_trainer(toy_config(tmp_path, resume="auto")).fit()
    assert (tmp_path / "curves.png").is_file()
    assert all(isinstance(r, dict) for r in log_rows(tmp_path))  # the resume rewrote the log without the tear


def test_a_fresh_run_in_an_old_folder_starts_a_fresh_log(tmp_path):
    make_trainer(toy_config(tmp_path)).fit()
    make_trainer(toy_config(tmp_path, iterations=2, checkpoint_every=1)).fit()  # resume=None: starts afresh
    assert [r["iter"] for r in log_rows(tmp_path) if "loss" in r] == [1, 2]


# ------------------------------------------------------------------------------------- (4) checkpoint files
def test_temporary_files_of_killed_writers_are_removed(tmp_path):
    target = tmp_path / "last.pth"
    dead = tmp_path / ".last.pth.999999999.partial"  # no such process
    alive = tmp_path / f".last.pth.{os.getppid()}.partial"  # a live writer's file stays
    other = tmp_path / ".best.pth.999999999.partial"  # another checkpoint's
    for path in (dead, alive, other):
        path.write_bytes(b"x" * 1000)
    atomic_save({"a": torch.ones(2)}, target)
    assert not dead.exists() and alive.exists() and other.exists()
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))


def test_a_full_disk_is_named_and_the_previous_checkpoint_kept(tmp_path, monkeypatch):
    target = atomic_save({"iteration": 1}, tmp_path / "last.pth")
    before = target.read_bytes()

    def torch_save_on_a_full_disk(obj, path):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2048 vs 1999")

    monkeypatch.setattr(torch, "save", torch_save_on_a_full_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
    with pytest.raises(OSError, match=r"could not write .*last.pth: the disk is full \(0 MiB free\); the previous"):
        atomic_save({"iteration": 2}, target)
    assert target.read_bytes() == before and list(tmp_path.iterdir()) == [target]

    def torch_save_permission_denied(obj, path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "save", torch_save_permission_denied)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 0, 10**12))
    with pytest.raises(OSError, match="could not write .*last.pth: .*Permission denied"):
        atomic_save({"iteration": 2}, target)


# ---------------------------------------------------------------------------------------- (5) non-finite
@pytest.mark.parametrize("setting", ["lr", "momentum", "weight_decay", "aux_weight", "poly_power"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_settings_are_refused(setting, value):
    with pytest.raises(ValueError, match=f"{setting} must be a finite number"):
        TrainConfig(**{setting: value})
    with pytest.raises(ValueError, match=r"scale_range\[1\] must be a finite number"):
        TrainConfig(scale_range=(0.5, value))
    with pytest.raises(ValueError, match=r"class_weights\[0\] must be a finite number"):
        TrainConfig(class_weights=[value, 1.0])


@pytest.mark.subprocess
def test_a_nan_flag_is_named_by_the_script(tmp_path):
    result = run_script(REPO / "experiments" / "semantic_segmentation.py", "--lr", "nan", "--out", str(tmp_path),
                        expect=2)
    assert "--lr: lr must be a finite number, got nan" in result.stderr


def test_non_finite_weights_are_never_checkpointed_or_evaluated(tmp_path):
    trainer = make_trainer(toy_config(tmp_path, iterations=3, checkpoint_every=1))
    trainer.fit()
    good = (tmp_path / "last.pth").read_bytes()
    with torch.no_grad():  # what an overflowing step leaves in the weights
        trainer.module.head.classifier.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"non-finite weights .*head.classifier.weight.*last good checkpoint"):
        trainer.save_checkpoint()
    assert (tmp_path / "last.pth").read_bytes() == good
    with pytest.raises(FloatingPointError, match="non-finite values .*head.classifier.weight.*not evaluated"):
        trainer.evaluate()


def test_a_step_that_makes_the_weights_nan_stops_the_run_before_its_checkpoint(tmp_path):
    trainer = make_trainer(toy_config(tmp_path, iterations=4, checkpoint_every=2))
    step = trainer._step

    def step_then_overflow(*args):
        result = step(*args)
        if trainer.iteration == 3:  # the step of iteration 4 (counted after it) leaves an infinity in the weights
            with torch.no_grad():
                trainer.module.head.classifier.bias[0] = float("inf")
        return result

    trainer._step = step_then_overflow
    with pytest.raises(FloatingPointError, match=r"after iteration 4.*last good checkpoint, .*last.pth, is kept"):
        trainer.fit()
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["iteration"] == 2 and torch.isfinite(state["model"]["head.classifier.bias"]).all()


# --------------------------------------------------------------------------------- (11) wrong checkpoints
def test_a_state_dict_is_not_taken_for_a_training_checkpoint(tmp_path):
    trainer = make_trainer(toy_config(tmp_path))
    torch.save(trainer.module.state_dict(), tmp_path / "weights.pth")
    with pytest.raises(ValueError, match=r"is a model's weights \(a state dict\), not a training checkpoint.*weights"):
        trainer.load_checkpoint(tmp_path / "weights.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth' holds a list, not a checkpoint"):
        trainer.load_checkpoint(tmp_path / "list.pth")


def test_weights_start_a_new_run(tmp_path):
    """What to use instead of resuming from weights: TrainConfig(weights=...) starts a run from them."""
    first = make_trainer(toy_config(tmp_path / "a", iterations=2, checkpoint_every=1))
    first.fit()
    torch.save(first.module.state_dict(), tmp_path / "weights.pth")
    second = make_trainer(toy_config(tmp_path / "b", weights=str(tmp_path / "weights.pth")))
    for name, value in first.module.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(second.module.state_dict()[name], value), name


class ToyWithAnotherClass(ToySegmentation):
    classes = ["background", "red", "green", "blue"]
    palette = [*ToySegmentation.palette, (0, 0, 255)]
    num_classes = 4


def test_a_dataset_that_gained_a_class_is_another_run(tmp_path):
    first = make_trainer(toy_config(tmp_path))
    stop_after(first, 2)
    first.fit()
    with pytest.raises(ValueError, match=r"other settings \(the dataset's classes changed: 3 -> 4 classes; added "
                                         r"\['blue'\]\)"):
        make_trainer(toy_config(tmp_path, resume="auto"), ToyWithAnotherClass()).fit()


# ------------------------------------------------------------------------------------------------ (12) CLI
@pytest.mark.subprocess
@pytest.mark.parametrize("flag, value", [("--seed", "-1"), ("--workers", "-2"), ("--checkpoint-every", "0")])
def test_bad_run_flags_are_named(tmp_path, flag, value):
    result = run_script(REPO / "experiments" / "semantic_segmentation.py", flag, value, "--out", str(tmp_path),
                        expect=2)
    assert f"{flag} must be >=" in result.stderr


# ----------------------------------------------------------------------------------------- (13) threads
def test_resuming_with_another_thread_count_warns(tmp_path):
    first = make_trainer(toy_config(tmp_path))
    stop_after(first, 2)
    first.fit()
    assert load_checkpoint(tmp_path / "last.pth")["num_threads"] == torch.get_num_threads()
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        with pytest.warns(UserWarning, match=f"written with {threads} threads .* has {threads + 1}.*not bit for bit"):
            make_trainer(toy_config(tmp_path, resume="auto")).fit()
    finally:
        torch.set_num_threads(threads)
    stop_again = make_trainer(toy_config(tmp_path / "same"))
    stop_after(stop_again, 2)
    stop_again.fit()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "checkpoint .* threads")
        make_trainer(toy_config(tmp_path / "same", resume="auto")).fit()
