"""ocrformer.data: layouts, label mappings, bad-data errors, transforms, the synthetic set, build_dataset.

Every dataset here is a handful of 8 x 16 files (ADE20K: 10 x 16) written to ``tmp_path``; the Cityscapes and
ADE20K trees by ``tests/helpers/dataset_trees.py``.
"""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import ocrformer.data as data
from ocrformer.data import (
    ADE20KSegmentation,
    CityscapesSegmentation,
    EvalTransform,
    FolderSegmentation,
    RandomRescale,
    SyntheticContextSegmentation,
    TrainTransform,
    build_dataset,
    write_folder,
)

from .helpers.dataset_trees import (
    ADE20K_SIZE,
    CITYSCAPES_SIZE,
    ramp,
    save_image,
    save_label,
    write_ade20k_tree,
    write_cityscapes_tree,
)

H, W = 8, 16  # the folder datasets' files and the transforms' samples
SIZE = (H, W)

# The cityscapesScripts table written out independently of the package: label id -> train id.
CITYSCAPES_TRAIN_IDS = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255, 11: 2, 12: 3, 13: 4,
    14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18,
}


# ---------------------------------------------------------------------------------------- fake trees
@pytest.fixture
def cityscapes_root(tmp_path):
    return write_cityscapes_tree(tmp_path / "cityscapes")


@pytest.fixture
def ade_root(tmp_path):
    return write_ade20k_tree(tmp_path / "ADEChallengeData2016")


def make_folder(root, classes=("background", "cat", "dog"), extra=None, n=2, suffix=".png"):
    """images/, labels/ and classes.json under ``root``; labels cycle through the class ids."""
    for i in range(n):
        save_image(root / "images" / f"im{i}{suffix}", seed=i, size=SIZE)
        save_label(root / "labels" / f"im{i}.png", ramp(range(len(classes)), size=SIZE))
    (root / "classes.json").write_text(json.dumps({"classes": list(classes), **(extra or {})}))
    return root


def folder_dataset(root, **kwargs):
    return FolderSegmentation(root / "images", root / "labels", root / "classes.json", **kwargs)


# ---------------------------------------------------------------------------------------- Cityscapes
def test_cityscapes_layout_and_contract(cityscapes_root):
    train = CityscapesSegmentation(cityscapes_root, "train")
    val = CityscapesSegmentation(cityscapes_root, split="val")
    assert (len(train), len(val)) == (2, 1)
    assert train.num_classes == len(train.classes) == len(train.palette) == 19
    assert train.classes[0] == "road" and train.classes[-1] == "bicycle" and train.palette[0] == (128, 64, 128)
    assert train.ignore_index == 255
    item = train[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, *CITYSCAPES_SIZE)
    assert item["label"].dtype == torch.int64 and item["label"].shape == CITYSCAPES_SIZE
    assert item["path"].endswith("aachen_000000_000000_leftImg8bit.png")
    pixels = np.array(Image.open(item["path"]))
    assert torch.equal(item["image"], torch.from_numpy(pixels).permute(2, 0, 1))


def test_cityscapes_maps_every_label_id(cityscapes_root):
    label = CityscapesSegmentation(cityscapes_root)[0]["label"].flatten()
    raw = torch.from_numpy(ramp(range(34), size=CITYSCAPES_SIZE)).flatten().long()
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        assert (label[raw == label_id] == train_id).all(), f"label id {label_id}"


def test_cityscapes_class_weights():
    assert len(data.CITYSCAPES_CLASS_WEIGHTS) == 19
    assert data.CITYSCAPES_CLASS_WEIGHTS[0] == 0.8373 and data.CITYSCAPES_CLASS_WEIGHTS[-1] == 1.0507


def test_cityscapes_missing_folders(tmp_path, cityscapes_root):
    with pytest.raises(FileNotFoundError, match="(?s)Cityscapes root not found.*leftImg8bit"):
        CityscapesSegmentation(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"(?s)split 'test' not found.*found there: \['train', 'val'\]"):
        CityscapesSegmentation(cityscapes_root, "test")


def test_cityscapes_missing_label(cityscapes_root):
    label = next((cityscapes_root / "gtFine" / "train" / "bochum").iterdir())
    label.unlink()
    with pytest.raises(FileNotFoundError, match=r"no label for image .*bochum_000000_000001_leftImg8bit.png") as err:
        CityscapesSegmentation(cityscapes_root)
    assert str(label) in str(err.value)


