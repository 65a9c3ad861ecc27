"""Where every benchmark's results go: ``<stem>.json`` (everything measured) and ``<stem>.md`` (the tables,
also printed) in the output folder."""

from __future__ import annotations

import json
from pathlib import Path

from ocrformer._atomic import atomic_write_text

__all__ = ["write_reports"]


def write_reports(out_dir: Path, stem: str, report: dict, markdown: str, *, indent: int = 1) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(report, indent=indent) + "\n")
    atomic_write_text(out_dir / f"{stem}.md", markdown)
    print(markdown)
    print(f"wrote {out_dir / (stem + '.json')} and {out_dir / (stem + '.md')}")
