"""convert_checkpoint: prefixes, backbone keys, missing and unknown keys, mmsegmentation layout, layout detection
and the layout entry, refusals, CLI. (Whole released models: tests/test_golden.py, tests/test_released_layouts.py.)"""

import re
import subprocess
import sys
import warnings

import pytest
import torch

from benchmarks.classic_ocr import ClassicOCRHead, randomize_
from ocrformer import OCRHead
from ocrformer.convert import convert_checkpoint

from .helpers import released_layouts
from .helpers.numerics import head_state_dict, relative_error

# A few keys in the layout of the HRNet backbone inside the classic segmentation model.
HRNET_BACKBONE_KEYS = [
    "conv1.weight",
    "bn1.running_var",
    "layer1.0.conv1.weight",
    "transition1.0.0.weight",
    "stage2.0.branches.0.0.conv1.weight",
    "stage4.2.fuse_layers.3.0.0.1.weight",
]


def classic_checkpoint(prefix="", seed=0):
    classic = randomize_(ClassicOCRHead(10, 4, mid_channels=12, key_channels=6), seed).double().eval()
    state = {prefix + k: v for k, v in classic.state_dict().items()}
    for i, key in enumerate(HRNET_BACKBONE_KEYS):
        state[prefix + key] = torch.full((2,), float(i))
    return classic, state


def load_head(converted, **kwargs):
    head = OCRHead(10, 4, mid_channels=12, key_channels=6, **kwargs).double().eval()
    head.load_state_dict(head_state_dict(converted), strict=True)
    return head


@pytest.mark.parametrize("prefix", ["", "model.", "module.", "module.model."])
def test_prefixes_are_stripped_and_backbone_kept(prefix):
    classic, state = classic_checkpoint(prefix)
    converted = convert_checkpoint(state)
    for i, key in enumerate(HRNET_BACKBONE_KEYS):
        assert torch.equal(converted["backbone." + key], torch.full((2,), float(i)))
    head = load_head(converted)
    feats = torch.randn(1, 10, 6, 5, dtype=torch.float64)
    with torch.no_grad():
        assert relative_error(head(feats)["logits"], classic(feats)["logits"]) <= 1e-10
    assert all(k.startswith(("head.", "backbone.")) for k in converted if k != "_extra_state")
    assert converted["_extra_state"]["layout"] == "hrnet-ocr"
    assert converted["_extra_state"]["hrnet_fuse"] == "bilinear" and converted["_extra_state"]["align_corners"]


def test_wrapped_checkpoint_file_dict():
    _, state = classic_checkpoint("model.")
    assert convert_checkpoint({"state_dict": state}).keys() == convert_checkpoint(state).keys()


def test_unknown_keys_are_reported_not_dropped_silently():
    _, state = classic_checkpoint("model.")
    state["loss.criterion.weight"] = torch.ones(4)
    state["model.cls_head.extra"] = torch.ones(1)
    with pytest.warns(UserWarning, match=r"2 keys are neither.*cls_head.extra, loss.criterion.weight"):
        converted = convert_checkpoint(state)
    assert not any("criterion" in k or k.endswith("cls_head.extra") for k in converted)


