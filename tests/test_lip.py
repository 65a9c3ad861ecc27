"""LIP: the release layout, classes, id lists, bad data, and the left/right swap of the horizontal flip -- in the
training augmentation, in flip-test inference and in their wiring (build_datasets, Trainer.evaluate).

Every tree is a few 8 x 12 files written to ``tmp_path`` (``tests/helpers/dataset_trees.py``).
"""

import numpy as np
import pytest
import torch
from PIL import Image

from ocrformer.data import (
    DATASETS,
    EvalTransform,
    LIPSegmentation,
    RandomHorizontalFlipSwap,
    TrainTransform,
    build_dataset,
    check_flip_pairs,
)
from ocrformer.inference import predict, predict_labels

from .helpers.dataset_trees import H, W, lip_ids, ramp, save_image, save_label, write_lip_tree
from .helpers.toy import toy_config

# Written out from upstream, independently of the package: the class names in annotation-value order
# (mmsegmentation mmseg/datasets/lip.py) and the swap_pair of openseg.pytorch configs/lip/H_48_D_4.json
# (the same ids HRNet-Semantic-Segmentation lib/datasets/lip.py swaps).
UPSTREAM_CLASSES = [
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "UpperClothes", "Dress", "Coat", "Socks", "Pants",
    "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg", "Left-shoe",
    "Right-shoe",
]
UPSTREAM_SWAP_PAIR = [[14, 15], [16, 17], [18, 19]]
MIRROR = {14: 15, 15: 14, 16: 17, 17: 16, 18: 19, 19: 18}
PAIRS = LIPSegmentation.flip_pairs


def mirrored(label: torch.Tensor) -> torch.Tensor:
    """What a mirror makes of a LIP label: flipped, and every left part a right part (written here, not with the
    package's swap)."""
    flipped = label.flip(-1)
    return torch.tensor([[MIRROR.get(v, v) for v in row] for row in flipped.tolist()], dtype=label.dtype)


@pytest.fixture
def lip_root(tmp_path):
    return write_lip_tree(tmp_path / "LIP")


# ---------------------------------------------------------------------------------------- layout, classes
def test_layout_classes_and_contract(lip_root):
    train, val = LIPSegmentation(lip_root, "train"), LIPSegmentation(lip_root, "val")
    assert (len(train), len(val)) == (2, 1) and train.split == "train" and train.root == lip_root
    assert train.classes == UPSTREAM_CLASSES and train.num_classes == 20 and train.ignore_index == 255
    assert len(train.palette) == 20 and train.palette[0] == (0, 0, 0) and len(set(train.palette)) == 20
    assert train.id_list == lip_root / "TrainVal_images" / "train_id.txt"
    for index, image_id in enumerate(lip_ids("train", 2)):
        sample = train[index]
        assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, H, W)
        assert sample["label"].dtype == torch.int64
        label = torch.from_numpy(ramp(range(20), start=index)).long()
        assert torch.equal(sample["label"], label)  # values are train ids
        assert sample["path"].endswith(f"train_images/{image_id}.jpg")


def test_flip_pairs_are_the_upstream_ones():
    assert LIPSegmentation.flip_pairs == tuple(map(tuple, UPSTREAM_SWAP_PAIR))
    assert check_flip_pairs(LIPSegmentation.flip_pairs, len(UPSTREAM_CLASSES)) == LIPSegmentation.flip_pairs
    for left, right in LIPSegmentation.flip_pairs:
        assert UPSTREAM_CLASSES[left].startswith("Left-") and UPSTREAM_CLASSES[right].startswith("Right-")
        assert UPSTREAM_CLASSES[left][5:] == UPSTREAM_CLASSES[right][6:]


def test_ignore_is_kept_and_values_out_of_range_refused(lip_root):
    label_dir = lip_root / "TrainVal_parsing_annotations" / "val_segmentations"
    image_id = lip_ids("val", 1)[0]
    values = ramp(range(20))
    values[0, :4] = 255
    save_label(label_dir / f"{image_id}.png", values)
    label = LIPSegmentation(lip_root, "val")[0]["label"]
    assert (label[0, :4] == 255).all() and torch.equal(label[1:], torch.from_numpy(values[1:]).long())
    values[1, 1], values[2, 2] = 20, 77
    save_label(label_dir / f"{image_id}.png", values)
    with pytest.raises(ValueError, match=rf"{image_id}\.png has values outside the valid range .*0-19.*: 20, 77"):
        LIPSegmentation(lip_root, "val")[0]


