"""SegFix from the command line: ``python -m ocrformer.segfix refine`` on label PNGs written by another tool, and
``python -m ocrformer.predict --segfix``. Checked against ``segfix_refine`` run in-process, and against the exact
shift of a network whose weights are set by hand (every pixel a boundary pixel, every direction "right")."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ocrformer.data import SyntheticContextSegmentation, TrainTransform
from ocrformer.engine import SegFixTrainer, TrainConfig
from ocrformer.models import boundary_probability, create_model, create_segfix_model
from ocrformer.predict import main as predict_main
from ocrformer.segfix import segfix_refine
from ocrformer.segfix.cli import load_segfix_model
from ocrformer.segfix.cli import main as segfix_main

from .helpers.runs import REPO

RIGHT = 4  # direction bin 4 of 8 points right: (dy, dx) = (0, 1)
# 256 colours (with fewer, PIL writes fewer bits per pixel and the void index 255 does not fit).
PALETTE = [0, 0, 0, 200, 30, 30, 30, 200, 30, 30, 30, 200] + [value % 256 for value in range(12, 768)]


def forced_segfix(direction: int = RIGHT):
    """A ``segfix_tiny`` whose outputs are constant: boundary probability 1 everywhere (softmax of 32 against 0),
    direction ``direction`` everywhere. Each branch's BN outputs its bias (scale 0, running stats 0/1), ReLU
    keeps it, and the classifier sums it into the wanted channel only."""
    model = create_segfix_model("segfix_tiny").eval()
    with torch.no_grad():
        for head in (model.boundary_head, model.direction_head):
            head.conv.bn.weight.zero_()
            head.conv.bn.bias.fill_(1.0)
            head.classifier.weight.zero_()
        model.boundary_head.classifier.weight[1] = 1.0
        model.direction_head.classifier.weight[direction] = 1.0
    return model


def shifted(labels: np.ndarray, step: int, ignore: int = 255) -> np.ndarray:
    """What SegFix does with every pixel on the boundary and pointing right: each pixel takes the label ``step``
    pixels to its right (clamped at the border), unless either is void."""
    width = labels.shape[1]
    source = labels[:, np.minimum(np.arange(width) + step, width - 1)]
    return np.where((source == ignore) | (labels == ignore), labels, source)


def normalised(path) -> torch.Tensor:
    """An image file -> the ImageNet-normalised (1, 3, H, W) RGB input, computed here independently."""
    rgb = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return ((rgb - mean) / std)[None]


def write_pair(root, stem: str, size, rng, *, mode: str = "P", values=(0, 1, 2, 3)):
    """An RGB image and a label PNG of ``mode`` (with vertical stripes, so that horizontal moves change pixels,
    and one void pixel) named ``stem``; returns the label array."""
    height, width = size
    (root / "images").mkdir(exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(root / "images" / f"{stem}.png")
    stripes = np.asarray(values)[(np.arange(width) // 5) % len(values)]
    labels = np.repeat(stripes[None], height, axis=0)
    if mode == "I;16":
        labels = labels.astype(np.uint16)
        labels[1, 7] = 65535
    else:
        labels = labels.astype(np.uint8)
        labels[1, 7] = 255
    picture = Image.fromarray(labels)
    if mode == "P":
        picture.putpalette(PALETTE)
    picture.save(root / "labels" / f"{stem}.png")
    return labels


@pytest.fixture
def folder(tmp_path):
    """images/ and labels/ (palette PNGs) of two images of different sizes."""
    rng = np.random.default_rng(0)
    write_pair(tmp_path, "a", (40, 48), rng)
    write_pair(tmp_path, "b", (33, 37), rng)
    return tmp_path


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("segfix") / "random.pth"
    torch.manual_seed(0)
    torch.save(create_segfix_model("segfix_tiny").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def forced_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("segfix") / "forced.pth"
    torch.save(forced_segfix().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A SegFixTrainer run of 1 step: ``last.pth`` of a ``segfix_tiny`` with a non-default boundary width."""
    out = tmp_path_factory.mktemp("segfix_run")
    config = TrainConfig(
        model="segfix_tiny", model_kwargs={"boundary_width": 2}, iterations=1, batch_size=2, lr=0.01,
        checkpoint_every=1, log_every=1, output_dir=str(out), device="cpu", seed=3,
    )
    train = SyntheticContextSegmentation("train", num_images=2, size=(32, 32), transforms=TrainTransform((32, 32)))
    SegFixTrainer(config, train).fit()
    return out / "last.pth"


