"""Train and evaluate OCRNet -- the OCRNet paper's Fig. 1 in miniature on the embedded default.

Default (no download): the synthetic "context matters" dataset; trains the FCN baseline, OCR and the GT-OCR
oracle briefly on the CPU and prints their mIoU side by side.

    python experiments/semantic_segmentation.py                 # FCN vs OCR vs GT-OCR, synthetic, <= 10 min
    python experiments/semantic_segmentation.py --quick         # the same, smaller, <= 2 min
    python experiments/semantic_segmentation.py --dataset cityscapes --data-root /data/cityscapes \\
        --model ocrnet_hrnet_w48 --variants ocr --iterations 80000 --batch-size 2 --crop 512,1024 \\
        --lr 0.01 --ohem --class-weights cityscapes --amp bf16
    torchrun --nproc_per_node=4 experiments/semantic_segmentation.py --dataset ade20k --data-root ...
    python experiments/semantic_segmentation.py --eval-only --checkpoint outputs/.../ocr/last.pth \
        --scales 0.75,1,1.25 --flip
    python experiments/semantic_segmentation.py --dataset cityscapes --data-root /data/cityscapes \
        --model ocrnet_hrnet_w48 --eval-only --checkpoint hrnet_ocr_cs_8162_torch11.pth   # a released model
    python experiments/semantic_segmentation.py ... --weights converted.pth               # fine-tune from it

Every run writes to ``--out``: per variant a folder with ``last.pth``, ``metrics.jsonl``, ``curves.png``; and
``results.json``, ``results.md`` (the table), ``miou.png`` (bar chart) and ``examples.png`` (predictions).
``--eval-only`` writes the same reports into a folder of its own, ``<out>/eval_<run>_<checkpoint name>``, never
over the training run's. Its ``--checkpoint`` is a training checkpoint of this script, or a model's weights: an
ocrformer state dict, a converted or a released HRNet-OCR / openseg / mmsegmentation checkpoint (the model is
built for it, ``--model`` naming the backbone). Interrupt with Ctrl-C: the checkpoint is written; rerun the same
command to continue (``--resume auto`` is the default).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ocrformer.data import dataset_names  # noqa: E402
from ocrformer.engine import (  # noqa: E402
    DistributedContext,
    TrainConfig,
    Trainer,
    build_datasets,
    load_checkpoint,
)
from ocrformer.engine.checkpoint import is_training_checkpoint  # noqa: E402
from ocrformer.engine.cli import (  # noqa: E402
    add_run_arguments,
    check_run_arguments,
    configs_or_usage_error,
    eval_only_folder,
    run_on_every_rank,
    run_settings,
)
from ocrformer.engine.costs import inference_costs  # noqa: E402
from ocrformer.engine.reports import (  # noqa: E402
    plot_cost_scatter,
    plot_examples,
    plot_miou_bars,
    results_table,
    save_results,
)
from ocrformer.models import HEAD_PREFIXES  # noqa: E402

# Variant -> the head it trains (``OCRNet(head=...)``); every variant shares the backbone, aux branch, loss and
# budget. The first three are the paper's Fig. 1; the others its comparison of context schemes.
VARIANT_HEADS = {
    "fcn": "fcn",
    "ppm": "ppm",  # PSPNet
    "aspp": "aspp",  # DeepLabv3
    "danet": "danet",
    "self-attention": "self_attention",  # OCNet's base object context
    "criss-cross": "criss_cross",  # CCNet
    "isa": "isa",  # interlaced sparse self-attention
    "double-attention": "double_attention",  # A2-Net
    "ocr": "ocr",
    "gt-ocr": "ocr",  # + ground-truth regions (an oracle: needs the labels at inference)
}
VARIANTS = tuple(VARIANT_HEADS)
FIG1_VARIANTS = ("fcn", "ocr", "gt-ocr")
# The embedded default, chosen so that the three variants separate clearly within minutes on two CPU cores.
# Mild rescaling only: the synthetic classes hinge on small coloured tags that a 0.5x rescale would erase;
# no photometric jitter, for the same reason (and it costs more than the tiny model on 64x64 crops).
SYNTHETIC_DEFAULTS = {
    "iterations": 300, "batch_size": 8, "crop": "64,64", "lr": 0.05, "weight_decay": 5e-4, "scale_range": "0.75,1.25",
}
QUICK_DEFAULTS = {**SYNTHETIC_DEFAULTS, "iterations": 80}
# The paper's datasets: the OCRNet (HRNet-W48 + OCR) training recipes the authors published in openseg.pytorch,
# each value from the script that trains it (it overrides the config's max_iters) and the config it reads:
#   cityscapes      scripts/cityscapes/hrnet/run_h_48_d_4_ocr.sh, configs/cityscapes/H_48_D_4.json
#   ade20k          scripts/ade20k/hrnet/run_h_48_d_4_ocr_ohem.sh, configs/ade20k/H_48_D_4.json (OHEM there: --ohem)
#   lip             scripts/lip/run_h_48_d_4_ocr_train.sh, configs/lip/H_48_D_4.json
#   pascal_context  scripts/pascal_context/run_h_48_d_4_ocr_train.sh, configs/pascal_context/H_48_D_4.json
#   coco_stuff10k   scripts/coco_stuff/run_h_48_d_4_ocr_train.sh (its DATA_DIR is coco_stuff_10k),
#                   configs/coco_stuff/H_48_D_4.json
# (Cityscapes' batch: 8 in configs/cityscapes/H_48_D_4.json at commit 5ec9f10, 32 at 0607633; 8 taken, as in
# the training section of configs/cityscapes/R_101_D_8_TEST.json.)
# batch_size is the total over all processes (openseg divides it by the world size, as this script does);
# head_lr_mult is openseg's --nbb_mult. Choices: pascal_context_60 takes the 59-class recipe and coco_stuff164k the
# 10k one (openseg publishes none for them). Differences: openseg first resizes the short side to 520 (ADE20K,
# PASCAL-Context, COCO-Stuff) or the image to 473 x 473 (LIP) and then rescales; here the rescale is relative to
# the image as stored. Test scales and flips: docs/datasets.md.
_COMMON = {"crop": "520,520", "batch_size": 16, "scale_range": "0.5,2.0", "weight_decay": 1e-4}
RECIPES = {
    "cityscapes": {"crop": "512,1024", "iterations": 40_000, "batch_size": 8, "lr": 0.01, "weight_decay": 5e-4,
                   "scale_range": "0.5,2.0"},
    "ade20k": {**_COMMON, "iterations": 150_000, "lr": 0.02},
    "lip": {"crop": "473,473", "iterations": 100_000, "batch_size": 32, "lr": 0.007, "weight_decay": 5e-4,
            "scale_range": "0.5,1.5"},
    "pascal_context": {**_COMMON, "iterations": 60_000, "lr": 0.001, "head_lr_mult": 10.0},
    "pascal_context_60": {**_COMMON, "iterations": 60_000, "lr": 0.001, "head_lr_mult": 10.0},
    "coco_stuff10k": {**_COMMON, "iterations": 60_000, "lr": 0.001, "head_lr_mult": 10.0},
    "coco_stuff164k": {**_COMMON, "iterations": 60_000, "lr": 0.001, "head_lr_mult": 10.0},
}
# Any other dataset (a folder of your own): a Cityscapes-sized start.
REAL_DEFAULTS = {
    "iterations": 80_000, "batch_size": 2, "crop": "512,1024", "lr": 0.01, "weight_decay": 5e-4,
    "scale_range": "0.5,2.0",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="synthetic", choices=dataset_names("semantic"))
    p.add_argument("--data-root", help="dataset folder (see README: the layouts each dataset expects)")
    p.add_argument("--classes-json", help="class names and palette of a 'folder' dataset")
    p.add_argument("--model", default="ocrnet_tiny", help="registered OCR model; the FCN variant uses fcn_<backbone>")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated subset of {','.join(VARIANTS)}, or 'all' (default: "
                   f"{','.join(FIG1_VARIANTS)} on the synthetic set, ocr otherwise)")
    p.add_argument("--seeds", default=None,
                   help="comma-separated seeds: every variant is trained once per seed and the table shows the mean "
                   "and spread of its mIoU (default: --seed)")
    p.add_argument("--quick", action="store_true", help="a short run of the default (<= 2 min on 2 CPU cores)")
    p.add_argument("--iterations", type=int)
    p.add_argument("--batch-size", type=int, help="per process (a recipe's total is divided by the process count)")
    p.add_argument("--crop", help="training crop H,W")
    p.add_argument("--lr", type=float)
    p.add_argument("--scale-range", help="random rescale range for training, e.g. 0.5,2.0")
    p.add_argument("--jitter", action=argparse.BooleanOptionalAction, default=None,
                   help="photometric jitter (default: on for real datasets, off for the synthetic one)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--head-lr-mult", type=float, help="lr multiplier outside the backbone (openseg's --nbb_mult)")
    p.add_argument("--ohem", action="store_true", help="OHEM on the main loss (threshold 0.7)")
    p.add_argument("--ohem-min-kept", type=int, default=100_000)
    p.add_argument("--class-weights", choices=["cityscapes"], help="class-weighted cross-entropy")
    p.add_argument("--scales", default="1.0", help="test scales for the final evaluation, e.g. 0.5,0.75,1,1.25")
    p.add_argument("--flip", action="store_true", help="flip augmentation in the final evaluation")
    p.add_argument("--out", default=None, help="output folder (default outputs/semseg_<dataset>[_quick])")
    p.add_argument("--weights", help="start the OCR variants from these weights (ocrformer, converted or released)")
    add_run_arguments(p)
    args = p.parse_args(argv)
    check_run_arguments(p, args)

    defaults = QUICK_DEFAULTS if args.quick else SYNTHETIC_DEFAULTS
    if args.dataset != "synthetic":
        defaults = dict(RECIPES.get(args.dataset, REAL_DEFAULTS))
        defaults["batch_size"] = per_process_batch(p, defaults["batch_size"])
    defaults.setdefault("head_lr_mult", 1.0)
    if args.jitter is None:
        args.jitter = args.dataset != "synthetic"
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.variants is None:
        args.variants = ",".join(FIG1_VARIANTS) if args.dataset == "synthetic" else "ocr"
    args.variants = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        p.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    if not args.model.startswith("ocrnet_"):
        p.error(f"--model must be an OCR model name (ocrnet_*), got {args.model!r}")
    if args.weights and set(args.variants) - {"ocr", "gt-ocr"}:
        p.error("--weights are an OCR model's: train only the ocr variants with them (--variants ocr or ocr,gt-ocr)")
    args.seeds = parse_seeds(p, args)
    args.out = Path(args.out or f"outputs/semseg_{args.dataset}{'_quick' if args.quick else ''}")
    configs_or_usage_error(p, lambda: run_configs(args))
    return args


def per_process_batch(p: argparse.ArgumentParser, total: int) -> int:
    """A recipe's total batch split over ``torchrun``'s processes (``WORLD_SIZE``)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if total % world_size:
        p.error(f"the recipe's batch of {total} does not split over {world_size} processes: give --batch-size")
    return total // world_size


