"""The loss and mIoU curves of a run, from its ``metrics.jsonl``, as a PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402

from .metrics_log import read_rows  # noqa: E402

__all__ = ["plot_curves"]


def plot_curves(
    metrics_path: str | Path, out_path: str | Path, *, title: str = "", metrics: dict[str, str] | None = None
) -> Path:
    """Left: the total loss (solid) and each ``loss_*`` term; right, when the run was evaluated: the
    ``metrics`` ({key: label}, fractions plotted as %; default mIoU) against the iteration."""
    metrics = {"miou": "mIoU"} if metrics is None else metrics
    rows = read_rows(metrics_path)  # damaged lines skipped, with a warning naming the file and line
    train = [r for r in rows if "loss" in r]
    terms = sorted({key for r in train for key in r if key.startswith("loss_")})
    evaluated = {label: [(r["iter"], 100 * r[key]) for r in rows if key in r] for key, label in metrics.items()}
    evaluated = {label: points for label, points in evaluated.items() if points}
    fig, axes = plt.subplots(1, 2 if evaluated else 1, figsize=(10 if evaluated else 5.5, 3.8), squeeze=False)
    ax_loss = axes[0, 0]
    for key in ["loss", *terms]:
        points = [(r["iter"], r[key]) for r in train if key in r]
        if points:
            ax_loss.plot(*zip(*points, strict=True), "-" if key == "loss" else ":", label=key)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize="small")
    if evaluated:
        ax_metric = axes[0, 1]
        for label, points in evaluated.items():
            ax_metric.plot(*zip(*points, strict=True), "o-", label=label)
        ax_metric.legend()
        ax_metric.set_xlabel("iteration")
        ax_metric.set_ylabel(" / ".join(evaluated) + " (%)")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
