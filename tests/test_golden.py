"""Released networks' outputs, reproduced: the golden fixtures of ``../shared/golden``.

Each fixture is a checkpoint saved in an upstream project's layout with random weights, two inputs (64x128, a
multiple of 32, and 58x90, odd at every HRNet level) and the outputs that project's own code computed on them
(``../shared/golden/README.md``). Protocol (the fixtures' README): convert, load strictly into the matching
ocrformer model, run in eval mode in float32, and require ``max|out - ref| / max|ref|`` and
``||out - ref|| / ||ref||`` <= 1e-4 for the logits and aux logits at the output stride and after the upstream
inference's own upsampling to the input size, and for the backbone outputs where the fixture has them.

Where ``../shared/golden`` is absent (a clone made elsewhere) these tests skip and say what is missing;
``OCRFORMER_GOLDEN`` points them at another copy.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ocrformer import OCRHead, create_model
from ocrformer.backbones import FeatureAdapter
from ocrformer.convert import convert_checkpoint
from ocrformer.layouts import LAYOUTS

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(os.environ.get("OCRFORMER_GOLDEN", REPO.parent / "shared" / "golden"))
TOLERANCE = 1e-4

# fixture -> (layout, registered model, create_model overrides for the fixture's narrow widths)
FULL_MODELS = {
    "hrnet_ocr_official_w18_small_v2": ("hrnet-ocr", "ocrnet_hrnet_w18_small_v2", {}),
    "mmseg_ocrnet_hr18s": ("mmseg", "ocrnet_hrnet_w18_small_v2", {}),
    # ResNetV1c-50-D8 with every width / 8: timm's deep stem of width 4 and stage widths 8..64.
    "mmseg_ocrnet_r50_d8_narrow": (
        "mmseg",
        "ocrnet_resnet50_d8",
        {"backbone_kwargs": {"output_stride": 8, "stem_width": 4, "channels": (8, 16, 32, 64)}},
    ),
}
# Head fixtures (openseg: its released backbones are InPlaceABN networks, see ocrformer.convert): OCRHead
# arguments; the region branch and dropouts come from the layout.
HEADS = {
    "openseg_hrnet_ocr_head": ("hrnet", {"in_channels": 270, "mid_channels": 128, "key_channels": 64}),
    "openseg_resnet_ocr_head": (
        "last_two",
        {"in_channels": 256, "region_in_channels": 128, "region_channels": 64, "mid_channels": 64, "key_channels": 32},
    ),
}
# The head's eval computation: the fused inference path (the default) and the plain modules.
FUSED_EVAL = ["winograd", "direct", None]


def load_fixture(name: str) -> tuple[dict, dict, dict]:
    folder = GOLDEN / name
    if not folder.is_dir():
        pytest.skip(f"golden fixture {folder} is missing (../shared/golden beside the clone, or OCRFORMER_GOLDEN)")
    files = ("checkpoint.pth", "inputs.pt", "expected.pt")
    return tuple(torch.load(folder / file, map_location="cpu", weights_only=True) for file in files)


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)}, upstream {tuple(expected.shape)}"
    actual, expected = actual.double(), expected.double()
    max_rel = ((actual - expected).abs().max() / expected.abs().max()).item()
    l2_rel = ((actual - expected).norm() / expected.norm()).item()
    assert max_rel <= TOLERANCE and l2_rel <= TOLERANCE, f"{what}: max-rel {max_rel:.2e}, L2-rel {l2_rel:.2e}"


def convert_quietly(checkpoint: dict) -> dict:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "convert_checkpoint.*loss.criterion.weight")  # the official file's loss
        return convert_checkpoint(checkpoint)


def build_full_model(name: str):
    layout, model_name, overrides = FULL_MODELS[name]
    checkpoint, inputs, expected = load_fixture(name)
    converted = convert_quietly(checkpoint)
    assert converted["_extra_state"]["layout"] == layout
    model = create_model(model_name, weights=converted, **overrides).eval()  # strict load inside
    assert model.layout == layout and model.align_corners == expected["info"]["align_corners"]
    return model, inputs, expected


@pytest.mark.parametrize("fused_eval", FUSED_EVAL)
@pytest.mark.parametrize("name", list(FULL_MODELS))
def test_full_model_gives_the_upstream_outputs(name, fused_eval):
    model, inputs, expected = build_full_model(name)
    model.head.fused_eval = fused_eval
    for input_name, images in inputs.items():
        reference = expected[input_name]
        with torch.no_grad():
            native = model.logits_at_stride(images)
            at_input = model(images)
            features = model.backbone(images)
        upstream = reference["backbone"]  # the HRNet branches, or ResNet stages 3 and 4
        for i, (ours, theirs) in enumerate(zip(features[-len(upstream) :], upstream, strict=True)):
            assert_matches(ours, theirs, f"{name} {input_name} backbone output {i}")
        for key in ("logits", "aux_logits"):
            assert_matches(native[key], reference[key], f"{name} {input_name} {key} at stride")
            assert_matches(at_input[key], reference[f"{key}_at_input"], f"{name} {input_name} {key} at input size")


@pytest.mark.parametrize("fused_eval", FUSED_EVAL)
@pytest.mark.parametrize("name", list(HEADS))
def test_openseg_head_gives_the_upstream_outputs(name, fused_eval):
    features, kwargs = HEADS[name]
    checkpoint, inputs, expected = load_fixture(name)
    converted = convert_checkpoint(checkpoint)
    assert converted["_extra_state"]["layout"] == "openseg" and converted["_extra_state"]["features"] == features
    settings = LAYOUTS["openseg"].head(features)
    head = OCRHead(
        num_classes=expected["info"]["num_classes"],
        region_kernel_size=settings.region_kernel_size,
        region_dropout=settings.region_dropout,
        dropout=settings.dropout,
        **kwargs,
    ).eval()
    head.load_state_dict({k.removeprefix("head."): v for k, v in converted.items() if k.startswith("head.")})
    head.fused_eval = fused_eval
    align_corners = expected["info"]["align_corners"]
    for input_name, given in inputs.items():
        with torch.no_grad():
            if features == "hrnet":  # the branches concatenated as openseg's forward does it
                feats, _ = FeatureAdapter("hrnet", align_corners=align_corners)(list(given["branches"]))
                assert_matches(feats, given["feats"], f"{name} {input_name} concatenated branches")
                out = head(feats)
            else:  # stage 4 for OCR, stage 3 for the soft regions
                out = head(given["features"][1], given["features"][0])
        for key in ("logits", "aux_logits"):
            assert_matches(out[key], expected[input_name][key], f"{name} {input_name} {key} at stride")
            upsampled = F.interpolate(out[key], size=given["image_size"], mode="bilinear", align_corners=align_corners)
            assert_matches(upsampled, expected[input_name][f"{key}_at_input"], f"{name} {input_name} {key} at input")


def test_the_fixtures_catch_the_defects_they_were_made_for():
    """The comparison fails for what the project computed before: padding odd sizes to a multiple of 32, and
    another fuse upsampling than the source's (here mmseg's double resize with align_corners=False on the official
    network)."""
    model, inputs, expected = build_full_model("hrnet_ocr_official_w18_small_v2")
    images, reference = inputs["img_58x90"], expected["img_58x90"]["logits_at_input"]
    with torch.no_grad():
        padded = model(F.pad(images, (0, 6, 0, 6)))["logits"][..., :58, :90]
        for module in model.backbone.modules():
            if type(module).__name__ == "FuseUpsample":
                module.mode, module.align_corners = "bilinear-twice", False
        other_fuse = model(images)["logits"]
    for wrong, what in ((padded, "padded to 64x96"), (other_fuse, "mmseg's fuse upsampling")):
        with pytest.raises(AssertionError, match="max-rel"):
            assert_matches(wrong, reference, what)