def test_cityscapes_label_id_out_of_range(cityscapes_root):
    path = next((cityscapes_root / "gtFine" / "val" / "frankfurt").iterdir())
    save_label(path, ramp([7, 34, 40], size=CITYSCAPES_SIZE))
    with pytest.raises(ValueError, match=r"frankfurt.*outside the valid range.*: 34, 40"):
        CityscapesSegmentation(cityscapes_root, "val")[0]


# ---------------------------------------------------------------------------------------- ADE20K
def test_ade20k_layout_and_mapping(ade_root):
    train = ADE20KSegmentation(ade_root)
    assert len(train) == 2 and len(ADE20KSegmentation(ade_root, "validation")) == 2
    assert len(ADE20KSegmentation(ade_root, "val")) == 2  # alias
    assert train.num_classes == len(train.classes) == len(train.palette) == 150
    assert train.classes[:5] == ["wall", "building", "sky", "floor", "tree"] and len(set(train.classes)) == 150
    item = train[0]
    raw = torch.from_numpy(ramp(range(151), size=ADE20K_SIZE)).long()  # every annotation value 0-150
    assert item["image"].shape == (3, *ADE20K_SIZE) and item["path"].endswith(".jpg")
    assert (item["label"][raw == 0] == 255).all()
    assert torch.equal(item["label"][raw > 0], raw[raw > 0] - 1)
    assert set(item["label"].unique().tolist()) <= set(range(150)) | {255}


def test_ade20k_missing_split_and_out_of_range(ade_root):
    with pytest.raises(FileNotFoundError, match=r"(?s)split 'testing' not found.*\['training', 'validation'\]"):
        ADE20KSegmentation(ade_root, "testing")
    path = next((ade_root / "annotations" / "training").iterdir())
    save_label(path, ramp([0, 151, 200], size=ADE20K_SIZE))
    with pytest.raises(ValueError, match=rf"{path.name}.*: 151, 200"):
        ADE20KSegmentation(ade_root)[0]


# ---------------------------------------------------------------------------------------- folder
def test_folder_pairs_by_stem(tmp_path):
    root = make_folder(tmp_path, n=2)
    save_image(root / "images" / "im2.jpg", seed=2, size=SIZE)
    save_label(root / "labels" / "im2.png", ramp(range(3), size=SIZE))
    (root / "images" / "notes.txt").write_text("not an image, not listed")
    ds = folder_dataset(root)
    assert len(ds) == 3 and [s[0].name for s in ds.samples] == ["im0.png", "im1.png", "im2.jpg"]
    assert ds.classes == ["background", "cat", "dog"] and ds.num_classes == 3
    assert ds.palette == [(0, 0, 0), (128, 0, 0), (0, 128, 0)]  # generated: the PASCAL VOC colour map
    assert torch.equal(ds[2]["label"], torch.from_numpy(ramp(range(3), size=SIZE)).long())


def test_folder_palette_and_own_ignore_index(tmp_path):
    root = make_folder(tmp_path, classes=("a", "b"), extra={"palette": [[1, 2, 3], [4, 5, 6]], "ignore_index": 9})
    save_label(root / "labels" / "im0.png", ramp([0, 1, 9], size=SIZE))
    ds = folder_dataset(root)
    assert ds.palette == [(1, 2, 3), (4, 5, 6)] and ds.ignore_index == 255
    assert ds[0]["label"].unique().tolist() == [0, 1, 255]  # the file's ignore value 9 -> 255


def test_folder_16_bit_labels(tmp_path):
    root = make_folder(tmp_path, classes=("a", "b", "c"), extra={"ignore_index": 1000})
    Image.fromarray(ramp([0, 2, 1000], size=SIZE, dtype=np.uint16)).save(root / "labels" / "im0.png")
    assert folder_dataset(root)[0]["label"].unique().tolist() == [0, 2, 255]


def test_datasets_pickle_for_dataloader_workers(tmp_path, cityscapes_root):
    for ds in (
        CityscapesSegmentation(cityscapes_root, transforms=TrainTransform(4)),
        folder_dataset(make_folder(tmp_path)),
        SyntheticContextSegmentation(num_images=1),
    ):
        clone = pickle.loads(pickle.dumps(ds))
        torch.manual_seed(0)
        expected = ds[0]
        torch.manual_seed(0)
        assert torch.equal(clone[0]["label"], expected["label"])


