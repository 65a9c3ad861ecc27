"""ocrformer.data.coco_stuff: the 171-class mapping, both released layouts, every bad-data error.

Every tree here is a handful of 12 x 16 files written to ``tmp_path`` by ``tests/helpers/dataset_trees.py``.
"""

import pickle

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ocrformer.data import TrainTransform
from ocrformer.data.coco_stuff import (
    COCO_STUFF_CLASSES,
    COCO_STUFF_ID_TO_TRAIN_ID,
    COCO_STUFF_IDS,
    COCO_STUFF_PALETTE,
    COCO_STUFF_UNUSED_IDS,
    CocoStuff10k,
    CocoStuff164k,
    build_coco_stuff10k,
    build_coco_stuff164k,
    read_mat_label,
)
from tests.helpers.dataset_trees import (
    COCO_STUFF_SIZE,
    LABELS,
    UNUSED_IDS,
    USED_IDS,
    VALUES_10K,
    VALUES_164K,
    ramp,
    save_image,
    save_label,
    save_mat,
    write_coco_stuff10k_tree,
    write_coco_stuff164k_tree,
)

SIZE = COCO_STUFF_SIZE
H, W = SIZE


@pytest.fixture
def root164k(tmp_path):
    return write_coco_stuff164k_tree(tmp_path / "coco_stuff164k")


@pytest.fixture
def root10k(tmp_path):
    return write_coco_stuff10k_tree(tmp_path / "cocostuff-10k-v1.1")


def expected_train_ids(coco_ids: np.ndarray) -> torch.Tensor:
    """COCO-Stuff ids (H, W), 0 = unlabeled -> train ids computed from labels.txt alone: the rank among the used."""
    rank = {coco_id: i for i, coco_id in enumerate(USED_IDS)}
    return torch.tensor([[rank.get(int(v), 255) for v in row] for row in coco_ids])


# ---------------------------------------------------------------------------------------- the mapping
def test_classes_follow_labels_txt():
    assert len(LABELS) == 183 and LABELS[0] == "unlabeled" and LABELS[92] == "banner" and LABELS[182] == "wood"
    assert len(COCO_STUFF_CLASSES) == len(set(COCO_STUFF_CLASSES)) == len(COCO_STUFF_PALETTE) == 171
    assert len(set(COCO_STUFF_PALETTE)) == 171  # distinct colours
    assert COCO_STUFF_CLASSES == [LABELS[i] for i in USED_IDS]
    assert COCO_STUFF_IDS == USED_IDS


