"""OCRNet, the FCN baseline, the registry, timm backbones, released-checkpoint loading and the GT-OCR oracle."""

import pytest
import timm
import torch
import torch.nn.functional as F

from ocrformer.backbones import create_backbone
from ocrformer.models import HEAD_PREFIXES, OCRNet, create_model, list_models

from .helpers.numerics import relative_error


def test_registry_names_and_errors():
    names = list_models()
    for name in ("ocrnet_hrnet_w48", "ocrnet_resnet101_d8", "ocrnet_tiny", "fcn_hrnet_w48", "fcn_tiny", "pspnet_tiny"):
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
    for head, prefix in HEAD_PREFIXES.items():  # so do the other context heads (tests/test_context_heads.py)
        model = create_model(f"{prefix}_tiny", 4)
        assert model.head_name == head and model.backbone.state_dict().keys() == ocr.backbone.state_dict().keys()


def test_dilated_resnet_takes_regions_from_the_stage_before():
    model = create_model("ocrnet_resnet50_d8", 3)
    assert model.stride == 8
    decoder = model.head.decoder
    assert decoder.region_in_channels == 1024 and decoder.in_channels == 2048
    # ocrformer's own ResNet OCRNet: timm's stem, openseg's region branch (Conv3x3 1024 -> 512, Dropout2d 0.05)
    assert decoder.key_proj.conv.weight.shape == (512, 1024, 3, 3) and decoder.key_dropout.p == 0.05
    assert "conv1.weight" in model.backbone.state_dict()
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 40, 56))
    assert out["logits"].shape == (1, 3, 40, 56)


