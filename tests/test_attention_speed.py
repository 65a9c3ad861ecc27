"""benchmarks/attention_speed.py: the quick run's reports, the table writer, and the committed table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ocrformer
from benchmarks import attention_speed as bench
from ocrformer import attention

from .helpers.runs import run_script

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "attention_speed.py"
DECODER_SHAPE = {"bh": 1, "lq": 19, "lk": 32768, "d": 720, "dv": 512}


@pytest.mark.subprocess
@pytest.mark.slow  # ~10 s on 2 idle cores, over 20 s when they are shared
def test_quick_run_writes_reports(tmp_path: Path) -> None:
    # A subprocess, as users run it: from the repository root. --quiet-budget 0: this checks the reports,
    # not the timings, so it must not wait for a busy machine to go quiet.
    run_script(SCRIPT, "--quick", "--quiet-budget", "0", "--out", str(tmp_path), timeout=180)
    for name in ("attention_speed.md", "attention_speed.json", "attention_speed.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    report = json.loads((tmp_path / "attention_speed.json").read_text())
    quick_cases = bench.build_cases(list(bench.KINDS), ["float32"], list(bench.PASSES), quick=True)
    quick = {(c.kind, c.grad) for c in quick_cases}
    assert {(c["kind"], c["grad"]) for c in report["cases"]} == quick
    for case in report["cases"]:
        for backend in ("matmul", "sdpa", "auto"):
            assert case["median_ms"][backend] > 0, (case["case"], backend)
        assert case["floor_ms"] > 0
    assert "| decoder K=19 N=64x64 D=720 |" in (tmp_path / "attention_speed.md").read_text()


def test_write_table_is_sorted_atomic_and_keeps_other_devices(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    cuda_entry = {"device": "cuda", "dtype": "float32", "grad": False, "kind": "decoder", **DECODER_SHAPE,
                  "median_ms": {"sdpa": 1.0}, "min_ms": {"sdpa": 1.0}, "max_ms": {"sdpa": 1.0}}
    path.write_text(json.dumps({"entries": [cuda_entry], "runs": {"cuda": {"date": "old"}}}))
    result = {name: {"matmul": 2.0, "sdpa": 1.0, "auto": 1.5} for name in ("median_ms", "min_ms", "max_ms")}
    cases = [bench.encoder_case(19, (64, 64), 1, "float32", False),
             bench.decoder_case(19, (64, 64), 720, "float32", False)]
    meta = {"generated_by": "python benchmarks/attention_speed.py --write-table", "date": "2000-01-01",
            "machine": "test"}
    bench.write_table(path, [bench.table_entry(c, result, "cpu") for c in cases], meta)

    table = json.loads(path.read_text())
    assert table["generated_by"] == meta["generated_by"] and set(table["runs"]) == {"cpu", "cuda"}
    assert [(e["device"], e["kind"]) for e in table["entries"]] == [
        ("cpu", "decoder"), ("cpu", "encoder"), ("cuda", "decoder")
    ]
    assert all("auto" not in e["median_ms"] for e in table["entries"])  # auto is no backend to choose
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_committed_table_decides_decoder_shape_by_its_own_argmin() -> None:
    assert attention.TABLE_PATH.exists(), "run: python benchmarks/attention_speed.py --write-table"
    entries = json.loads(attention.TABLE_PATH.read_text())["entries"]
    matches = [e for e in entries if e["device"] == "cpu" and e["dtype"] == "float32" and not e["grad"]
               and all(e[key] == value for key, value in DECODER_SHAPE.items())]
    assert len(matches) == 1, "the table must hold the decoder shape (1,1,19,720)x(1,1,32768,720)"
    medians = matches[0]["median_ms"]
    q, k, v = torch.empty(1, 1, 19, 720), torch.empty(1, 1, 32768, 720), torch.empty(1, 1, 32768, 512)
    usable = ocrformer.available_backends(q, k, v)
    attention.reload_table()  # another test may have loaded a different table
    # The rule's own definition: the fastest of the usable backends the entry timed.
    expected = min((name for name in usable if name in medians), key=medians.get)
    assert ocrformer.choose_backend(q, k, v) == expected
