"""OCRLoss: parity with F.cross_entropy, aux weighting, class weights, OHEM's pixel selection, empty batches."""

import math

import pytest
import torch
import torch.nn.functional as F

from ocrformer.losses import OCRLoss


def batch(b=2, k=5, h=6, w=7, void=0.2, seed=0, dtype=torch.float64):
    """Random logits, aux logits and (B, H, W) labels with about ``void`` of the pixels set to 255."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, h, w, generator=g, dtype=dtype)
    aux = torch.randn(b, k, h, w, generator=g, dtype=dtype)
    target = torch.randint(0, k, (b, h, w), generator=g)
    target = target.masked_fill(torch.rand(b, h, w, generator=g) < void, 255)
    return {"logits": logits, "aux_logits": aux}, target


# -------------------------------------------------------------------------------------- cross-entropy
def test_plain_case_equals_cross_entropy_and_aux_is_weighted():
    outputs, target = batch()
    losses = OCRLoss()(outputs, target)
    assert set(losses) == {"loss_main", "loss_aux"}
    assert torch.allclose(losses["loss_main"], F.cross_entropy(outputs["logits"], target, ignore_index=255))
    assert torch.allclose(losses["loss_aux"], 0.4 * F.cross_entropy(outputs["aux_logits"], target, ignore_index=255))
    doubled = OCRLoss(aux_weight=0.8)(outputs, target)
    assert torch.allclose(doubled["loss_aux"], 2 * losses["loss_aux"])
    assert torch.equal(doubled["loss_main"], losses["loss_main"])


def test_class_weights_match_cross_entropy_weight():
    outputs, target = batch()
    weights = [0.5, 1.0, 2.0, 0.0, 3.0]
    losses = OCRLoss(class_weights=weights, aux_weight=1.0)(outputs, target)
    w = torch.tensor(weights, dtype=torch.float64)
    for key, name in (("loss_main", "logits"), ("loss_aux", "aux_logits")):
        assert torch.allclose(losses[key], F.cross_entropy(outputs[name], target, weight=w, ignore_index=255))


def test_custom_ignore_index():
    outputs, target = batch()
    target = target.masked_fill(target == 255, -100)
    loss = OCRLoss(ignore_index=-100)(outputs, target)["loss_main"]
    assert torch.allclose(loss, F.cross_entropy(outputs["logits"], target))  # -100 is F's default


def test_smaller_logits_are_upsampled_bilinearly():
    outputs, target = batch(h=8, w=12)
    small = {k: v[..., ::2, ::2] for k, v in outputs.items()}
    losses = OCRLoss()(small, target)
    for key, name, weight in (("loss_main", "logits", 1.0), ("loss_aux", "aux_logits", 0.4)):
        up = F.interpolate(small[name], size=(8, 12), mode="bilinear", align_corners=False)
        assert torch.allclose(losses[key], weight * F.cross_entropy(up, target, ignore_index=255))


@pytest.mark.parametrize("kwargs", [{}, {"ohem": True, "ohem_min_kept": 3}, {"class_weights": [1.0, 2.0, 3.0]}])
def test_gradcheck(kwargs):
    outputs, target = batch(b=1, k=3, h=3, w=4)  # small: gradcheck perturbs every input element
    inputs = tuple(t.requires_grad_(True) for t in outputs.values())
    loss_fn = OCRLoss(**kwargs)
    assert torch.autograd.gradcheck(lambda a, b: sum(loss_fn({"logits": a, "aux_logits": b}, target).values()), inputs)


def test_gradients_reach_both_outputs_but_not_void_pixels():
    outputs, target = batch()
    for t in outputs.values():
        t.requires_grad_(True)
    sum(OCRLoss()(outputs, target).values()).backward()
    void = (target == 255).unsqueeze(1).expand_as(outputs["logits"])
    for t in outputs.values():
        assert t.grad[~void].abs().sum() > 0 and torch.all(t.grad[void] == 0)


@pytest.mark.parametrize("ohem", [False, True])
def test_half_precision_logits_give_a_float32_loss(ohem):
    outputs, target = batch(b=1, h=300, w=300, dtype=torch.bfloat16)  # bf16 sums of 90k losses drift by ~1%
    loss_fn = OCRLoss(ohem=ohem, ohem_threshold=1.0, class_weights=[1.0, 2.0, 3.0, 4.0, 5.0])
    losses = loss_fn(outputs, target)
    reference = loss_fn({k: v.float() for k, v in outputs.items()}, target)
    for key, loss in losses.items():
        assert loss.dtype == torch.float32 and torch.allclose(loss, reference[key])


def test_aux_may_be_left_out_only_with_aux_weight_zero():
    outputs, target = batch()
    main_only = {"logits": outputs["logits"]}
    assert set(OCRLoss(aux_weight=0)(main_only, target)) == {"loss_main"}
    with pytest.raises(ValueError, match="outputs has no 'aux_logits'.*aux_weight=0"):
        OCRLoss()(main_only, target)


@pytest.mark.parametrize(
    "kwargs", [{}, {"class_weights": [1.0, 2.0, 3.0, 4.0, 5.0]}, {"ohem": True}, {"ohem": True, "ohem_min_kept": 0}]
)
def test_all_void_batch_is_zero_and_backpropagates(kwargs):
    outputs, target = batch()
    for t in outputs.values():
        t.requires_grad_(True)
    losses = OCRLoss(**kwargs)(outputs, torch.full_like(target, 255))
    total = sum(losses.values())
    assert total.item() == 0.0
    total.backward()
    for t in outputs.values():
        assert torch.all(t.grad == 0)  # finite and zero, not NaN


# ----------------------------------------------------------------------------------------------- OHEM
# Two classes, every label 0: the logit pair (log(p / (1 - p)), 0) gives probability p to the true class and
# a per-pixel loss of -log(p). Six valid pixels plus one void pixel that is the "hardest" of all.
PROBS = [0.8, 0.1, 0.6, 0.9, 0.3, 0.5, 0.01]
OHEM_TARGET = torch.tensor([[[0, 0, 0, 0, 0, 0, 255]]])


def ohem_logits():
    p = torch.tensor(PROBS, dtype=torch.float64)
    return torch.stack([torch.log(p / (1 - p)), torch.zeros_like(p)]).reshape(1, 2, 1, 7).requires_grad_(True)


@pytest.mark.parametrize(
    "threshold, min_kept, kept",
    [
        # sorted valid p = [0.1, 0.3, 0.5, 0.6, 0.8, 0.9]
        (0.7, 2, [0.1, 0.6, 0.3, 0.5]),  # p[2] = 0.5 < 0.7: threshold 0.7 decides
        (0.2, 3, [0.1, 0.3, 0.5]),  # p[3] = 0.6 > 0.2: exactly the 3 hardest are kept
        (0.2, 0, [0.1]),  # threshold 0.2
        (0.05, 0, []),  # threshold max(0.05, p[0]) = 0.1 and nothing is < 0.1: loss 0
        (0.7, 100, [0.8, 0.1, 0.6, 0.3, 0.5]),  # min_kept >= n_valid: p[5] = 0.9 is the threshold, and dropped
        (1.0, 0, [0.8, 0.1, 0.6, 0.9, 0.3, 0.5]),  # threshold 1: every valid pixel
    ],
)
def test_ohem_keeps_the_pixels_the_rule_says(threshold, min_kept, kept):
    logits = ohem_logits()
    loss_fn = OCRLoss(ohem=True, ohem_threshold=threshold, ohem_min_kept=min_kept, aux_weight=0)
    loss = loss_fn({"logits": logits}, OHEM_TARGET)["loss_main"]
    expected = sum(-math.log(p) for p in kept) / len(kept) if kept else 0.0
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    has_grad = logits.grad.abs().sum(dim=1).flatten() > 0
    assert [p for p, g in zip(PROBS, has_grad.tolist(), strict=True) if g] == [p for p in PROBS if p in kept]


@pytest.mark.parametrize("min_kept", [0, 5, 10**6])
def test_ohem_with_threshold_one_is_plain_cross_entropy(min_kept):
    # threshold = max(1, anything <= 1) = 1, so min_kept is irrelevant, and every valid pixel has p < 1 here.
    outputs, target = batch()
    loss = OCRLoss(ohem=True, ohem_threshold=1.0, ohem_min_kept=min_kept)(outputs, target)
    assert torch.allclose(loss["loss_main"], F.cross_entropy(outputs["logits"], target, ignore_index=255))
    assert torch.allclose(loss["loss_aux"], OCRLoss()(outputs, target)["loss_aux"])  # aux never uses OHEM


def test_ohem_with_class_weights_takes_an_unweighted_mean():
    # As in the reference, OHEM averages the class-weighted per-pixel losses over the kept pixel count, so it
    # is *not* F.cross_entropy's weighted mean (which divides by the sum of the weights).
    outputs, target = batch()
    w = torch.tensor([0.5, 1.0, 2.0, 0.0, 3.0], dtype=torch.float64)
    loss = OCRLoss(ohem=True, ohem_threshold=1.0, class_weights=w.tolist())(outputs, target)["loss_main"]
    per_pixel = F.cross_entropy(outputs["logits"], target, weight=w, ignore_index=255, reduction="none")
    assert torch.allclose(loss, per_pixel.sum() / (target != 255).sum())
    assert not torch.allclose(loss, F.cross_entropy(outputs["logits"], target, weight=w, ignore_index=255))


# --------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"aux_weight": -0.1}, "aux_weight"),
        ({"aux_weight": math.inf}, "aux_weight"),
        ({"ohem_threshold": 0.0}, r"ohem_threshold must be in \(0, 1\]"),
        ({"ohem_threshold": 1.5}, r"ohem_threshold must be in \(0, 1\]"),
        ({"ohem_min_kept": -1}, "ohem_min_kept"),
        ({"ohem_min_kept": 2.5}, "ohem_min_kept"),
        ({"class_weights": [1.0, -1.0]}, "class_weights"),
        ({"class_weights": []}, "class_weights"),
        ({"ignore_index": 2.0}, "ignore_index"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OCRLoss(**kwargs)


def test_forward_errors():
    outputs, target = batch()
    with pytest.raises(ValueError, match="class_weights has 3 entries but the logits have K=5"):
        OCRLoss(class_weights=[1, 2, 3])(outputs, target)
    with pytest.raises(ValueError, match=r"target must be a \(B, H, W\)"):
        OCRLoss()(outputs, target[0])
    with pytest.raises(ValueError, match="integer class ids"):
        OCRLoss()(outputs, target.float())
    with pytest.raises(ValueError, match="outputs has no 'logits'"):
        OCRLoss()({"aux_logits": outputs["aux_logits"]}, target)
    with pytest.raises(ValueError, match=r"outputs\['logits'\] must be \(B=1, K, H, W\)"):
        OCRLoss()(outputs, target[:1])