@pytest.mark.parametrize("size", [(45, 70), (58, 90), (33, 31)])
def test_hrnet_takes_any_size_without_padding(size):
    """Exact-size fusion: an odd-sized image gives ceil(n / 4) features and nothing is padded -- the output
    at an image equals the output at the same image inside a larger batch of its own size, and differs from
    what the padded image gives."""
    torch.manual_seed(0)
    model = create_model("ocrnet_hrnet_w18_small_v2", 3, mid_channels=16, key_channels=8).eval()
    images = torch.randn(1, 3, *size)
    with torch.no_grad():
        native = model.logits_at_stride(images)["logits"]
        out = model(images)["logits"]
        padded = model(F.pad(images, (0, -size[1] % 32, 0, -size[0] % 32)))["logits"][..., : size[0], : size[1]]
    assert native.shape[-2:] == tuple(-(-n // 4) for n in size)
    assert out.shape == (1, 3, *size)
    assert relative_error(padded, out) > 1e-3  # padding would change the function
    with torch.no_grad():  # the GT-OCR oracle at the same odd size
        oracle = model(images, oracle_labels=torch.randint(0, 3, (1, *size)))["logits"]
    assert oracle.shape == (1, 3, *size) and not torch.allclose(oracle, out)


def test_backbone_errors_and_local_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="not a timm model"):
        create_backbone("resnet_9000")
    with pytest.raises(FileNotFoundError, match="checkpoint_path"):
        create_backbone("resnet10t", checkpoint_path=tmp_path / "missing.pth")
    full = timm.create_model("resnet10t")
    torch.save(full.state_dict(), tmp_path / "r10t.pth")
    body, _, info = create_backbone(
        "resnet10t", checkpoint_path=tmp_path / "r10t.pth", out_indices=(2,), features="last"
    )
    assert torch.equal(body.state_dict()["layer2.0.conv1.weight"], full.state_dict()["layer2.0.conv1.weight"])
    assert info.out_channels == 128 and info.stride == 8


# ------------------------------------------------------------------------------------------ GT-OCR oracle
def test_oracle_regions_are_class_means_and_pixels_take_their_own_region():
    torch.manual_seed(0)
    model = OCRNet("resnet10t", 3, head="ocr", mid_channels=8, key_channels=4, dropout=0.0,
                   backbone_kwargs={"out_indices": (2,), "features": "last"})
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
    with pytest.raises(ValueError, match="need an OCRHead"):
        create_model("fcn_tiny", 3)(images, oracle_labels=labels)
    with pytest.raises(ValueError, match=r"oracle_labels must be \(B, H, W\)"):
        model.head(torch.randn(1, 128, 4, 4), oracle_labels=torch.zeros(1, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"oracle_labels must be \(B, H, W\) = \(2, 40, 48\) like the images"):
        model(images, oracle_labels=labels[:, :20])  # was silently resized before


def test_bad_images_are_named():
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\)"):
        create_model("fcn_tiny", 3)(torch.randn(2, 1, 16, 16))


# ---------------------------------------------------------------------- the changed backbones: export, SyncBN
def hrnet_model(layout: str) -> OCRNet:
    torch.manual_seed(0)
    return create_model("ocrnet_hrnet_w18_small_v2", 5, layout=layout, mid_channels=16, key_channels=8).eval()


@pytest.mark.parametrize("layout", ["hrnet-ocr", "mmseg"])
def test_exact_size_hrnet_exports_to_torch_export_and_onnx(layout, tmp_path):
    """The segmentation fuse (exact-size resizes; mmseg's double resize) traces at an odd size; ONNX Runtime
    gives the eager outputs."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model, images = hrnet_model(layout), torch.randn(1, 3, 58, 90)
    with torch.no_grad():
        expected = model(images)["logits"]
    program = torch.export.export(model, (images,))
    assert relative_error(program.module()(images)["logits"], expected) <= 1e-5
    path = tmp_path / "ocrnet.onnx"
    torch.onnx.export(model, (images,), path, dynamo=True, input_names=["images"], output_names=["logits", "aux"])
    (logits, _) = ort.InferenceSession(str(path)).run(None, {"images": images.numpy()})
    assert relative_error(torch.from_numpy(logits), expected) <= 1e-5


@pytest.mark.slow
def test_exact_size_hrnet_compiles():
    model, images = hrnet_model("mmseg"), torch.randn(1, 3, 58, 90)
    with torch.no_grad():
        compiled = torch.compile(model, backend="aot_eager")  # dynamo + AOT autograd; inductor takes ~60 s here
        assert relative_error(compiled(images)["logits"], model(images)["logits"]) <= 1e-5


def test_sync_batchnorm_conversion_keeps_the_segmentation_fuse():
    """timm's convert_sync_batchnorm (what the trainer runs on GPUs) swaps only the norms: the fuse modules, their
    exact-size upsampling and the function (eval mode) stay."""
    from timm.layers import convert_sync_batchnorm

    from ocrformer.backbones.hrnet import FuseUpsample, SegmentationFuseModule

    model, images = hrnet_model("mmseg"), torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        expected = model(images)["logits"]
    converted = convert_sync_batchnorm(model).eval()
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules())
    assert sum(isinstance(m, SegmentationFuseModule) for m in converted.modules()) == 6  # W18-S-v2: 1 + 3 + 2
    assert all(m.mode == "bilinear-twice" for m in converted.modules() if isinstance(m, FuseUpsample))
    with torch.no_grad():
        assert relative_error(converted(images)["logits"], expected) <= 1e-6


def test_given_targets_the_model_returns_its_named_weighted_losses():
    """OCRNet's loss contract (as PanopticFPN's, torchvision's and detectron2's): model(images, targets) -> the
    named, weighted loss terms; their sum is what the trainer optimises."""
    from ocrformer.losses import OCRLoss

    torch.manual_seed(0)
    model = create_model("ocrnet_tiny", 3, loss=OCRLoss(aux_weight=0.25, ignore_index=7)).train()
    images, labels = torch.randn(2, 3, 24, 20), torch.randint(0, 3, (2, 24, 20))
    labels[:, :3] = 7
    torch.manual_seed(1)
    losses = model(images, labels)
    assert set(losses) == {"loss_main", "loss_aux"} and all(v.dim() == 0 for v in losses.values())
    torch.manual_seed(1)  # the same dropout masks
    out = model(images)
    expected = OCRLoss(aux_weight=0.25, ignore_index=7)(out, labels)
    assert all(torch.allclose(losses[k], expected[k]) for k in expected)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    default = create_model("fcn_tiny", 3, ignore_index=9)
    assert default.criterion.ignore_index == 9 and default.criterion.aux_weight == 0.4


def test_how_ocr_reads_a_backbone_comes_from_the_model_not_its_name():
    """timm's registry says HRNet; feature_info says dilated (last two maps at one stride) or not."""
    cases = {
        ("hrnet_w18_small", ()): ("hrnet", 4),
        ("seresnext26d_32x4d", ()): ("last_two", 8),  # a ResNet of another name: dilated to stride 8
        ("resnet18", (("output_stride", 32),)): ("last", 32),  # not dilated: the deepest map
        ("convnext_atto", ()): ("last", 32),
    }
    for (name, kwargs), (features, stride) in cases.items():
        _, adapter, info = create_backbone(name, **dict(kwargs))
        assert (info.features, info.stride, adapter.features) == (features, stride, features), name
