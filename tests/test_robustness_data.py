"""Failure catalogue for reading data (issue 10: nothing lost, nothing silently wrong, clear errors).

One test per case, named after it; each failed before its fix.

1. ``python -m ocrformer.predict``
   a. images sharing a stem (``a.jpg a.png``) overwrote each other's outputs
      -> ``test_predict_same_stem_does_not_overwrite``
   b. the same file name in different folders (and names differing only in case) overwrote each other
      -> ``test_predict_same_name_in_other_folders_does_not_overwrite``
   c. names equal up to case in one folder -> ``test_predict_names_equal_up_to_case_in_one_folder``; the
      rules are in ``--help`` -> ``test_predict_help_documents_output_names_and_failures``
   d. one unreadable image stopped the batch -> ``test_predict_unreadable_image_does_not_stop_the_batch``,
      and so did an error while segmenting one -> ``test_predict_segmentation_failure_does_not_stop_the_batch``
2. 16-bit images (PIL modes ``I;16``, ``I;16B``, ``I``) were read as pure white by ``convert("RGB")``; they
   are now reduced to 8 bits by their high byte (``v >> 8``: 0, 256, 32768, 65535 -> 0, 1, 128, 255), as
   Pillow itself reads 16-bit RGB PNGs, by one reader shared by the datasets and predict.
   -> ``test_16_bit_image_is_scaled_not_white`` (the reader; 16-bit RGB as a guard: Pillow gets it right),
      ``test_32_bit_image_out_of_16_bit_range_is_refused``, ``test_float_image_is_refused`` (no silent clipping),
      ``test_predict_and_datasets_share_one_reader``,
      siblings: ``test_16_bit_image_in_folder_dataset``, ``test_16_bit_image_in_cityscapes``,
      ``test_16_bit_image_in_ade20k``, ``test_16_bit_image_in_coco_panoptic``, ``test_16_bit_image_in_predict``
3. an image name and its label name in different Unicode normalisations (NFC ``café`` vs NFD ``cafe`` +
   combining acute) gave "no label for café.png: expected café.png"; names are now matched after NFC
   normalisation -> ``test_folder_label_name_in_other_unicode_normalisation``,
   ``test_folder_names_equal_after_normalisation_are_duplicates``,
   ``test_label_names_ambiguous_after_normalisation_are_refused``,
   siblings: ``test_cityscapes_city_folder_in_other_unicode_normalisation``,
   ``test_ade20k_label_name_in_other_unicode_normalisation``
4. (issue items 5 and 12, the predict side) NaN weights predicted plausible all-one-class masks
   -> ``test_predict_refuses_non_finite_weights``; ``--device foo`` gave a raw torch error
   -> ``test_predict_names_a_bad_device``
"""

import json
import struct
import unicodedata
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from ocrformer.data import ADE20KSegmentation, CityscapesSegmentation, CocoPanoptic, FolderSegmentation, _io
from ocrformer.data.synthetic_panoptic import write_synthetic_coco_panoptic
from ocrformer.models import create_model
from ocrformer.predict import main

from .helpers.dataset_trees import ramp, save_image, save_label

H, W = 8, 16
SIZE = (H, W)
VALUES_16 = np.array([0, 255, 256, 32768, 65280, 65535])
VALUES_8 = VALUES_16 >> 8  # 0, 0, 1, 128, 255, 255: the high byte
NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
assert NFC != NFD


# ------------------------------------------------------------------------------------------------ helpers
def grey_16(height=H, width=W):
    return np.resize(VALUES_16, (height, width))


def expected_rgb(height=H, width=W):
    """What a grey 16-bit image of ``grey_16`` must read as: (H, W, 3) uint8."""
    return np.repeat(np.resize(VALUES_8, (height, width))[..., None], 3, axis=2).astype(np.uint8)


def write_png_rgb16(path, pixels):
    """A real 16-bit-per-channel RGB PNG (Pillow cannot write one): (H, W, 3) uint16."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits, colour type 2 (RGB)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def save_16_bit(path, mode, height=H, width=W):
    """A 16-bit file of ``grey_16`` values that Pillow opens in ``mode`` (checked), written by PIL/numpy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = grey_16(height, width)
    if mode == "RGB;16":
        write_png_rgb16(path, np.repeat(grey[..., None], 3, axis=2))
        mode = "RGB"  # Pillow's mode for a 16-bit RGB PNG
    else:
        dtype = {"I;16": np.uint16, "I;16B": ">u2", "I": np.int32}[mode]
        fmt = "PNG" if mode == "I;16" else "TIFF"
        Image.fromarray(grey.astype(dtype)).save(path, format=fmt)
    with Image.open(path) as image:
        assert image.mode == mode, f"the test wrote a {image.mode} file, not {mode}"
    return path


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "fcn_tiny.pth"
    torch.save(create_model("fcn_tiny", 4).state_dict(), path)
    return path


