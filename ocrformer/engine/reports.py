"""What an experiment shows a person: results tables, bar charts, and predictions side by side -- for the
semantic experiment (mIoU) and the panoptic one (PQ)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .._atomic import atomic_write_text  # noqa: E402
from ..visualize import colorize, colorize_panoptic, default_palette, denormalize  # noqa: E402

__all__ = [
    "panel_grid",
    "panoptic_table",
    "plot_cost_scatter",
    "plot_examples",
    "plot_miou_bars",
    "plot_panoptic_examples",
    "plot_pq_bars",
    "results_table",
    "save_figure",
    "save_results",
]


def save_results(out_dir: Path, table: str, arguments: dict, results: dict) -> None:
    """An experiment's outcome: the Markdown ``table`` printed and written to ``results.md``, and the run's
    ``arguments`` (as strings) with the ``results`` in ``results.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    print("\n" + table)
    atomic_write_text(out_dir / "results.md", table + "\n")
    document = {"args": {key: str(value) for key, value in arguments.items()}, "results": results}
    atomic_write_text(out_dir / "results.json", json.dumps(document, indent=2))


def save_figure(fig, out_path: str | Path) -> Path:
    """``fig`` laid out tightly, written to ``out_path`` (100 dpi) and closed."""
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)


def panel_grid(
    rows: list[list[tuple[str, np.ndarray]]], out_path: str | Path, *, cell_width: float, every_title: bool = False
) -> Path:
    """One row per image of ``(title, RGB picture)`` panels, no axes; the titles over the first row only, or over
    every panel (``every_title``: when the rows differ in more than their image)."""
    columns = len(rows[0])
    fig, axes = plt.subplots(len(rows), columns, figsize=(cell_width * columns, 2.2 * len(rows)), squeeze=False)
    for row, panels in enumerate(rows):
        for ax, (name, picture) in zip(axes[row], panels, strict=True):
            ax.imshow(picture)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0 or every_title:
                ax.set_title(name, fontsize="small" if every_title else None)
    return save_figure(fig, out_path)


def results_table(results: dict[str, dict]) -> str:
    """Markdown: one row per variant -- mIoU (the mean over its seeds, with the standard deviation and the range
    when there are several), pixel and mean accuracy, the model's inference costs, iterations and training speed."""
    lines = [
        "| variant | model | mIoU (%) | acc (%) | mAcc (%) | params (M) | GFLOPs | ms | peak MB | iterations "
        "| train img/s |",
        "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for variant, r in results.items():
        miou = f"{100 * r['miou']:.1f}"
        if len(r.get("seeds", ())) > 1:
            miou += f" ± {100 * r['miou_std']:.1f} [{100 * r['miou_min']:.1f}-{100 * r['miou_max']:.1f}]"
        costs = r.get("costs") or {}
        cells = [
            f"{costs['params_m']:.3g}" if "params_m" in costs else "-",
            f"{costs['gflops']:.3g}" if "gflops" in costs else "-",
            f"{costs['ms']:.3g}" if "ms" in costs else "-",
            f"{costs['peak_mb']:.3g}" if costs.get("peak_mb") is not None else "-",
        ]
        speed = f"{r['train_images_per_s']:.1f}" if r.get("train_images_per_s") else "-"
        lines.append(
            f"| {variant} | {r['model']} | {miou} | {100 * r['acc']:.1f} | {100 * r['macc']:.1f} | "
            + " | ".join(cells)
            + f" | {r['iterations']} | {speed} |"
        )
    return "\n".join(lines)


def plot_miou_bars(results: dict[str, dict], out_path: str | Path, *, title: str = "") -> Path:
    """One bar per variant at its mean mIoU; with several seeds, each seed's mIoU as a dot and the range as an
    error bar, so that a difference smaller than the spread is seen to be one."""
    names = list(results)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(names), 3.6))
    means = [100 * results[n]["miou"] for n in names]
    colours = [_variant_colour(n) for n in names]
    ax.bar(names, means, color=colours)
    for x, name in enumerate(names):
        seeds = [100 * run["miou"] for run in results[name].get("runs", [])] or [means[x]]
        if len(seeds) > 1:
            ax.errorbar(x, means[x], yerr=[[means[x] - min(seeds)], [max(seeds) - means[x]]], color="black",
                        capsize=4, linewidth=1)
            ax.scatter([x] * len(seeds), seeds, color="black", s=10, zorder=3)
        ax.annotate(f"{means[x]:.1f}", (x, max(seeds)), textcoords="offset points", xytext=(0, 4), ha="center")
    ax.set_ylabel("mIoU (%)")
    ax.set_ylim(0, max(100.0, max(means) * 1.1))
    ax.tick_params(axis="x", labelrotation=30 if len(names) > 4 else 0)
    ax.set_title(title)
    return save_figure(fig, out_path)


