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
from ocrformer.engine.reports import plot_examples, plot_miou_bars, results_table, save_results  # noqa: E402

VARIANTS = ("fcn", "ocr", "gt-ocr")
# The embedded default, chosen so that the three variants separate clearly within minutes on two CPU cores.
# Mild rescaling only: the synthetic classes hinge on small coloured tags that a 0.5x rescale would erase;
# no photometric jitter, for the same reason (and it costs more than the tiny model on 64x64 crops).
SYNTHETIC_DEFAULTS = {"iterations": 300, "batch_size": 8, "crop": "64,64", "lr": 0.05, "scale_range": "0.75,1.25"}
QUICK_DEFAULTS = {**SYNTHETIC_DEFAULTS, "iterations": 80}
REAL_DEFAULTS = {"iterations": 80_000, "batch_size": 2, "crop": "512,1024", "lr": 0.01, "scale_range": "0.5,2.0"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="synthetic", choices=dataset_names("semantic"))
    p.add_argument("--data-root", help="dataset folder (see README: the layouts each dataset expects)")
    p.add_argument("--classes-json", help="class names and palette of a 'folder' dataset")
    p.add_argument("--model", default="ocrnet_tiny", help="registered OCR model; the FCN variant uses fcn_<backbone>")
    p.add_argument("--variants", default=None, help=f"comma-separated subset of {','.join(VARIANTS)}")
    p.add_argument("--quick", action="store_true", help="a short run of the default (<= 2 min on 2 CPU cores)")
    p.add_argument("--iterations", type=int)
    p.add_argument("--batch-size", type=int, help="per process")
    p.add_argument("--crop", help="training crop H,W")
    p.add_argument("--lr", type=float)
    p.add_argument("--scale-range", help="random rescale range for training, e.g. 0.5,2.0")
    p.add_argument("--jitter", action=argparse.BooleanOptionalAction, default=None,
                   help="photometric jitter (default: on for real datasets, off for the synthetic one)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
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
        defaults = REAL_DEFAULTS
    if args.jitter is None:
        args.jitter = args.dataset != "synthetic"
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.variants is None:
        args.variants = ",".join(VARIANTS) if args.dataset == "synthetic" else "ocr"
    args.variants = args.variants.split(",")
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        p.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    if not args.model.startswith("ocrnet_"):
        p.error(f"--model must be an OCR model name (ocrnet_*), got {args.model!r}")
    if args.weights and "fcn" in args.variants:
        p.error("--weights are an OCR model's: leave the fcn variant out (--variants ocr or ocr,gt-ocr)")
    args.out = Path(args.out or f"outputs/semseg_{args.dataset}{'_quick' if args.quick else ''}")
    configs_or_usage_error(p, lambda: {variant: variant_config(args, variant) for variant in args.variants})
    return args


def variant_config(args: argparse.Namespace, variant: str) -> TrainConfig:
    backbone = args.model.removeprefix("ocrnet_")
    return TrainConfig(
        model=f"fcn_{backbone}" if variant == "fcn" else args.model,
        weights=args.weights if variant != "fcn" else None,
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
        weight_decay=args.weight_decay,
        ohem=args.ohem,
        ohem_min_kept=args.ohem_min_kept,
        class_weights=args.class_weights,
        **run_settings(args, args.out / variant),
    )


def main(argv: list[str] | None = None) -> int:
    return run_on_every_rank(parse_args(argv), run)


def run(args: argparse.Namespace, context: DistributedContext) -> int:
    """Train and/or evaluate each variant, write the reports on rank 0; returns the exit status."""
    scales = tuple(float(s) for s in args.scales.split(","))
    results, trainers = {}, {}
    if args.eval_only:
        args.variants, configs, resume = eval_only_configs(args)
    else:
        configs, resume = {variant: variant_config(args, variant) for variant in args.variants}, False
    for variant, config in configs.items():
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
        results[variant] = {
            "model": config.model + (" + GT regions" if config.oracle else ""),
            "miou": metrics["miou"],
            "acc": metrics["acc"],
            "macc": metrics["macc"],
            "iou": metrics["iou"],
            "iterations": trainer.iteration,
            "train_images_per_s": summary.get("images_per_s"),
            "seconds": time.perf_counter() - started,
        }
        trainers[variant] = trainer
    if context.is_main:
        write_reports(args, results, trainers)
    return 0


def eval_only_configs(args: argparse.Namespace) -> tuple[list[str], dict[str, TrainConfig], bool]:
    """(variants, configs, whether to restore a training checkpoint) for ``--eval-only``, writing to a folder of
    its own (``eval_only_folder``). A training checkpoint of this script brings its config; a model's weights
    file is evaluated as ``--model`` built for it, on the dataset the flags name."""
    args.out = eval_only_folder(args)
    saved = load_checkpoint(args.checkpoint)
    if is_training_checkpoint(saved):
        config = TrainConfig(**{**saved["config"], "resume": None, "output_dir": str(args.out)})
        variant = "gt-ocr" if config.oracle else ("fcn" if config.model.startswith("fcn_") else "ocr")
        return [variant], {variant: config}, True
    args.weights = args.checkpoint
    config = variant_config(args, "ocr")
    config.output_dir, config.resume = str(args.out), None
    return ["ocr"], {"ocr": config}, False


def write_reports(args: argparse.Namespace, results: dict, trainers: dict) -> None:
    save_results(args.out, results_table(results), vars(args), results)
    plot_miou_bars(results, args.out / "miou.png", title=f"{args.dataset}: mIoU by variant")
    any_trainer = next(iter(trainers.values()))
    plot_examples(trainers, any_trainer.val_set, args.out / "examples.png", count=4)
    print(f"\nwrote {args.out}/results.md, results.json, miou.png, examples.png")


if __name__ == "__main__":
    sys.exit(main())