def predict(checkpoint, out, *images):
    main(["--model", "fcn_tiny", "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu",
          *map(str, images)])


def read(path):
    with Image.open(path) as image:
        return np.asarray(image)


def folder_root(root, image_name="im0.png", label_name="im0.png"):
    save_image(root / "images" / image_name, size=SIZE)
    save_label(root / "labels" / label_name, ramp([1], size=SIZE))
    (root / "classes.json").write_text(json.dumps({"classes": ["a", "b"]}))
    return root


def folder_dataset(root):
    return FolderSegmentation(root / "images", root / "labels", root / "classes.json")


# -------------------------------------------------------------------------------- 1. predict: names, failures
def test_predict_same_stem_does_not_overwrite(checkpoint, tmp_path):
    a_jpg = save_image(tmp_path / "in" / "a.jpg", seed=1, size=(20, 28))
    a_png = save_image(tmp_path / "in" / "a.png", seed=2, size=(24, 16))
    b_png = save_image(tmp_path / "in" / "b.png", seed=3, size=(16, 16))
    out = tmp_path / "out"
    predict(checkpoint, out, a_jpg, a_png, b_png)
    kinds = ("labels", "mask", "overlay")
    expected = {f"{name}_{kind}.png" for name in ("a.jpg", "a.png", "b") for kind in kinds}
    assert {p.name for p in out.iterdir()} == expected  # a unique stem keeps the short name
    assert read(out / "a.jpg_overlay.png").shape == (20, 28, 3)
    assert read(out / "a.png_overlay.png").shape == (24, 16, 3)
    predict(checkpoint, tmp_path / "alone", a_jpg)  # each output is its own image's
    for kind in kinds:
        assert np.array_equal(read(out / f"a.jpg_{kind}.png"), read(tmp_path / "alone" / f"a_{kind}.png"))


def test_predict_same_name_in_other_folders_does_not_overwrite(checkpoint, tmp_path, capsys):
    """x/a.png and y/a.png get their folder in the name; so does z/A.png, which is the same file name as a.png
    on the case-insensitive file systems of macOS and Windows."""
    x = save_image(tmp_path / "x" / "a.png", seed=1, size=(20, 28))
    y = save_image(tmp_path / "y" / "a.png", seed=2, size=(24, 16))
    z = save_image(tmp_path / "z" / "A.png", seed=3, size=(16, 20))
    out = tmp_path / "out"
    predict(checkpoint, out, x, y, z, x)  # x twice: processed once
    names = {"x__a.png": (20, 28), "y__a.png": (24, 16), "z__A.png": (16, 20)}
    assert {p.name for p in out.iterdir()} == {f"{n}_{k}.png" for n in names for k in ("labels", "mask", "overlay")}
    for name, size in names.items():
        assert read(out / f"{name}_labels.png").shape == size
    printed = capsys.readouterr().out
    assert f"{x} -> {out / 'x__a.png_overlay.png'}" in printed and printed.count(str(x)) == 1


def test_predict_unreadable_image_does_not_stop_the_batch(checkpoint, tmp_path):
    first = save_image(tmp_path / "first.png", seed=1, size=SIZE)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n and then garbage")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    last = save_image(tmp_path / "last.png", seed=2, size=SIZE)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as failed:
        predict(checkpoint, out, first, broken, text, last)
    message = failed.value.code
    assert isinstance(message, str)  # SystemExit(str): the message goes to stderr, the exit status is 1
    assert "2 of 4 images failed" in message
    assert f"{broken}: cannot read image" in message and f"{text}: cannot read image" in message
    assert "first.png" not in message and "last.png" not in message
    assert {p.name for p in out.iterdir()} == {
        f"{n}_{k}.png" for n in ("first", "last") for k in ("labels", "mask", "overlay")
    }


def test_predict_segmentation_failure_does_not_stop_the_batch(checkpoint, tmp_path, monkeypatch):
    """An error while segmenting one image (here a simulated out-of-memory on the 24-row image) is listed too."""
    import ocrformer.predict as predict_module

    def failing_on_24_rows(model, images, **kwargs):
        if images.shape[-2] == 24:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(model, images, **kwargs)

    real = predict_module.predict_labels
    monkeypatch.setattr(predict_module, "predict_labels", failing_on_24_rows)
    big = save_image(tmp_path / "big.png", seed=1, size=(24, 16))
    small = save_image(tmp_path / "small.png", seed=2, size=(16, 16))
    with pytest.raises(SystemExit, match=r"1 of 2 images failed.*\n.*big.png: .*RuntimeError: CUDA out of memory"):
        predict(checkpoint, tmp_path / "out", big, small)
    assert (tmp_path / "out" / "small_overlay.png").is_file() and not (tmp_path / "out" / "big_overlay.png").exists()


