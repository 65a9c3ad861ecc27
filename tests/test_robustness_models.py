"""Issue 10, models and evaluation: nothing silently wrong. The failure catalogue of this area, one test per case,
each asserting a clear error that names the argument (or file) and what was expected, or a defined behaviour.

1. ``SemanticEvaluator``
   - ``test_evaluator_refuses_non_finite_logits``: NaN/inf logits were counted as class 0 (argmax of NaN).
   - sibling ``test_evaluator_refuses_bool_and_complex_scores``: (B, K, H, W) bool/complex scores failed in argmax.
   - sibling ``test_evaluator_refuses_ignore_index_that_is_a_class``: ``ignore_index`` in [0, K) hid that class's
     labels while its predictions still counted (its IoU silently 0).
2. ``combine_panoptic``
   - ``test_fusion_refuses_nan_score``: a NaN score sorted first and was placed.
   - ``test_fusion_refuses_negative_label``: label -1 became a segment (the evaluator then read ``ids[-1]``).
   - ``test_fusion_refuses_soft_masks``: a mask value 0.3 counted as a full mask; 0/1 masks of any dtype still work.
   - ``test_fusion_semantic_255_is_void``: 255 became a stuff segment; now it is void (documented), and other
     values outside [0, thing_class] are refused.
   - ``test_fusion_refuses_numpy_arrays``: numpy inputs failed obscurely.
   - sibling ``test_fusion_refuses_float_semantic_and_labels``: 1.5 was truncated to class 1.
   - sibling ``test_fusion_refuses_bad_thresholds_and_thing_class``: NaN thresholds disabled the rules silently.
   - sibling ``test_fusion_never_emits_empty_segments``: ``overlap_threshold=1`` / ``stuff_area_threshold=0``
     produced segments of area 0 (listed in ``segments_info`` but absent from the map).
   - sibling ``test_fusion_refuses_masks_on_another_device``.
3. ``CocoPanoptic``
   - ``test_coco_isthing_must_be_0_1_or_bool``: ``"isthing": "false"`` made a thing.
   - ``test_coco_color_must_be_three_ints``: a non-integer colour raised a bare ``int()`` error.
   - sibling ``test_coco_category_id_and_name_types``: a string category id / a non-string name.
   - sibling ``test_coco_iscrowd_must_be_0_1_or_bool``: ``"iscrowd": "0"`` made a crowd (no instance).
   - sibling ``test_coco_segment_id_must_not_be_bool``: ``"id": true`` passed as segment id 1.
   - sibling ``test_coco_duplicate_image_id``: a later image entry silently replaced an earlier one.
   - sibling ``test_coco_image_id_must_be_an_int_or_string``: ``"id": true`` matched image_id 1; a list id raised
     ``unhashable type``.
   - sibling ``test_coco_segment_category_id_must_be_an_int``: ``true`` matched category 1; a list raised
     ``unhashable type``.
   - sibling ``test_coco_image_size_must_be_ints``: a string height gave a misleading size-mismatch error.
4. Model and attention inputs
   - ``test_empty_batch_refused``: B = 0 (``cannot reshape``; ``ZeroDivisionError`` in the fused inference head).
   - ``test_zero_height_or_width_refused``: H or W = 0.
   - ``test_integer_and_bool_images_refused``: uint8/int64/bool images and feature maps.
   - ``test_float64_input_to_float32_model_refused`` (and autocast still runs: ``test_autocast_still_runs``).
   - ``test_attend_zero_head_dim_refused``: D = 0 (``ZeroDivisionError``).
   - ``test_create_model_non_string_name_refused`` (and sibling ``create_panoptic_model``).
   - ``test_encoder_regions_list_refused``.
   - siblings: ``test_images_not_a_tensor_refused``, ``test_encoder_regions_empty_or_mismatched_dtype``,
     ``test_decoder_region_feats_dtype_and_region_weights_shape``, ``test_encoder_assignment_shape``,
     ``test_oracle_labels_must_be_integer``, ``test_head_oracle_path_checks_feats``,
     ``test_fcn_head_checks_its_inputs``,
     ``test_attend_non_finite_scale_refused``, ``test_backend_name_not_a_string_refused``.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from ocrformer import (
    FusedOCRHead,
    OCRDecoder,
    OCREncoder,
    OCRHead,
    attend,
    combine_panoptic,
    create_model,
    create_panoptic_model,
)
from ocrformer.data import CocoPanoptic
from ocrformer.evaluation import SemanticEvaluator
from ocrformer.models.ocrnet import FCNHead


# ---------------------------------------------------------------------------------------- 1. evaluator
def test_evaluator_refuses_non_finite_logits():
    evaluator = SemanticEvaluator(3)
    logits = torch.randn(2, 3, 4, 5)
    logits[0, 1, 2, 3] = float("nan")
    logits[1, 0, 0, 0] = float("inf")
    target = torch.zeros(2, 4, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"pred has 2 non-finite values \(NaN or inf\) among its 120 .*expected fini"):
        evaluator.update(logits, target)
    assert evaluator.compute()["confusion"].sum() == 0  # nothing counted
    evaluator.update(torch.randn(2, 3, 4, 5), target)  # finite logits still work
    assert evaluator.compute()["confusion"].sum() == 40


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex64])
def test_evaluator_refuses_bool_and_complex_scores(dtype):
    with pytest.raises(ValueError, match=rf"pred of shape \(B, K, H, W\) must hold real scores.*got dtype {dtype}"):
        SemanticEvaluator(3).update(torch.zeros(1, 3, 2, 2, dtype=dtype), torch.zeros(1, 2, 2, dtype=torch.long))


def test_evaluator_refuses_ignore_index_that_is_a_class():
    with pytest.raises(ValueError, match=r"ignore_index=0 is a class id in \[0, 3\).*outside"):
        SemanticEvaluator(3, ignore_index=0)
    assert SemanticEvaluator(3, ignore_index=3).ignore_index == 3  # just outside the classes is fine


# ------------------------------------------------------------------------------------ 2. panoptic fusion
THING = 2  # stuff classes 0, 1


def _fusion_inputs(m=2, shape=(4, 6)):
    semantic = torch.zeros(shape, dtype=torch.long)
    masks = torch.zeros(m, *shape, dtype=torch.bool)
    for i in range(m):
        masks[i, i] = True
    return semantic, masks, torch.linspace(0.9, 0.6, m), torch.arange(m)


def test_fusion_refuses_nan_score():
    semantic, masks, scores, labels = _fusion_inputs()
    scores[1] = float("nan")
    with pytest.raises(ValueError, match=r"scores has 1 non-finite value.*expected finite instance scores"):
        combine_panoptic(semantic, masks, scores, labels, thing_class=THING)


def test_fusion_refuses_negative_label():
    semantic, masks, scores, labels = _fusion_inputs()
    labels[0] = -1
    with pytest.raises(ValueError, match=r"labels must be contiguous thing indices >= 0, got \[-1\]"):
        combine_panoptic(semantic, masks, scores, labels, thing_class=THING)


def test_fusion_refuses_soft_masks():
    semantic, masks, scores, labels = _fusion_inputs()
    soft = masks.float()
    soft[0, 3] = 0.3
    with pytest.raises(ValueError, match=r"masks must be binary .*1 value.* not 0 or 1.*threshold"):
        combine_panoptic(semantic, soft, scores, labels, thing_class=THING)
    expected = combine_panoptic(semantic, masks, scores, labels, thing_class=THING, stuff_area_threshold=1)
    for binary in (masks.float(), masks.to(torch.uint8)):  # 0/1 masks of any dtype mean the same
        panoptic, segments = combine_panoptic(semantic, binary, scores, labels, thing_class=THING,
                                              stuff_area_threshold=1)
        assert torch.equal(panoptic, expected[0]) and segments == expected[1]


def test_fusion_semantic_255_is_void():
    semantic = torch.zeros(4, 6, dtype=torch.long)
    semantic[:, 3:] = 255
    no_instances = (torch.zeros(0, 4, 6, dtype=torch.bool), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    panoptic, segments = combine_panoptic(semantic, *no_instances, thing_class=THING, stuff_area_threshold=1)
    assert [(s["category_id"], s["isthing"], s["area"]) for s in segments] == [(0, False, 12)]
    assert bool((panoptic[:, 3:] == 0).all())  # void, never a segment
    for bad in (-1, THING + 1, 254):
        semantic[0, 0] = bad
        with pytest.raises(ValueError, match=rf"semantic holds values \[{bad}\] outside \[0, {THING}\].*255 \(void\)"):
            combine_panoptic(semantic, *no_instances, thing_class=THING)


@pytest.mark.parametrize("argument", ["semantic", "masks", "scores", "labels"])
def test_fusion_refuses_numpy_arrays(argument):
    inputs = dict(zip(("semantic", "masks", "scores", "labels"), _fusion_inputs(), strict=True))
    inputs[argument] = inputs[argument].numpy()
    with pytest.raises(TypeError, match=rf"combine_panoptic: {argument} must be a torch.Tensor, got numpy.ndarray"):
        combine_panoptic(**inputs, thing_class=THING)


def test_fusion_refuses_float_semantic_and_labels():
    semantic, masks, scores, labels = _fusion_inputs()
    with pytest.raises(ValueError, match=r"semantic must hold integer class ids, got dtype torch.float32"):
        combine_panoptic(semantic.float(), masks, scores, labels, thing_class=THING)
    with pytest.raises(ValueError, match=r"labels must hold integer thing indices, got dtype torch.float32"):
        combine_panoptic(semantic, masks, scores, labels.float() + 0.5, thing_class=THING)
    with pytest.raises(ValueError, match=r"scores must be floating point, got dtype torch.int64"):
        combine_panoptic(semantic, masks, scores.long(), labels, thing_class=THING)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"score_threshold": float("nan")}, r"score_threshold must be a finite number, got nan"),
        ({"overlap_threshold": float("nan")}, r"overlap_threshold must be a number in \[0, 1\], got nan"),
        ({"overlap_threshold": 1.5}, r"overlap_threshold must be a number in \[0, 1\], got 1.5"),
        ({"stuff_area_threshold": -1}, r"stuff_area_threshold must be an int >= 0, got -1"),
        ({"stuff_area_threshold": 0.5}, r"stuff_area_threshold must be an int >= 0, got 0.5"),
        ({"thing_class": -1}, r"thing_class must be an int in \[0, 255\).*got -1"),
        ({"thing_class": 255}, r"thing_class must be an int in \[0, 255\).*255 marks void"),
    ],
)
def test_fusion_refuses_bad_thresholds_and_thing_class(kwargs, match):
    semantic, masks, scores, labels = _fusion_inputs()
    with pytest.raises(ValueError, match=match):
        combine_panoptic(semantic, masks, scores, labels, **{"thing_class": THING, **kwargs})


def test_fusion_never_emits_empty_segments():
    shape = (4, 6)
    semantic = torch.zeros(shape, dtype=torch.long)
    semantic[:, :2] = 1  # stuff 1 entirely under the first instance
    first = torch.zeros(shape, dtype=torch.bool)
    first[:, :2] = True
    covered = first.clone()  # fully covered by `first`: 100% overlap is not "more than" overlap_threshold=1
    panoptic, segments = combine_panoptic(
        semantic, torch.stack([first, covered]), torch.tensor([0.9, 0.8]), torch.tensor([0, 1]),
        thing_class=THING, overlap_threshold=1.0, stuff_area_threshold=0,
    )
    assert all(s["area"] > 0 for s in segments)
    assert [(s["isthing"], s["category_id"]) for s in segments] == [(True, 0), (False, 0)]
    assert sorted(torch.unique(panoptic).tolist()) == [1, 2]  # every listed segment is in the map


def test_fusion_refuses_masks_on_another_device():
    semantic, masks, scores, labels = _fusion_inputs()
    with pytest.raises(ValueError, match=r"masks must be on semantic's device cpu, got meta"):
        combine_panoptic(semantic, masks.to("meta"), scores, labels, thing_class=THING)


# ---------------------------------------------------------------------------------------- 3. COCO reader
def _json_path(root):
    return root / "annotations" / "panoptic_train2017.json"


def _edit_json(root, edit):
    document = json.loads(_json_path(root).read_text())
    edit(document)
    _json_path(root).write_text(json.dumps(document))
    return document


@pytest.mark.parametrize("value", ["false", "0", 2, 1.0, None])
def test_coco_isthing_must_be_0_1_or_bool(tiny_coco, value):
    def edit(document):
        document["categories"][0]["isthing"] = value

    document = _edit_json(tiny_coco, edit)
    category = document["categories"][0]
    json_path = _json_path(tiny_coco)
    with pytest.raises(ValueError, match=rf"{json_path}: category id {category['id']} \('{category['name']}'\)"
                                         rf" has isthing {value!r}.*0, 1, false or true"):
        CocoPanoptic(tiny_coco, "train")


def test_coco_isthing_bools_are_accepted(tiny_coco):
    def edit(document):
        for category in document["categories"]:
            category["isthing"] = bool(category["isthing"])

    _edit_json(tiny_coco, edit)
    dataset = CocoPanoptic(tiny_coco, "train")
    assert dataset.num_thing_classes == 3 and dataset.num_stuff_classes == 3


@pytest.mark.parametrize("value", [["a", 0, 0], [1.5, 0, 0], [0, 0], [0, 0, 256], "red", [True, 0, 0]])
def test_coco_color_must_be_three_ints(tiny_coco, value):
    def edit(document):
        document["categories"][1]["color"] = value

    document = _edit_json(tiny_coco, edit)
    category = document["categories"][1]
    json_path = _json_path(tiny_coco)
    with pytest.raises(ValueError, match=rf"{json_path}: category id {category['id']} \('{category['name']}'\)"
                                         r" has color .*expected \[R, G, B\], three ints in \[0, 255\]"):
        CocoPanoptic(tiny_coco, "train")


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("id", "1", "category id '1' is not an int"),
        ("id", True, "category id True is not an int"),
        ("name", 7, r"category id \d+ has name 7.*expected a string"),
    ],
)
def test_coco_category_id_and_name_types(tiny_coco, key, value, match):
    def edit(document):
        document["categories"][0][key] = value

    _edit_json(tiny_coco, edit)
    with pytest.raises(ValueError, match=rf"{_json_path(tiny_coco)}: {match}"):
        CocoPanoptic(tiny_coco, "train")


@pytest.mark.parametrize("value", ["0", 2, None])
def test_coco_iscrowd_must_be_0_1_or_bool(tiny_coco, value):
    def edit(document):
        document["annotations"][0]["segments_info"][0]["iscrowd"] = value

    document = _edit_json(tiny_coco, edit)
    annotation = document["annotations"][0]
    segment_id = annotation["segments_info"][0]["id"]
    with pytest.raises(ValueError, match=rf"{annotation['file_name']}: segment id {segment_id} has iscrowd "
                                         rf"{value!r}.*0, 1, false or true"):
        CocoPanoptic(tiny_coco, "train")


def test_coco_segment_id_must_not_be_bool(tiny_coco):
    def edit(document):
        document["annotations"][0]["segments_info"][0]["id"] = True

    _edit_json(tiny_coco, edit)
    with pytest.raises(ValueError, match=r"segment id True is not an int in \[1, 256\^3\)"):
        CocoPanoptic(tiny_coco, "train")


def test_coco_duplicate_image_id(tiny_coco):
    def edit(document):
        document["images"][1]["id"] = document["images"][0]["id"]

    document = _edit_json(tiny_coco, edit)
    json_path = _json_path(tiny_coco)
    with pytest.raises(ValueError, match=rf"{json_path}: image id {document['images'][0]['id']!r} is listed "
                                         r"twice in \"images\""):
        CocoPanoptic(tiny_coco, "train")


@pytest.mark.parametrize("value", [True, [1]])
def test_coco_image_id_must_be_an_int_or_string(tiny_coco, value):
    def edit(document):
        document["images"][0]["id"] = document["annotations"][0]["image_id"] = value

    document = _edit_json(tiny_coco, edit)
    image = document["images"][0]
    with pytest.raises(
        ValueError, match=rf"image {image['file_name']} has id {re.escape(repr(value))}; expected an int"
    ):
        CocoPanoptic(tiny_coco, "train")


@pytest.mark.parametrize("value", ["1", [1], True])
def test_coco_segment_category_id_must_be_an_int(tiny_coco, value):
    def edit(document):
        document["annotations"][0]["segments_info"][0]["category_id"] = value

    document = _edit_json(tiny_coco, edit)
    annotation = document["annotations"][0]
    with pytest.raises(ValueError, match=rf"{annotation['file_name']}: segment id \d+ has category_id "
                                         rf"{re.escape(repr(value))}, which is not among the categories"):
        CocoPanoptic(tiny_coco, "train")


@pytest.mark.parametrize("key", ["height", "width"])
def test_coco_image_size_must_be_ints(tiny_coco, key):
    def edit(document):
        document["images"][0][key] = "48"

    document = _edit_json(tiny_coco, edit)
    image = document["images"][0]
    json_path = _json_path(tiny_coco)
    with pytest.raises(ValueError, match=rf"{json_path}: image {image['file_name']} has {key} '48'.*positive"):
        CocoPanoptic(tiny_coco, "train")


# ------------------------------------------------------------------------------------ 4. model inputs
@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return create_model("ocrnet_tiny", 3)


def small_head():
    torch.manual_seed(0)
    return OCRHead(8, 3, mid_channels=8, key_channels=4)


@pytest.mark.parametrize("mode", ["train", "eval_no_grad"])
def test_empty_batch_refused(tiny_model, mode):
    head = small_head()
    decoder, encoder = OCRDecoder(8, 3, mid_channels=8), OCREncoder(8, key_channels=4)
    modules = (tiny_model, head, decoder, encoder)
    for module in modules:
        module.train(mode == "train")
    with torch.set_grad_enabled(mode == "train"):
        with pytest.raises(ValueError, match=r"images must be non-empty.*got \(0, 3, 32, 32\).*B, H and W >= 1"):
            tiny_model(torch.zeros(0, 3, 32, 32))
        with pytest.raises(ValueError, match=r"feats must be non-empty.*got \(0, 8, 4, 4\).*B, H and W >= 1"):
            head(torch.zeros(0, 8, 4, 4))
        if mode != "train":  # the fused inference head (was a ZeroDivisionError when it ran inside OCRHead)
            with pytest.raises(ValueError, match=r"feats must be non-empty.*got \(0, 8, 4, 4\)"):
                FusedOCRHead(head)(torch.zeros(0, 8, 4, 4))
        with pytest.raises(ValueError, match=r"feats must be non-empty.*got \(0, 8, 4, 4\)"):
            decoder(torch.zeros(0, 8, 4, 4))
        with pytest.raises(ValueError, match=r"pixels must be non-empty.*got \(0, 8, 4, 4\)"):
            encoder(torch.zeros(0, 8, 4, 4), torch.zeros(0, 3, 8))
    tiny_model.eval()


@pytest.mark.parametrize("shape", [(1, 8, 0, 4), (1, 8, 4, 0)])
def test_zero_height_or_width_refused(tiny_model, shape):
    head = small_head()
    for training in (True, False):
        head.train(training)
        with torch.no_grad(), pytest.raises(ValueError, match=rf"feats must be non-empty.*got \({shape[0]}, 8, "):
            head(torch.zeros(shape))
    with pytest.raises(ValueError, match=r"images must be non-empty.*got \(1, 3, 0, 32\)"):
        tiny_model(torch.zeros(1, 3, 0, 32))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_integer_and_bool_images_refused(tiny_model, dtype):
    with pytest.raises(
        ValueError, match=rf"images must be a floating-point tensor of the model's dtype torch.float32, got {dtype}"
    ):
        tiny_model(torch.zeros(1, 3, 32, 32, dtype=dtype))
    head = small_head()
    for training in (True, False):
        head.train(training)
        with torch.no_grad(), pytest.raises(ValueError, match=rf"feats must be a floating-point tensor.*got {dtype}"):
            head(torch.zeros(1, 8, 4, 4, dtype=dtype))


def test_float64_input_to_float32_model_refused(tiny_model):
    with pytest.raises(ValueError, match=r"images must be a floating-point tensor of the model's dtype torch.float32, "
                                         r"got torch.float64"):
        tiny_model(torch.zeros(1, 3, 32, 32, dtype=torch.float64))
    head = small_head()
    for training in (True, False):
        head.train(training)
        with torch.no_grad(), pytest.raises(ValueError, match=r"feats must be .* torch.float32, got torch.float64"):
            head(torch.zeros(1, 8, 4, 4, dtype=torch.float64))
    out = head.double()(torch.zeros(1, 8, 4, 4, dtype=torch.float64))  # a float64 module takes float64
    assert out["logits"].dtype == torch.float64


def test_autocast_still_runs(tiny_model):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny_model(torch.randn(1, 3, 32, 32))  # float32 images into a float32 model under autocast
        head_out = small_head().eval()(torch.randn(1, 8, 4, 4, dtype=torch.bfloat16))  # bf16 feats, fp32 head
    assert out["logits"].shape == (1, 3, 32, 32) and head_out["logits"].shape == (1, 3, 4, 4)


def test_attend_zero_head_dim_refused():
    q, k, v = torch.zeros(1, 1, 2, 0), torch.zeros(1, 1, 3, 0), torch.zeros(1, 1, 3, 4)
    with pytest.raises(ValueError, match=r"attend: q and k must have a head dim D >= 1, got D = 0"):
        attend(q, k, v)
    with pytest.raises(ValueError, match=r"head dim D >= 1"):
        attend(q, k, v, scale=1.0, backend="matmul")


@pytest.mark.parametrize("name", [None, 3, ["ocrnet_tiny"]])
def test_create_model_non_string_name_refused(name):
    kind = type(name).__name__
    with pytest.raises(ValueError, match=rf"create_model: name must be a str .*list_models\(\).*got {kind}"):
        create_model(name, 3)
    with pytest.raises(ValueError, match=rf"create_panoptic_model: name must be a str .*got {kind}"):
        create_panoptic_model(name, 2, 2)


def test_encoder_regions_list_refused():
    encoder = OCREncoder(8, key_channels=4)
    with pytest.raises(ValueError, match=r"regions must be a \(B, K, channels\) = \(1, K, 8\) tensor, got list"):
        encoder(torch.zeros(1, 8, 4, 4), [[0.0] * 8] * 3)


# ----------------------------------------------------------------------------------- 4. siblings
@pytest.mark.parametrize("images", [[[0.0]], np.zeros((1, 3, 8, 8), dtype=np.float32)])
def test_images_not_a_tensor_refused(tiny_model, images):
    kind = type(images).__name__
    with pytest.raises(ValueError, match=rf"images must be \(B, 3, H, W\), a torch.Tensor, got {kind}"):
        tiny_model(images)


def test_encoder_regions_empty_or_mismatched_dtype():
    encoder = OCREncoder(8, key_channels=4)
    pixels = torch.zeros(1, 8, 4, 4)
    with pytest.raises(ValueError, match=r"regions must hold at least one region \(K >= 1\), got \(1, 0, 8\)"):
        encoder(pixels, torch.zeros(1, 0, 8))
    with pytest.raises(ValueError, match=r"regions must have pixels' dtype torch.float32, got torch.float64"):
        encoder(pixels, torch.zeros(1, 3, 8, dtype=torch.float64))


def test_decoder_region_feats_dtype_and_region_weights_shape():
    decoder = OCRDecoder(8, 3, mid_channels=8)
    feats = torch.zeros(1, 8, 4, 4)
    with pytest.raises(ValueError, match=r"region_feats must be .* torch.float32, got torch.float64"):
        decoder(feats, torch.zeros(1, 8, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"region_weights must be \(B, K, N\) = \(1, 3, 16\), got \(1, 3, 5\)"):
        decoder(feats, region_weights=torch.zeros(1, 3, 5))


def test_encoder_assignment_shape():
    encoder = OCREncoder(8, key_channels=4)
    with pytest.raises(ValueError, match=r"assignment must be \(B, N, K\) = \(1, 16, 3\), got \(1, 3, 16\)"):
        encoder(torch.zeros(1, 8, 4, 4), torch.zeros(1, 3, 8), assignment=torch.zeros(1, 3, 16))


def test_oracle_labels_must_be_integer(tiny_model):
    images = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"oracle_labels must hold integer class ids, got dtype torch.float32"):
        tiny_model(images, oracle_labels=torch.full((1, 32, 32), 1.5))
    with pytest.raises(ValueError, match=r"oracle_labels must hold integer class ids, got dtype torch.bool"):
        small_head()(torch.zeros(1, 8, 4, 4), oracle_labels=torch.zeros(1, 4, 4, dtype=torch.bool))


@pytest.mark.parametrize(("feats", "got"), [([1.0], "list"), (torch.zeros(8, 4, 4), r"\(8, 4, 4\)")])
def test_head_oracle_path_checks_feats(feats, got):
    # Was an AttributeError (list) or a misleading "oracle_labels must be (B, H, W) = (8, 4)" (3-D feats).
    with pytest.raises(ValueError, match=rf"feats must be a 4-D tensor \(B, in_channels, H, W\), got {got}"):
        small_head()(feats, oracle_labels=torch.zeros(1, 4, 4, dtype=torch.long))


def test_fcn_head_checks_its_inputs():
    head = FCNHead(8, 3, mid_channels=8)
    with pytest.raises(ValueError, match=r"feats has 6 channels but the module was built with in_channels=8"):
        head(torch.zeros(1, 6, 4, 4))
    with pytest.raises(ValueError, match=r"feats must be non-empty"):
        head(torch.zeros(0, 8, 4, 4))
    with pytest.raises(ValueError, match=r"feats must be a floating-point tensor.*got torch.uint8"):
        head(torch.zeros(1, 8, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"region_feats has 5 channels.*region_in_channels=8"):
        head(torch.zeros(1, 8, 4, 4), torch.zeros(1, 5, 4, 4))
    assert head(torch.zeros(1, 8, 4, 4))["logits"].shape == (1, 3, 4, 4)


@pytest.mark.parametrize("scale", [float("nan"), float("inf")])
def test_attend_non_finite_scale_refused(scale):
    q, k, v = torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 3, 4), torch.zeros(1, 1, 3, 4)
    with pytest.raises(ValueError, match=rf"attend: scale must be a finite number, got {scale}"):
        attend(q, k, v, scale=scale)


def test_backend_name_not_a_string_refused():
    q, k, v = torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 3, 4), torch.zeros(1, 1, 3, 4)
    with pytest.raises(ValueError, match=r"attend\(backend=...\): unknown attention backend \['sdpa'\]; expected one"):
        attend(q, k, v, backend=["sdpa"])
