"""python -m ocrformer.predict: masks and overlays from a training checkpoint or a plain state dict."""

import numpy as np
import pytest
import torch
from PIL import Image

from ocrformer.engine import Trainer
from ocrformer.models import create_model
from ocrformer.predict import main
from ocrformer.visualize import colorize, default_palette, overlay

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


def test_predict_from_a_plain_state_dict_with_flip_and_scales(image_file, tmp_path):
    torch.save(create_model("fcn_tiny", 4).state_dict(), tmp_path / "plain.pth")
    args = ["--model", "fcn_tiny", "--checkpoint", str(tmp_path / "plain.pth"), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit, match="--num-classes"):
        main([*args, str(image_file)])
    main([*args, "--num-classes", "4", "--flip", "--scales", "0.75,1.0", "--window", "32,32", str(image_file)])
    assert (tmp_path / "o" / "street_mask.png").is_file()


def test_missing_image_is_named(trained, tmp_path):
    with pytest.raises(SystemExit, match="not found: .*nope.png"):
        main(["--model", "ocrnet_tiny", "--checkpoint", str(trained), "--out", str(tmp_path), "nope.png"])


def test_palette_helpers():
    palette = default_palette(21)
    assert palette[0] == (0, 0, 0) and palette[1] == (128, 0, 0) and len(set(palette)) == 21
    image = np.full((2, 2, 3), 200, np.uint8)
    assert overlay(image, np.zeros_like(image), 0.5).max() == 100
