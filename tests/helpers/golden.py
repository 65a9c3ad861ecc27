"""The golden fixtures of ``../shared/golden``: which ocrformer model reproduces each, and the comparison.

Each fixture is a checkpoint saved in an upstream project's layout with random weights, two inputs (64x128, a
multiple of 32, and 58x90, odd at every HRNet level) and the outputs that project's own code computed on them
(``../shared/golden/README.md``). Protocol (the fixtures' README): convert, load strictly into the matching
ocrformer model, run in eval mode in float32, and compare the logits and aux logits at the output stride and after
the upstream inference's own upsampling to the input size (and the backbone outputs where the fixture has them)
by ``max|out - ref| / max|ref|`` and ``||out - ref|| / ||ref||``; both must be <= 1e-4 -- for the plain model and
for its ``optimize_for_inference`` copy (BatchNorm folded, channels-last, the fused head, either 3x3 conv).

``tests/test_golden.py`` asserts this. ``python -m tests.helpers.golden`` prints the measured errors of every
fixture (the README's table), and what padding the 58x90 input to a multiple of 32 would cost.
``OCRFORMER_GOLDEN`` points at another copy of the fixtures.
"""

from __future__ import annotations

import datetime
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.classic_ocr import head_state_dict
from ocrformer import FusedOCRHead, OCRHead, create_model, optimize_for_inference
from ocrformer.backbones import FeatureAdapter
from ocrformer.convert import convert_checkpoint
from ocrformer.layouts import LAYOUTS

REPO = Path(__file__).resolve().parents[2]
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
# Head fixtures (openseg's released backbones are InPlaceABN networks, see ocrformer.convert): how OCR reads the
# backbone, and OCRHead's widths; the region branch and dropouts come from the layout.
HEADS = {
    "openseg_hrnet_ocr_head": ("hrnet", {"in_channels": 270, "mid_channels": 128, "key_channels": 64}),
    "openseg_resnet_ocr_head": (
        "last_two",
        {"in_channels": 256, "region_in_channels": 128, "region_channels": 64, "mid_channels": 64, "key_channels": 32},
    ),
}


class FixtureMissing(Exception):
    """The fixture folder is not there (a clone made without ../shared beside it)."""


def load_fixture(name: str) -> tuple[dict, dict, dict]:
    folder = GOLDEN / name
    if not folder.is_dir():
        raise FixtureMissing(f"golden fixture {folder} is missing (put ../shared/golden beside the clone or set "
                             "OCRFORMER_GOLDEN)")
    files = ("checkpoint.pth", "inputs.pt", "expected.pt")
    return tuple(torch.load(folder / file, map_location="cpu", weights_only=True) for file in files)