def test_folder_missing_label(tmp_path):
    root = make_folder(tmp_path)
    (root / "labels" / "im1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"no label for image .*im1.png: expected .*labels.im1.png"):
        folder_dataset(root)


def test_folder_size_mismatch(tmp_path):
    root = make_folder(tmp_path)
    save_label(root / "labels" / "im0.png", ramp(range(3), size=(H, W - 1)))
    with pytest.raises(ValueError, match=r"label .*im0.png is \(8, 15\) \(H, W\) but image .*im0.png is \(8, 16\)"):
        folder_dataset(root)[0]


def test_folder_values_out_of_range(tmp_path):
    root = make_folder(tmp_path)
    save_label(root / "labels" / "im1.png", ramp([0, 3, 7, 255], size=SIZE))  # 255 = ignore is fine
    ds = folder_dataset(root)
    ds[0]
    with pytest.raises(ValueError, match=r"im1.png has values outside the valid range \(class ids 0-2.*\): 3, 7$"):
        ds[1]


def test_folder_corrupt_image_and_label(tmp_path):
    root = make_folder(tmp_path)
    (root / "images" / "im0.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
    with pytest.raises(ValueError, match=r"cannot read image .*im0.png"):
        folder_dataset(root)[0]
    (root / "labels" / "im1.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"cannot read label .*im1.png"):
        folder_dataset(root)[1]


def test_folder_colour_label_is_refused(tmp_path):
    root = make_folder(tmp_path)
    save_image(root / "labels" / "im0.png", size=SIZE)  # an RGB file where ids are expected
    with pytest.raises(ValueError, match=r"im0.png has PIL mode 'RGB'"):
        folder_dataset(root)[0]


def test_folder_missing_and_empty_folders(tmp_path):
    root = make_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"image_dir not found: .*nowhere"):
        FolderSegmentation(tmp_path / "nowhere", root / "labels", root / "classes.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"no images matching .* in {empty}"):
        FolderSegmentation(empty, root / "labels", root / "classes.json")


def test_folder_duplicate_stems(tmp_path):
    root = make_folder(tmp_path)
    save_image(root / "images" / "im0.jpg", size=SIZE)
    with pytest.raises(ValueError, match="same stem"):
        folder_dataset(root)


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "not valid JSON"),
        ('["a", "b"]', 'expected an object with a "classes" list'),
        ('{"classes": []}', "non-empty list"),
        ('{"classes": ["a", "a"]}', "duplicate names"),
        ('{"classes": ["a", "b"], "palette": [[0, 0, 0]]}', r"2 \[r, g, b\] lists"),
        ('{"classes": ["a", "b"], "palette": [[0, 0, 0], [0, 0, 256]]}', "ints 0-255"),
        ('{"classes": ["a", "b"], "ignore_index": 1}', "is a class id"),
        ('{"classes": ["a"], "pallete": [[0, 0, 0]]}', r"unknown keys \['pallete'\]"),
    ],
)
def test_bad_classes_json(tmp_path, text, match):
    path = tmp_path / "classes.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        data.read_classes_json(path)
    assert str(path) in str(err.value)


def test_missing_classes_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="classes_json not found"):
        data.read_classes_json(tmp_path / "classes.json")


# ---------------------------------------------------------------------------------------- transforms
def sample(height=H, width=W, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g), torch.randint(
        0, 5, (height, width), generator=g
    )


def test_train_transform_shapes_and_dtypes():
    transform = TrainTransform((12, 20))
    torch.manual_seed(0)
    for _ in range(10):
        image, label = transform(*sample())
        assert image.shape == (3, 12, 20) and image.dtype == torch.float32 and type(image) is torch.Tensor
        assert label.shape == (12, 20) and label.dtype == torch.int64 and type(label) is torch.Tensor
        assert set(label.unique().tolist()) <= set(range(5)) | {255}


def test_train_transform_pads_with_zero_and_ignore_index():
    mean, std = (0.5, 0.25, 0.75), (0.5, 0.5, 0.5)
    transform = TrainTransform(32, scale_range=(1.0, 1.0), jitter=False, mean=mean, std=std, ignore_index=77)
    torch.manual_seed(0)
    image, label = transform(*sample())
    padded = label == 77
    assert padded.sum() == 32 * 32 - H * W  # the whole 8 x 16 input is kept, everything else is padding
    zero = (-torch.tensor(mean) / torch.tensor(std))[:, None]  # a 0 pixel after normalisation
    assert torch.allclose(image[:, padded], zero.expand(3, int(padded.sum())))