def parse_seeds(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[int]:
    if args.seeds is None:
        return [args.seed]
    if args.seed != 0:
        p.error("give either --seed or --seeds, not both")
    try:
        seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds: expected comma-separated non-negative ints, got {args.seeds!r}")
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        p.error(f"--seeds: expected distinct non-negative ints, got {args.seeds!r}")
    return seeds


def run_configs(args: argparse.Namespace) -> dict[tuple[str, int], TrainConfig]:
    """``{(variant, seed): TrainConfig}``: each variant once per seed, in a folder of its own (``<out>/<variant>``
    for one seed, ``<out>/<variant>/seed<k>`` for several)."""
    configs = {}
    for variant in args.variants:
        for seed in args.seeds:
            folder = args.out / variant if len(args.seeds) == 1 else args.out / variant / f"seed{seed}"
            configs[variant, seed] = variant_config(args, variant, seed=seed, output_dir=folder)
    return configs


def variant_model(args: argparse.Namespace, variant: str) -> str:
    """The registered model name a variant trains: its head's prefix on ``--model``'s backbone."""
    backbone = args.model.removeprefix("ocrnet_")
    return f"{HEAD_PREFIXES[VARIANT_HEADS[variant]]}_{backbone}"


def variant_config(args: argparse.Namespace, variant: str, *, seed: int, output_dir: Path) -> TrainConfig:
    is_ocr = VARIANT_HEADS[variant] == "ocr"
    return TrainConfig(
        model=variant_model(args, variant),
        weights=args.weights if is_ocr else None,
        oracle=variant == "gt-ocr",
        dataset=args.dataset,
        data_root=args.data_root,
        classes_json=args.classes_json,
        crop_size=tuple(int(v) for v in args.crop.split(",")),
        scale_range=tuple(float(v) for v in args.scale_range.split(",")),
        jitter=args.jitter,
        batch_size=args.batch_size,
        iterations=args.iterations,
        lr=args.lr,
        head_lr_mult=args.head_lr_mult,
        weight_decay=args.weight_decay,
        ohem=args.ohem,
        ohem_min_kept=args.ohem_min_kept,
        class_weights=args.class_weights,
        **{**run_settings(args, output_dir), "seed": seed},
    )


def main(argv: list[str] | None = None) -> int:
    return run_on_every_rank(parse_args(argv), run)


def run(args: argparse.Namespace, context: DistributedContext) -> int:
    """Train and/or evaluate each (variant, seed), measure each variant's inference costs, write the reports on
    rank 0; returns the exit status."""
    scales = tuple(float(s) for s in args.scales.split(","))
    if args.eval_only:
        args.variants, configs, resume = eval_only_configs(args)
    else:
        configs, resume = run_configs(args), False
    runs: dict[str, list[dict]] = {variant: [] for variant in args.variants}
    trainers = {}
    for (variant, seed), config in configs.items():
        train_set, val_set = build_datasets(config)
        trainer = Trainer(config, train_set, val_set, context=context)
        started = time.perf_counter()
        if args.eval_only:
            if resume:
                trainer.load_checkpoint(args.checkpoint)
            summary = {"iteration": trainer.iteration, "interrupted": False}
        else:
            summary = trainer.fit()
        if summary["interrupted"]:
            if context.is_main:
                print(f"interrupted; rerun the same command to continue ({config.output_dir}/last.pth)")
            return 130
        if not args.eval_only and scales == (1.0,) and not args.flip:
            metrics = trainer.last_evaluation  # fit() ended with exactly this evaluation
        else:
            metrics = trainer.evaluate(scales=scales, flip=args.flip)
        runs[variant].append({
            "seed": seed,
            **{key: metrics[key] for key in ("miou", "acc", "macc", "iou")},
            "iterations": trainer.iteration,
            "train_images_per_s": summary.get("images_per_s"),
            "seconds": time.perf_counter() - started,
        })
        trainers[variant] = trainer
    if context.is_main:
        results = {
            variant: summarize_runs(trainers[variant], variant_runs) for variant, variant_runs in runs.items()
        }
        write_reports(args, results, trainers)
    return 0


def summarize_runs(trainer: Trainer, runs: list[dict]) -> dict:
    """One variant's row: the mean of each metric over its seeds, the spread of the mIoU, every run, and the
    inference costs of its model (measured once, on the first validation image at its own size)."""
    mious = [run["miou"] for run in runs]
    speeds = [run["train_images_per_s"] for run in runs if run["train_images_per_s"]]
    config = trainer.config
    sample = trainer.val_set[0]
    images = sample["image"][None].to(trainer.context.device)
    oracle = {"oracle_labels": sample["label"][None].to(images.device)} if config.oracle else {}
    return {
        "model": config.model + (" + GT regions" if config.oracle else ""),
        "seeds": [run["seed"] for run in runs],
        "miou": statistics.mean(mious),
        "miou_std": statistics.stdev(mious) if len(mious) > 1 else 0.0,
        "miou_min": min(mious),
        "miou_max": max(mious),
        "acc": statistics.mean(run["acc"] for run in runs),
        "macc": statistics.mean(run["macc"] for run in runs),
        "iou": [statistics.mean(values) for values in zip(*(run["iou"] for run in runs), strict=True)],
        "iterations": runs[0]["iterations"],
        "train_images_per_s": statistics.mean(speeds) if speeds else None,
        "costs": inference_costs(trainer.module, images, **oracle),
        "runs": runs,
    }


def eval_only_configs(args: argparse.Namespace) -> tuple[list[str], dict[tuple[str, int], TrainConfig], bool]:
    """(variants, configs, whether to restore a training checkpoint) for ``--eval-only``, writing to a folder of
    its own (``eval_only_folder``). A training checkpoint of this script brings its config; a model's weights
    file is evaluated as ``--model`` built for it, on the dataset the flags name."""
    args.out = eval_only_folder(args)
    saved = load_checkpoint(args.checkpoint)
    if is_training_checkpoint(saved):
        config = TrainConfig(**{**saved["config"], "resume": None, "output_dir": str(args.out)})
        variant = variant_of(config)
        return [variant], {(variant, config.seed): config}, True
    args.weights = args.checkpoint
    config = variant_config(args, "ocr", seed=args.seeds[0], output_dir=args.out)
    config.resume = None
    return ["ocr"], {("ocr", config.seed): config}, False


def variant_of(config: TrainConfig) -> str:
    """The variant a training checkpoint's config trained (its model's head prefix; the oracle for GT-OCR)."""
    if config.oracle:
        return "gt-ocr"
    prefix = config.model.split("_", 1)[0]
    heads = {HEAD_PREFIXES[head]: head for head in VARIANT_HEADS.values()}
    return next(variant for variant, head in VARIANT_HEADS.items() if head == heads.get(prefix, "ocr"))


def write_reports(args: argparse.Namespace, results: dict, trainers: dict) -> None:
    save_results(args.out, results_table(results), vars(args), results)
    seeds = ", ".join(map(str, args.seeds))
    plot_miou_bars(results, args.out / "miou.png", title=f"{args.dataset}: mIoU by variant (seeds {seeds})")
    plot_cost_scatter(results, args.out / "costs.png", title=f"{args.dataset}: mIoU against inference cost")
    any_trainer = next(iter(trainers.values()))
    plot_examples(trainers, any_trainer.val_set, args.out / "examples.png", count=4)
    print(f"\nwrote {args.out}/results.md, results.json, miou.png, costs.png, examples.png")


if __name__ == "__main__":
    sys.exit(main())
