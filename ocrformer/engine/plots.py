"""The loss and mIoU curves of a run, from its ``metrics.jsonl``, as a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_curves"]


def plot_curves(metrics_path: str | Path, out_path: str | Path, *, title: str = "") -> Path:
    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "miou" in r]
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, style in (("loss", "-"), ("loss_main", "--"), ("loss_aux", ":")):
        points = [(r["iter"], r[key]) for r in train if key in r]
        if points:
            ax_loss.plot(*zip(*points, strict=True), style, label=key)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    if evals:
        ax_miou.plot([r["iter"] for r in evals], [100 * r["miou"] for r in evals], "o-", label="mIoU")
        ax_miou.legend()
    ax_miou.set_xlabel("iteration")
    ax_miou.set_ylabel("mIoU (%)")
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