def test_clean_checkpoint_converts_without_warnings():
    _, state = classic_checkpoint("module.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert_checkpoint(state)


def test_missing_head_keys_are_all_named():
    _, state = classic_checkpoint("model.")
    del state["model.cls_head.weight"]
    del state["model.ocr_distri_head.object_context_block.f_up.1.0.running_var"]
    with pytest.raises(ValueError, match="lacks 2 OCR head keys") as info:
        convert_checkpoint(state)
    assert "cls_head.weight" in str(info.value)
    assert "ocr_distri_head.object_context_block.f_up.1.0.running_var" in str(info.value)


def test_checkpoints_without_num_batches_tracked_still_load():
    _, state = classic_checkpoint()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    head = load_head(convert_checkpoint(state))
    assert int(head.decoder.key_proj.bn.num_batches_tracked) == 0


def test_unknown_source_and_bad_input():
    with pytest.raises(ValueError, match=r"source must be one of \['hrnet-ocr', 'openseg', 'mmseg'\]"):
        convert_checkpoint({}, source="detectron2")
    with pytest.raises(ValueError, match="mapping"):
        convert_checkpoint([1, 2])


def test_unrecognised_layout_says_what_each_layout_looks_like():
    state = {"backbone.conv1.weight": torch.ones(1), "decode_head.conv_seg.weight": torch.ones(1)}
    with pytest.raises(ValueError, match="cannot recognise the checkpoint's layout") as info:
        convert_checkpoint(state)
    message = str(info.value)
    for expected in ("conv3x3_ocr.*", "HRNet_W48_OCR", "SpatialOCRNet", "decode_head.1.* OCRHead", "2 keys"):
        assert expected in message, expected
    with pytest.raises(ValueError, match="cannot recognise.*it is empty|cannot recognise.*nothing"):
        convert_checkpoint({})


def test_a_wrong_source_is_refused_naming_the_detected_one():
    _, state = classic_checkpoint("model.")
    with pytest.raises(ValueError, match=r"source='mmseg'.*has the 'hrnet-ocr' layout.*source='hrnet-ocr'"):
        convert_checkpoint(state, source="mmseg")


def openseg_head_checkpoint(**config):
    """A tiny openseg HRNet_W48_OCR head state dict (bn_type torchbn) in its saved form."""
    shapes = released_layouts.openseg_hrnet_w48_ocr(None, 4, c=10, mid=12, key=6)
    network = {"model_name": "hrnet_w48_ocr", "backbone": "hrnet48", "bn_type": "torchbn", **config}
    return {"config_dict": {"network": network}, "state_dict": released_layouts.random_state(shapes)}


def test_openseg_variants_that_compute_something_else_are_refused():
    assert convert_checkpoint(openseg_head_checkpoint())["_extra_state"]["layout"] == "openseg"
    abn = openseg_head_checkpoint()  # InPlaceABNSync: BNReLU is one module (no ".0"), no num_batches_tracked
    abn["state_dict"] = {k.replace(".1.0.", ".1.").replace(".3.0.", ".3."): v for k, v in abn["state_dict"].items()}
    for bad in (abn, openseg_head_checkpoint(bn_type="inplace_abn")):
        with pytest.raises(ValueError, match=r"inplace_abn.*LeakyReLU\(0.01\).*\|weight\| \+ eps"):
            convert_checkpoint(bad)
    backbone = openseg_head_checkpoint()  # openseg's HRNet backbone hard-codes InPlaceABNSync in some versions
    norm = ("weight", "bias", "running_mean", "running_var")
    backbone["state_dict"] |= {f"backbone.bn1.{k}": torch.ones(3) for k in norm}
    with pytest.raises(ValueError, match="backbone norms have no num_batches_tracked.*InPlaceABNSync"):
        convert_checkpoint(backbone)
    backbone["state_dict"]["backbone.bn1.num_batches_tracked"] = torch.tensor(1)
    assert "backbone.bn1.weight" in convert_checkpoint(backbone)
    with pytest.raises(ValueError, match="'hrnet_w48_ocr_b'.*variants change the head"):
        convert_checkpoint(openseg_head_checkpoint(model_name="hrnet_w48_ocr_b"))
    with pytest.raises(ValueError, match="output stride 16"):
        convert_checkpoint(openseg_head_checkpoint(backbone="deepbase_resnet101_dilated16"))


# mmsegmentation's OCRNet names, written out from its module tree (FCNHead as decode_head.0, OCRHead as
# decode_head.1 with an ObjectAttentionBlock built from ConvModules: conv/bn children).
CLASSIC_TO_MMSEG = [
    (r"aux_head\.0\.weight", "decode_head.0.convs.0.conv.weight"),
    (r"aux_head\.1\.(.*)", r"decode_head.0.convs.0.bn.\1"),
    (r"aux_head\.3\.(.*)", r"decode_head.0.conv_seg.\1"),
    (r"conv3x3_ocr\.0\.weight", "decode_head.1.bottleneck.conv.weight"),
    (r"conv3x3_ocr\.1\.(.*)", r"decode_head.1.bottleneck.bn.\1"),
    (r"cls_head\.(.*)", r"decode_head.1.conv_seg.\1"),
    (r"ocr_distri_head\.conv_bn_dropout\.0\.weight", "decode_head.1.object_context_block.bottleneck.conv.weight"),
    (r"ocr_distri_head\.conv_bn_dropout\.1\.0\.(.*)", r"decode_head.1.object_context_block.bottleneck.bn.\1"),
    (r".*f_pixel\.0\.weight", "decode_head.1.object_context_block.query_project.0.conv.weight"),
    (r".*f_pixel\.1\.0\.(.*)", r"decode_head.1.object_context_block.query_project.0.bn.\1"),
    (r".*f_pixel\.2\.weight", "decode_head.1.object_context_block.query_project.1.conv.weight"),
    (r".*f_pixel\.3\.0\.(.*)", r"decode_head.1.object_context_block.query_project.1.bn.\1"),
    (r".*f_object\.0\.weight", "decode_head.1.object_context_block.key_project.0.conv.weight"),
    (r".*f_object\.1\.0\.(.*)", r"decode_head.1.object_context_block.key_project.0.bn.\1"),
    (r".*f_object\.2\.weight", "decode_head.1.object_context_block.key_project.1.conv.weight"),
    (r".*f_object\.3\.0\.(.*)", r"decode_head.1.object_context_block.key_project.1.bn.\1"),
    (r".*f_down\.0\.weight", "decode_head.1.object_context_block.value_project.conv.weight"),
    (r".*f_down\.1\.0\.(.*)", r"decode_head.1.object_context_block.value_project.bn.\1"),
    (r".*f_up\.0\.weight", "decode_head.1.object_context_block.out_project.conv.weight"),
    (r".*f_up\.1\.0\.(.*)", r"decode_head.1.object_context_block.out_project.bn.\1"),
]


def to_mmseg(classic_state):
    out = {}
    for key, value in classic_state.items():
        for pattern, replacement in CLASSIC_TO_MMSEG:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, replacement, key)] = value
                break
        else:
            raise AssertionError(f"test table has no mmseg name for {key}")
    return out


