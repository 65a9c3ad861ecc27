"""benchmarks/inference_speed.py: parity before timing, and the report of a quick run."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import inference_speed as bench
from ocrformer.fused_head import auto_conv


def test_a_variant_of_another_function_is_refused():
    reference = {"logits": torch.ones(2, 3), "aux_logits": torch.ones(2, 3)}
    close = {k: v * (1 + 1e-7) for k, v in reference.items()}
    other = {k: v * (1 + 1e-3) for k, v in reference.items()}
    assert bench.check("head", "case", {"classic": reference, "same": close}, "classic")["same"] < 1e-6
    with pytest.raises(bench.ParityError, match="case: .*'other'.*refusing to time"):
        bench.check("head", "case", {"classic": reference, "same": close, "other": other}, "classic")


@pytest.mark.subprocess
@pytest.mark.slow
def test_quick_run_writes_every_case(tmp_path):
    assert bench.main(["--quick", "--repeats", "1", "--warmup", "0", "--no-compile", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "inference_speed.json").read_text())
    names = [case["case"] for case in report["cases"]]
    assert len([n for n in names if n.startswith("head eval")]) == len(bench.QUICK.head_sizes)
    heads = [case for case in report["cases"] if case["case"].startswith("head eval")]
    assert all(set(case["ms"]) >= {"fused direct", "fused winograd2", "fused winograd4"} for case in heads)
    for case, (h, w) in zip(heads, bench.QUICK.head_sizes, strict=True):
        assert case["case"].endswith(f"{h}x{w} (auto: {auto_conv(h * w)})")
    assert any(n.startswith("ocrnet_hrnet_w18_small_v2 eval") for n in names) and names[-1].startswith("train step")
    for case in report["cases"]:
        assert case["baseline"] in case["ms"] and all(s["median"] > 0 for s in case["ms"].values())
        assert all(error <= 1e-4 for error in case["errors"].values())
    model, kept = [case for case in report["cases"] if "eval, 1x3x" in case["case"]]
    assert set(model["ms"]) == {"plain", "optimized", "optimized, direct conv"}
    # The same model in a fresh process whose glibc keeps freed memory: plain against the default optimization.
    assert kept["case"].endswith("(glibc keeps freed memory)") and set(kept["ms"]) == {"plain", "optimized"}
    assert "| train step, B=2, 48 ch, 16x32 | OCRHead |" in (tmp_path / "inference_speed.md").read_text()
    peaks = report["cases"][-1]["peak_mb"]
    assert set(peaks) == {"classic", "OCRHead"} and all(mb > 0 for mb in peaks.values())


@pytest.mark.subprocess
def test_fresh_process_starts_with_the_environment_and_leaves_ours_alone(monkeypatch):
    import os

    from benchmarks._common import fresh_process_with_env

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with fresh_process_with_env({"MALLOC_TRIM_THRESHOLD_": "12345"}) as pool:
        assert pool.submit(os.getenv, "MALLOC_TRIM_THRESHOLD_").result() == "12345"
        assert os.getenv("MALLOC_TRIM_THRESHOLD_") is None
