"""PASCAL-Context: mmsegmentation's layout, the 59- and 60-class mappings, bad data, and the converter from the
release's 459-label ``trainval/*.mat`` files (generated here with ``scipy.io.savemat``).

Every tree is a few 8 x 12 files written to ``tmp_path`` (``tests/helpers/dataset_trees.py``).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from ocrformer.data import (
    DATASETS,
    PASCAL_CONTEXT_59_CLASSES,
    PASCAL_CONTEXT_60_CLASSES,
    PASCAL_CONTEXT_RAW_IDS,
    PascalContextSegmentation,
    build_dataset,
)
from ocrformer.data.convert_pascal_context import main
from ocrformer.data.pascal_context import convert_label_map, convert_raw_annotations, write_split_lists

from .helpers.dataset_trees import H, W, context_ids, ramp, save_image, save_label, write_pascal_context_tree

REPO = Path(__file__).resolve().parents[1]

# Written out from upstream, independently of the package: mmsegmentation's converter ``_mapping`` as it is
# written there (tools/dataset_converters/pascal_context.py, sorted before use), and the names of those raw ids
# on their lines of the release's labels.txt (1-based; 0 = unlabelled).
UPSTREAM_MAPPING = [
    0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162, 420, 454, 295,
    296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72, 458, 34, 207, 80, 355, 85, 347,
    220, 349, 360, 98, 187, 104, 105, 366, 189, 368, 113, 115,
]
LABELS_TXT = {
    2: "aeroplane", 9: "bag", 18: "bed", 19: "bedclothes", 22: "bench", 23: "bicycle", 25: "bird", 31: "boat",
    33: "book", 34: "bottle", 44: "building", 45: "bus", 46: "cabinet", 59: "car", 65: "cat", 68: "ceiling",
    72: "chair", 80: "cloth", 85: "computer", 98: "cow", 104: "cup", 105: "curtain", 113: "dog", 115: "door",
    144: "fence", 158: "floor", 159: "flower", 162: "food", 187: "grass", 189: "ground", 207: "horse",
    220: "keyboard", 232: "light", 258: "motorbike", 259: "mountain", 260: "mouse", 284: "person", 295: "plate",
    296: "platform", 308: "pottedplant", 324: "road", 326: "rock", 347: "sheep", 349: "shelves", 354: "sidewalk",
    355: "sign", 360: "sky", 366: "snow", 368: "sofa", 397: "table", 415: "track", 416: "train", 420: "tree",
    424: "truck", 427: "tvmonitor", 440: "wall", 445: "water", 454: "window", 458: "wood",
}


@pytest.fixture
def voc(tmp_path):
    return write_pascal_context_tree(tmp_path)


def expected_values(raw: np.ndarray) -> np.ndarray:
    """Raw 459-label ids -> 0-59 as the conversion does it: a kept id's index in the sorted mapping, else 0."""
    kept = sorted(UPSTREAM_MAPPING)
    return np.vectorize(lambda v: kept.index(v) if v in kept else 0)(raw).astype(np.uint8)


def save_mat(path: Path, **fields) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, fields)


# ---------------------------------------------------------------------------------------- classes, mapping
def test_raw_ids_and_class_names_follow_the_conversion():
    assert PASCAL_CONTEXT_RAW_IDS == tuple(sorted(UPSTREAM_MAPPING)) and len(set(PASCAL_CONTEXT_RAW_IDS)) == 60
    assert PASCAL_CONTEXT_59_CLASSES == [LABELS_TXT[raw] for raw in PASCAL_CONTEXT_RAW_IDS[1:]]
    assert PASCAL_CONTEXT_60_CLASSES == ["background", *PASCAL_CONTEXT_59_CLASSES]
    # value 2 is bag, not bicycle (mmsegmentation's class list has the 59_labels.txt order instead)
    assert PASCAL_CONTEXT_60_CLASSES[1:4] == ["aeroplane", "bag", "bed"]


def test_59_classes_background_ignored(voc):
    train = PascalContextSegmentation(voc, "train")
    assert (len(train), train.num_classes, len(train.palette), train.ignore_index) == (2, 59, 59, 255)
    assert train.classes == PASCAL_CONTEXT_59_CLASSES and train.root == voc and train.split == "train"
    for index in range(2):
        sample = train[index]
        raw = torch.from_numpy(ramp(range(60), start=index)).long()
        assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, H, W)
        assert torch.equal(sample["label"], torch.where(raw == 0, 255, raw - 1))
        assert sample["path"].endswith(f"JPEGImages/{context_ids('train', 2)[index]}.jpg")


def test_60_classes_background_kept(voc):
    val = PascalContextSegmentation(voc, "val", num_classes=60)
    assert (len(val), val.num_classes, len(val.palette)) == (1, 60, 60) and val.classes[0] == "background"
    assert val.palette[1:] == PascalContextSegmentation(voc, "val").palette  # the same colour per class
    assert torch.equal(val[0]["label"], torch.from_numpy(ramp(range(60))).long())