def test_train_transform_flips_image_and_label_together():
    # Encode the label in the red channel: after any geometric op the two must still agree pixel for pixel.
    label = torch.arange(H * W).reshape(H, W) % 17
    image = (label * 15).to(torch.uint8).expand(3, H, W).clone()
    transform = TrainTransform((H, W), scale_range=(1.0, 1.0), jitter=False, mean=(0, 0, 0), std=(1, 1, 1))
    flipped = []
    for seed in range(8):
        torch.manual_seed(seed)
        out_image, out_label = transform(image, label)
        assert torch.equal((out_image[0] * 255).round().long(), out_label * 15)
        flipped.append(torch.equal(out_label, label.flip(-1)))
        assert flipped[-1] or torch.equal(out_label, label)
    assert any(flipped) and not all(flipped)


def test_random_rescale_stays_in_range_and_keeps_label_values():
    from torchvision import tv_tensors

    rescale = RandomRescale((0.5, 2.0))
    image, label = sample(height=20, width=40)
    heights = []
    torch.manual_seed(0)
    for _ in range(20):
        out_image, out_label = rescale(tv_tensors.Image(image), tv_tensors.Mask(label))
        assert out_image.shape[1:] == out_label.shape
        assert 10 <= out_label.shape[0] <= 40
        assert abs(out_label.shape[1] / out_label.shape[0] - 2) < 0.2  # aspect ratio kept
        assert set(out_label.unique().tolist()) <= set(label.unique().tolist())  # nearest: no blended ids
        heights.append(out_label.shape[0])
    assert min(heights) < 20 < max(heights)
    with pytest.raises(ValueError, match="scale_range"):
        RandomRescale((2.0, 1.0))


def test_train_transform_is_deterministic_under_seed():
    transform = TrainTransform(10)
    image, label = sample()
    outputs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        outputs.append(transform(image, label))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])
    assert not torch.equal(outputs[0][0], outputs[2][0])


def test_eval_transform():
    image, label = sample()
    out_image, out_label = EvalTransform(mean=(0.5,) * 3, std=(0.5,) * 3)(image, label)
    assert torch.allclose(out_image, image.float() / 255 * 2 - 1, atol=1e-6)
    assert torch.equal(out_label, label) and type(out_label) is torch.Tensor


def test_transform_input_errors():
    image, label = sample()
    with pytest.raises(ValueError, match="uint8"):
        EvalTransform()(image.float(), label)
    with pytest.raises(ValueError, match="int64"):
        EvalTransform()(image, label[:-1])
    with pytest.raises(ValueError, match="crop_size"):
        TrainTransform((0, 4))


# ---------------------------------------------------------------------------------------- synthetic
def test_synthetic_contract_and_determinism():
    ds = SyntheticContextSegmentation("val", num_images=4, size=(48, 64), seed=3)
    assert len(ds) == 4 and ds.num_classes == len(ds.classes) == len(ds.palette) and ds.ignore_index == 255
    assert len(SyntheticContextSegmentation()) == 400 and len(SyntheticContextSegmentation("val")) == 100
    item = ds[2]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 48, 64)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (48, 64)
    assert 0 <= item["label"].min() and item["label"].max() < ds.num_classes
    again = SyntheticContextSegmentation("val", num_images=4, size=(48, 64), seed=3)[2]  # fresh object
    assert torch.equal(item["image"], again["image"]) and torch.equal(item["label"], again["label"])
    for other in (SyntheticContextSegmentation("val", size=(48, 64), seed=4), SyntheticContextSegmentation("train")):
        assert not torch.equal(other[2]["image"][:, :48, :64], item["image"])
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(ValueError, match="split"):
        SyntheticContextSegmentation("training")


def test_synthetic_crates_share_one_class_per_image():
    """The property the design rests on: the crate class is an image-level fact, never mixed in one image."""
    ds = SyntheticContextSegmentation("train", num_images=30)
    red, blue = ds.classes.index("crate_red"), ds.classes.index("crate_blue")
    seen = set()
    for i in range(len(ds)):
        present = set(ds[i]["label"].unique().tolist())
        assert not {red, blue} <= present
        seen |= present
    assert seen == set(range(ds.num_classes))


def run_starts(on: torch.Tensor) -> list[int]:
    """Where the runs of True in a 1-D bool tensor start."""
    on = on.long()
    return torch.nonzero(on - torch.cat([on.new_zeros(1), on[:-1]]) == 1).flatten().tolist()


