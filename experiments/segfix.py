"""SegFix on any segmenter: train a segmenter and SegFix, then measure mIoU and boundary F-score before and after
the refinement -- the gain measured, not assumed.

Default (no download): the embedded synthetic set. For each ``--low-res`` factor F a segmenter (``--model``,
OCRNet by default) is trained on images shrunk F times and predicts at that resolution, its probabilities
resized back to the full image (F = 1: the ordinary segmenter; F > 1: a model trained at low resolution, whose
boundaries are off by up to about F pixels, as a real segmenter's are on thin structures). One SegFix network
(``--segfix-model``) is trained on the full-resolution labels; it does not see the segmenter. Then every
validation prediction is refined and scored three ways: as predicted, refined by the trained SegFix, and refined
by the ground-truth boundary and direction maps (what a perfect SegFix network would give: the ceiling of the
refinement rule itself).

    python experiments/segfix.py                       # F = 1 and 2 on the synthetic set, about 2 minutes
    python experiments/segfix.py --quick               # shorter
    python experiments/segfix.py --dataset cityscapes --data-root /data/cityscapes --model ocrnet_hrnet_w48 \\
        --segmenter-weights hrnet_ocr_cs_8162_torch11.pth --segfix-model segfix_hrnet_w48 --iterations 80000 \\
        --segfix-batch-size 16 --segfix-crop 512,512 --segfix-lr 0.04 --low-res 1

Writes to ``--out``: ``segmenter_f<F>/`` and ``segfix/`` (training runs: ``last.pth``, ``metrics.jsonl``,
``curves.png``), ``results.md`` (the table), ``results.json``, ``segfix_gain.png`` (before/after bars) and
``examples.png`` (image, truth, prediction, SegFix's boundary map, refined prediction). Interrupt with Ctrl-C;
rerun the same command to continue.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm import tqdm  # noqa: E402

from ocrformer.data import dataset_names  # noqa: E402
from ocrformer.engine import DistributedContext, SegFixTrainer, TrainConfig, Trainer, build_datasets  # noqa: E402
from ocrformer.engine.cli import add_run_arguments, check_run_arguments, run_on_every_rank, run_settings  # noqa: E402
from ocrformer.engine.reports import panel_grid, save_figure, save_results  # noqa: E402
from ocrformer.evaluation import BoundaryEvaluator, SemanticEvaluator  # noqa: E402
from ocrformer.inference import predict  # noqa: E402
from ocrformer.models.segfix import boundary_probability  # noqa: E402
from ocrformer.segfix import segfix_refine, segfix_targets  # noqa: E402
from ocrformer.visualize import colorize, default_palette, denormalize  # noqa: E402

TOLERANCES = (1, 3, 5)
ROWS = ("predicted", "+ SegFix", "+ SegFix with true maps")
# The embedded default (the semantic experiment's Fig. 1 settings for the segmenter). SegFix as upstream trains
# it (scripts/cityscapes/segfix/run_h_48_d_4_segfix.sh): lr 0.04, crop and flip but no rescale; 1200 iterations,
# because at 300 its directions were right on 65% of the boundary pixels only and the refinement cost the F = 1
# segmenter 6.6 mIoU (measured 2026-11-30; 1200 iterations: 76%, +2.2).
SYNTHETIC = {"iterations": 300, "batch_size": 8, "crop": "64,64", "lr": 0.05, "scale_range": "0.75,1.25",
             "segfix_iterations": 1200, "segfix_batch_size": 8, "segfix_crop": "64,64", "segfix_lr": 0.04}
QUICK = {**SYNTHETIC, "iterations": 80, "segfix_iterations": 300}
REAL = {"iterations": 80_000, "batch_size": 2, "crop": "512,1024", "lr": 0.01, "scale_range": "0.5,2.0",
        "segfix_iterations": 80_000, "segfix_batch_size": 2, "segfix_crop": "512,512", "segfix_lr": 0.04}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="synthetic", choices=dataset_names("semantic"))
    p.add_argument("--data-root", help="dataset folder (docs/datasets.md: the layouts)")
    p.add_argument("--model", default="ocrnet_tiny", help="the segmenter to refine (a registered model)")
    p.add_argument("--segmenter-weights", help="use these weights for the segmenter instead of training it (F = 1)")
    p.add_argument("--segfix-model", default=None, help="segfix_<backbone> (default: segfix_tiny on the synthetic "
                   "set, segfix_hrnet_w18 otherwise)")
    p.add_argument("--low-res", default=None, help="comma-separated factors F at which segmenters are trained and "
                   "predict (default 1,2 on the synthetic set, 1 otherwise)")
    p.add_argument("--quick", action="store_true", help="a short run of the default")
    for flag in ("iterations", "batch-size", "segfix-iterations", "segfix-batch-size"):
        p.add_argument(f"--{flag}", type=int)
    for flag in ("crop", "scale-range", "segfix-crop"):
        p.add_argument(f"--{flag}")
    p.add_argument("--lr", type=float)
    p.add_argument("--segfix-lr", type=float)
    p.add_argument("--boundary-width", type=float, help="the boundary band's half width in pixels (default: 2 on the "
                   "64 x 64 synthetic images, whose objects are 10-35 px; upstream's 5 otherwise)")
    p.add_argument("--boundary-threshold", type=float, default=0.5)
    p.add_argument("--offset-scale", type=float, default=2.0, help="offset scaling of the refinement (upstream: 2)")
    p.add_argument("--out", default=None, help="output folder (default outputs/segfix_<dataset>[_quick])")
    add_run_arguments(p)
    args = p.parse_args(argv)
    check_run_arguments(p, args)
    if args.eval_only:
        p.error("--eval-only: not supported here; rerun the same command (finished runs are not retrained)")
    synthetic = args.dataset == "synthetic"
    defaults = (QUICK if args.quick else SYNTHETIC) if synthetic else REAL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.segfix_model = args.segfix_model or ("segfix_tiny" if synthetic else "segfix_hrnet_w18")
    if args.boundary_width is None:
        args.boundary_width = 2 if synthetic else 5
    try:
        args.low_res = [int(f) for f in (args.low_res or ("1,2" if synthetic else "1")).split(",")]
    except ValueError:
        p.error(f"--low-res: expected comma-separated positive ints, got {args.low_res!r}")
    if any(f < 1 for f in args.low_res) or len(set(args.low_res)) != len(args.low_res):
        p.error(f"--low-res: expected distinct positive ints, got {args.low_res}")
    if args.segmenter_weights and args.low_res != [1]:
        p.error("--segmenter-weights: give --low-res 1 (given weights were trained at full resolution)")
    if not 0 <= args.boundary_threshold < 1:
        p.error(f"--boundary-threshold must be in [0, 1), got {args.boundary_threshold}")
    args.out = Path(args.out or f"outputs/segfix_{args.dataset}{'_quick' if args.quick else ''}")
    return args


def pair(text: str) -> tuple:
    return tuple(float(v) if "." in v else int(v) for v in text.split(","))


def segmenter_config(args: argparse.Namespace, factor: int) -> TrainConfig:
    """The segmenter trained at 1/``factor`` resolution: crops and rescale range shrunk by the factor."""
    crop = tuple(max(1, c // factor) for c in pair(args.crop))
    low, high = pair(args.scale_range)
    return TrainConfig(
        model=args.model,
        weights=args.segmenter_weights,
        dataset=args.dataset,
        data_root=args.data_root,
        crop_size=crop,
        scale_range=(low / factor, high / factor),
        jitter=args.dataset != "synthetic",
        batch_size=args.batch_size,
        iterations=args.iterations,
        lr=args.lr,
        **run_settings(args, args.out / f"segmenter_f{factor}"),
    )


def segfix_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        model=args.segfix_model,
        model_kwargs={"boundary_width": args.boundary_width},
        dataset=args.dataset,
        data_root=args.data_root,
        crop_size=pair(args.segfix_crop),
        scale_range=(1.0, 1.0),  # upstream: no rescale (a rescale would change the band widths in pixels)
        jitter=args.dataset != "synthetic",
        batch_size=args.segfix_batch_size,
        iterations=args.segfix_iterations,
        lr=args.segfix_lr,
        **run_settings(args, args.out / "segfix"),
    )


def main(argv: list[str] | None = None) -> int:
    return run_on_every_rank(parse_args(argv), run)


def run(args: argparse.Namespace, context: DistributedContext) -> int:
    started = time.perf_counter()
    segmenters = {}
    for factor in args.low_res:
        config = segmenter_config(args, factor)
        trainer = Trainer(config, *build_datasets(config), context=context)
        if args.segmenter_weights is None and trainer.fit()["interrupted"]:
            return interrupted(context, config)
        segmenters[factor] = trainer
    config = segfix_config(args)
    segfix = SegFixTrainer(config, *build_datasets(config), context=context)
    summary = segfix.fit()
    if summary["interrupted"]:
        return interrupted(context, config)
    if not context.is_main:
        return 0
    val_set = build_datasets(segmenter_config(args, 1))[1]  # full resolution, normalised, no augmentation
    results = {
        f"F={factor}": evaluate(trainer.module, segfix.module, val_set, factor, args)
        for factor, trainer in segmenters.items()
    }
    document = {"segfix": segfix.last_evaluation, "results": results, "seconds": time.perf_counter() - started}
    save_results(args.out, results_table(results, segfix.last_evaluation), vars(args), document)
    plot_gain(results, args.out / "segfix_gain.png", title=f"{args.dataset}: SegFix on {args.model}")
    plot_examples(segmenters, segfix.module, val_set, args, args.out / "examples.png")
    print(f"\nwrote {args.out}/results.md, results.json, segfix_gain.png, examples.png")
    return 0


def interrupted(context: DistributedContext, config: TrainConfig) -> int:
    if context.is_main:
        print(f"interrupted; rerun the same command to continue ({config.output_dir}/last.pth)")
    return 130


@torch.no_grad()
def refine_three_ways(segmenter, segfix, images, labels, factor, args) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """({row: (B, H, W) labels}, SegFix's (B, H, W) boundary probability): the segmenter's prediction at
    1/``factor`` resolution, refined by SegFix, and refined by the true boundary and direction maps (one-hot
    logits of ``segfix_targets`` of ``labels``)."""
    scores = predict(segmenter, images, scales=(1 / factor,), align_corners=segmenter.align_corners)
    predicted = scores.argmax(1)
    out = segfix(images)
    options = {"boundary_threshold": args.boundary_threshold, "offset_scale": args.offset_scale}
    probability = boundary_probability(out["boundary_logits"])
    refined = segfix_refine(predicted, probability, out["direction_logits"], **options)
    m = segfix.num_directions
    truth = [segfix_targets(label.cpu(), num_directions=m, boundary_width=segfix.boundary_width) for label in labels]
    # A boundary pixel whose direction is undefined (a flat distance map) stays where it is.
    boundary = torch.stack([((t["boundary"] == 1) & (t["direction"] < m)).float() for t in truth]).to(images.device)
    direction = torch.stack([t["direction"].clamp(max=m - 1) for t in truth]).to(images.device)
    one_hot = torch.nn.functional.one_hot(direction, m).permute(0, 3, 1, 2).float()
    ideal = segfix_refine(predicted, boundary, one_hot, **options)
    return dict(zip(ROWS, (predicted, refined, ideal), strict=True)), probability


def evaluate(segmenter, segfix, val_set, factor: int, args) -> dict:
    """mIoU, pixel accuracy and boundary F-scores of each row, and the share of pixels each refinement changed."""
    num_classes = val_set.num_classes
    semantic = {row: SemanticEvaluator(num_classes) for row in ROWS}
    boundary = {row: BoundaryEvaluator(num_classes, tolerances=TOLERANCES) for row in ROWS}
    changed = {row: 0 for row in ROWS}
    pixels = 0
    segmenter.eval(), segfix.eval()
    device = next(segmenter.parameters()).device
    for batch in tqdm(DataLoader(val_set, batch_size=1), desc=f"evaluate F={factor}", leave=False):
        images, labels = batch["image"].to(device), batch["label"].to(device)
        maps, _ = refine_three_ways(segmenter, segfix, images, labels, factor, args)
        for row, prediction in maps.items():
            semantic[row].update(prediction, labels)
            boundary[row].update(prediction, labels)
            changed[row] += int((prediction != maps[ROWS[0]]).sum())
        pixels += labels.numel()
    rows = {}
    for row in ROWS:
        metrics, scores = semantic[row].compute(), boundary[row].compute()
        rows[row] = {"miou": metrics["miou"], "acc": metrics["acc"], **{f"bf{t}": scores[f"bf{t}"] for t in TOLERANCES},
                     "changed": changed[row] / pixels}
    return rows


def results_table(results: dict, segfix_metrics: dict | None) -> str:
    header = "| segmenter | labels | mIoU (%) | acc (%) | " + " | ".join(f"BF@{t}px (%)" for t in TOLERANCES)
    lines = [header + " | pixels changed (%) |", "|:--|:--|" + "--:|" * (3 + len(TOLERANCES))]
    for name, rows in results.items():
        for row, r in rows.items():
            cells = [f"{100 * r[k]:.1f}" for k in ("miou", "acc", *(f"bf{t}" for t in TOLERANCES))]
            lines.append(f"| {name} | {row} | " + " | ".join(cells) + f" | {100 * r['changed']:.2f} |")
    if segfix_metrics:
        lines.append("")
        lines.append(
            f"SegFix network on the validation set: boundary F1 {100 * segfix_metrics['boundary_f1']:.1f}%, "
            f"direction accuracy {100 * segfix_metrics['direction_acc']:.1f}% (chance 12.5% with 8 bins)."
        )
    return "\n".join(lines)


def plot_gain(results: dict, out_path: Path, *, title: str) -> Path:
    """Grouped bars per segmenter: mIoU and BF@1/3/5 as predicted, refined, and refined with the true maps."""
    keys = ("miou", *(f"bf{t}" for t in TOLERANCES))
    labels = ("mIoU", *(f"BF@{t}px" for t in TOLERANCES))
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.8), squeeze=False)
    width = 0.8 / len(ROWS)
    for ax, (name, rows) in zip(axes[0], results.items(), strict=True):
        for i, row in enumerate(ROWS):
            values = [100 * rows[row][k] for k in keys]
            bars = ax.bar(np.arange(len(keys)) + (i - 1) * width, values, width, label=row)
            ax.bar_label(bars, fmt="%.0f", fontsize="x-small")
        ax.set_xticks(range(len(keys)), labels)
        ax.set_ylim(0, 105)
        ax.set_title(f"segmenter at {name}")
        ax.set_ylabel("%")
    axes[0][0].legend(fontsize="small", loc="lower left")
    fig.suptitle(title)
    return save_figure(fig, out_path)


@torch.no_grad()
def plot_examples(segmenters: dict, segfix, val_set, args, out_path: Path, count: int = 3) -> Path:
    """Per validation image and segmenter: image, truth, prediction, SegFix's boundary probability, refined."""
    palette = list(getattr(val_set, "palette", [])) or default_palette(val_set.num_classes)
    rows = []
    for index in range(min(count, len(val_set))):
        sample = val_set[index]
        images, labels = sample["image"][None], sample["label"][None]
        for factor, trainer in segmenters.items():
            device = trainer.context.device
            maps, prob = refine_three_ways(trainer.module, segfix, images.to(device), labels.to(device), factor, args)
            rows.append([
                (f"image (F={factor})", denormalize(sample["image"])),
                ("truth", colorize(sample["label"].numpy(), palette)),
                ("predicted", colorize(maps[ROWS[0]][0].cpu().numpy(), palette)),
                ("SegFix boundary", (plt.cm.magma(prob[0].cpu().numpy())[..., :3] * 255).astype(np.uint8)),
                ("+ SegFix", colorize(maps[ROWS[1]][0].cpu().numpy(), palette)),
            ])
    return panel_grid(rows, out_path, cell_width=2.2, every_title=True)


if __name__ == "__main__":
    sys.exit(main())