# ---------------------------------------------------------------------------------------- id lists
def test_id_list_selects_the_images(lip_root):
    extra = "99_1"  # an image of the folder that the id list does not name
    save_image(lip_root / "TrainVal_images" / "train_images" / f"{extra}.jpg", seed=5)
    save_label(lip_root / "TrainVal_parsing_annotations" / "train_segmentations" / f"{extra}.png", ramp(range(20)))
    listed = LIPSegmentation(lip_root, "train")
    assert [p.stem for p, _ in listed.samples] == lip_ids("train", 2)
    (lip_root / "TrainVal_images" / "train_id.txt").rename(lip_root / "train_id.txt")  # where some codebases keep it
    moved = LIPSegmentation(lip_root, "train")
    assert moved.id_list == lip_root / "train_id.txt" and len(moved) == 2
    (lip_root / "train_id.txt").unlink()  # no list: every jpg of the folder, sorted
    unlisted = LIPSegmentation(lip_root, "train")
    assert unlisted.id_list is None and [p.stem for p, _ in unlisted.samples] == sorted([*lip_ids("train", 2), extra])


def test_id_list_in_the_release_folder_wins(lip_root):
    (lip_root / "train_id.txt").write_text(f"{lip_ids('train', 2)[1]}\n")
    assert len(LIPSegmentation(lip_root, "train")) == 2


def test_id_list_errors(lip_root):
    id_list = lip_root / "TrainVal_images" / "train_id.txt"
    first, second = lip_ids("train", 2)
    id_list.write_text(f"{first}\n{second}\nghost_1\n\nghost_2\n")
    with pytest.raises(
        FileNotFoundError, match=r"train_id\.txt line 3 names an image that does not exist: .*ghost_1\.jpg \(and 1 more"
    ):
        LIPSegmentation(lip_root, "train")
    id_list.write_text(f"{first}\n{second}\n{first}\n")
    with pytest.raises(ValueError, match=rf"train_id\.txt names '{first}' twice \(lines 1 and 3\)"):
        LIPSegmentation(lip_root, "train")
    id_list.write_text("\n \n")
    with pytest.raises(ValueError, match=r"train_id\.txt names no images"):
        LIPSegmentation(lip_root, "train")


# ---------------------------------------------------------------------------------------- bad trees
def test_missing_root_and_split_folders(tmp_path, lip_root):
    with pytest.raises(FileNotFoundError, match=r"(?s)LIP root not found: .*nowhere is not a folder.*TrainVal_images"):
        LIPSegmentation(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"LIP split 'test' not found: .*test_images.*\['train', 'val'\]"):
        LIPSegmentation(lip_root, "test")
    only_train = write_lip_tree(tmp_path / "only_train", {"train": 1})
    with pytest.raises(FileNotFoundError, match=r"split 'val' not found.*splits found there: \['train'\]"):
        LIPSegmentation(only_train, "val")


def test_archive_unpacked_one_level_too_deep(tmp_path, lip_root):
    nested = tmp_path / "nested"
    (nested / "TrainVal_images").mkdir(parents=True)
    (lip_root / "TrainVal_images").rename(nested / "TrainVal_images" / "TrainVal_images")
    (lip_root / "TrainVal_parsing_annotations").rename(nested / "TrainVal_parsing_annotations")
    with pytest.raises(FileNotFoundError, match=r"splits found there: none\).*another TrainVal_images/ folder"):
        LIPSegmentation(nested, "train")


