"""benchmarks/head_speed.py: the parity check before timing, the reports, the quick mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import head_speed as bench

from .helpers.runs import run_script

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "head_speed.py"
# Narrow widths: these tests check the machinery, not the speed.
TINY = [bench.Case("tiny", "eval", 1, 24, (8, 12), 5), bench.Case("tiny", "train", 2, 24, (6, 8), 5)]
FAST = ["--repeats", "1", "--warmup", "0", "--quiet-budget", "0"]


@pytest.fixture
def tiny_cases(monkeypatch):
    monkeypatch.setattr(bench, "build_cases", lambda quick: TINY)


def test_every_variant_computes_the_classic_function():
    for case in TINY:
        models, inputs = bench.build_models(case), bench.make_inputs(case)
        assert set(models) == set(case.variants)
        parity = bench.check_parity(case, models, inputs)
        assert parity["dtype"] == ("float64" if case.kind == "train" else "float32")
        assert all(max(e.values()) <= parity["tolerance"] for e in parity["errors"].values())
    fused = bench.build_models(TINY[0])["ocrformer fused winograd"]
    assert type(fused).__name__ == "FusedOCRHead" and fused.conv == "winograd" and not fused.training


@pytest.mark.parametrize("case", TINY, ids=lambda c: c.kind)
def test_parity_check_refuses_a_perturbed_head(case):
    models, inputs = bench.build_models(case), bench.make_inputs(case)
    victim = next(name for name in models if name != "classic")
    bench.perturb_(models[victim], 1e-3)
    with pytest.raises(bench.ParityError, match=f"{victim}.*refusing to time"):
        bench.check_parity(case, models, inputs)


def test_perturbed_run_times_nothing_and_writes_no_report(tiny_cases, tmp_path, monkeypatch, capsys):
    timed = []
    monkeypatch.setattr(bench, "time_case", lambda *a, **k: timed.append(a))
    assert bench.main(["--perturb", "1e-3", "--no-memory", "--out", str(tmp_path), *FAST]) == 2
    assert "refusing to time" in capsys.readouterr().err
    assert not timed and not list(tmp_path.iterdir())


def test_run_writes_json_and_markdown(tiny_cases, tmp_path):
    assert bench.main(["--no-memory", "--out", str(tmp_path), *FAST]) == 0
    report = json.loads((tmp_path / "head_speed.json").read_text())
    assert [c["kind"] for c in report["cases"]] == ["eval", "train"]
    assert report["rates"]["matmul_gflops"]["float32"] > 0 and report["rates"]["copy_gbps"] > 0
    for case in report["cases"]:
        assert case["floor_ms"] > 0 and case["floor_bound"] in ("compute", "memory")
        assert set(case["variants"]) == set(bench.EVAL_VARIANTS if case["kind"] == "eval" else bench.TRAIN_VARIANTS)
        for variant in case["variants"].values():
            assert variant["median_ms"] > 0 and variant["flops"] > 0
            assert variant["x_floor"] == pytest.approx(variant["median_ms"] / case["floor_ms"])
            assert variant["parity_err"] <= case["parity"]["tolerance"]
    # Winograd does fewer multiplications than the direct conv; the FLOP counter sees it.
    flops = report["cases"][0]["variants"]
    assert flops["ocrformer fused winograd"]["flops"] < flops["ocrformer fused direct"]["flops"]
    table = (tmp_path / "head_speed.md").read_text()
    assert "| eval tiny: B=1 Cin=24 8x12 K=5 | ocrformer fused winograd |" in table


def test_peak_memory_of_a_fresh_process():
    case = bench.Case("tiny", "eval", 1, 24, (8, 12), 5)
    peak = bench.peak_memory(case, "ocrformer fused winograd", threads=1)
    assert peak is not None and 0 <= peak < 200


def test_flop_count_matches_the_formula():
    """The classic eval count is the closed form of its convs and matmuls (2 FLOPs per multiply-add)."""
    case = bench.Case("tiny", "eval", 1, 24, (8, 12), 5)
    models, inputs = bench.build_models(case, ["classic"]), bench.make_inputs(case)
    n, cin, k, c, dk = 8 * 12, 24, 5, 512, 256
    per_pixel = cin * cin + cin * k + 9 * cin * c + k * c + c * dk + dk * dk + 2 * k * dk + dk * c + 2 * c * c + c * k
    per_region = c * dk + dk * dk + c * dk  # f_object (2 layers) and f_down on the K regions
    expected = 2 * (n * per_pixel + k * per_region)
    assert bench.count_flops(case, models["classic"], inputs) == expected


@pytest.mark.slow  # ~30-45 s on 2 cores: builds HRNet-width heads and forks a process per variant
def test_quick_mode_runs_from_the_command_line(tmp_path):
    run_script(SCRIPT, "--quick", "--out", str(tmp_path), timeout=300)
    report = json.loads((tmp_path / "head_speed.json").read_text())
    assert [(c["kind"], c["in_channels"]) for c in report["cases"]] == [("eval", 720), ("train", 720)]
    for case in report["cases"]:
        for variant in case["variants"].values():
            assert variant["median_ms"] > 0 and variant["peak_mb"] is not None
    assert "| eval quick: B=1 Cin=720 32x64 K=19 | classic |" in (tmp_path / "head_speed.md").read_text()


def test_conv_variants_table():
    text = bench.conv_variants((6, 9), repeats=1, cin=8, cout=4)
    assert "| oneDNN direct, NCHW (as the classic head) |" in text
    assert "| Winograd F(2x2, 3x3), ocrformer.winograd (incl. padding copy) |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "ms" not in line]
    assert all(float(row.split("|")[4]) < 1e-5 for row in rows if "NNPACK" not in row)