def test_mapping_drops_the_eleven_unannotated_ids():
    assert COCO_STUFF_UNUSED_IDS == UNUSED_IDS == (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
    assert not set(COCO_STUFF_UNUSED_IDS) & set(COCO_STUFF_ID_TO_TRAIN_ID)
    assert sorted(COCO_STUFF_ID_TO_TRAIN_ID.values()) == list(range(171))
    landmarks = {1: 0, 11: 10, 13: 11, 90: 79, 92: 80, 182: 170}  # person, fire hydrant, stop sign, ..., wood
    assert {i: COCO_STUFF_ID_TO_TRAIN_ID[i] for i in landmarks} == landmarks
    assert COCO_STUFF_CLASSES[80] == "banner" and COCO_STUFF_CLASSES[79] == "toothbrush"
    assert COCO_STUFF_CLASSES[170] == "wood" and COCO_STUFF_CLASSES[11] == "stop sign"


# ---------------------------------------------------------------------------------------- COCO-Stuff-164k
def test_164k_layout_and_contract(root164k):
    train, val = CocoStuff164k(root164k), CocoStuff164k(root164k, "val2017")
    assert (len(train), len(val)) == (2, 1) and train.split == "train2017"
    assert len(CocoStuff164k(root164k, "train")) == 2 and CocoStuff164k(root164k, "val").split == "val2017"
    assert train.num_classes == 171 and train.ignore_index == 255 and train.classes == COCO_STUFF_CLASSES
    item = train[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, H, W)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (H, W)
    assert item["path"].endswith("images/train2017/000000000001.jpg")


def test_164k_maps_every_value(root164k):
    label = CocoStuff164k(root164k)[0]["label"]
    raw = ramp(VALUES_164K, size=SIZE).astype(np.int64)
    coco_ids = np.where(raw == 255, 0, raw + 1)  # PNG value = id - 1, 255 = unlabeled
    assert torch.equal(label, expected_train_ids(coco_ids))
    assert set(label.unique().tolist()) == set(range(171)) | {255}
    assert (label[torch.from_numpy(raw) == 91] == 80).all()  # banner (id 92) is PNG value 91


def test_164k_reads_palette_pngs(root164k):
    path = root164k / "annotations" / "val2017" / "000000000003.png"
    indexed = Image.fromarray(ramp([0, 91, 181, 255], size=SIZE)).convert("P")  # indexed images, as the release ships
    indexed.save(path)
    assert CocoStuff164k(root164k, "val2017")[0]["label"].unique().tolist() == [0, 80, 170, 255]


@pytest.mark.parametrize("values, shown", [([0, 11, 25], "11, 25"), ([89, 182, 254], "182, 254")])
def test_164k_refuses_unused_and_out_of_range_values(root164k, values, shown):
    path = root164k / "annotations" / "val2017" / "000000000003.png"
    save_label(path, ramp(values, size=SIZE))
    with pytest.raises(ValueError, match=rf"000000000003.png has values outside the valid range .*: {shown}$"):
        CocoStuff164k(root164k, "val2017")[0]


def test_164k_missing_root_and_split(tmp_path, root164k):
    with pytest.raises(FileNotFoundError, match=r"(?s)COCO-Stuff-164k root not found: .*nowhere.*stuffthingmaps"):
        CocoStuff164k(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"split 'test2017' not found.*\['train2017', 'val2017'\]"):
        CocoStuff164k(root164k, "test2017")
    (root164k / "annotations" / "val2017").rename(root164k / "annotations" / "valid")
    with pytest.raises(FileNotFoundError, match=r"annotations.val2017 is not a folder .*\['train2017', 'valid'\]"):
        CocoStuff164k(root164k, "val")


def test_164k_image_without_annotation(root164k):
    label = root164k / "annotations" / "train2017" / "000000000002.png"
    label.unlink()
    with pytest.raises(FileNotFoundError, match=r"no label for image .*000000000002.jpg: expected") as err:
        CocoStuff164k(root164k)
    assert str(label) in str(err.value) and "labelTrainIds" not in str(err.value)


def test_164k_only_mmseg_maps_are_named(root164k):
    labels = root164k / "annotations" / "train2017"
    for path in list(labels.iterdir()):
        path.rename(labels / f"{path.stem}_labelTrainIds.png")
    with pytest.raises(FileNotFoundError, match=r"(?s)no label for image .*_labelTrainIds.png maps.*unzip"):
        CocoStuff164k(root164k)


def test_164k_empty_split(root164k):
    for path in (root164k / "images" / "val2017").iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"no images matching '\*.jpg' in .*val2017"):
        CocoStuff164k(root164k, "val2017")


def test_164k_size_mismatch(root164k):
    save_label(root164k / "annotations" / "val2017" / "000000000003.png", ramp([0], size=(H, W - 1)))
    with pytest.raises(ValueError, match=r"000000000003.png is \(12, 15\) \(H, W\) but image .* is \(12, 16\)"):
        CocoStuff164k(root164k, "val2017")[0]


# ---------------------------------------------------------------------------------------- COCO-Stuff-10k
def test_10k_layout_and_contract(root10k):
    train, test = CocoStuff10k(root10k), CocoStuff10k(root10k, "test")
    assert (len(train), len(test)) == (2, 1) and len(CocoStuff10k(root10k, "val")) == 1  # alias
    assert train.num_classes == 171 and train.ignore_index == 255 and train.classes == COCO_STUFF_CLASSES
    assert [image.name for image, _ in train.samples] == [f"COCO_train2014_{n:012d}.jpg" for n in (1, 2)]
    item = test[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, H, W)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (H, W)
    assert item["path"].endswith("images/COCO_train2014_000000000003.jpg")