def refine_args(root, checkpoint, *extra):
    return ["refine", "--checkpoint", str(checkpoint), "--images", str(root / "images"), "--labels",
            str(root / "labels"), "--out", str(root / "out"), "--device", "cpu", *extra]


# ---------------------------------------------------------------------------------------------- refine command
def test_refine_equals_segfix_refine_in_process_and_keeps_the_palette(folder, random_weights, capsys):
    segfix_main(refine_args(folder, random_weights))
    model = create_segfix_model("segfix_tiny", weights=random_weights).eval()
    for stem in ("a", "b"):
        written = Image.open(folder / "out" / f"{stem}.png")
        assert written.mode == "P" and written.getpalette() == PALETTE
        labels = torch.from_numpy(np.array(Image.open(folder / "labels" / f"{stem}.png")).astype(np.int64))
        with torch.no_grad():
            out = model(normalised(folder / "images" / f"{stem}.png"))
        expected = segfix_refine(labels, boundary_probability(out["boundary_logits"])[0], out["direction_logits"][0])
        assert np.array_equal(np.array(written), expected.numpy())
    assert "SegFix refined 2 of 2 label maps" in capsys.readouterr().out


def test_refine_moves_boundary_pixels_by_the_exact_offset(folder, forced_weights, capsys):
    segfix_main(refine_args(folder, forced_weights))
    total_changed = 0
    for stem in ("a", "b"):
        labels = np.array(Image.open(folder / "labels" / f"{stem}.png"))
        refined = np.array(Image.open(folder / "out" / f"{stem}.png"))
        assert np.array_equal(refined, shifted(labels, 2))  # offset scale 2: two pixels
        assert refined[1, 7] == 255 and refined[1, 5] == labels[1, 5]  # void kept, and never copied
        total_changed += int((refined != labels).sum())
    assert total_changed > 0
    assert f"{total_changed} of {40 * 48 + 33 * 37} pixels changed" in capsys.readouterr().out

    segfix_main(refine_args(folder, forced_weights, "--offset-scale", "1"))
    labels = np.array(Image.open(folder / "labels" / "a.png"))
    assert np.array_equal(np.array(Image.open(folder / "out" / "a.png")), shifted(labels, 1))
    segfix_main(refine_args(folder, forced_weights, "--boundary-threshold", "1"))  # no probability is above 1
    assert np.array_equal(np.array(Image.open(folder / "out" / "a.png")), labels)


def test_label_formats_are_kept_grey_bit_depths_small_palettes_and_void(tmp_path, forced_weights):
    rng = np.random.default_rng(1)
    grey = write_pair(tmp_path, "grey", (32, 40), rng, mode="L", values=(0, 7, 19))
    deep = write_pair(tmp_path, "deep", (32, 36), rng, mode="I;16", values=(300, 1000, 40000))
    # A 4-colour palette (written with 2 bits per pixel) with a transparent colour 0.
    small = write_pair(tmp_path, "small", (32, 32), rng, mode="L", values=(0, 1, 2, 3)) % 4
    picture = Image.fromarray(small)
    picture.putpalette(PALETTE[:12])
    picture.save(tmp_path / "labels" / "small.png", transparency=0)
    segfix_main(refine_args(tmp_path, forced_weights, "--ignore-index", "65535"))
    out = Image.open(tmp_path / "out" / "small.png")
    assert out.mode == "P" and out.getpalette() == PALETTE[:12] and out.info["transparency"] == 0
    assert np.array_equal(np.array(out), shifted(small, 2, ignore=65535))
    out = Image.open(tmp_path / "out" / "deep.png")
    assert out.mode == "I;16" and np.array_equal(np.array(out), shifted(deep, 2, ignore=65535))
    assert np.array(out)[1, 7] == 65535 and np.array(out)[1, 5] == deep[1, 5]
    out = Image.open(tmp_path / "out" / "grey.png")  # 255 is no void here: it moves like any label
    assert out.mode == "L" and np.array_equal(np.array(out), shifted(grey, 2, ignore=65535))