def test_root_may_be_voc2010_vocdevkit_or_above(tmp_path, voc):
    for root in (voc, voc.parent, tmp_path):
        dataset = PascalContextSegmentation(root, "val")
        assert dataset.root == voc and len(dataset) == 1


def test_ignore_kept_and_values_out_of_range_refused(voc):
    image_id = context_ids("val", 1)[0]
    values = ramp(range(60))
    values[0, :3] = 255
    save_label(voc / "SegmentationClassContext" / f"{image_id}.png", values)
    for num_classes in (59, 60):
        assert (PascalContextSegmentation(voc, "val", num_classes=num_classes)[0]["label"][0, :3] == 255).all()
    values[1, 1], values[1, 2] = 60, 200
    save_label(voc / "SegmentationClassContext" / f"{image_id}.png", values)
    for num_classes in (59, 60):
        with pytest.raises(ValueError, match=rf"{image_id}\.png has values outside the valid range .*: 60, 200"):
            PascalContextSegmentation(voc, "val", num_classes=num_classes)[0]


# ---------------------------------------------------------------------------------------- bad trees
def test_missing_root_images_labels_and_split(tmp_path, voc):
    with pytest.raises(FileNotFoundError, match=r"PASCAL-Context root not found: .*nowhere is not a folder"):
        PascalContextSegmentation(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"(?s)no JPEGImages/ in .*empty, .*VOCdevkit/VOC2010.*layout"):
        PascalContextSegmentation(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"split 'test' not found: no .*test\.txt \(splits found there: \['tr"):
        PascalContextSegmentation(voc, "test")
    (voc / "SegmentationClassContext").rename(voc / "elsewhere")
    with pytest.raises(FileNotFoundError, match=r"(?s)PASCAL-Context labels not found: .*SegmentationClassContext.*co"):
        PascalContextSegmentation(voc, "train")


def test_split_list_naming_a_missing_image_and_image_without_label(voc):
    split_list = voc / "ImageSets" / "SegmentationContext" / "train.txt"
    split_list.write_text(split_list.read_text() + "2008_999999\n")
    with pytest.raises(FileNotFoundError, match=r"train\.txt line 3 names an image that does not exist: .*999999\.jpg"):
        PascalContextSegmentation(voc, "train")
    image_id = context_ids("val", 1)[0]
    (voc / "SegmentationClassContext" / f"{image_id}.png").unlink()
    with pytest.raises(FileNotFoundError, match=rf"no label for image .*{image_id}\.jpg: expected .*{image_id}\.png"):
        PascalContextSegmentation(voc, "val")


def test_bad_num_classes(voc):
    with pytest.raises(ValueError, match="num_classes must be 59 .* or 60 .*, got 150"):
        PascalContextSegmentation(voc, num_classes=150)


def test_build_dataset_by_name(voc):
    assert DATASETS["pascal_context"].splits == DATASETS["pascal_context_60"].splits == ("train", "val")
    assert build_dataset("pascal_context", voc, split="val").num_classes == 59
    assert build_dataset("pascal_context_60", voc, split="val").num_classes == 60
    assert build_dataset("pascal_context", voc).split == "train"


# ---------------------------------------------------------------------------------------- converter
def raw_label_map() -> np.ndarray:
    """An (8, 12) LabelMap holding unlabelled (0), every kept raw id and some others (1 accordion, 3, 457, 459)."""
    values = [0, *UPSTREAM_MAPPING, 1, 3, 457, 459]
    return np.resize(np.asarray(values, dtype=np.uint16), (H, W))


def test_convert_label_map():
    raw = raw_label_map()
    converted = convert_label_map(raw)
    assert converted.dtype == np.uint8 and np.array_equal(converted, expected_values(raw))
    assert set(np.unique(converted).tolist()) == set(range(60))
    assert (converted[np.isin(raw, [1, 3, 457, 459])] == 0).all()  # the other 400 labels are background


def test_convert_raw_annotations_and_load(tmp_path, voc):
    raw_dir = tmp_path / "trainval"
    ids = [*context_ids("train", 2), *context_ids("val", 1)]
    for index, image_id in enumerate(ids):
        save_mat(raw_dir / f"{image_id}.mat", LabelMap=np.roll(raw_label_map(), index, axis=1))
    out = tmp_path / "converted"
    assert convert_raw_annotations(raw_dir, out, progress=False) == sorted(ids)
    for index, image_id in enumerate(ids):
        with Image.open(out / f"{image_id}.png") as png:
            assert png.mode == "L"
            assert np.array_equal(np.asarray(png), expected_values(np.roll(raw_label_map(), index, axis=1)))
    # the converted labels in place of the tree's: the dataset reads them
    for png in out.glob("*.png"):
        png.replace(voc / "SegmentationClassContext" / png.name)
    label = PascalContextSegmentation(voc, "val")[0]["label"].numpy()
    values = expected_values(np.roll(raw_label_map(), ids.index(context_ids("val", 1)[0]), axis=1))
    assert np.array_equal(label, np.where(values == 0, 255, values.astype(np.int64) - 1))


