"""ocrformer.data.coco_panoptic and synthetic_panoptic: the synthetic set in the real COCO panoptic format, the
loader's targets against an independent decode of the files, bad-data errors, transforms, collate.

Every dataset here is a few images of at most 64 x 72 pixels written to ``tmp_path``.
"""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from ocrformer.data import (
    SYNTHETIC_PANOPTIC_CATEGORIES,
    CocoPanoptic,
    PanopticEvalTransform,
    PanopticTrainTransform,
    collate_panoptic,
    write_synthetic_coco_panoptic,
)
from ocrformer.data.synthetic_panoptic import MIN_SEGMENT_AREA, STAMP_NAME

SIZES = ((48, 64), (56, 56), (64, 72))
TINY = {"num_train": 3, "num_val": 1, "sizes": ((48, 64),), "progress": False}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A 16 + 6 image set: enough images that crowds, occlusion and void all occur."""
    root = tmp_path_factory.mktemp("panoptic") / "coco"
    return write_synthetic_coco_panoptic(root, num_train=16, num_val=6, sizes=SIZES, progress=False)


def read_json(root, split="train"):
    return json.loads((root / "annotations" / f"panoptic_{split}2017.json").read_text())


def write_json(root, document, split="train"):
    (root / "annotations" / f"panoptic_{split}2017.json").write_text(json.dumps(document))


def decode_png(path):
    """The segment ids of a panoptic PNG, decoded here rather than through the loader or panopticapi."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def mask_box(mask):
    """XYXY box of a (H, W) mask, x2/y2 one past the last pixel (as pycocotools' x + w)."""
    rows, cols = np.nonzero(np.asarray(mask))
    return [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def dilate(mask):
    padded = np.pad(mask, 1)
    return mask | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]