def test_mmseg_checkpoint_gives_the_same_outputs():
    classic = randomize_(ClassicOCRHead(10, 4, mid_channels=12, key_channels=6), 3).double().eval()
    with torch.no_grad():  # mmseg's ConvModules have no conv bias in front of BN
        classic.conv3x3_ocr[0].bias.zero_()
        classic.aux_head[0].bias.zero_()
    state = {k: v for k, v in classic.state_dict().items() if k not in ("conv3x3_ocr.0.bias", "aux_head.0.bias")}
    mmseg = to_mmseg(state)
    mmseg["backbone.stage4.0.fuse_layers.0.1.0.weight"] = torch.ones(3)
    mmseg["auxiliary_head.conv_seg.weight"] = torch.ones(3)
    with pytest.warns(UserWarning, match="auxiliary_head.conv_seg.weight"):
        converted = convert_checkpoint({"state_dict": mmseg, "meta": {"epoch": 1}}, source="mmseg")
    assert torch.equal(converted["backbone.stage4.0.fuse_layers.0.1.0.weight"], torch.ones(3))
    head = load_head(converted)
    feats = torch.randn(2, 10, 7, 3, dtype=torch.float64)
    with torch.no_grad():
        expected, actual = classic(feats), head(feats)
    for name in ("logits", "aux_logits"):
        assert relative_error(actual[name], expected[name]) <= 1e-10


@pytest.mark.subprocess
def test_command_line_round_trip(tmp_path):
    _, state = classic_checkpoint("model.")
    src, dst = tmp_path / "released.pth", tmp_path / "converted.pth"
    torch.save(state, src)
    result = subprocess.run(
        [sys.executable, "-m", "ocrformer.convert", str(src), str(dst)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    loaded = torch.load(dst, weights_only=True)
    expected = convert_checkpoint(state)
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected if k != "_extra_state")
    assert loaded["_extra_state"] == expected["_extra_state"]
    assert "official HRNet-OCR" in result.stdout and "create_model(<model name>, weights=" in result.stdout
    assert not (tmp_path / "converted.pth.partial").exists()

    torch.save({"fc.weight": torch.ones(2)}, src)
    result = subprocess.run(
        [sys.executable, "-m", "ocrformer.convert", str(src), str(dst)], capture_output=True, text=True
    )
    assert result.returncode != 0 and f"{src}: cannot recognise the checkpoint's layout" in result.stderr
