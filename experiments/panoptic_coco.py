"""Panoptic-FPN with and without OCR in its semantic branch, on COCO panoptic data, scored by PQ.

Default (no download): generates a synthetic dataset in the real COCO panoptic format (cached in
``outputs/synthetic_coco_panoptic``), trains the tiny Panoptic-FPN and Panoptic-FPN + OCR briefly on the CPU,
evaluates both with the official panoptic evaluator and prints one table.

    python experiments/panoptic_coco.py                  # both variants, synthetic, <= 10 min on 2 CPU cores
    python experiments/panoptic_coco.py --quick          # the same, shorter, <= 2 min
    python experiments/panoptic_coco.py --data-root /data/coco     # COCO 2017 panoptic, the paper's 3x schedule
    torchrun --nproc_per_node=8 experiments/panoptic_coco.py --data-root /data/coco --variants ocr
    python experiments/panoptic_coco.py --eval-only --checkpoint outputs/panoptic_synthetic/ocr/last.pth

Real data: ``--data-root`` holds ``annotations/panoptic_{train,val}2017.json``, the PNG folders
``annotations/panoptic_{train,val}2017/`` and the images ``{train,val}2017/`` (docs/datasets.md). The real
defaults are detectron2's Panoptic-FPN R50 3x: 270k iterations of 16 images (2 per process on 8 GPUs), lr 0.02
with x0.1 steps at 210k and 250k, 1000 warm-up iterations, weight decay 1e-4, multi-scale training (shorter
side 640-800). ``--lr`` is for the whole batch: scale it with the number of processes x ``--batch-size``.

Every run writes to ``--out``: per variant a folder with ``last.pth``, ``metrics.jsonl``, ``curves.png`` and
``eval/`` (predictions in the COCO panoptic format: ``predictions.json`` + PNGs); and ``results.json``,
``results.md`` (the table), ``pq.png`` (bar chart) and ``panoptic.png`` (predictions beside the ground truth).
``--eval-only`` writes all of these (its predictions included) into a folder of its own,
``<out>/eval_<run>_<checkpoint name>``, never over the training run's. Interrupt with Ctrl-C: the checkpoint is
written; rerun the same command to continue.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ocrformer.data import write_synthetic_coco_panoptic  # noqa: E402
from ocrformer.engine import DistributedContext, TrainConfig, build_datasets, load_checkpoint  # noqa: E402
from ocrformer.engine.checkpoint import is_training_checkpoint  # noqa: E402
from ocrformer.engine.cli import (  # noqa: E402
    add_run_arguments,
    check_run_arguments,
    configs_or_usage_error,
    eval_only_folder,
    run_on_every_rank,
    run_settings,
)
from ocrformer.engine.panoptic import PanopticTrainer  # noqa: E402
from ocrformer.engine.reports import panoptic_table, plot_panoptic_examples, plot_pq_bars, save_results  # noqa: E402
from ocrformer.models import PANOPTIC_PRESETS  # noqa: E402

VARIANTS = {"fpn": False, "ocr": True}  # variant -> OCR in the semantic branch
SYNTHETIC_ROOT = Path("outputs/synthetic_coco_panoptic")
# The embedded default: sized so that both variants train and evaluate in about 5 minutes on 2 quiet CPU cores.
SYNTHETIC_DEFAULTS = {
    "model": "panoptic_fpn_tiny",
    "iterations": 300,
    "batch_size": 4,
    "lr": 0.02,
    "lr_steps": "240,285",
    "warmup": 50,
    "weight_decay": 1e-4,
    "val_images": None,
}
QUICK_DEFAULTS = {**SYNTHETIC_DEFAULTS, "iterations": 80, "lr_steps": "65", "warmup": 20, "val_images": 12}
REAL_DEFAULTS = {
    "model": "panoptic_fpn_r50",
    "iterations": 270_000,
    "batch_size": 2,
    "lr": 0.02,
    "lr_steps": "210000,250000",
    "warmup": 1000,
    "weight_decay": 1e-4,
    "val_images": None,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", help="a COCO panoptic folder (default: the generated synthetic set)")
    p.add_argument("--synthetic-root", default=str(SYNTHETIC_ROOT), help="where the synthetic set is cached")
    p.add_argument("--model", help=f"Panoptic-FPN preset: {', '.join(sorted(PANOPTIC_PRESETS))}")
    p.add_argument("--variants", default="fpn,ocr", help=f"comma-separated subset of {','.join(VARIANTS)}")
    p.add_argument("--quick", action="store_true", help="a short run of the default (<= 2 min on 2 CPU cores)")
    p.add_argument("--iterations", type=int)
    p.add_argument("--batch-size", type=int, help="images per process and iteration")
    p.add_argument("--lr", type=float, help="for the whole batch (all processes)")
    p.add_argument("--lr-steps", help="comma-separated iterations where the lr drops x0.1")
    p.add_argument("--warmup", type=int, help="linear warm-up iterations")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--pretrained", action="store_true", help="ImageNet backbone weights from timm (network)")
    p.add_argument("--backbone-checkpoint", help="ImageNet backbone weights from a local file")
    p.add_argument("--val-images", type=int, help="evaluate on the first N validation images only")
    p.add_argument("--examples", type=int, default=4, help="validation images shown in panoptic.png")
    p.add_argument("--out", help="output folder (default outputs/panoptic_<synthetic|coco>[_quick])")
    add_run_arguments(p)
    args = p.parse_args(argv)
    check_run_arguments(p, args)

    defaults = REAL_DEFAULTS if args.data_root else (QUICK_DEFAULTS if args.quick else SYNTHETIC_DEFAULTS)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.variants = args.variants.split(",")
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        p.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    if args.model not in PANOPTIC_PRESETS:
        p.error(f"--model must be one of {sorted(PANOPTIC_PRESETS)}, got {args.model!r}")
    args.lr_steps = tuple(int(step) for step in args.lr_steps.split(",") if step)
    name = "coco" if args.data_root else "synthetic"
    args.out = Path(args.out or f"outputs/panoptic_{name}{'_quick' if args.quick else ''}")
    configs_or_usage_error(p, lambda: {v: variant_config(args, v, args.data_root) for v in args.variants})
    return args


def variant_config(args: argparse.Namespace, variant: str, data_root: str) -> TrainConfig:
    model_kwargs = {"ocr": VARIANTS[variant]}
    if args.pretrained:
        model_kwargs["pretrained"] = True
    if args.backbone_checkpoint:
        model_kwargs["checkpoint_path"] = args.backbone_checkpoint
    return TrainConfig(
        model=args.model,
        model_kwargs=model_kwargs,
        dataset="coco_panoptic",
        data_root=data_root,
        batch_size=args.batch_size,
        iterations=args.iterations,
        lr=args.lr,
        lr_schedule="step",
        lr_steps=args.lr_steps,
        warmup_iters=args.warmup,
        weight_decay=args.weight_decay,
        **run_settings(args, args.out / variant),
    )


def main(argv: list[str] | None = None) -> int:
    return run_on_every_rank(parse_args(argv), run)


def run(args: argparse.Namespace, context: DistributedContext) -> int:
    """Train and/or evaluate each variant, write the reports on rank 0; returns the exit status."""
    data_root = args.data_root
    if data_root is None:
        if context.is_main:
            write_synthetic_coco_panoptic(args.synthetic_root)
        context.barrier()
        data_root = args.synthetic_root
    if args.eval_only:
        saved = load_checkpoint(args.checkpoint)
        if not is_training_checkpoint(saved):
            raise SystemExit(f"--checkpoint {args.checkpoint} is not a training checkpoint of this script")
        args.out = eval_only_folder(args)  # its own reports and predictions, never the training run's
        configs = {"ocr" if saved["config"]["model_kwargs"].get("ocr", True) else "fpn": TrainConfig(
            **{**saved["config"], "resume": None, "output_dir": str(args.out), "data_root": data_root})}
    else:
        configs = {variant: variant_config(args, variant, data_root) for variant in args.variants}
    results, trainers = {}, {}
    for variant, config in configs.items():
        train_set, val_set = build_datasets(config)
        trainer = PanopticTrainer(config, train_set, val_set, context=context, max_eval_images=args.val_images)
        started = time.perf_counter()
        if args.eval_only:
            trainer.load_checkpoint(args.checkpoint)
            summary = {"iteration": trainer.iteration, "interrupted": False}
        else:
            summary = trainer.fit()  # evaluates every --eval-every iterations and at the end
        if summary["interrupted"]:
            if context.is_main:
                print(f"interrupted; rerun the same command to continue ({config.output_dir}/last.pth)")
            return 130
        metrics = trainer.evaluate() if args.eval_only else trainer.last_evaluation
        results[variant] = {
            "model": config.model + (" + OCR" if config.model_kwargs.get("ocr", True) else ""),
            **{k: v for k, v in metrics.items() if k not in ("pq_results", "images_per_s")},
            "per_class_pq": {str(k): v for k, v in metrics["pq_results"]["per_class"].items()},
            "iterations": trainer.iteration,
            "train_images_per_s": summary.get("images_per_s"),
            "eval_images_per_s": metrics["images_per_s"],
            "seconds": time.perf_counter() - started,
        }
        trainers[variant] = trainer
    if context.is_main:
        write_reports(args, results, trainers)
    return 0


def write_reports(args: argparse.Namespace, results: dict, trainers: dict) -> None:
    save_results(args.out, panoptic_table(results), vars(args), results)
    plot_pq_bars(results, args.out / "pq.png", title="Panoptic-FPN with and without OCR")
    any_trainer = next(iter(trainers.values()))
    plot_panoptic_examples(trainers, any_trainer.val_set, args.out / "panoptic.png", count=args.examples)
    print(f"\nwrote {args.out}/results.md, results.json, pq.png, panoptic.png")


if __name__ == "__main__":
    sys.exit(main())