def plot_cost_scatter(results: dict[str, dict], out_path: str | Path, *, title: str = "") -> Path:
    """mIoU against GFLOPs and against inference time, one labelled point per variant (with its seed range)."""
    names = [n for n in results if results[n].get("costs")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (key, label) in zip(axes, (("gflops", "GFLOPs"), ("ms", "inference time (ms)")), strict=True):
        for name in names:
            r = results[name]
            x, y = r["costs"][key], 100 * r["miou"]
            spread = [[y - 100 * r.get("miou_min", r["miou"])], [100 * r.get("miou_max", r["miou"]) - y]]
            ax.errorbar(x, y, yerr=spread, fmt="o", color=_variant_colour(name), capsize=3)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize="small")
        ax.set_xlabel(label)
        ax.set_ylabel("mIoU (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save_figure(fig, out_path)


# FCN grey, OCR blue, the oracle green, the multi-scale heads warm, the relational ones cool; others grey.
_COLOURS = {
    "fcn": "#8c8c8c", "ocr": "#1f77b4", "gt-ocr": "#2ca02c", "ppm": "#d62728", "aspp": "#ff7f0e",
    "danet": "#9467bd", "self-attention": "#8c564b", "criss-cross": "#e377c2", "isa": "#bcbd22",
    "double-attention": "#17becf",
}


def _variant_colour(name: str) -> str:
    return _COLOURS.get(name, "#7f7f7f")


@torch.no_grad()
def plot_examples(trainers: dict, dataset, out_path: str | Path, *, count: int = 4) -> Path:
    """A grid: per validation image, the image, its ground truth and each variant's prediction."""
    palette = list(getattr(dataset, "palette", [])) or default_palette(dataset.num_classes)
    rows = []
    for row in range(min(count, len(dataset))):
        sample = dataset[row]
        image, label = sample["image"], sample["label"]
        panels = [("image", denormalize(image)), ("ground truth", colorize(label.numpy(), palette))]
        for variant, trainer in trainers.items():
            model = trainer.module.eval()
            batch = image[None].to(trainer.context.device)
            extra = {"oracle_labels": label[None].to(batch.device)} if trainer.config.oracle else {}
            prediction = model(batch, **extra)["logits"].argmax(1)[0].cpu().numpy()
            panels.append((variant, colorize(prediction, palette)))
        rows.append(panels)
    return panel_grid(rows, out_path, cell_width=2.2)


def panoptic_table(results: dict[str, dict]) -> str:
    """Markdown: one row per variant with PQ/SQ/RQ for All, Things and Stuff (%), the semantic branch's mIoU,
    and training / inference speed."""
    lines = [
        "| variant | PQ | SQ | RQ | PQ th | SQ th | RQ th | PQ st | SQ st | RQ st | sem. mIoU | iterations "
        "| train img/s | eval img/s |",
        "|:--|" + "--:|" * 13,
    ]
    keys = ("pq", "sq", "rq", "pq_th", "sq_th", "rq_th", "pq_st", "sq_st", "rq_st", "miou")
    for variant, r in results.items():
        cells = [f"{100 * r[k]:.1f}" for k in keys] + [str(r["iterations"])]
        cells += [f"{r[k]:.1f}" if r.get(k) else "-" for k in ("train_images_per_s", "eval_images_per_s")]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_pq_bars(results: dict[str, dict], out_path: str | Path, *, title: str = "") -> Path:
    """Grouped bars: PQ of All / Things / Stuff and the semantic mIoU, one colour per variant."""
    groups = (("pq", "PQ"), ("pq_th", "PQ things"), ("pq_st", "PQ stuff"), ("miou", "semantic mIoU"))
    names = list(results)
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for i, name in enumerate(names):
        values = [100 * results[name][key] for key, _ in groups]
        bars = ax.bar([g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))], values, width,
                      label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize="small")
    ax.set_xticks(range(len(groups)), [label for _, label in groups])
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend()
    ax.set_title(title)
    return save_figure(fig, out_path)


@torch.no_grad()
def plot_panoptic_examples(trainers: dict, dataset, out_path: str | Path, *, count: int = 4) -> Path:
    """A grid: per validation image, the image, its ground-truth segments and each variant's fused result
    (category colours, one shade per segment, void black)."""
    colors = {c["id"]: tuple(c.get("color") or (128, 128, 128)) for c in dataset.categories}
    rows = []
    for row in range(min(count, len(dataset))):
        image, target = dataset[row]
        ground_truth = dataset.segment_ids(row)
        gt_colors = {s["id"]: colors[s["category_id"]] for s in target["segments_info"]}
        picture = (image.permute(1, 2, 0).clamp(0, 1) * 255).byte().numpy()
        panels = [("image", picture), ("ground truth", colorize_panoptic(ground_truth, gt_colors))]
        for variant, trainer in trainers.items():
            result = trainer.module.eval()([image.to(trainer.context.device)])[0]
            segment_colors = {
                s["id"]: colors[dataset.contiguous_to_category(s["isthing"], s["category_id"])]
                for s in result["segments_info"]
            }
            panels.append((variant, colorize_panoptic(result["panoptic_seg"].cpu().numpy(), segment_colors)))
        rows.append(panels)
    return panel_grid(rows, out_path, cell_width=2.4)