def test_10k_maps_every_value(root10k):
    label = CocoStuff10k(root10k)[0]["label"]
    raw = ramp(VALUES_10K, size=SIZE).astype(np.int64)
    assert torch.equal(label, expected_train_ids(raw))
    assert (label[torch.from_numpy(raw) == 0] == 255).all()  # unlabeled -> ignore
    assert set(label.unique().tolist()) == set(range(171)) | {255}


def test_10k_and_164k_agree(tmp_path):
    """One pixel of each used id, as each release stores it, gives the same train id."""
    ids = np.array(USED_IDS)
    r164 = write_coco_stuff164k_tree(tmp_path / "a", {"train2017": 1}, values=list(ids - 1))
    r10 = write_coco_stuff10k_tree(tmp_path / "b", {"train": 1}, values=list(ids))
    assert torch.equal(CocoStuff164k(r164)[0]["label"], CocoStuff10k(r10)[0]["label"])


def test_10k_double_labels_are_accepted(root10k):
    path = root10k / "annotations" / "COCO_train2014_000000000003.mat"
    save_mat(path, ramp([0, 1, 182], size=SIZE, dtype=np.float64))  # MATLAB's default type
    assert CocoStuff10k(root10k, "test")[0]["label"].unique().tolist() == [0, 170, 255]


@pytest.mark.parametrize("values, shown", [([0, 12, 91], "12, 91"), ([1, 183, 255], "183, 255")])
def test_10k_refuses_unused_and_out_of_range_ids(root10k, values, shown):
    save_mat(root10k / "annotations" / "COCO_train2014_000000000003.mat", ramp(values, size=SIZE))
    with pytest.raises(ValueError, match=rf"000000000003.mat has values outside the valid range .*: {shown}$"):
        CocoStuff10k(root10k, "test")[0]


def test_10k_unreadable_mat(root10k):
    path = root10k / "annotations" / "COCO_train2014_000000000003.mat"
    truncated = path.read_bytes()[:200]
    for garbage in (b"", b"not a MATLAB file" * 20, truncated):
        path.write_bytes(garbage)
        with pytest.raises(ValueError, match=rf"cannot read COCO-Stuff-10k annotation .*{path.name}"):
            CocoStuff10k(root10k, "test")[0]


def test_10k_mat_without_s(root10k):
    path = root10k / "annotations" / "COCO_train2014_000000000003.mat"
    scipy.io.savemat(path, {"labels": ramp([1], size=SIZE)})
    with pytest.raises(ValueError, match=rf"{path.name} has no field 'S' .*fields found: \['labels'\]"):
        read_mat_label(path)


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.zeros((H, W, 2), np.uint8), r"must be a 2-D \(H, W\) map of class ids, got shape \(12, 16, 2\)"),
        (np.full((H, W), "a", dtype=object), r"must be a 2-D \(H, W\) map of class ids"),
        (ramp([1, 2.5, np.nan], size=SIZE, dtype=np.float64), r"has non-integer values: 2.5, nan"),
    ],
)
def test_10k_malformed_s(root10k, labels, message):
    path = root10k / "annotations" / "COCO_train2014_000000000003.mat"
    save_mat(path, labels)
    with pytest.raises(ValueError, match=rf"{path.name}: field 'S' {message}"):
        CocoStuff10k(root10k, "test")[0]


def test_10k_s_of_another_size_than_the_image(root10k):
    save_mat(root10k / "annotations" / "COCO_train2014_000000000003.mat", ramp([1], size=(W, H)))
    with pytest.raises(ValueError, match=r"label .*000000000003.mat is \(16, 12\) \(H, W\) but image .*\(12, 16\)"):
        CocoStuff10k(root10k, "test")[0]