def errors(actual: torch.Tensor, expected: torch.Tensor, what: str) -> tuple[float, float]:
    """(max-abs relative, L2 relative) of ``actual`` against the upstream ``expected``."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {tuple(actual.shape)}, upstream {tuple(expected.shape)}")
    actual, expected = actual.double(), expected.double()
    diff = actual - expected
    return (diff.abs().max() / expected.abs().max()).item(), (diff.norm() / expected.norm()).item()


def convert_quietly(checkpoint: dict) -> dict:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "convert_checkpoint.*loss.criterion.weight")  # the official file's loss
        return convert_checkpoint(checkpoint)


def build_full_model(name: str):
    """(model, inputs, expected) for a full-model fixture; the model loaded strictly from the converted file."""
    layout, model_name, overrides = FULL_MODELS[name]
    checkpoint, inputs, expected = load_fixture(name)
    converted = convert_quietly(checkpoint)
    assert converted["_extra_state"]["layout"] == layout
    model = create_model(model_name, weights=converted, **overrides).eval()
    assert model.layout == layout and model.align_corners == expected["info"]["align_corners"]
    return model, inputs, expected


def compare_full_model(name: str, conv: str | None) -> dict[str, tuple[float, float]]:
    """``{what: (max-rel, L2-rel)}`` for every compared tensor of a full-model fixture: the plain model
    (``conv=None``) or its ``optimize_for_inference`` copy with that 3x3 conv."""
    model, inputs, expected = build_full_model(name)
    if conv is not None:
        model = optimize_for_inference(model, conv=conv)
    result = {}
    for input_name, images in inputs.items():
        reference = expected[input_name]
        with torch.no_grad():
            native, at_input, features = model.logits_at_stride(images), model(images), model.backbone(images)
        upstream = reference["backbone"]  # the HRNet branches, or ResNet stages 3 and 4
        for i, (ours, theirs) in enumerate(zip(features[-len(upstream) :], upstream, strict=True)):
            what = f"{input_name} backbone output {i}"
            result[what] = errors(ours, theirs, what)
        for key in ("logits", "aux_logits"):
            result[f"{input_name} {key} at stride"] = errors(native[key], reference[key], key)
            result[f"{input_name} {key} at input"] = errors(at_input[key], reference[f"{key}_at_input"], key)
    return result


def compare_head(name: str, conv: str | None) -> dict[str, tuple[float, float]]:
    """The same for a head fixture: openseg's head on the given features (``conv``: as a ``FusedOCRHead``)."""
    features, kwargs = HEADS[name]
    checkpoint, inputs, expected = load_fixture(name)
    converted = convert_checkpoint(checkpoint)
    assert converted["_extra_state"]["layout"] == "openseg" and converted["_extra_state"]["features"] == features
    settings = LAYOUTS["openseg"].head(features)
    head = OCRHead(num_classes=expected["info"]["num_classes"], region_kernel_size=settings.region_kernel_size,
                   region_dropout=settings.region_dropout, dropout=settings.dropout, **kwargs).eval()
    head.load_state_dict(head_state_dict(converted))
    if conv is not None:
        head = FusedOCRHead(head, conv=conv)
    align_corners = expected["info"]["align_corners"]
    result = {}
    for input_name, given in inputs.items():
        with torch.no_grad():
            if features == "hrnet":  # the branches concatenated as openseg's forward does it
                feats, _ = FeatureAdapter("hrnet", align_corners=align_corners)(list(given["branches"]))
                result[f"{input_name} concatenated branches"] = errors(feats, given["feats"], "feats")
                out = head(feats)
            else:  # stage 4 for OCR, stage 3 for the soft regions
                out = head(given["features"][1], given["features"][0])
        for key in ("logits", "aux_logits"):
            result[f"{input_name} {key} at stride"] = errors(out[key], expected[input_name][key], key)
            up = F.interpolate(out[key], size=given["image_size"], mode="bilinear", align_corners=align_corners)
            result[f"{input_name} {key} at input"] = errors(up, expected[input_name][f"{key}_at_input"], key)
    return result


def padding_error() -> tuple[float, float]:
    """What the earlier ocrformer did at odd sizes -- pad to a multiple of 32, crop the output -- measured on the
    official fixture's 58x90 input (logits at the input size against the upstream's)."""
    model, inputs, expected = build_full_model("hrnet_ocr_official_w18_small_v2")
    with torch.no_grad():
        padded = model(F.pad(inputs["img_58x90"], (0, 6, 0, 6)))["logits"][..., :58, :90]
    return errors(padded, expected["img_58x90"]["logits_at_input"], "padded")


def main() -> None:
    print(f"Golden fixtures ({GOLDEN}), {datetime.date.today().isoformat()}, torch {torch.__version__}: the "
          "worst relative error over both inputs and every compared tensor (max-abs / L2), plain and optimized.\n")
    print("| fixture | plain modules | optimized, direct conv | optimized, Winograd F(2x2) | optimized, Winograd "
          "F(4x4) |\n|:--|--:|--:|--:|--:|")
    for name in [*FULL_MODELS, *HEADS]:
        compare = compare_full_model if name in FULL_MODELS else compare_head
        cells = []
        for conv in (None, "direct", "winograd2", "winograd4"):
            result = compare(name, conv)
            cells.append(f"{max(r[0] for r in result.values()):.1e} / {max(r[1] for r in result.values()):.1e}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    max_rel, l2_rel = padding_error()
    print(f"\nPadding the 58x90 input to 64x96 instead (official fixture, logits at the input size): {max_rel:.2f} "
          f"max-abs / {l2_rel:.2f} L2 relative error.")


if __name__ == "__main__":
    main()