def test_predict_names_equal_up_to_case_in_one_folder(checkpoint, tmp_path):
    """``A.png`` and ``a.png`` side by side: one file on macOS and Windows, so they are numbered."""
    upper = save_image(tmp_path / "in" / "A.png", seed=1, size=(16, 20))
    lower = save_image(tmp_path / "in" / "a.png", seed=2, size=(20, 16))
    predict(checkpoint, tmp_path / "out", upper, lower)
    assert read(tmp_path / "out" / "A.png-1_labels.png").shape == (16, 20)
    assert read(tmp_path / "out" / "a.png-2_labels.png").shape == (20, 16)
    assert len(list((tmp_path / "out").iterdir())) == 6


def test_predict_help_documents_output_names_and_failures(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "a.jpg_mask.png" in text and "x__a.png_mask.png" in text and "exit status is 1" in text


# --------------------------------------------------------------------------------------------- 2. 16-bit
@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "RGB;16"])
def test_16_bit_image_is_scaled_not_white(tmp_path, mode):
    path = save_16_bit(tmp_path / "deep.img", mode)
    image = _io.read_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, H, W)
    assert np.array_equal(image.permute(1, 2, 0).numpy(), expected_rgb())


def test_32_bit_image_out_of_16_bit_range_is_refused(tmp_path):
    path = tmp_path / "wide.tif"
    Image.fromarray(np.array([[0, 70000], [-1, 5]], dtype=np.int32)).save(path)
    with pytest.raises(ValueError, match=r"image .*wide.tif has PIL mode 'I' with values -1\.\.70000.*expected"):
        _io.read_image(path)


def test_float_image_is_refused(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)).save(path)
    with pytest.raises(ValueError, match=r"image .*float.tif has PIL mode 'F'.*expected"):
        _io.read_image(path)


def test_predict_and_datasets_share_one_reader():
    import ocrformer.predict as predict_module

    assert predict_module.read_rgb is _io.read_rgb
    assert not hasattr(predict_module, "_read_image")


def test_16_bit_image_in_folder_dataset(tmp_path):
    root = folder_root(tmp_path)
    save_16_bit(root / "images" / "im0.png", "I;16")
    assert np.array_equal(folder_dataset(root)[0]["image"].permute(1, 2, 0).numpy(), expected_rgb())


def test_16_bit_image_in_cityscapes(tmp_path):
    stem = "aachen_000000_000000"
    save_16_bit(tmp_path / "leftImg8bit" / "train" / "aachen" / f"{stem}_leftImg8bit.png", "I;16")
    save_label(tmp_path / "gtFine" / "train" / "aachen" / f"{stem}_gtFine_labelIds.png", ramp([7], size=SIZE))
    assert np.array_equal(CityscapesSegmentation(tmp_path)[0]["image"].permute(1, 2, 0).numpy(), expected_rgb())


def test_16_bit_image_in_ade20k(tmp_path):
    """ADE20K lists ``*.jpg``; Pillow reads a file by its content, so a 16-bit TIFF named .jpg is read."""
    save_16_bit(tmp_path / "images" / "training" / "ADE_train_00000001.jpg", "I;16B")
    save_label(tmp_path / "annotations" / "training" / "ADE_train_00000001.png", ramp([1], size=SIZE))
    assert np.array_equal(ADE20KSegmentation(tmp_path)[0]["image"].permute(1, 2, 0).numpy(), expected_rgb())


def test_16_bit_image_in_coco_panoptic(tmp_path):
    root = write_synthetic_coco_panoptic(tmp_path / "coco", num_train=1, num_val=1, sizes=((48, 64),), progress=False)
    (image_path,) = (root / "train2017").iterdir()
    save_16_bit(image_path, "I;16", 48, 64)  # the JPEG replaced by a 16-bit PNG of its size
    image, _ = CocoPanoptic(root, "train")[0]
    assert np.array_equal(image.permute(1, 2, 0).numpy(), expected_rgb(48, 64))