# ------------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("split", ["train", "val"])
def test_targets_agree_with_an_independent_decode(generated, split):
    dataset = CocoPanoptic(generated, split)
    document = read_json(generated, split)
    categories = {c["id"]: c for c in document["categories"]}
    # The expected mappings, rebuilt from the JSON: contiguous indices by ascending category id.
    thing_ids = sorted(i for i, c in categories.items() if c["isthing"])
    stuff_ids = sorted(i for i, c in categories.items() if not c["isthing"])
    num_stuff = len(stuff_ids)
    images = {image["id"]: image for image in document["images"]}
    assert len(dataset) == len(document["annotations"])

    for index, annotation in enumerate(document["annotations"]):
        image, target = dataset[index]
        info = images[annotation["image_id"]]
        ids = decode_png(generated / "annotations" / f"panoptic_{split}2017" / annotation["file_name"])
        height, width = ids.shape
        pixels = np.asarray(Image.open(generated / f"{split}2017" / info["file_name"]).convert("RGB"))

        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
        assert np.array_equal(image.permute(1, 2, 0).numpy(), pixels)
        assert target["image_id"] == annotation["image_id"] and target["file_name"] == annotation["file_name"]
        assert target["orig_size"] == (height, width) == (info["height"], info["width"])
        assert target["segments_info"] == annotation["segments_info"]
        sem_seg, masks = target["sem_seg"].numpy(), target["masks"].numpy().astype(bool)
        assert isinstance(target["sem_seg"], tv_tensors.Mask) and target["sem_seg"].dtype == torch.int64
        assert isinstance(target["masks"], tv_tensors.Mask) and target["masks"].dtype == torch.uint8
        assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].dtype == torch.float32
        assert target["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
        assert tuple(target["boxes"].canvas_size) == (height, width)
        assert sem_seg.shape == (height, width) and masks.shape[1:] == (height, width)

        assert (sem_seg[ids == 0] == 255).all()
        matched = []
        for segment in annotation["segments_info"]:
            pixels_of = ids == segment["id"]
            category = categories[segment["category_id"]]
            if not category["isthing"]:
                assert (sem_seg[pixels_of] == stuff_ids.index(category["id"])).all()
                continue
            assert (sem_seg[pixels_of] == num_stuff).all(), "every thing pixel, crowd included, is class S"
            same = [k for k in range(len(masks)) if np.array_equal(masks[k], pixels_of)]
            if segment["iscrowd"]:
                assert not same and not (masks & pixels_of).any(), "a crowd is no instance"
                continue
            assert len(same) == 1, f"segment {segment['id']} of {annotation['file_name']} is not exactly one instance"
            (k,) = same
            matched.append(k)
            assert thing_ids[int(target["labels"][k]) - 1] == segment["category_id"]
            assert target["boxes"][k].tolist() == mask_box(pixels_of)
        assert sorted(matched) == list(range(len(masks))) == list(range(len(target["labels"])))


def test_category_ids_round_trip(generated):
    dataset = CocoPanoptic(generated, "val")
    assert dataset.thing_category_ids == [1, 3, 7] and dataset.stuff_category_ids == [92, 95, 100]
    assert dataset.thing_classes == ["disc", "square", "triangle"] and dataset.stuff_classes == ["sky", "grass", "wall"]
    assert (dataset.num_thing_classes, dataset.num_stuff_classes) == (3, 3)
    assert dataset.thing_colors[0] == tuple(SYNTHETIC_PANOPTIC_CATEGORIES[0]["color"])
    for category in dataset.categories:
        isthing, index = dataset.category_to_contiguous(category["id"])
        assert isthing == bool(category["isthing"])
        assert dataset.contiguous_to_category(isthing, index) == category["id"]
    with pytest.raises(ValueError, match="unknown category id 2"):
        dataset.category_to_contiguous(2)
    with pytest.raises(ValueError, match="thing index 3 out of range"):
        dataset.contiguous_to_category(True, 3)
    assert dataset.gt_json == generated / "annotations" / "panoptic_val2017.json"
    assert dataset.gt_folder == generated / "annotations" / "panoptic_val2017" and dataset.gt_folder.is_dir()
    assert dataset.image_dir == generated / "val2017" and dataset.ignore_index == 255
    assert repr(dataset) == f"CocoPanoptic(split='val', 6 images, 3 thing + 3 stuff classes, root='{generated}')"


def test_colours_fall_back_to_a_palette(tiny_coco):
    document = read_json(tiny_coco)
    for category in document["categories"]:
        del category["color"]
    write_json(tiny_coco, document)
    dataset = CocoPanoptic(tiny_coco, "train")
    colours = dataset.thing_colors + dataset.stuff_colors
    assert len(set(colours)) == 6 and all(len(c) == 3 for c in colours)
    assert CocoPanoptic(tiny_coco, "train").thing_colors == dataset.thing_colors


# ----------------------------------------------------------------------------------------- the generator


def test_generated_set_holds_occlusion_crowds_void_sizes_and_all_categories(generated):
    stamp = json.loads((generated / STAMP_NAME).read_text())
    assert stamp["complete"] and stamp["stats"]["occluded_instances"] > 0
    sizes, categories, crowds, void, touching = set(), set(), 0, 0, 0
    for split in ("train", "val"):
        document = read_json(generated, split)
        assert {c["id"] for c in document["categories"]} == {1, 3, 7, 92, 95, 100}
        for annotation in document["annotations"]:
            ids = decode_png(generated / "annotations" / f"panoptic_{split}2017" / annotation["file_name"])
            sizes.add(ids.shape)
            void += int((ids == 0).sum())
            segments = annotation["segments_info"]
            assert sorted(np.unique(ids[ids > 0]).tolist()) == sorted(s["id"] for s in segments)
            for segment in segments:
                mask = ids == segment["id"]
                rows, cols = np.nonzero(mask)
                bbox = [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
                assert segment["area"] == mask.sum() >= MIN_SEGMENT_AREA and segment["bbox"] == bbox
                categories.add(segment["category_id"])
                crowds += segment["iscrowd"]
            instances = [ids == s["id"] for s in segments if s["category_id"] < 92 and not s["iscrowd"]]
            # Occlusion leaves the occluded instance's visible pixels bordering its occluder's.
            touching += sum(bool((dilate(a) & b).any()) for i, a in enumerate(instances) for b in instances[i + 1 :])
    assert len(sizes) >= 2 and categories == {1, 3, 7, 92, 95, 100}
    assert crowds > 0 and void > 0 and touching > 0


def test_generation_is_deterministic(tmp_path):
    first = write_synthetic_coco_panoptic(tmp_path / "a", seed=3, **TINY)
    second = write_synthetic_coco_panoptic(tmp_path / "b", seed=3, **TINY)
    other = write_synthetic_coco_panoptic(tmp_path / "c", seed=4, **TINY)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 1 + 2 + 2 * (3 + 1)  # stamp, two JSONs, a JPEG and a PNG per image
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    pngs = [name for name in files if name.suffix == ".png"]
    assert any((first / name).read_bytes() != (other / name).read_bytes() for name in pngs)
    assert read_json(first) != read_json(other)


def test_generation_is_cached_and_guards_foreign_data(tmp_path):
    root = write_synthetic_coco_panoptic(tmp_path / "coco", **TINY)
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert write_synthetic_coco_panoptic(root, **TINY) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == mtimes, "a matching stamp must not rewrite"

    with pytest.raises(FileExistsError, match="other parameters"):
        write_synthetic_coco_panoptic(root, **{**TINY, "num_train": 2})
    (root / "mine.txt").write_text("not the generator's")
    write_synthetic_coco_panoptic(root, **{**TINY, "num_train": 2}, overwrite=True)
    assert len(CocoPanoptic(root, "train")) == 2
    assert not (root / "train2017" / "000000000003.jpg").exists(), "the old generation's extra image is removed"
    assert (root / "mine.txt").read_text() == "not the generator's", "files it did not write are kept"

    # An interrupted generation (stamp still marked incomplete) is redone without overwrite.
    stamp = json.loads((root / STAMP_NAME).read_text())
    (root / STAMP_NAME).write_text(json.dumps({**stamp, "complete": False}))
    write_synthetic_coco_panoptic(root, **{**TINY, "num_train": 2})
    assert json.loads((root / STAMP_NAME).read_text())["complete"]

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.txt").write_text("someone else's")
    with pytest.raises(FileExistsError, match="no stamp"):
        write_synthetic_coco_panoptic(foreign, **TINY)
    write_synthetic_coco_panoptic(foreign, **TINY, overwrite=True)
    assert (foreign / "data.txt").exists() and len(CocoPanoptic(foreign, "val")) == 1


def test_generator_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="sizes"):
        write_synthetic_coco_panoptic(tmp_path / "x", sizes=((16, 16),), progress=False)
    with pytest.raises(ValueError, match="num_train"):
        write_synthetic_coco_panoptic(tmp_path / "x", num_train=-1, progress=False)


# --------------------------------------------------------------------------------------------- bad data


def test_png_id_without_segments_info_entry(tiny_coco):
    document = read_json(tiny_coco)
    annotation = document["annotations"][1]
    removed = annotation["segments_info"].pop()
    write_json(tiny_coco, document)
    dataset = CocoPanoptic(tiny_coco, "train")
    with pytest.raises(ValueError, match=rf"{annotation['file_name']} holds segment id {removed['id']}\b.*no entry"):
        dataset[1]


def test_segments_info_id_absent_from_png(tiny_coco):
    document = read_json(tiny_coco)
    annotation = document["annotations"][0]
    annotation["segments_info"].append({"id": 4242, "category_id": 3, "iscrowd": 0, "bbox": [0, 0, 1, 1], "area": 1})
    write_json(tiny_coco, document)
    dataset = CocoPanoptic(tiny_coco, "train")
    with pytest.raises(ValueError, match=rf"{annotation['file_name']} lists segment id 4242 .*does not occur"):
        dataset[0]


def test_unknown_category_id(tiny_coco):
    document = read_json(tiny_coco)
    annotation = document["annotations"][2]
    segment = annotation["segments_info"][0]
    segment["category_id"] = 42
    write_json(tiny_coco, document)
    with pytest.raises(ValueError, match=rf"{annotation['file_name']}: segment id {segment['id']} has category_id 42"):
        CocoPanoptic(tiny_coco, "train")


def test_missing_files(tiny_coco):
    document = read_json(tiny_coco)
    jpeg = tiny_coco / "train2017" / document["images"][1]["file_name"]
    jpeg.unlink()
    with pytest.raises(FileNotFoundError, match=rf"image {jpeg} .*not found"):
        CocoPanoptic(tiny_coco, "train")
    png = tiny_coco / "annotations" / "panoptic_val2017" / read_json(tiny_coco, "val")["annotations"][0]["file_name"]
    png.unlink()
    with pytest.raises(FileNotFoundError, match=rf"PNG {png} .*not found"):
        CocoPanoptic(tiny_coco, "val")
    (tiny_coco / "annotations" / "panoptic_val2017.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"panoptic_val2017\.json .*panoptic_train2017\.json.*Expected layout"):
        CocoPanoptic(tiny_coco, "val")
    shutil.rmtree(tiny_coco / "train2017")
    with pytest.raises(FileNotFoundError, match=r"train2017 is not a folder"):
        CocoPanoptic(tiny_coco, "train")
    with pytest.raises(FileNotFoundError, match="COCO panoptic root not found"):
        CocoPanoptic(tiny_coco / "nowhere", "train")


def test_annotation_of_unknown_image_and_size_mismatch(tiny_coco):
    document = read_json(tiny_coco)
    document["annotations"][0]["image_id"] = 999
    write_json(tiny_coco, document)
    with pytest.raises(ValueError, match='image_id 999, which is not in its "images" list'):
        CocoPanoptic(tiny_coco, "train")
    document["annotations"][0]["image_id"] = document["images"][0]["id"]
    write_json(tiny_coco, document)
    png = tiny_coco / "annotations" / "panoptic_train2017" / document["annotations"][0]["file_name"]
    Image.new("RGB", (10, 8)).save(png)
    with pytest.raises(ValueError, match=rf"{png} is \(8, 10\) \(H, W\) but image .* is \(48, 64\)"):
        CocoPanoptic(tiny_coco, "train")[0]


# -------------------------------------------------------------------------------------------- transforms


def test_train_transform_flips_everything_together(generated):
    dataset = CocoPanoptic(generated, "train")
    index = next(i for i in range(len(dataset)) if len(dataset[i][1]["labels"]) >= 2)
    image, target = dataset[index]
    transform = PanopticTrainTransform()
    for seed in range(20):  # until the coin says flip
        torch.manual_seed(seed)
        out_image, out = transform(image, target)
        if torch.equal(out["sem_seg"], target["sem_seg"].flip(-1)) and not torch.equal(
            out["sem_seg"], target["sem_seg"]
        ):
            break
    else:
        pytest.fail("no flip in 20 seeds")
    assert isinstance(out_image, tv_tensors.Image) and out_image.dtype == torch.float32
    assert torch.allclose(out_image, image.flip(-1).float() / 255)
    assert torch.equal(out["masks"], target["masks"].flip(-1)) and torch.equal(out["labels"], target["labels"])
    thing = len(dataset.stuff_classes)
    for mask, box in zip(out["masks"], out["boxes"], strict=True):
        assert box.tolist() == mask_box(mask), "box must follow its mask through the flip"
        assert (out["sem_seg"][mask.bool()] == thing).all()
    assert out["orig_size"] == target["orig_size"] and out["segments_info"] == target["segments_info"]
    assert isinstance(out["sem_seg"], tv_tensors.Mask) and isinstance(out["masks"], tv_tensors.Mask)


def test_train_transform_rescales_masks_nearest_and_keeps_orig_size(generated):
    image, target = CocoPanoptic(generated, "train")[0]
    out_image, out = PanopticTrainTransform(flip=False, scale_range=(0.5, 0.5))(image, target)
    height, width = target["orig_size"]
    small = (round(height / 2), round(width / 2))
    assert tuple(out_image.shape[-2:]) == small == tuple(out["sem_seg"].shape) == tuple(out["masks"].shape[-2:])
    assert tuple(out["boxes"].canvas_size) == small and out["orig_size"] == (height, width)
    assert set(out["sem_seg"].unique().tolist()) <= set(target["sem_seg"].unique().tolist())
    assert set(out["masks"].unique().tolist()) <= {0, 1}
    assert torch.allclose(out["boxes"], target["boxes"] / 2)


def test_sanitize_drops_degenerate_boxes_with_their_masks_only():
    # As many boxes as image rows: v2's sanitizer would index an (H, W) sem_seg Mask by the keep-vector too.
    image = tv_tensors.Image(torch.zeros(3, 2, 4, dtype=torch.uint8))
    sem_seg = tv_tensors.Mask(torch.tensor([[0, 1, 3, 3], [255, 1, 3, 3]]))
    masks = tv_tensors.Mask(
        torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]], [[0, 0, 0, 0], [0, 0, 0, 0]]], dtype=torch.uint8)
    )
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[2.0, 0, 4, 2], [1, 1, 1, 1]]), format="XYXY", canvas_size=(2, 4))
    target = {"sem_seg": sem_seg, "boxes": boxes, "labels": torch.tensor([2, 1]), "masks": masks, "orig_size": (2, 4)}
    out_image, out = PanopticTrainTransform(flip=False)(image, target)
    assert torch.equal(out["sem_seg"], sem_seg) and isinstance(out["sem_seg"], tv_tensors.Mask)
    assert out["boxes"].tolist() == [[2, 0, 4, 2]] and out["labels"].tolist() == [2]
    assert torch.equal(out["masks"], masks[:1]) and isinstance(out["masks"], tv_tensors.Mask)


def test_eval_transform_collate_and_data_loader(generated):
    dataset = CocoPanoptic(generated, "val", transforms=PanopticEvalTransform())
    raw_image, raw_target = CocoPanoptic(generated, "val")[0]
    image, target = dataset[0]
    assert image.dtype == torch.float32 and torch.allclose(image, raw_image.float() / 255)
    assert torch.equal(target["sem_seg"], raw_target["sem_seg"]) and torch.equal(target["masks"], raw_target["masks"])
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate_panoptic, num_workers=0)
    batches = list(loader)
    images, targets = batches[0]
    assert isinstance(images, list) and isinstance(targets, list) and len(images) == len(targets) == 4
    assert sum(len(batch[0]) for batch in batches) == len(dataset)
    assert [t["image_id"] for _, ts in batches for t in ts] == [
        a["image_id"] for a in read_json(generated, "val")["annotations"]
    ]
    assert collate_panoptic([]) == ([], [])
