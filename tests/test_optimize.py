"""optimize_for_inference: the optimized copy computes the plain model's function (eval, several and odd sizes,
HRNet and dilated-ResNet backbones, every layout's fuse), folds every backbone BatchNorm, and runs the head's
attention through ocrformer.attend."""

import pytest
import torch

from ocrformer import OCRHead, create_model, fused_head, optimize_for_inference
from ocrformer.fused_head import FusedOCRHead

from .helpers.numerics import relative_error

SIZES = [(64, 96), (45, 61), (33, 31)]
NARROW = {"mid_channels": 16, "key_channels": 8}
MODELS = {
    "hrnet ocrformer": lambda: create_model("ocrnet_hrnet_w18_small_v2", 5, **NARROW),
    "hrnet mmseg": lambda: create_model("ocrnet_hrnet_w18_small_v2", 5, layout="mmseg", **NARROW),
    "resnet50-d8 openseg": lambda: create_model(
        "ocrnet_resnet50_d8", 5, layout="openseg", region_channels=16,
        backbone_kwargs={"output_stride": 8, "stem_width": 8, "channels": (8, 16, 32, 64)}, **NARROW,
    ),
    "resnet50-d8 ocrformer": lambda: create_model(
        "ocrnet_resnet50_d8", 5, region_channels=16, backbone_kwargs={"output_stride": 8, "channels": (8, 16, 32, 64)},
        **NARROW,
    ),
    "tiny": lambda: create_model("ocrnet_tiny", 5),
    "fcn tiny": lambda: create_model("fcn_tiny", 5),
}


def randomize_batch_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BatchNorm statistics and affines (fresh ones are the identity, which folding would not test)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
                module.weight.copy_(0.5 + torch.rand(size, generator=generator))
                module.bias.copy_(0.1 * torch.randn(size, generator=generator))
    return model


@pytest.mark.parametrize("conv", ["direct", "winograd2", "winograd4"])
@pytest.mark.parametrize("name", list(MODELS))
def test_the_optimized_copy_computes_the_same_function(name, conv):
    torch.manual_seed(0)
    model = randomize_batch_norms(MODELS[name]()).eval()
    optimized = optimize_for_inference(model, conv=conv)
    for size in SIZES:
        images = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected, actual = model(images), optimized(images)
        for key in ("logits", "aux_logits"):
            assert actual[key].shape == expected[key].shape
            assert relative_error(actual[key], expected[key]) <= 1e-5, (size, key)


@pytest.mark.parametrize("name", ["hrnet mmseg", "resnet50-d8 openseg"])
def test_every_backbone_batch_norm_is_folded(name):
    model = MODELS[name]().eval()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    optimized = optimize_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in optimized.backbone.modules())
    assert isinstance(optimized.head, FusedOCRHead)
    weight = next(p for p in optimized.backbone.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)


def test_the_optimized_head_calls_attend(monkeypatch):
    """Both attention steps of the optimized model go through ocrformer.attend (backends, the measured table)."""
    calls = []
    original = fused_head.attend
    monkeypatch.setattr(fused_head, "attend", lambda *a, **k: calls.append(a[0].shape) or original(*a, **k))
    optimized = optimize_for_inference(MODELS["hrnet ocrformer"]().eval())
    with torch.no_grad():
        optimized(torch.randn(1, 3, 45, 61))
    assert [shape[2] for shape in calls] == [5, 12 * 16]  # the K queries over the pixels; the pixels over K


def test_a_copy_for_inference_only():
    model = MODELS["tiny"]().eval()
    state = {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    optimized = optimize_for_inference(model)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())  # the model is not changed
    assert isinstance(model.head, OCRHead) and not any(p.requires_grad for p in optimized.parameters())
    images = torch.randn(1, 3, 32, 32)
    with pytest.raises(RuntimeError, match="inference snapshot"):
        optimized.train()(images)
    with pytest.raises(ValueError, match="optimize_for_inference copy computes the plain function only"):
        optimized.eval()(images, oracle_labels=torch.zeros(1, 32, 32, dtype=torch.long))
    with pytest.raises(TypeError, match="takes an OCRNet or an OCRHead"):
        optimize_for_inference(torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="conv must be one of"):
        optimize_for_inference(model, conv="fft")
    assert isinstance(optimize_for_inference(model.head), FusedOCRHead)