def test_a_training_checkpoint_is_read_without_naming_the_model(folder, trained):
    model = load_segfix_model(trained)
    assert model.boundary_width == 2 and not model.training
    reference = create_segfix_model("segfix_tiny", boundary_width=2, weights=trained)
    for name, value in reference.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(model.state_dict()[name], value), name
    segfix_main(refine_args(folder, trained))
    assert (folder / "out" / "a.png").is_file() and (folder / "out" / "b.png").is_file()


def test_state_dicts_with_other_settings_load_from_what_they_record(tmp_path):
    model = create_segfix_model("segfix_tiny", num_directions=4, boundary_width=3, mid_channels=8)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    loaded = load_segfix_model(tmp_path / "w.pth")
    assert (loaded.num_directions, loaded.boundary_width, loaded.boundary_head.classifier.in_channels) == (4, 3, 8)


# ------------------------------------------------------------------------------------------------------ errors
def test_a_label_without_its_image_stops_the_run_before_the_model_loads(folder):
    (folder / "images" / "b.png").unlink()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "labels" / "c.png")
    with pytest.raises(SystemExit, match=r"2 of 3 label PNGs have no single image:\n.*b\.png: no image .*b\.\*"):
        segfix_main(refine_args(folder, folder / "no_such_checkpoint.pth"))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "images" / "a.jpg")
    with pytest.raises(SystemExit, match=r"a\.png: several images share its stem: .*a\.jpg, .*a\.png"):
        segfix_main(refine_args(folder, folder / "no_such_checkpoint.pth"))