def test_10k_version_1_0_is_refused(root10k):
    path = root10k / "annotations" / "COCO_train2014_000000000003.mat"
    save_mat(path, ramp([1, 2, 172], size=SIZE), names=[f"class{i}" for i in range(172)])
    with pytest.raises(ValueError, match=rf"{path.name} is a version 1.0 file .*cocostuff-10k-v1.1.zip"):
        CocoStuff10k(root10k, "test")[0]


def test_10k_missing_root_split_and_folders(tmp_path, root10k):
    with pytest.raises(FileNotFoundError, match=r"(?s)COCO-Stuff-10k root not found: .*nowhere.*imageLists"):
        CocoStuff10k(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"split 'val2017' not found: .*val2017.txt .*\['test', 'train'\]"):
        CocoStuff10k(root10k, "val2017")
    (root10k / "annotations").rename(root10k / "labels")
    with pytest.raises(FileNotFoundError, match=r"(?s)annotations folder not found: .*annotations is not a folder"):
        CocoStuff10k(root10k)


def test_10k_list_naming_a_missing_image(root10k):
    with (root10k / "imageLists" / "train.txt").open("a") as f:
        f.write("\nCOCO_train2014_000000000404\nCOCO_train2014_000000000405\n")
    with pytest.raises(
        FileNotFoundError,
        match=r"train.txt line 4 names an image that does not exist: .*000000000404.jpg "
        r"\(and 1 more missing images\)",
    ):
        CocoStuff10k(root10k)


def test_10k_image_without_annotation(root10k):
    label = root10k / "annotations" / "COCO_train2014_000000000002.mat"
    label.unlink()
    with pytest.raises(FileNotFoundError, match=r"no label for image .*000000000002.jpg: expected .*000000000002.mat"):
        CocoStuff10k(root10k)


def test_10k_bad_lists(root10k):
    lists = root10k / "imageLists"
    (lists / "empty.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match=r"id list .*empty.txt names no images"):
        CocoStuff10k(root10k, "empty")
    (lists / "twice.txt").write_text("COCO_train2014_000000000001\n\nCOCO_train2014_000000000001\n")
    with pytest.raises(ValueError, match=r"twice.txt names 'COCO_train2014_000000000001' twice \(lines 1 and 3\)"):
        CocoStuff10k(root10k, "twice")
    (lists / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=r"id list .*binary.txt is not UTF-8 text"):
        CocoStuff10k(root10k, "binary")


def test_10k_any_list_is_a_split(root10k):
    (root10k / "imageLists" / "all.txt").write_text(
        "".join(f"COCO_train2014_{n:012d}\r\n" for n in (3, 1, 2))  # Windows line ends, list order kept
    )
    assert [image.stem[-1] for image, _ in CocoStuff10k(root10k, "all").samples] == ["3", "1", "2"]


# ---------------------------------------------------------------------------------------- both
def test_registry_builders_default_to_the_training_split(root164k, root10k):
    assert build_coco_stuff164k(root164k, None, None).split == "train2017"
    assert build_coco_stuff164k(str(root164k), "val2017", None).split == "val2017"
    assert build_coco_stuff10k(root10k, None, None).split == "train"
    assert len(build_coco_stuff10k(root10k, "test", None)) == 1


def test_datasets_pickle_for_dataloader_workers(root164k, root10k):
    transform = TrainTransform(8)
    for ds in (CocoStuff164k(root164k, transforms=transform), CocoStuff10k(root10k, transforms=transform)):
        clone = pickle.loads(pickle.dumps(ds))
        torch.manual_seed(0)
        expected = ds[0]
        torch.manual_seed(0)
        assert torch.equal(clone[0]["label"], expected["label"])
        batch = next(iter(DataLoader(ds, batch_size=2)))
        assert batch["image"].shape == (2, 3, 8, 8) and batch["label"].shape == (2, 8, 8)


def test_unused_images_in_the_folder_are_not_listed(root10k):
    save_image(root10k / "images" / "COCO_train2014_000000000099.jpg", size=SIZE)
    save_label(root10k / "images" / "stray.png", ramp([0], size=SIZE))
    assert len(CocoStuff10k(root10k)) == 2
