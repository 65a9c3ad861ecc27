"""experiments/semantic_segmentation.py end to end on the embedded synthetic data (tiny budgets)."""

import json

import pytest
import torch

from experiments import semantic_segmentation as experiment

from .helpers import dataset_trees as trees
from .helpers.runs import REPO, run_script

SCRIPT = REPO / "experiments" / "semantic_segmentation.py"


def run(*args, timeout=600):
    return run_script(SCRIPT, *args, timeout=timeout).stdout


@pytest.mark.subprocess
def test_three_variants_then_eval_only(tmp_path):
    out = run("--iterations", "3", "--batch-size", "2", "--out", str(tmp_path), "--checkpoint-every", "3")
    assert "| fcn | fcn_tiny |" in out and "| ocr | ocrnet_tiny |" in out and "| gt-ocr |" in out
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(results) == {"fcn", "ocr", "gt-ocr"}
    assert all(0.0 <= r["miou"] <= 1.0 and r["iterations"] == 3 for r in results.values())
    for name in ("results.md", "miou.png", "examples.png", "ocr/curves.png", "ocr/last.pth"):
        assert (tmp_path / name).is_file(), name

    training_reports = {name: (tmp_path / name).read_bytes() for name in ("results.json", "results.md", "miou.png")}
    # The same --out as the training run (the README's command): the evaluation writes into a folder of its own.
    evaluated = run("--eval-only", "--checkpoint", str(tmp_path / "ocr" / "last.pth"), "--flip", "--scales",
                    "0.75,1.0", "--out", str(tmp_path))
    assert "| ocr | ocrnet_tiny |" in evaluated
    assert set(json.loads((tmp_path / "eval_ocr_last" / "results.json").read_text())["results"]) == {"ocr"}
    assert all((tmp_path / name).read_bytes() == data for name, data in training_reports.items())

    # A model's weights file (not a training checkpoint) is evaluated as --model built for it: the same mIoU.
    torch.save(torch.load(tmp_path / "ocr" / "last.pth", weights_only=False)["model"], tmp_path / "weights.pth")
    assert "| ocr | ocrnet_tiny |" in run("--eval-only", "--checkpoint", str(tmp_path / "weights.pth"), "--out",
                                          str(tmp_path))
    weights_eval = json.loads((tmp_path / f"eval_{tmp_path.name}_weights" / "results.json").read_text())["results"]
    assert weights_eval["ocr"]["miou"] == pytest.approx(results["ocr"]["miou"])


