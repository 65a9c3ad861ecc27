"""``metrics.jsonl``: the run's log, one JSON object per line -- training rows (with ``loss``) and evaluation rows
(``miou``, ``pq`` ...) -- each with its ``iter``.

The log stays consistent with the checkpoint a run resumes from: rows of iterations after it (written before an
interrupt, and computed again after the resume) are cut away when the run resumes, and an evaluation already
logged for an iteration is not logged twice (a finished run rerun evaluates its last checkpoint again). A damaged
line (a torn last line after a power cut or a full disk) is skipped with a warning naming the file and the line,
so it never stops the reports.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from .._atomic import atomic_write_text

__all__ = ["MetricsLog", "read_rows"]


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a metrics log; lines that are not a JSON object with an ``iter`` are skipped, with a warning."""
    path = Path(path)
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("iter"), int):
            warnings.warn(f"{path}, line {number}: not a log row, skipped ({line[:60]!r})", stacklevel=2)
            continue
        rows.append(row)
    return rows


class MetricsLog:
    """The metrics log of one run (written by rank 0 only: ``enabled=False`` elsewhere)."""

    def __init__(self, path: str | Path, *, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._evaluated: set[int] = set()

    def start(self, resumed_at: int | None) -> None:
        """A fresh run (``resumed_at=None``) starts an empty log; a run resumed from the checkpoint of iteration
        ``resumed_at`` keeps the rows up to it, and drops later and damaged ones."""
        if not self.enabled:
            return
        if resumed_at is None or not self.path.exists():
            self.path.unlink(missing_ok=True)
            self._evaluated = set()
            return
        rows = [row for row in read_rows(self.path) if row["iter"] <= resumed_at]
        self._evaluated = {row["iter"] for row in rows if "loss" not in row}
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in rows))

    def append(self, row: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def evaluation(self, row: dict) -> None:
        """Log an evaluation row unless this iteration's evaluation is in the log already."""
        if row["iter"] not in self._evaluated:
            self.append(row)
            self._evaluated.add(row["iter"])
