"""OCRNet, the FCN baseline, the registry, timm backbones, released-checkpoint loading and the GT-OCR oracle."""

import pytest
import timm
import torch
import torch.nn.functional as F

from benchmarks.classic_ocr import ClassicOCRHead, randomize_
from ocrformer.backbones import create_backbone
from ocrformer.convert import convert_checkpoint
from ocrformer.models import OCRNet, create_model, list_models

from .conftest import relative_error


def test_registry_names_and_errors():
    names = list_models()
    for name in ("ocrnet_hrnet_w48", "ocrnet_resnet101_d8", "ocrnet_tiny", "fcn_hrnet_w48", "fcn_tiny"):
        assert name in names
    with pytest.raises(ValueError, match=r"unknown model 'ocrnet_vit'.*ocrnet_hrnet_w48"):
        create_model("ocrnet_vit", 19)


@pytest.mark.parametrize("name", ["ocrnet_tiny", "fcn_tiny"])
@pytest.mark.parametrize("size", [(64, 64), (37, 53)])
def test_outputs_at_input_size_and_trainable(name, size):
    torch.manual_seed(0)
    model = create_model(name, 4).train()
    out = model(torch.randn(2, 3, *size))
    assert set(out) == {"logits", "aux_logits"}
    assert all(v.shape == (2, 4, *size) for v in out.values())
    (out["logits"].mean() + 0.4 * out["aux_logits"].mean()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_fcn_and_ocr_differ_only_in_the_head():
    ocr, fcn = create_model("ocrnet_tiny", 4), create_model("fcn_tiny", 4)
    assert ocr.backbone.state_dict().keys() == fcn.backbone.state_dict().keys()
    assert type(ocr.head).__name__ == "OCRHead" and type(fcn.head).__name__ == "FCNHead"


def test_dilated_resnet_takes_regions_from_the_stage_before():
    model = create_model("ocrnet_resnet50_d8", 3)
    assert model.stride == 8
    assert model.head.decoder.region_in_channels == 1024 and model.head.decoder.in_channels == 2048
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 40, 56))
    assert out["logits"].shape == (1, 3, 40, 56)


def test_hrnet_sizes_not_divisible_by_32_are_padded_and_cropped():
    model = create_model("ocrnet_hrnet_w18_small", 3).eval()
    assert model.size_divisor == 32 and model.stride == 4
    with torch.no_grad():
        assert model(torch.randn(1, 3, 45, 70))["logits"].shape == (1, 3, 45, 70)


def test_backbone_errors_and_local_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="not a timm model"):
        create_backbone("resnet_9000")
    with pytest.raises(FileNotFoundError, match="checkpoint_path"):
        create_backbone("resnet10t", checkpoint_path=tmp_path / "missing.pth")
    full = timm.create_model("resnet10t")
    torch.save(full.state_dict(), tmp_path / "r10t.pth")
    body, _, info = create_backbone("resnet10t", checkpoint_path=tmp_path / "r10t.pth", out_indices=(2,), layout="last")
    assert torch.equal(body.state_dict()["layer2.0.conv1.weight"], full.state_dict()["layer2.0.conv1.weight"])
    assert info.out_channels == 128 and info.stride == 8


# Keys of the HRNet backbone as they appear in HRNet-Semantic-Segmentation checkpoints, written out from that
# code's module tree (stem, layer1 bottlenecks, transitions, branches and fuse layers of every stage).
HRNET_SEG_KEYS = [
    "conv1.weight",
    "bn1.weight",
    "conv2.weight",
    "bn2.running_mean",
    "layer1.0.conv1.weight",
    "layer1.0.downsample.0.weight",
    "layer1.3.bn3.running_var",
    "transition1.0.0.weight",
    "transition1.1.0.0.weight",
    "stage2.0.branches.1.3.conv2.weight",
    "stage2.0.fuse_layers.0.1.0.weight",
    "stage2.0.fuse_layers.1.0.0.0.weight",
    "transition2.2.0.0.weight",
    "stage3.3.fuse_layers.2.0.1.0.weight",
    "transition3.3.0.0.weight",
    "stage4.2.fuse_layers.3.2.0.1.running_var",
]


