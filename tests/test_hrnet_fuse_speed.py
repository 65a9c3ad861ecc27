"""benchmarks/hrnet_fuse_speed.py: the three fuse variants share their weights, and the quick run's report."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import hrnet_fuse_speed as bench

from .helpers.numerics import relative_error


def test_variants_share_weights_and_differ_only_in_the_fuse():
    variants = bench.build_variants("ocrnet_hrnet_w18_small_v2", 4)
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = {name: model(images)["logits"] for name, model in variants.items()}
    nearest, bilinear = variants["timm nearest"].body.state_dict(), variants["bilinear"].backbone.state_dict()
    assert nearest.keys() == bilinear.keys() and all(torch.equal(nearest[k], bilinear[k]) for k in nearest)
    assert relative_error(out["timm nearest"], out["bilinear"]) > 1e-3  # another function
    assert relative_error(out["bilinear twice"], out["bilinear"]) < 1e-5  # sizes halve exactly at 64x96


@pytest.mark.slow
def test_quick_run_writes_the_report(tmp_path):
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "hrnet_fuse_speed.json").read_text())
    assert report["model"] == "ocrnet_hrnet_w18_small_v2" and report["size"] == [128, 256]
    assert set(report["result"]["ms"]) == {"timm nearest", "bilinear", "bilinear twice"}
    assert all(0 < s["min"] <= s["median"] <= s["max"] for s in report["result"]["ms"].values())
    assert report["result"]["nearest_vs_bilinear_relative_l2"] > 1e-3
    assert "| bilinear twice |" in (tmp_path / "hrnet_fuse_speed.md").read_text()
