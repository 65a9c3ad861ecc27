"""predict / predict_labels: whole image, flips, scales and sliding windows on toy models with known outputs."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ocrformer.inference import predict, predict_labels


class Pointwise(nn.Module):
    """A fixed 1x1 conv: commutes with flips and translations, so windows and flips must not change it."""

    def __init__(self, in_channels=3, num_classes=4, kernel_size=1):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size, padding=kernel_size // 2).double()

    def forward(self, x):
        return {"logits": self.conv(x)}


class Position(nn.Module):
    """Logits (col, row, 0) of each pixel *within its input*: shows which window a pixel was predicted in."""

    def forward(self, x):
        b, _, h, w = x.shape
        rows, cols = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
        return {"logits": torch.stack([cols, rows, torch.zeros_like(rows)]).expand(b, 3, h, w)}


def images(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def softmax_of(cols, rows):
    """Expected probabilities (1, 3, H, W) of Position-style logits (cols, rows, 0) given as nested lists."""
    cols, rows = torch.tensor(cols, dtype=torch.float64), torch.tensor(rows, dtype=torch.float64)
    cols, rows = torch.broadcast_tensors(cols[None, :], rows[:, None])
    return torch.stack([cols, rows, torch.zeros_like(cols)])[None].softmax(dim=1)


# ---------------------------------------------------------------------------------------- whole image
def test_single_scale_is_softmax_of_the_model():
    model, x = Pointwise(), images(2, 3, 9, 11)
    probs = predict(model, x)
    assert probs.dtype == torch.float64 and not probs.requires_grad
    assert torch.allclose(probs, model(x)["logits"].softmax(dim=1), rtol=0, atol=1e-14)
    assert torch.equal(predict_labels(model, x), probs.argmax(dim=1))


@pytest.mark.parametrize("align_corners", [False, True])
def test_smaller_logits_are_resized_to_the_input(align_corners):
    conv = Pointwise().conv
    model = lambda x: {"logits": conv(x[..., ::4, ::4])}  # noqa: E731 -- output stride 4, any callable works
    x = images(1, 3, 17, 23)
    up = F.interpolate(model(x)["logits"], size=(17, 23), mode="bilinear", align_corners=align_corners)
    assert torch.allclose(predict(model, x, align_corners=align_corners), up.softmax(dim=1), rtol=0, atol=1e-14)


def test_flip_of_a_flip_equivariant_model_changes_nothing():
    model, x = Pointwise(kernel_size=1), images(2, 3, 8, 13)
    assert torch.allclose(predict(model, x, flip=True), predict(model, x), rtol=0, atol=1e-14)


def test_flipped_pass_is_flipped_back():
    # In the flipped image column j sits at W - 1 - j, so the average is over the logits j and W - 1 - j.
    probs = predict(Position(), images(1, 3, 2, 4), flip=True)
    expected = (softmax_of([0, 1, 2, 3], [0, 1]) + softmax_of([3, 2, 1, 0], [0, 1])) / 2
    assert torch.allclose(probs, expected, rtol=0, atol=1e-14)


def test_scales_of_a_constant_image_agree():
    model = Pointwise()
    x = images(1, 3, 1, 1).expand(1, 3, 15, 21)  # every resize of a constant image is the same constant
    multi = predict(model, x, scales=(0.5, 0.75, 1.5), flip=True)
    assert torch.allclose(multi, predict(model, x), rtol=0, atol=1e-14)


# ------------------------------------------------------------------------------------- sliding window
@pytest.mark.parametrize("window", [(9, 11), (16, 20), 32])
def test_window_covering_the_image_equals_the_whole_image(window):
    # Even with a 3x3 conv: the zero padding up to the window is what the conv's own zero padding sees.
    model, x = Pointwise(kernel_size=3), images(2, 3, 9, 11)
    assert torch.allclose(predict(model, x, window=window), predict(model, x), rtol=0, atol=1e-14)
    assert torch.equal(predict(Position(), x, window=window), predict(Position(), x))


@pytest.mark.parametrize("stride", [None, (3, 4), (5, 7), (1, 1)])
def test_overlapping_windows_on_a_pointwise_model_equal_the_whole_image(stride):
    model, x = Pointwise(), images(2, 3, 13, 17)
    probs = predict(model, x, window=(5, 7), stride=stride)
    assert torch.allclose(probs, predict(model, x), rtol=0, atol=1e-14)


def test_window_stitching_by_hand():
    # Width 6, window 4, stride 3: ceil((6 - 4) / 3) + 1 = 2 windows, the second moved back from column 3 to
    # end at the border: columns [0, 4) and [2, 6). Local column logits, averaged where they overlap:
    #   col 0: 0;  1: 1;  2: (2 + 0) / 2 = 1;  3: (3 + 1) / 2 = 2;  4: 2;  5: 3
    # Height 5, window 3, stride 2: windows [0, 3) and [2, 5). Local rows:
    #   row 0: 0;  1: 1;  2: (2 + 0) / 2 = 1;  3: 1;  4: 2
    probs = predict(Position(), images(1, 3, 5, 6), window=(3, 4), stride=(2, 3))
    assert torch.allclose(probs, softmax_of([0, 1, 1, 2, 2, 3], [0, 1, 1, 1, 2]), rtol=0, atol=1e-14)


def test_default_stride_is_two_thirds_of_the_window():
    x = images(1, 3, 5, 6)
    assert torch.equal(predict(Position(), x, window=(3, 4)), predict(Position(), x, window=(3, 4), stride=(2, 2)))


def test_odd_sizes_with_every_option():
    model, x = Pointwise(), images(2, 3, 37, 53)
    options = {"scales": (0.5, 0.75, 1.25), "flip": True}
    probs = predict(model, x, window=(16, 24), num_classes=4, **options)
    assert probs.shape == (2, 4, 37, 53)
    assert torch.all(probs >= 0) and torch.allclose(probs.sum(dim=1), torch.ones(2, 37, 53, dtype=torch.float64))
    # Per scale the pointwise model does not care about windows, so the averages agree as well.
    assert torch.allclose(probs, predict(model, x, **options), rtol=0, atol=1e-14)
    assert predict_labels(model, x, window=(16, 24), **options).shape == (2, 37, 53)


def test_float32_model_gives_float32():
    model = Pointwise().float()
    assert predict(model, images(1, 3, 5, 5).float(), window=4).dtype == torch.float32


# ------------------------------------------------------------------------------------ modes and grads
class ModeRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Pointwise()
        self.norm = nn.BatchNorm2d(4).double()
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, self.norm.training))
        return {"logits": self.norm(self.inner(x)["logits"])}


def test_eval_mode_inside_and_each_submodule_restored_after():
    model = ModeRecorder().train()
    model.norm.eval()  # a deliberately frozen submodule must stay frozen
    running_mean = model.norm.running_mean.clone()
    predict(model, images(2, 3, 6, 6), window=4, flip=True)
    assert model.seen and all(seen == (False, False) for seen in model.seen)
    assert model.training and model.inner.training and not model.norm.training
    assert torch.equal(model.norm.running_mean, running_mean)


def test_mode_restored_when_the_model_raises():
    model = Pointwise().train()
    with pytest.raises(RuntimeError):
        predict(model, images(1, 5, 4, 4))  # wrong channel count for the conv
    assert model.training and model.conv.training


# --------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scales": ()}, "scales"),
        ({"scales": (1.0, 0.0)}, "scales"),
        ({"scales": (-0.5,)}, "scales"),
        ({"scales": (float("nan"),)}, "scales"),
        ({"window": 0}, "window"),
        ({"window": (4,)}, "window"),
        ({"window": (4.0, 4)}, "window"),
        ({"window": (4, 4), "stride": (0, 2)}, "stride"),
        ({"window": (4, 4), "stride": (5, 2)}, r"stride \(5, 2\) must not exceed window \(4, 4\)"),
        ({"stride": 2}, "stride is only used with window"),
        ({"num_classes": 5}, "model gave K=4 classes .* num_classes=5"),
        ({"num_classes": 0}, "num_classes"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        predict(Pointwise(), images(1, 3, 6, 6), **kwargs)


def test_input_and_model_output_errors():
    with pytest.raises(ValueError, match=r"images must be a 4-D tensor \(B, C, H, W\), got \(3, 6, 6\)"):
        predict(Pointwise(), images(3, 6, 6))
    with pytest.raises(ValueError, match="model must return a dict with 'logits'"):
        predict(lambda x: x, images(1, 3, 6, 6))
    with pytest.raises(ValueError, match="model must return a dict with 'logits', got \\['out'\\]"):
        predict(lambda x: {"out": x}, images(1, 3, 6, 6))
    with pytest.raises(ValueError, match=r"'logits' must be \(B=2, K, H, W\)"):
        predict(lambda x: {"logits": x[:1]}, images(2, 3, 6, 6))