@pytest.mark.subprocess
def test_context_heads_over_seeds(tmp_path):
    """The comparison of context schemes: every variant once per seed, one row each with the mean and spread of
    its mIoU and its model's inference costs."""
    out = run("--variants", "ppm,danet,ocr", "--seeds", "0,1", "--iterations", "2", "--batch-size", "2",
              "--out", str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert list(results) == ["ppm", "danet", "ocr"]
    for variant, model in (("ppm", "pspnet_tiny"), ("danet", "danet_tiny"), ("ocr", "ocrnet_tiny")):
        r = results[variant]
        assert r["model"] == model and [run["seed"] for run in r["runs"]] == [0, 1]
        mious = [run["miou"] for run in r["runs"]]
        assert r["miou"] == pytest.approx(sum(mious) / 2)
        assert (r["miou_min"], r["miou_max"]) == (min(mious), max(mious))
        assert f"| {variant} | {model} | {100 * r['miou']:.1f} ± {100 * r['miou_std']:.1f} [" in out
        for seed in (0, 1):
            assert (tmp_path / variant / f"seed{seed}" / "last.pth").is_file()
        costs = r["costs"]
        assert costs["input"] == [1, 3, 64, 64] and costs["gflops"] > 0 and costs["ms"] > 0 and costs["peak_mb"] > 0
    # The two seeds drew different initialisations and batches: their models differ.
    weights = [torch.load(tmp_path / "ppm" / f"seed{seed}" / "last.pth", weights_only=False)["model"]
               for seed in (0, 1)]
    assert not torch.equal(weights[0]["head.classifier.weight"], weights[1]["head.classifier.weight"])
    # The heads differ in size; the costs are the model's own, not shared.
    assert len({results[v]["costs"]["params_m"] for v in results}) == 3
    for name in ("miou.png", "costs.png", "examples.png"):
        assert (tmp_path / name).is_file(), name


@pytest.mark.subprocess
def test_bad_arguments_are_named(tmp_path):
    result = run_script(SCRIPT, "--variants", "fcn,psp", "--out", str(tmp_path), expect=2)
    assert "--variants: unknown ['psp']" in result.stderr
    result = run_script(SCRIPT, "--seeds", "0,x", "--out", str(tmp_path), expect=2)
    assert "--seeds: expected comma-separated" in result.stderr
    result = run_script(SCRIPT, "--seeds", "1,1", "--out", str(tmp_path), expect=2)
    assert "--seeds: expected distinct" in result.stderr


@pytest.mark.subprocess
@pytest.mark.slow
def test_quick_default_run(tmp_path):
    out = run("--quick", "--out", str(tmp_path), timeout=900)
    report = json.loads((tmp_path / "results.json").read_text())
    results = report["results"]
    assert report["args"]["quick"] == "True" and set(results) == {"fcn", "ocr", "gt-ocr"}
    assert all(r["iterations"] == 80 and len(r["iou"]) == 6 for r in results.values())
    # Predicting background everywhere scores 0.135 mIoU here (81% of the pixels, 6 classes): every variant learned
    # beyond it (0.41-0.48 measured), and the oracle regions (ground truth) help the OCR head rather than hurt it.
    assert all(r["miou"] > 0.3 for r in results.values()), {k: r["miou"] for k, r in results.items()}
    assert results["gt-ocr"]["miou"] > results["ocr"]["miou"]
    assert (tmp_path / "results.md").read_text().strip() in out
    for name in ("miou.png", "examples.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG"), name


@pytest.mark.parametrize(
    ("dataset", "crop", "iterations", "batch", "lr", "head_lr_mult", "weight_decay"),
    [
        ("cityscapes", (512, 1024), 40_000, 8, 0.01, 1.0, 5e-4),
        ("ade20k", (520, 520), 150_000, 16, 0.02, 1.0, 1e-4),
        ("lip", (473, 473), 100_000, 32, 0.007, 1.0, 5e-4),
        ("pascal_context", (520, 520), 60_000, 16, 0.001, 10.0, 1e-4),
        ("coco_stuff10k", (520, 520), 60_000, 16, 0.001, 10.0, 1e-4),
    ],
)
def test_a_paper_dataset_defaults_to_the_published_recipe(dataset, crop, iterations, batch, lr, head_lr_mult,
                                                          weight_decay, monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun: the recipe's total batch is split
    args = experiment.parse_args(["--dataset", dataset, "--data-root", str(tmp_path), "--out", str(tmp_path)])
    config = experiment.run_configs(args)["ocr", 0]
    assert (config.crop_size, config.iterations, config.batch_size) == (crop, iterations, batch // 2)
    assert (config.lr, config.head_lr_mult, config.weight_decay) == (lr, head_lr_mult, weight_decay)
    assert config.model == "ocrnet_tiny" and config.dataset == dataset
    # A flag overrides the recipe.
    args = experiment.parse_args(["--dataset", dataset, "--data-root", str(tmp_path), "--lr", "0.5"])
    assert experiment.run_configs(args)["ocr", 0].lr == 0.5


def test_a_recipe_batch_that_does_not_split_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(SystemExit):
        experiment.parse_args(["--dataset", "lip", "--data-root", "x"])
    assert "the recipe's batch of 32 does not split over 3 processes" in capsys.readouterr().err


# Each of the paper's seven datasets as a tiny tree in its release layout: (writer, root it returns).
PAPER_DATASETS = {
    "cityscapes": trees.write_cityscapes_tree,
    "ade20k": trees.write_ade20k_tree,
    "lip": trees.write_lip_tree,
    "pascal_context": trees.write_pascal_context_tree,
    "pascal_context_60": trees.write_pascal_context_tree,
    "coco_stuff164k": trees.write_coco_stuff164k_tree,
    "coco_stuff10k": trees.write_coco_stuff10k_tree,
}


@pytest.mark.parametrize("dataset", list(PAPER_DATASETS))
def test_the_comparison_runs_on_every_paper_dataset(dataset, tmp_path):
    """The same command on real-format data: --dataset NAME --data-root PATH (budget and crop overridden)."""
    root = PAPER_DATASETS[dataset](tmp_path / "data")
    out = tmp_path / "out"
    status = experiment.main(["--dataset", dataset, "--data-root", str(root), "--variants", "fcn,ppm,ocr",
                              "--iterations", "1", "--batch-size", "2", "--crop", "16,16", "--out", str(out)])
    assert status == 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert list(results) == ["fcn", "ppm", "ocr"]
    num_classes = {"cityscapes": 19, "ade20k": 150, "lip": 20, "pascal_context": 59, "pascal_context_60": 60,
                   "coco_stuff164k": 171, "coco_stuff10k": 171}[dataset]
    assert all(len(r["iou"]) == num_classes and r["iterations"] == 1 for r in results.values())
    assert (out / "miou.png").is_file() and (out / "costs.png").is_file()