def test_synthetic_rods_look_alike_away_from_their_caps():
    """Two parallel rods over the same stretch of their axis, 8k px apart: only the caps tell them apart."""
    ds = SyntheticContextSegmentation("train", num_images=20)
    rod_ids = torch.tensor([ds.classes.index("rod_orange"), ds.classes.index("rod_purple")])
    for i in range(len(ds)):
        rods = torch.isin(ds[i]["label"], rod_ids)
        # Horizontal rods: two runs of rows, each row covering the same columns (vertical: transposed).
        mask = rods if len(run_starts(rods.any(1))) == 2 else rods.T
        starts = run_starts(mask.any(1))
        assert len(starts) == 2 and (starts[1] - starts[0]) % 8 == 0, f"image {i}: rods start at {starts}"
        assert len({tuple(row.nonzero().flatten().tolist()) for row in mask if row.any()}) == 1, f"image {i}"


@pytest.mark.parametrize("size", [(32, 32), (32, 90), (90, 32), (128, 128)])
def test_synthetic_sizes(size):
    ds = SyntheticContextSegmentation("test", num_images=5, size=size)
    assert all(ds[i]["label"].shape == size for i in range(5))


def test_synthetic_transforms_are_applied():
    ds = SyntheticContextSegmentation(num_images=2, transforms=TrainTransform(32))
    item = ds[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 32, 32)


def test_write_folder_round_trip(tmp_path):
    ds = SyntheticContextSegmentation("val", num_images=3, size=(32, 40), seed=5)
    folder = folder_dataset(write_folder(ds, tmp_path / "synthetic"))
    assert len(folder) == 3 and folder.classes == ds.classes and folder.palette == ds.palette
    for i in range(3):
        assert torch.equal(folder[i]["image"], ds[i]["image"]) and torch.equal(folder[i]["label"], ds[i]["label"])


# ---------------------------------------------------------------------------------------- build_dataset
def test_build_dataset(tmp_path, cityscapes_root, ade_root):
    assert isinstance(build_dataset("synthetic", split="val", num_images=2), SyntheticContextSegmentation)
    assert len(build_dataset("cityscapes", cityscapes_root, split="val")) == 1
    assert build_dataset("ade20k", ade_root, split="val").split == "validation"
    write_folder(SyntheticContextSegmentation("val", num_images=2), tmp_path / "out" / "val")
    assert len(build_dataset("folder", tmp_path / "out", split="val")) == 2
    assert len(build_dataset("folder", tmp_path / "out" / "val", classes_json=None)) == 2  # None = the default
    (tmp_path / "out" / "val" / "classes.json").rename(tmp_path / "elsewhere.json")
    assert len(build_dataset("folder", tmp_path / "out", split="val", classes_json=tmp_path / "elsewhere.json")) == 2
    with pytest.raises(ValueError, match=r"unknown dataset 'voc'.*\['synthetic', 'cityscapes', 'ade20k', 'folder', 'c"):
        build_dataset("voc")
    with pytest.raises(ValueError, match="needs root"):
        build_dataset("cityscapes")
    with pytest.raises(ValueError, match="takes no root"):
        build_dataset("synthetic", tmp_path)


def test_adding_a_dataset_is_one_registration():
    """One register_dataset call and the name works everywhere: build_dataset, TrainConfig, build_datasets (with
    the entry's default splits) and the semantic experiment's --dataset choices."""
    from ocrformer.data import DATASETS, DatasetEntry, dataset_names, register_dataset
    from ocrformer.engine import TrainConfig, build_datasets

    def tiny(root, split, transforms, **kwargs):
        return SyntheticContextSegmentation(split or "train", num_images=3, transforms=transforms, **kwargs)

    register_dataset(DatasetEntry("tiny_context", "semantic", tiny, splits=("train", "val"), needs_root=False))
    try:
        assert "tiny_context" in dataset_names("semantic") and len(build_dataset("tiny_context")) == 3
        train, val = build_datasets(TrainConfig(dataset="tiny_context", crop_size=(32, 32)))
        assert (train.split, val.split) == ("train", "val") and train[0]["image"].shape == (3, 32, 32)
        with pytest.raises(ValueError, match="registered already"):
            register_dataset(DatasetEntry("tiny_context", "semantic", tiny))
    finally:
        DATASETS.pop("tiny_context")
    with pytest.raises(ValueError, match="dataset must be one of .*got 'voc'"):
        TrainConfig(dataset="voc")


def test_public_api():
    assert all(hasattr(data, name) for name in data.__all__)