def test_converter_errors_name_the_file(tmp_path):
    raw_dir, out = tmp_path / "trainval", tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"raw annotation folder not found: .*trainval is not a folder"):
        convert_raw_annotations(raw_dir, out, progress=False)
    raw_dir.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \*\.mat files in .*trainval"):
        convert_raw_annotations(raw_dir, out, progress=False)
    save_mat(raw_dir / "2008_000001.mat", LabelMap=raw_label_map())
    cases = [
        ("2008_000002.mat", {"Labels": raw_label_map()}, r"000002\.mat has no LabelMap field \(fields: \['Labels'\]"),
        ("2008_000003.mat", {"LabelMap": np.full((2, 2), 460, np.uint16)}, r"000003\.mat: LabelMap has .*0-459: 460"),
        ("2008_000004.mat", {"LabelMap": np.zeros((2, 2, 2), np.uint16)}, r"000004\.mat: LabelMap must be a 2-D int"),
        ("2008_000005.mat", {"LabelMap": np.zeros((2, 2), np.float64)}, r"000005\.mat: LabelMap must be a 2-D int"),
    ]
    for name, fields, match in cases:
        save_mat(raw_dir / name, **fields)
        with pytest.raises(ValueError, match=match):
            convert_raw_annotations(raw_dir, out, progress=False)
        (raw_dir / name).unlink()
    (raw_dir / "2008_000006.mat").write_bytes(b"not a MATLAB file at all, just bytes" * 10)
    with pytest.raises(ValueError, match=r"cannot read .*2008_000006\.mat as a MATLAB file"):
        convert_raw_annotations(raw_dir, out, progress=False)


def test_split_lists_from_voc2010_main(tmp_path):
    image_sets = tmp_path / "ImageSets"
    (image_sets / "Main").mkdir(parents=True)
    (image_sets / "Main" / "train.txt").write_text("2008_000002\n2008_000003\n")
    (image_sets / "Main" / "val.txt").write_text("2008_000004\n")
    counts = write_split_lists(image_sets, ["2008_000002", "2008_000003", "2008_000004"])
    assert counts == {"train": 2, "val": 1}
    assert (image_sets / "SegmentationContext" / "train.txt").read_text() == "2008_000002\n2008_000003\n"
    with pytest.raises(ValueError, match=r"Main/val\.txt names 1 images without a converted label, first '2008_0000"):
        write_split_lists(image_sets, ["2008_000002", "2008_000003"])
    (image_sets / "Main" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"VOC2010 split list not found: .*Main/val\.txt"):
        write_split_lists(image_sets, ["2008_000002", "2008_000003", "2008_000004"])


def test_command_converts_a_release_into_a_loadable_tree(tmp_path, capsys):
    """The whole route from the release: VOC2010 images + trainval/*.mat -> labels and split lists -> dataset."""
    voc = tmp_path / "VOCdevkit" / "VOC2010"
    ids = {"train": context_ids("train", 2), "val": context_ids("val", 1)}
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for split, split_ids in ids.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in split_ids))
        for image_id in split_ids:
            save_image(voc / "JPEGImages" / f"{image_id}.jpg", seed=1)
            save_mat(voc / "trainval" / f"{image_id}.mat", LabelMap=raw_label_map())
    main([
        "--raw-dir", str(voc / "trainval"), "--out", str(voc / "SegmentationClassContext"),
        "--image-sets", str(voc / "ImageSets"), "--quiet",
    ])
    printed = capsys.readouterr().out
    assert "wrote 3 label PNGs" in printed and "train.txt (2 ids)" in printed
    for num_classes in (59, 60):
        dataset = PascalContextSegmentation(tmp_path, "train", num_classes=num_classes)
        assert len(dataset) == 2 and dataset[1]["label"].shape == (H, W)
    (voc / "trainval" / f"{ids['val'][0]}.mat").write_bytes(b"garbage" * 20)
    with pytest.raises(SystemExit, match=rf"error: cannot read .*{ids['val'][0]}\.mat"):
        main(["--raw-dir", str(voc / "trainval"), "--out", str(tmp_path / "out"), "--quiet"])


@pytest.mark.subprocess
def test_python_dash_m_command(tmp_path):
    save_mat(tmp_path / "trainval" / "2008_000002.mat", LabelMap=raw_label_map())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "ocrformer.data.convert_pascal_context"]
    result = subprocess.run(
        [*command, "--raw-dir", str(tmp_path / "trainval"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 1 label PNGs" in result.stdout and (tmp_path / "out" / "2008_000002.png").is_file()
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr  # runpy's double-import warning
