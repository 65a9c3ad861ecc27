"""Released checkpoints at their real sizes, and checkpoints that must not load.

The generators of ``tests/helpers/released_layouts.py`` write each codebase's key layout from its module tree;
they are first checked against the key sets and shapes the upstream code itself saved (the golden fixtures, at
narrow widths), then used at the released widths: HRNet-W48 (official, openseg, mmseg) and ResNet-101-D8
(openseg, mmseg) convert and load strictly into ``ocrnet_hrnet_w48`` / ``ocrnet_resnet101_d8``.
"""

from __future__ import annotations

import pytest
import torch

from ocrformer import create_model

from .helpers import released_layouts as layouts
from .helpers.golden import FixtureMissing, convert_quietly, load_fixture


def test_generated_layouts_are_the_upstream_key_sets():
    """At the golden fixtures' narrow widths, every generator gives exactly the keys and shapes in the files the
    upstream code saved -- so the full-size layouts below are the released ones, not guesses."""
    generated = {
        "hrnet_ocr_official_w18_small_v2": layouts.official_hrnet_ocr(layouts.HRNET_W18_SMALL_V2, 19, 128, 64),
        "mmseg_ocrnet_hr18s": layouts.mmseg_ocrnet_hrnet(layouts.HRNET_W18_SMALL_V2, 19, 128, 64),
        "mmseg_ocrnet_r50_d8_narrow": layouts.mmseg_ocrnet_resnet(19, (3, 4, 6, 3), 8, 8, fcn=32, mid=64, key=32),
        "openseg_hrnet_ocr_head": layouts.openseg_hrnet_w48_ocr(None, 19, c=270, mid=128, key=64),
        "openseg_resnet_ocr_head": layouts.openseg_spatial_ocrnet(19, False, (128, 256), region=64, mid=64, key=32),
    }
    for name, shapes in generated.items():
        try:
            checkpoint, _, _ = load_fixture(name)
        except FixtureMissing as missing:
            pytest.skip(str(missing))
        saved = layouts.shapes_of(checkpoint.get("state_dict", checkpoint))
        assert saved.keys() == shapes.keys(), f"{name}: {sorted(saved.keys() ^ shapes.keys())[:8]}"
        wrong = [k for k in saved if saved[k] != shapes[k]]
        assert not wrong, f"{name}: shapes differ for {wrong[:8]}"


RELEASED = {
    "official HRNet-W48-OCR": (layouts.official_hrnet_ocr(layouts.HRNET_W48, 19), "ocrnet_hrnet_w48", "hrnet-ocr"),
    "openseg HRNet_W48_OCR": (layouts.openseg_hrnet_w48_ocr(layouts.HRNET_W48, 19), "ocrnet_hrnet_w48", "openseg"),
    "mmseg ocrnet_hr48": (layouts.mmseg_ocrnet_hrnet(layouts.HRNET_W48, 19), "ocrnet_hrnet_w48", "mmseg"),
    "openseg SpatialOCRNet R101-D8": (layouts.openseg_spatial_ocrnet(19), "ocrnet_resnet101_d8", "openseg"),
    "mmseg ocrnet_r101-d8": (layouts.mmseg_ocrnet_resnet(19), "ocrnet_resnet101_d8", "mmseg"),
}


@pytest.mark.parametrize("name", list(RELEASED))
def test_released_checkpoints_load_strictly_into_the_registered_models(name):
    shapes, model_name, layout = RELEASED[name]
    state = layouts.random_state(shapes)
    converted = convert_quietly(state)
    assert converted["_extra_state"]["layout"] == layout
    model = create_model(model_name, weights=converted).eval()  # strict: every key used, every shape right
    assert model.layout == layout and model.num_classes == 19
    loaded = model.state_dict()
    for key, value in converted.items():
        if key != "_extra_state":
            assert torch.equal(loaded[key], value), key
    with torch.no_grad():
        assert model(torch.randn(1, 3, 45, 61))["logits"].shape == (1, 19, 45, 61)


SMALL = layouts.HRNET_W18_SMALL_V2


def small_checkpoint(generator, **kwargs) -> dict:
    """A converted checkpoint of some codebase's HRNet-W18-Small-v2 OCRNet with a narrow head, 5 classes."""
    return convert_quietly(layouts.random_state(generator(SMALL, 5, mid=16, key=8, **kwargs)))


def small_model(layout: str, **kwargs):
    return create_model("ocrnet_hrnet_w18_small_v2", 5, layout=layout, mid_channels=16, key_channels=8, **kwargs)


def test_a_checkpoint_is_refused_by_a_model_that_computes_something_else():
    mmseg = small_checkpoint(layouts.mmseg_ocrnet_hrnet)
    model = small_model("hrnet-ocr")
    with pytest.raises(ValueError, match=r"layout 'mmseg'.*built with layout 'hrnet-ocr'") as info:
        model.load_state_dict(mmseg)
    assert "align_corners=False (model: True)" in str(info.value)
    assert "hrnet_fuse='bilinear-twice' (model: 'bilinear')" in str(info.value)
    small_model("mmseg").load_state_dict(mmseg)  # the same weights in the network they were made for

    official = small_checkpoint(layouts.official_hrnet_ocr)
    small_model("ocrformer").load_state_dict(official)  # ocrformer's HRNet OCRNet computes the official function
    with pytest.raises(ValueError, match=r"num_heads=1 \(model: 2\)"):
        small_model("hrnet-ocr", num_heads=2).load_state_dict(official)  # same shapes, another function
    with pytest.raises(ValueError, match=r"layout 'hrnet-ocr'.*built with layout 'mmseg'"):
        small_model("mmseg").load_state_dict(official)


def test_weights_without_a_layout_entry_are_refused_with_what_to_do():
    state = small_model("ocrformer").state_dict()
    del state["_extra_state"]
    with pytest.raises(RuntimeError, match="no _extra_state entry.*python -m ocrformer.convert"):
        small_model("ocrformer").load_state_dict(state)
    with pytest.raises(ValueError, match="no _extra_state entry.*convert a released checkpoint first"):
        create_model("ocrnet_hrnet_w18", weights=state)
    with pytest.raises(ValueError, match="num_classes=4, but the weights classify 5 classes"):
        create_model("ocrnet_hrnet_w18", 4, weights=small_checkpoint(layouts.official_hrnet_ocr))
    with pytest.raises(ValueError, match="layout must be one of"):
        small_model("detectron2")
    with pytest.raises(ValueError, match="layout 'hrnet-ocr'.*has no dilated-ResNet OCRNet"):
        create_model("ocrnet_resnet50_d8", 5, layout="hrnet-ocr")


def test_converted_checkpoints_round_trip_through_files(tmp_path):
    """A converted file is plain data (loads with weights_only=True) and builds its model from the path alone."""
    converted = small_checkpoint(layouts.openseg_hrnet_w48_ocr, c=270)
    torch.save(converted, tmp_path / "openseg.pth")
    assert torch.load(tmp_path / "openseg.pth", weights_only=True)["_extra_state"] == converted["_extra_state"]
    model = create_model("ocrnet_hrnet_w18_small_v2", weights=tmp_path / "openseg.pth")
    assert model.layout == "openseg" and model.input_channels == "BGR" and model.num_classes == 5
    assert model.head.decoder.key_proj.conv.kernel_size == (3, 3)  # openseg's 3x3 region conv
    with pytest.raises(FileNotFoundError, match="weights file .*missing.pth"):
        create_model("ocrnet_hrnet_w18_small_v2", weights=tmp_path / "missing.pth")