def test_released_hrnet_ocr_layout_loads_strictly_into_ocrnet_hrnet_w48():
    """A state dict in the released HRNet-OCR layout (``model.`` prefix, HRNet backbone names, classic head,
    the loss's class weights beside them) converts and loads with strict=True, and the whole model computes
    the classic head on the HRNet features."""
    torch.manual_seed(0)
    backbone = timm.create_model("hrnet_w48", features_only=True, feature_location="", out_indices=(1, 2, 3, 4))
    randomize_(backbone, seed=1)
    classic = randomize_(ClassicOCRHead(720, 19), seed=2)
    released = {f"model.{k}": v for k, v in backbone.state_dict().items()}
    released.update({f"model.{k}": v for k, v in classic.state_dict().items()})
    released["loss.criterion.weight"] = torch.ones(19)
    for key in HRNET_SEG_KEYS:
        assert f"model.{key}" in released, key

    with pytest.warns(UserWarning, match="loss.criterion.weight"):
        converted = convert_checkpoint(released, source="hrnet-ocr")
    model = create_model("ocrnet_hrnet_w48", num_classes=19)
    model.load_state_dict(converted, strict=True)

    model.eval(), classic.eval(), backbone.eval()
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = model(images)
        branches = backbone(images)
        feats = torch.cat(
            [branches[0]]
            + [
                F.interpolate(b, size=branches[0].shape[-2:], mode="bilinear", align_corners=True) for b in branches[1:]
            ],
            dim=1,
        )
        expected = classic(feats)
    for name in ("logits", "aux_logits"):
        upsampled = F.interpolate(expected[name], size=(64, 96), mode="bilinear", align_corners=True)
        assert relative_error(out[name], upsampled) <= 1e-5


# ------------------------------------------------------------------------------------------ GT-OCR oracle
def test_oracle_regions_are_class_means_and_pixels_take_their_own_region():
    torch.manual_seed(0)
    model = OCRNet("resnet10t", 3, head="ocr", mid_channels=8, key_channels=4, dropout=0.0,
                   backbone_kwargs={"out_indices": (2,), "layout": "last"})  # fmt: skip
    model = model.double().eval()
    head = model.head
    feats = torch.randn(1, 128, 4, 5, dtype=torch.float64)
    labels = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 1, 1, 255], [2, 2, 2, 1, 1], [255, 2, 2, 1, 1]])[None]
    labels = labels.where(labels != 255, -1)
    with torch.no_grad():
        out = head(feats, oracle_labels=labels)
        pixels = head.decoder.value_proj(feats)  # (1, C, 4, 5)
        for k in range(3):  # each region is the mean of its ground-truth pixels
            region = pixels[0][:, labels[0] == k].mean(dim=1)  # (C,)
            region_value = head.encoder.out_proj(
                head.encoder.value_proj(region[None, :, None, None])
            )  # what a pixel of class k receives
            for y, x in (labels[0] == k).nonzero().tolist():
                fused = head.encoder.fuse(torch.cat([region_value, pixels[:, :, y : y + 1, x : x + 1]], dim=1))
                expected = head.classifier(fused)[0, :, 0, 0]
                assert relative_error(out["logits"][0, :, y, x], expected) <= 1e-12
    assert torch.equal(out["aux_logits"], head(feats)["aux_logits"])  # the aux branch is untouched


def test_oracle_through_the_model_and_its_errors():
    torch.manual_seed(0)
    model = create_model("ocrnet_tiny", 3).eval()
    images = torch.randn(2, 3, 40, 48)
    labels = torch.randint(0, 3, (2, 40, 48))
    labels[:, :8] = 255
    with torch.no_grad():
        oracle, plain = model(images, oracle_labels=labels), model(images)
    assert oracle["logits"].shape == (2, 3, 40, 48)
    assert not torch.allclose(oracle["logits"], plain["logits"])
    with pytest.raises(ValueError, match="head='ocr'"):
        create_model("fcn_tiny", 3)(images, oracle_labels=labels)
    with pytest.raises(ValueError, match=r"oracle_labels must be \(B, H, W\)"):
        model.head(torch.randn(1, 128, 4, 4), oracle_labels=torch.zeros(1, 5, 4, dtype=torch.long))


def test_bad_images_are_named():
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\)"):
        create_model("fcn_tiny", 3)(torch.randn(2, 1, 16, 16))
