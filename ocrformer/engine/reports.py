"""What an experiment shows a person: the results table, an mIoU bar chart, and predictions side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..visualize import colorize, default_palette, denormalize  # noqa: E402

__all__ = ["plot_examples", "plot_miou_bars", "results_table"]


def results_table(results: dict[str, dict]) -> str:
    """Markdown: one row per variant with mIoU, pixel accuracy, mean accuracy, iterations and speed."""
    lines = [
        "| variant | model | mIoU (%) | acc (%) | mAcc (%) | iterations | train img/s |",
        "|:--|:--|--:|--:|--:|--:|--:|",
    ]
    for variant, r in results.items():
        speed = f"{r['train_images_per_s']:.1f}" if r.get("train_images_per_s") else "-"
        lines.append(
            f"| {variant} | {r['model']} | {100 * r['miou']:.1f} | {100 * r['acc']:.1f} | {100 * r['macc']:.1f} "
            f"| {r['iterations']} | {speed} |"
        )
    return "\n".join(lines)


def plot_miou_bars(results: dict[str, dict], out_path: str | Path, *, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(results), 3.4))
    names = list(results)
    values = [100 * results[n]["miou"] for n in names]
    bars = ax.bar(names, values, color=["#8c8c8c", "#1f77b4", "#2ca02c", "#d62728"][: len(names)])
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylabel("mIoU (%)")
    ax.set_ylim(0, max(100.0, max(values) * 1.1))
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)


@torch.no_grad()
def plot_examples(trainers: dict, dataset, out_path: str | Path, *, count: int = 4) -> Path:
    """A grid: per validation image, the image, its ground truth and each variant's prediction."""
    count = min(count, len(dataset))
    palette = list(getattr(dataset, "palette", [])) or default_palette(dataset.num_classes)
    columns = 2 + len(trainers)
    fig, axes = plt.subplots(count, columns, figsize=(2.2 * columns, 2.2 * count), squeeze=False)
    for row in range(count):
        sample = dataset[row]
        image, label = sample["image"], sample["label"]
        panels = [("image", denormalize(image)), ("ground truth", colorize(label.numpy(), palette))]
        for variant, trainer in trainers.items():
            model = trainer.module.eval()
            batch = image[None].to(trainer.context.device)
            extra = {"oracle_labels": label[None].to(batch.device)} if trainer.config.oracle else {}
            prediction = model(batch, **extra)["logits"].argmax(1)[0].cpu().numpy()
            panels.append((variant, colorize(prediction, palette)))
        for ax, (name, picture) in zip(axes[row], panels, strict=True):
            ax.imshow(picture)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)
