"""Released networks' outputs, reproduced: every golden fixture of ``../shared/golden`` (outputs of the upstream
projects' own code) converts, loads strictly and gives the upstream outputs within 1e-4 relative, at both input
sizes, at the output stride and after the upstream inference's upsampling, plain and optimized for inference.
The fixtures and the comparison: ``tests/helpers/golden.py``. Without ``../shared/golden`` these tests skip and
say what is missing."""

from __future__ import annotations

import pytest
import torch

from .helpers import golden

# The plain model (None) and its optimize_for_inference copy with each 3x3 conv.
CONVS = [None, "direct", "winograd2", "winograd4"]


def within_tolerance(result: dict[str, tuple[float, float]], fixture: str) -> None:
    failures = [f"{what}: {a:.2e} / {b:.2e}" for what, (a, b) in result.items() if max(a, b) > golden.TOLERANCE]
    assert not failures, f"{fixture} (max-rel / L2-rel above {golden.TOLERANCE}): " + "; ".join(failures)


def run(compare, name: str, conv: str | None) -> dict:
    try:
        return compare(name, conv)
    except golden.FixtureMissing as missing:
        pytest.skip(str(missing))


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("name", list(golden.FULL_MODELS))
def test_full_model_gives_the_upstream_outputs(name, conv):
    result = run(golden.compare_full_model, name, conv)
    assert len(result) >= 12  # both inputs: backbone outputs, logits and aux logits at stride and at input size
    within_tolerance(result, name)


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("name", list(golden.HEADS))
def test_openseg_head_gives_the_upstream_outputs(name, conv):
    result = run(golden.compare_head, name, conv)
    assert len(result) >= 8
    within_tolerance(result, name)


def test_the_fixtures_catch_the_defects_they_were_made_for():
    """The comparison fails for what the project computed before: padding odd sizes to a multiple of 32, and
    another fuse upsampling than the source's (here mmseg's double resize with align_corners=False on the official
    network)."""
    try:
        model, inputs, expected = golden.build_full_model("hrnet_ocr_official_w18_small_v2")
    except golden.FixtureMissing as missing:
        pytest.skip(str(missing))
    assert min(golden.padding_error()) > 100 * golden.TOLERANCE
    with torch.no_grad():
        for module in model.backbone.modules():
            if type(module).__name__ == "FuseUpsample":
                module.mode, module.align_corners = "bilinear-twice", False
        other_fuse = model(inputs["img_58x90"])["logits"]
    assert min(golden.errors(other_fuse, expected["img_58x90"]["logits_at_input"], "fuse")) > 100 * golden.TOLERANCE

