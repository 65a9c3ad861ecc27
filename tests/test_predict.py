"""python -m ocrformer.predict: masks and overlays from a training checkpoint, a state dict or a released checkpoint."""

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.classic_ocr import randomize_
from ocrformer.convert import convert_checkpoint
from ocrformer.engine import Trainer
from ocrformer.models import create_model
from ocrformer.predict import main
from ocrformer.visualize import colorize, default_palette, overlay

from .helpers import released_layouts
from .helpers.toy import ToySegmentation, toy_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    Trainer(toy_config(out, iterations=2), ToySegmentation()).fit()
    return out / "last.pth"


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 45, 3), dtype=np.uint8)).save(path)
    return path


def test_predict_from_a_training_checkpoint(trained, image_file, tmp_path, capsys):
    main(["--model", "ocrnet_tiny", "--checkpoint", str(trained), "--out", str(tmp_path / "out"), str(image_file)])
    labels = np.asarray(Image.open(tmp_path / "out" / "street_labels.png"))
    mask = np.asarray(Image.open(tmp_path / "out" / "street_mask.png"))
    assert labels.shape == (37, 45) and labels.max() < ToySegmentation.num_classes
    assert mask.shape == (37, 45, 3)
    # The colours are the training set's palette.
    assert np.array_equal(mask, colorize(labels, ToySegmentation.palette))
    assert Image.open(tmp_path / "out" / "street_overlay.png").size == (45, 37)
    assert "street_overlay.png" in capsys.readouterr().out


def test_optimize_gives_the_same_masks(image_file, tmp_path):
    # Random weights and BatchNorm statistics: a map of many classes, so that a changed function would show.
    torch.save(randomize_(create_model("ocrnet_tiny", 6), seed=0).state_dict(), tmp_path / "random.pth")
    args = ["--model", "ocrnet_tiny", "--checkpoint", str(tmp_path / "random.pth"), str(image_file)]
    main([*args, "--out", str(tmp_path / "plain")])
    main([*args, "--out", str(tmp_path / "fast"), "--optimize"])
    plain, fast = (np.asarray(Image.open(tmp_path / run / "street_labels.png")) for run in ("plain", "fast"))
    # The optimized copy computes the same function to about 1e-5: at most a near-tie pixel may differ.
    assert (plain != fast).sum() <= 2 and len(np.unique(plain)) > 1


def test_predict_from_a_plain_state_dict_with_flip_and_scales(image_file, tmp_path):
    torch.save(create_model("fcn_tiny", 4).state_dict(), tmp_path / "plain.pth")
    args = ["--model", "fcn_tiny", "--checkpoint", str(tmp_path / "plain.pth"), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit, match="num_classes=5, but the weights classify 4 classes"):
        main([*args, "--num-classes", "5", str(image_file)])
    main([*args, "--flip", "--scales", "0.75,1.0", "--window", "32,32", str(image_file)])  # 4 classes, read
    assert (tmp_path / "o" / "street_mask.png").is_file()
    with pytest.raises(SystemExit, match="does not fit --model ocrnet_tiny"):
        main(["--model", "ocrnet_tiny", *args[2:], str(image_file)])


def test_predict_converts_a_released_checkpoint_and_feeds_its_channel_order(image_file, tmp_path):
    """An openseg checkpoint is detected, converted, built as openseg's network and fed BGR images: the labels
    are those of the converted model run by hand on the BGR-normalised image."""
    shapes = released_layouts.openseg_hrnet_w48_ocr(released_layouts.HRNET_W18_SMALL_V2, 3, c=270, mid=16, key=8)
    torch.save({"state_dict": released_layouts.random_state(shapes, seed=3)}, tmp_path / "openseg.pth")
    main(["--model", "ocrnet_hrnet_w18_small_v2", "--checkpoint", str(tmp_path / "openseg.pth"),
          "--out", str(tmp_path / "o"), str(image_file)])
    labels = np.asarray(Image.open(tmp_path / "o" / "street_labels.png"))

    model = create_model("ocrnet_hrnet_w18_small_v2", weights=convert_checkpoint(torch.load(tmp_path / "openseg.pth")))
    rgb = torch.from_numpy(np.array(Image.open(image_file).convert("RGB"))).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.no_grad():
        bgr_labels = model.eval()(((rgb.flip(0) - mean) / std)[None])["logits"].argmax(1)[0].numpy()
        rgb_labels = model(((rgb - mean) / std)[None])["logits"].argmax(1)[0].numpy()
    assert np.array_equal(labels, bgr_labels) and not np.array_equal(labels, rgb_labels)

    torch.save({"fc.weight": torch.ones(3)}, tmp_path / "other.pth")
    with pytest.raises(SystemExit, match="neither an ocrformer checkpoint nor a released OCRNet checkpoint"):
        main(["--model", "ocrnet_tiny", "--checkpoint", str(tmp_path / "other.pth"), "--out", str(tmp_path),
              str(image_file)])


def test_a_training_checkpoint_builds_its_model(trained):
    model = create_model("ocrnet_tiny", weights=trained)  # classes and widths from the file
    assert model.num_classes == ToySegmentation.num_classes and model.layout == "ocrformer"


def test_missing_image_is_named(trained, tmp_path):
    with pytest.raises(SystemExit, match="not found: .*nope.png"):
        main(["--model", "ocrnet_tiny", "--checkpoint", str(trained), "--out", str(tmp_path), "nope.png"])


def test_palette_helpers():
    palette = default_palette(21)
    assert palette[0] == (0, 0, 0) and palette[1] == (128, 0, 0) and len(set(palette)) == 21
    image = np.full((2, 2, 3), 200, np.uint8)
    assert overlay(image, np.zeros_like(image), 0.5).max() == 100