def test_image_without_label_and_no_images(lip_root):
    image_id = lip_ids("train", 2)[1]
    (lip_root / "TrainVal_parsing_annotations" / "train_segmentations" / f"{image_id}.png").unlink()
    with pytest.raises(FileNotFoundError, match=rf"no label for image .*{image_id}\.jpg: expected .*{image_id}\.png"):
        LIPSegmentation(lip_root, "train")
    (lip_root / "TrainVal_images" / "val_id.txt").unlink()
    (lip_root / "TrainVal_images" / "val_images" / f"{lip_ids('val', 1)[0]}.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"no images matching '\*\.jpg' in .*val_images"):
        LIPSegmentation(lip_root, "val")


# ---------------------------------------------------------------------------------------- training flip
def test_flip_swap_twice_is_the_identity():
    """The flipped image with swapped labels is a fixed point of a second flip + swap."""
    image = torch.randint(0, 256, (3, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    label = torch.from_numpy(ramp(range(20))).long()
    label[0, 0] = 255
    flip = RandomHorizontalFlipSwap(p=1.0, flip_pairs=PAIRS)
    from torchvision import tv_tensors

    once_image, once_label = flip(tv_tensors.Image(image), tv_tensors.Mask(label))
    assert isinstance(once_label, tv_tensors.Mask)
    assert torch.equal(once_image, image.flip(-1)) and torch.equal(once_label, mirrored(label))
    twice_image, twice_label = flip(once_image, once_label)
    assert torch.equal(twice_image, image) and torch.equal(twice_label, label)
    plain_label = RandomHorizontalFlipSwap(p=1.0)(tv_tensors.Image(image), tv_tensors.Mask(label))[1]
    assert torch.equal(plain_label, label.flip(-1)) and not torch.equal(plain_label, mirrored(label))


def test_training_flip_of_a_lip_sample_is_its_mirror_image(lip_root):
    """TrainTransform (no rescale, no crop, no jitter) gives either the sample or its mirror image: pixels
    flipped and left/right parts exchanged; without flip_pairs the flipped label is not the mirror image."""
    raw = LIPSegmentation(lip_root, "train")[0]
    image, label = raw["image"], raw["label"]
    settings = dict(scale_range=(1.0, 1.0), jitter=False, mean=(0, 0, 0), std=(1, 1, 1))
    dataset = LIPSegmentation(lip_root, "train", transforms=TrainTransform((H, W), flip_pairs=PAIRS, **settings))
    plain = TrainTransform((H, W), **settings)
    flips = []
    for seed in range(8):
        torch.manual_seed(seed)
        sample = dataset[0]
        flipped = not torch.equal(sample["label"], label)
        if flipped:
            assert torch.equal(sample["label"], mirrored(label))
            assert torch.allclose(sample["image"], image.flip(-1).float() / 255, atol=1e-6)
        else:
            assert torch.allclose(sample["image"], image.float() / 255, atol=1e-6)
        flips.append(flipped)
        torch.manual_seed(seed)  # the same draw without the pairs: mirrored pixels, unswapped parts
        plain_label = plain(image, label)[1]
        assert torch.equal(plain_label, label.flip(-1) if flipped else label)
    assert any(flips) and not all(flips)


def test_flip_pairs_are_validated():
    for pairs, match in [
        (((14, 14),), r"flip_pairs: the pair \(14, 14\) swaps class 14 with itself"),
        (((14, 15), (15, 16)), r"flip_pairs: class 15 appears in more than one pair"),
        (((14, 20),), r"flip_pairs: class id 20 in the pair \(14, 20\) is out of range \(0\.\.19\)"),
        (((-1, 2),), r"flip_pairs: class id -1 .* out of range"),
        (((1, 2, 3),), r"flip_pairs must hold pairs \(a, b\) of int class ids, got the entry \(1, 2, 3\)"),
        (((1.0, 2),), r"flip_pairs must hold pairs"),
        ("ab", r"flip_pairs must be a sequence of \(a, b\) class-id pairs"),
    ]:
        with pytest.raises(ValueError, match=match):
            predict(lambda x: {"logits": x}, torch.zeros(1, 20, 2, 2), flip=True, flip_pairs=pairs, num_classes=20)
    with pytest.raises(ValueError, match=r"flip_pairs \(the model gives K=20 classes\): class id 25"):
        predict(lambda x: {"logits": x}, torch.zeros(1, 20, 2, 2), flip=True, flip_pairs=((14, 25),))
    with pytest.raises(ValueError, match=r"flip_pairs: the pair \(3, 3\)"):
        TrainTransform(8, flip_pairs=((3, 3),))
    with pytest.raises(ValueError, match=r"flip_pairs \(\(1, 255\),\) contain the ignore_index 255"):
        TrainTransform(8, flip_pairs=((1, 255),))
    assert TrainTransform(8, flip_pairs=[[14, 15]]).flip_pairs == ((14, 15),)  # lists, e.g. from JSON


# ---------------------------------------------------------------------------------------- flip test
class MirrorAware:
    """A model whose logits are exactly consistent under flip + swap but not under flip alone: a pointwise part
    (equal for the two classes of a pair) plus a horizontal ramp that favours the left class of a pair on one
    side of the image and the right class on the other. model(mirror(x)) = swap(mirror(model(x)))."""

    def __init__(self):
        self.weights = torch.randn(20, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        for left, right in UPSTREAM_SWAP_PAIR:
            self.weights[right] = self.weights[left]

    def __call__(self, x):
        logits = torch.einsum("kc,bchw->bkhw", self.weights, x)
        ramp_x = torch.arange(x.shape[-1], dtype=x.dtype) - (x.shape[-1] - 1) / 2  # exactly odd under a flip
        for left, right in UPSTREAM_SWAP_PAIR:
            logits[:, left] += 2 * ramp_x
            logits[:, right] -= 2 * ramp_x
        return {"logits": logits}


def test_flip_test_with_the_swap_agrees_with_the_unflipped_pass():
    model = MirrorAware()
    x = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    swap = [MIRROR.get(k, k) for k in range(20)]
    assert torch.equal(model(x.flip(-1))["logits"], model(x)["logits"][:, swap].flip(-1))  # the model's property
    single = predict(model, x)
    with_swap = predict(model, x, flip=True, flip_pairs=PAIRS)
    without_swap = predict(model, x, flip=True)
    assert torch.allclose(with_swap, single, rtol=0, atol=1e-12)
    assert (without_swap - single).abs().max() > 0.1  # left and right parts averaged together
    labels = predict_labels(model, x)
    assert torch.equal(predict_labels(model, x, flip=True, flip_pairs=PAIRS), labels)
    assert not torch.equal(predict_labels(model, x, flip=True), labels)
    assert set(labels.unique().tolist()) & set(MIRROR)  # the test image does show left/right parts
    many = predict(model, x, scales=(0.75, 1.5), flip=True, flip_pairs=PAIRS)  # resizing commutes with mirroring
    assert torch.allclose(many, predict(model, x, scales=(0.75, 1.5)), rtol=0, atol=1e-12)
    assert torch.equal(predict(model, x, flip_pairs=PAIRS), single)  # without flip the pairs change nothing


# ---------------------------------------------------------------------------------------- wiring
def test_build_datasets_and_evaluate_use_the_datasets_flip_pairs(tmp_path, lip_root, monkeypatch):
    from ocrformer.engine import TrainConfig, Trainer, build_datasets

    config = TrainConfig(dataset="lip", data_root=str(lip_root), crop_size=(H, W), device="cpu")
    train, val = build_datasets(config)
    assert isinstance(train, LIPSegmentation) and (len(train), len(val)) == (2, 1)
    assert isinstance(train.transforms, TrainTransform) and train.transforms.flip_pairs == PAIRS
    assert isinstance(val.transforms, EvalTransform) and train[0]["image"].shape == (3, H, W)
    assert build_datasets(TrainConfig())[0].transforms.flip_pairs == ()  # a dataset without left/right classes

    seen = []

    def spy(model, images, **kwargs):
        seen.append(kwargs)
        return torch.zeros(images.shape[0], 20, *images.shape[-2:])

    monkeypatch.setattr("ocrformer.engine.trainer.predict", spy)
    trainer = Trainer(toy_config(tmp_path / "run"), train, val)
    trainer.evaluate(flip=True)
    assert seen and all(kw["flip"] and kw["flip_pairs"] == PAIRS for kw in seen)


def test_build_dataset_by_name(lip_root):
    assert DATASETS["lip"].splits == ("train", "val") and DATASETS["lip"].task == "semantic"
    val = build_dataset("lip", lip_root, split="val")
    assert isinstance(val, LIPSegmentation) and val.split == "val" and len(val) == 1
    assert build_dataset("lip", lip_root).split == "train"


def test_label_files_are_read_as_ids(lip_root):
    """A palette PNG (as the release's annotations may be) reads as its indices, not its colours."""
    image_id = lip_ids("val", 1)[0]
    path = lip_root / "TrainVal_parsing_annotations" / "val_segmentations" / f"{image_id}.png"
    indexed = Image.new("P", (W, H))
    indexed.putdata(ramp(range(20)).flatten().tolist())
    indexed.putpalette([c for colour in LIPSegmentation(lip_root, "val").palette for c in colour])
    indexed.save(path)
    assert np.array_equal(LIPSegmentation(lip_root, "val")[0]["label"].numpy(), ramp(range(20)))
