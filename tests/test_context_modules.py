"""benchmarks/context_modules.py: every measured module's shape, fused == explicit attention in float64, FLOP
counting on meta tensors, and the quick run's reports. The modules themselves (``ocrformer.context``), each
attention written out by hand and their parameter counts against the paper are tested in
``tests/test_context_heads.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import context_modules as bench
from benchmarks.classic_ocr import randomize_
from ocrformer import OCRHead, attention_backend

from .helpers.runs import run_script

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "context_modules.py"
ATTENDING = [spec for spec in bench.SPECS if spec.attends]
by_key = pytest.mark.parametrize("spec", bench.SPECS, ids=lambda spec: spec.key)


def random_module(spec: bench.Spec, in_channels: int, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """The module with every parameter and BN statistic random (so zero-initialised gammas cannot hide the
    attention), in eval mode."""
    return randomize_(spec.build(in_channels), seed=0).to(dtype).eval()


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@by_key
def test_module_maps_input_to_out_channels(spec: bench.Spec) -> None:
    model = random_module(spec, 16, torch.float32)
    x = torch.randn(2, 16, 12, 20)  # not a multiple of ISA's 8 x 8 groups: exercises its padding
    with torch.no_grad(), attention_backend("matmul"):
        y = model(x)
    assert y.shape == (2, model.out_channels, 12, 20)
    assert torch.isfinite(y).all()


# Two input scales: with random weights, some maps are near-uniform at 1 and near-one-hot at 4; neither
# extreme alone would test much.
@pytest.mark.parametrize("scale", [1.0, 4.0])
@pytest.mark.parametrize("spec", ATTENDING, ids=lambda spec: spec.key)
def test_sdpa_path_matches_explicit_attention_map(spec: bench.Spec, scale: float) -> None:
    model = random_module(spec, 16)
    x = scale * torch.randn(2, 16, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        with attention_backend("matmul"):
            explicit = model(x)
        with attention_backend("sdpa"), bench.SdpaKernelLog() as log:
            fused = model(x)
    assert log.kernels, "the sdpa path never called scaled_dot_product_attention"
    if spec.key == "self_attention":  # D = Dv = 256, contiguous: torch's CPU flash kernel, no N x N map
        assert set(log.kernels) == {"flash_attention"}
    torch.testing.assert_close(fused, explicit, rtol=1e-10, atol=1e-10)


@by_key
def test_meta_flop_count_equals_count_on_real_tensors(spec: bench.Spec) -> None:
    size = (16, 8, 8)
    assert bench.count_flops(spec, size)[0] == bench.count_flops(spec, size, device="cpu")[0] > 0


def test_flop_counts_at_full_size() -> None:
    cin, height, width = bench.FULL_SIZE
    n = height * width
    ppm = 2 * n * (cin + 4 * 512) * 512 * 9 + 2 * (1 + 4 + 9 + 36) * cin * 512  # bottleneck + pyramid 1x1s
    assert bench.count_flops(bench.SPECS_BY_KEY["ppm"], bench.FULL_SIZE)[0] == ppm
    # The fused path is counted like the explicit one: 2 * N^2 * (D + Dv) for the self-attention map.
    self_attention = bench.SPECS_BY_KEY["self_attention"]
    explicit = bench.count_flops(self_attention, bench.FULL_SIZE)[0]
    assert bench.count_flops(self_attention, bench.FULL_SIZE, backend="sdpa")[0] == explicit
    front = 2 * n * cin * 512 * 9
    projections = 2 * n * (2 * (512 * 256 + 256 * 256) + 512 * 256 + 256 * 512 + 1024 * 512)
    assert explicit == front + projections + 2 * n * n * (256 + 256)


def test_ocr_parameters_are_ocrhead_without_classifier_and_aux_hidden_conv() -> None:
    with torch.device("meta"):
        head = OCRHead(2048, bench.NUM_CLASSES)
    without_classifier = numel(head) - numel(head.classifier)
    assert bench.count_params(bench.SPECS_BY_KEY["ocr_aux"]) == without_classifier
    assert bench.count_params(bench.SPECS_BY_KEY["ocr"]) == without_classifier - numel(head.decoder.key_proj)


@pytest.mark.subprocess
@pytest.mark.slow
def test_quick_run_writes_reports(tmp_path: Path) -> None:
    # A subprocess, as users run it: from the repository root, without installing anything.
    run_script(SCRIPT, "--quick", "--out", str(tmp_path), timeout=300)
    report = json.loads((tmp_path / "context_modules.json").read_text())
    expected = {(s.key, b) for s in bench.SPECS if s.timed for b in bench.backends_for(s, "cpu")}
    assert {(row["key"], row["backend"]) for row in report["rows"]} == expected
    for row in report["rows"]:
        assert row["error"] is None, row
        for field in ("params_m", "gflops", "gflops_full", "peak_mb", "median_ms", "min_ms"):
            assert row[field] > 0, (row["key"], row["backend"], field)
    assert {row["key"] for row in report["full_size"]} == set(bench.SPECS_BY_KEY)
    text = (tmp_path / "context_modules.md").read_text()
    for spec in bench.SPECS:
        assert f"| {spec.name} |" in text