def test_bad_files_are_named_and_the_others_written(folder, forced_weights, capsys):
    Image.open(folder / "labels" / "a.png").crop((0, 0, 20, 20)).save(folder / "labels" / "a.png")  # wrong size
    write_pair(folder, "c", (32, 32), np.random.default_rng(2))
    Image.open(folder / "labels" / "c.png").convert("RGB").save(folder / "labels" / "c.png")  # a colour mask
    write_pair(folder, "d", (32, 32), np.random.default_rng(3))
    (folder / "labels" / "d.png").write_bytes(b"not a png")
    write_pair(folder, "e", (32, 32), np.random.default_rng(4))
    (folder / "images" / "e.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(SystemExit) as failed:
        segfix_main(refine_args(folder, forced_weights))
    message = str(failed.value)
    assert message.startswith("4 of 5 label maps failed")
    assert "label " + str(folder / "labels" / "a.png") + " is (20, 20) (H, W) but image" in message
    assert f"label {folder / 'labels' / 'c.png'} has PIL mode 'RGB'; expected a single-channel image" in message
    assert f"cannot read label {folder / 'labels' / 'd.png'}" in message
    assert f"cannot read image {folder / 'images' / 'e.png'}" in message
    assert (folder / "out" / "b.png").is_file() and not (folder / "out" / "a.png").exists()
    assert "SegFix refined 1 of 5 label maps" in capsys.readouterr().out


def test_checkpoints_that_are_not_segfix_ones_are_refused(folder, tmp_path):
    def run(checkpoint, *extra):
        segfix_main(refine_args(folder, checkpoint, *extra))

    torch.save(create_model("fcn_tiny", 4).state_dict(), tmp_path / "ocrnet.pth")
    with pytest.raises(SystemExit, match=r"ocrnet\.pth is not a SegFix checkpoint: expected a SegFixTrainer"):
        run(tmp_path / "ocrnet.pth")
    torch.save({"model": {"w": torch.ones(1)}, "config": {"model": "ocrnet_tiny"}}, tmp_path / "run.pth")
    with pytest.raises(SystemExit, match="it is a training checkpoint of model 'ocrnet_tiny'"):
        run(tmp_path / "run.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(SystemExit, match=r"junk\.pth' cannot be read"):
        run(tmp_path / "junk.pth")
    with pytest.raises(SystemExit, match=r"missing\.pth' does not exist"):
        run(tmp_path / "missing.pth")
    # SegFix weights whose backbone is no preset's: the name must be given, and must fit.
    state = create_segfix_model("segfix_tiny").state_dict()
    state["_extra_state"] = {**state["_extra_state"], "backbone": "my_backbone"}
    torch.save(state, tmp_path / "custom.pth")
    with pytest.raises(SystemExit, match="backbone 'my_backbone' is no preset's.*pass --segfix-model NAME"):
        run(tmp_path / "custom.pth")
    with pytest.raises(SystemExit, match="does not fit SegFix model segfix_tiny: .*backbone: 'my_backbone'"):
        run(tmp_path / "custom.pth", "--segfix-model", "segfix_tiny")


def test_argument_errors(folder, forced_weights, capsys):
    with pytest.raises(SystemExit, match="is the --labels folder"):
        segfix_main([*refine_args(folder, forced_weights), "--out", str(folder / "labels")])
    with pytest.raises(SystemExit, match=r"--labels .*out is not a folder"):
        segfix_main([*refine_args(folder, forced_weights), "--labels", str(folder / "out")])
    (folder / "out").mkdir()
    with pytest.raises(SystemExit, match="no label PNGs"):
        segfix_main([*refine_args(folder, forced_weights), "--labels", str(folder / "out")])
    for flag, value in (("--boundary-threshold", "1.5"), ("--offset-scale", "0")):
        with pytest.raises(SystemExit):
            segfix_main(refine_args(folder, forced_weights, flag, value))
        assert f"argument {flag}" in capsys.readouterr().err


@pytest.mark.subprocess
def test_python_dash_m_runs_the_command_without_a_runpy_warning(folder, forced_weights):
    result = subprocess.run(
        [sys.executable, "-m", "ocrformer.segfix", *refine_args(folder, forced_weights)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "found in sys.modules" not in result.stderr and "RuntimeWarning" not in result.stderr
    assert "SegFix refined 2 of 2 label maps" in result.stdout
    labels = np.array(Image.open(folder / "labels" / "b.png"))
    assert np.array_equal(np.array(Image.open(folder / "out" / "b.png")), shifted(labels, 2))


# -------------------------------------------------------------------------------------------- predict --segfix
def test_predict_with_segfix_refines_the_labels_it_writes(tmp_path, forced_weights, capsys):
    torch.manual_seed(0)
    torch.save(create_model("fcn_tiny", 4).state_dict(), tmp_path / "fcn.pth")
    image = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 45, 3), dtype=np.uint8)).save(image)
    args = ["--model", "fcn_tiny", "--checkpoint", str(tmp_path / "fcn.pth"), "--device", "cpu", str(image)]
    predict_main([*args, "--out", str(tmp_path / "plain")])
    assert "1 of 1 images segmented ->" in capsys.readouterr().out
    predict_main([*args, "--out", str(tmp_path / "fixed"), "--segfix", str(forced_weights)])
    assert "1 of 1 images segmented, refined by SegFix" in capsys.readouterr().out
    plain = np.array(Image.open(tmp_path / "plain" / "street_labels.png"))
    fixed = np.array(Image.open(tmp_path / "fixed" / "street_labels.png"))
    assert len(np.unique(plain)) > 1 and np.array_equal(fixed, shifted(plain, 2))
    assert not np.array_equal(fixed, plain)
    assert (tmp_path / "fixed" / "street_mask.png").is_file() and (tmp_path / "fixed" / "street_overlay.png").is_file()

    state = torch.load(forced_weights, weights_only=False)
    state["_extra_state"] = {**state["_extra_state"], "backbone": "my_backbone"}
    torch.save(state, tmp_path / "custom.pth")
    with pytest.raises(SystemExit, match="pass --segfix-model NAME"):
        predict_main([*args, "--out", str(tmp_path / "o"), "--segfix", str(tmp_path / "custom.pth")])
    with pytest.raises(SystemExit, match="is not a SegFix checkpoint"):
        predict_main([*args, "--out", str(tmp_path / "o"), "--segfix", str(tmp_path / "fcn.pth")])
    with pytest.raises(SystemExit):
        predict_main([*args, "--out", str(tmp_path / "o"), "--segfix-model", "segfix_tiny"])
    assert "--segfix-model needs --segfix" in capsys.readouterr().err