def test_16_bit_image_in_predict(checkpoint, tmp_path):
    """A 16-bit image gives exactly the outputs of its 8-bit reduction."""
    deep = save_16_bit(tmp_path / "deep" / "im.png", "I;16", 20, 28)
    flat = tmp_path / "flat" / "im.png"
    flat.parent.mkdir()
    Image.fromarray(expected_rgb(20, 28)).save(flat)
    predict(checkpoint, tmp_path / "out_deep", deep)
    predict(checkpoint, tmp_path / "out_flat", flat)
    for kind in ("labels", "mask", "overlay"):
        assert np.array_equal(
            read(tmp_path / "out_deep" / f"im_{kind}.png"), read(tmp_path / "out_flat" / f"im_{kind}.png")
        )


# ------------------------------------------------------------------------------ 3. Unicode normalisation
def test_folder_label_name_in_other_unicode_normalisation(tmp_path):
    root = folder_root(tmp_path, f"{NFC}.png", f"{NFD}.png")
    assert {p.name for p in (root / "labels").iterdir()} == {f"{NFD}.png"}  # the file system kept the NFD name
    dataset = folder_dataset(root)
    assert [(i.name, label.name) for i, label in dataset.samples] == [(f"{NFC}.png", f"{NFD}.png")]
    assert dataset[0]["label"].unique().tolist() == [1]


def test_folder_names_equal_after_normalisation_are_duplicates(tmp_path):
    """``café.png`` (NFC) and ``café.jpg`` (NFD) would share one label file: refused, and the message shows the
    difference that the screen does not."""
    root = folder_root(tmp_path, f"{NFC}.png", f"{NFC}.png")
    save_image(root / "images" / f"{NFD}.jpg", size=SIZE)
    with pytest.raises(ValueError, match="same stem after Unicode NFC normalisation") as error:
        folder_dataset(root)
    assert ascii(NFC) in str(error.value) and ascii(NFD) in str(error.value)


def test_label_names_ambiguous_after_normalisation_are_refused(tmp_path):
    """Image ``Å.png`` (U+00C5) and two labels that both normalise to it and neither equals it: which one is meant
    cannot be told, so the error names both."""
    root = folder_root(tmp_path, "\u00c5.png", "A\u030a.png")
    save_label(root / "labels" / "\u212b.png", ramp([1], size=SIZE))  # ANGSTROM SIGN, NFC -> U+00C5
    with pytest.raises(ValueError, match=r"label for image .*: 2 files .*'A\\u030a.png'.*'\\u212b.png'"):
        folder_dataset(root)


def test_cityscapes_city_folder_in_other_unicode_normalisation(tmp_path):
    stem = f"{NFC}_000000_000000"
    save_image(tmp_path / "leftImg8bit" / "train" / NFC / f"{stem}_leftImg8bit.png", size=SIZE)
    label_name = f"{unicodedata.normalize('NFD', stem)}_gtFine_labelIds.png"
    save_label(tmp_path / "gtFine" / "train" / NFD / label_name, ramp([7], size=SIZE))
    dataset = CityscapesSegmentation(tmp_path)
    assert dataset.samples[0][1].parent.name == NFD
    assert dataset[0]["label"].unique().tolist() == [0]  # label id 7 = road


def test_ade20k_label_name_in_other_unicode_normalisation(tmp_path):
    save_image(tmp_path / "images" / "training" / f"ADE_{NFD}.jpg", size=SIZE)
    save_label(tmp_path / "annotations" / "training" / f"ADE_{NFC}.png", ramp([3], size=SIZE))
    dataset = ADE20KSegmentation(tmp_path)
    assert dataset.samples[0][1].name == f"ADE_{NFC}.png"
    assert dataset[0]["label"].unique().tolist() == [2]


# ------------------------------------------------------------------------------- 4. predict: weights, device
def test_predict_refuses_non_finite_weights(tmp_path):
    state = create_model("fcn_tiny", 4).state_dict()
    state["head.classifier.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    image = save_image(tmp_path / "a.png", size=SIZE)
    with pytest.raises(SystemExit, match=r"nan.pth: the weights hold non-finite values \(head.classifier.weight\)"):
        predict(tmp_path / "nan.pth", tmp_path / "out", image)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("device", ["foo", "gpu0"])
def test_predict_names_a_bad_device(tmp_path, capsys, device):
    image = save_image(tmp_path / "a.png", size=SIZE)
    with pytest.raises(SystemExit):
        main(["--model", "fcn_tiny", "--checkpoint", str(tmp_path / "x.pth"), "--out", str(tmp_path / "o"),
              "--device", device, str(image)])
    assert f"argument --device: expected cpu, cuda or cuda:N, got '{device}'" in capsys.readouterr().err
