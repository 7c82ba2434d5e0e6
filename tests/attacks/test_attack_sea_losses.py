"""SEA's losses (masked CE, class-balanced masked CE, Jensen-Shannon): golden values computed by
hand on 2x2 images in every layout, masking, balancing, range, weights and stability."""

from __future__ import annotations

import math

import pytest
import torch

from segshield.attacks.losses import (
    LOSSES,
    accepts_weight,
    balanced_masked_ce_loss,
    bce_loss,
    get_loss,
    js_loss,
    masked_ce_loss,
)

SEA_LOSSES = ["masked_ce", "balanced_masked_ce", "js"]
LN2 = math.log(2.0)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def softmax(zs: list[float]) -> list[float]:
    exps = [math.exp(z) for z in zs]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def js(p: list[float], onehot: list[float]) -> float:
    """Jensen-Shannon divergence from its definition, ½ KL(P‖M) + ½ KL(Q‖M), M = (P + Q) / 2."""
    m = [(a + b) / 2 for a, b in zip(p, onehot, strict=True)]
    return 0.5 * kl(p, m) + 0.5 * kl(onehot, m)


# Binary, one 2x2 image. Prediction (logit > 0): [[1, 0], [1, 0]] against target [[1, 1], [1, 0]]:
# pixel (0, 1) is wrong; class 1 has 3 pixels, class 0 one.
BIN_Z = [[2.0, -1.0], [0.5, -3.0]]
BIN_T = [[1.0, 1.0], [1.0, 0.0]]


def _binary_golden(z: list[list[float]], t: list[list[float]]) -> dict[str, float]:
    """The three losses of one 2x2 sigmoid channel, from the per-pixel formulas."""
    pixels = [(z[i][j], t[i][j]) for i in range(2) for j in range(2)]
    p_t = [sigmoid(v) if y == 1 else 1 - sigmoid(v) for v, y in pixels]
    ce = [-math.log(p) for p in p_t]
    correct = [(v > 0) == (y == 1) for v, y in pixels]
    counts = {c: sum(1 for _, y in pixels if y == c) for c in (0.0, 1.0)}
    present = [c for c, n in counts.items() if n > 0]
    class_means = [
        sum(ce[k] for k, (_, y) in enumerate(pixels) if y == c and correct[k]) / counts[c]
        for c in present
    ]
    return {
        "masked_ce": sum(c for c, ok in zip(ce, correct, strict=True) if ok) / 4,
        "balanced_masked_ce": sum(class_means) / len(class_means),
        "js": sum(js([1 - p, p], [0.0, 1.0]) for p in p_t) / 4,
    }


def test_binary_golden() -> None:
    a, b, c = -math.log(sigmoid(2.0)), -math.log(sigmoid(0.5)), -math.log(1 - sigmoid(-3.0))
    golden = _binary_golden(BIN_Z, BIN_T)
    assert golden["masked_ce"] == pytest.approx((a + b + c) / 4, rel=1e-14)  # (0, 1) is wrong
    # class 1: (a + b + 0) / 3 pixels, class 0: c / 1 pixel, mean of the two
    assert golden["balanced_masked_ce"] == pytest.approx(((a + b) / 3 + c) / 2, rel=1e-14)
    logits = torch.tensor([[BIN_Z]], dtype=torch.float64)
    target = torch.tensor([[BIN_T]], dtype=torch.float64)
    for name, expected in golden.items():
        got = get_loss(name)(logits, target)
        assert got.shape == (1,)
        assert got.item() == pytest.approx(expected, rel=1e-12), name


def test_multilabel_golden() -> None:
    """Two channels: each the binary loss of its 2x2 map, averaged over the channels."""
    z2, t2 = [[-2.0, 1.0], [3.0, 0.25]], [[0.0, 0.0], [1.0, 0.0]]
    logits = torch.tensor([[BIN_Z, z2]], dtype=torch.float64)  # (1, 2, 2, 2)
    target = torch.tensor([[BIN_T, t2]], dtype=torch.float64)
    g1, g2 = _binary_golden(BIN_Z, BIN_T), _binary_golden(z2, t2)
    for name in SEA_LOSSES:
        expected = (g1[name] + g2[name]) / 2
        assert get_loss(name)(logits, target).item() == pytest.approx(expected, rel=1e-12)


# Multi-class, 3 classes, one 2x2 image: pixel logits and true classes. Pixel (0, 1) is predicted
# as class 1 (wrong); class 0 has 3 pixels, class 2 one, class 1 none.
MC_Z = [[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 3.0], [1.0, 0.0, -1.0]]]
MC_Y = [[0, 0], [2, 0]]


def _mc_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor(MC_Z, dtype=torch.float64).permute(2, 0, 1).unsqueeze(0)  # (1,3,2,2)
    return logits, torch.tensor([MC_Y])


def test_multiclass_golden() -> None:
    probs = [[softmax(MC_Z[i][j]) for j in range(2)] for i in range(2)]
    ce = [[-math.log(probs[i][j][MC_Y[i][j]]) for j in range(2)] for i in range(2)]
    masked = (ce[0][0] + ce[1][0] + ce[1][1]) / 4  # (0, 1) is wrong
    balanced = ((ce[0][0] + ce[1][1]) / 3 + ce[1][0] / 1) / 2  # classes 0 and 2 present
    onehots = [[[float(c == MC_Y[i][j]) for c in range(3)] for j in range(2)] for i in range(2)]
    jsd = sum(js(probs[i][j], onehots[i][j]) for i in range(2) for j in range(2)) / 4
    logits, target = _mc_tensors()
    assert masked_ce_loss(logits, target).item() == pytest.approx(masked, rel=1e-12)
    assert balanced_masked_ce_loss(logits, target).item() == pytest.approx(balanced, rel=1e-12)
    assert js_loss(logits, target).item() == pytest.approx(jsd, rel=1e-12)


def test_classification_golden() -> None:
    """A classifier is a 1x1 image: masked = balanced = CE when right, 0 when wrong."""
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([0, 0])
    q0, q1 = softmax([2.0, 0.0, -1.0]), softmax([0.0, 1.0, 0.0])
    expected = torch.tensor([-math.log(q0[0]), 0.0], dtype=torch.float64)
    torch.testing.assert_close(masked_ce_loss(logits, target), expected)
    torch.testing.assert_close(balanced_masked_ce_loss(logits, target), expected)
    expected_js = torch.tensor([js(q0, [1, 0, 0]), js(q1, [1, 0, 0])], dtype=torch.float64)
    torch.testing.assert_close(js_loss(logits, target), expected_js)


def test_all_correct_masked_ce_is_bce_and_balance_of_equal_classes_is_none() -> None:
    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]], dtype=torch.float64)
    target = (logits > 0).double()  # every pixel right, two pixels of each class
    torch.testing.assert_close(masked_ce_loss(logits, target), bce_loss(logits, target))
    torch.testing.assert_close(balanced_masked_ce_loss(logits, target), bce_loss(logits, target))


@pytest.mark.parametrize("name", SEA_LOSSES[:2])
def test_masked_losses_ignore_misclassified_pixels(name: str) -> None:
    """No gradient through a wrong pixel (all channels of it for multi-class); some elsewhere."""
    logits, target = _mc_tensors()
    z = logits.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(get_loss(name)(z, target).sum(), z)
    assert torch.equal(grad[0, :, 0, 1], torch.zeros(3, dtype=torch.float64))
    assert bool((grad[0, :, 0, 0] != 0).any() and (grad[0, :, 1, 1] != 0).any())
    zb = torch.tensor([[BIN_Z]], dtype=torch.float64, requires_grad=True)
    (grad_b,) = torch.autograd.grad(get_loss(name)(zb, torch.tensor([[BIN_T]])).sum(), zb)
    assert grad_b[0, 0, 0, 1].item() == 0.0
    assert bool((grad_b[0, 0].flatten()[[0, 2, 3]] != 0).all())
    # changing the wrong pixel's logits (while it stays wrong) does not change the loss
    moved = logits.clone()
    moved[0, 1, 0, 1] = 5.0
    torch.testing.assert_close(get_loss(name)(moved, target), get_loss(name)(logits, target))


def test_balanced_weights_make_classes_count_equally() -> None:
    """One class of 1 pixel, the other of 3: doubling the small class's only loss doubles its
    half of the result, whatever the big class's size."""
    torch.manual_seed(0)
    logits = torch.randn(1, 1, 2, 2, dtype=torch.float64).abs() + 0.1  # all predicted 1
    target = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]]], dtype=torch.float64)
    lone = logits.clone()
    lone[0, 0, 1, 1] = -lone[0, 0, 1, 1]  # predicted 0
    target_lone = target.clone()
    target_lone[0, 0, 1, 1] = 0.0  # ... and truly 0: a class of one pixel, right
    got = balanced_masked_ce_loss(lone, target_lone).item()
    ce = torch.nn.functional.binary_cross_entropy_with_logits(lone, target_lone, reduction="none")
    big = ce[0, 0].flatten()[:3].mean().item()
    assert got == pytest.approx((big + ce[0, 0, 1, 1].item()) / 2, rel=1e-12)
    masked = masked_ce_loss(lone, target_lone).item()
    assert masked == pytest.approx(ce.mean().item(), rel=1e-12)  # plain mean: 3:1 weighting


@pytest.mark.parametrize("kind", ["binary", "multilabel", "multiclass", "classification"])
def test_js_range(kind: str) -> None:
    gen = torch.Generator().manual_seed(3)
    if kind in ("binary", "multilabel"):
        shape = (5, 1 if kind == "binary" else 3, 4, 4)
        logits = torch.randn(shape, generator=gen) * 20
        target = (torch.rand(shape, generator=gen) > 0.5).float()
    elif kind == "multiclass":
        logits = torch.randn(5, 4, 4, 4, generator=gen) * 20
        target = torch.randint(0, 4, (5, 4, 4), generator=gen)
    else:
        logits, target = torch.randn(5, 4, generator=gen) * 20, torch.randint(0, 4, (5,))
    value = js_loss(logits, target)
    assert bool((value >= 0).all()) and bool((value <= LN2 + 1e-6).all())
    # the extremes: confidently right 0, confidently wrong ln 2
    right = torch.tensor([[[[30.0, -30.0]]]])
    assert js_loss(right, torch.tensor([[[[1.0, 0.0]]]])).item() == pytest.approx(0.0, abs=1e-12)
    assert js_loss(right, torch.tensor([[[[0.0, 1.0]]]])).item() == pytest.approx(LN2, rel=1e-6)


@pytest.mark.parametrize("name", SEA_LOSSES)
@pytest.mark.parametrize("layout", ["binary", "multiclass"])
def test_weight(name: str, layout: str) -> None:
    """weight= multiplies each element's term; zero weights leave nothing."""
    if layout == "binary":
        logits = torch.tensor([[BIN_Z]], dtype=torch.float64)
        target = torch.tensor([[BIN_T]], dtype=torch.float64)
        weight = torch.tensor([[[[0.5, 2.0], [3.0, 0.25]]]], dtype=torch.float64)
    else:
        logits, target = _mc_tensors()
        weight = torch.tensor([[[0.5, 2.0], [3.0, 0.25]]], dtype=torch.float64)
    fn = get_loss(name)
    assert accepts_weight(fn)
    # each element alone (one-hot weights) sums to the weighted loss, each scaled by its weight
    parts = []
    for k in range(4):
        one = torch.zeros(4, dtype=torch.float64)
        one[k] = 1.0
        parts.append(weight.flatten()[k] * fn(logits, target, weight=one.view_as(weight)))
    torch.testing.assert_close(fn(logits, target, weight=weight), sum(parts))
    torch.testing.assert_close(
        fn(logits, target, weight=torch.ones_like(weight)), fn(logits, target)
    )
    assert fn(logits, target, weight=torch.zeros_like(weight)).item() == 0.0


@pytest.mark.parametrize("name", SEA_LOSSES)
def test_registered_stable_and_upcast(name: str) -> None:
    assert LOSSES[name] is get_loss(name.upper())
    huge = torch.tensor([[[[1e4, -1e4]], [[-1e4, 1e4]]]], requires_grad=True)
    value = get_loss(name)(huge, torch.tensor([[[0, 0]]]))
    (grad,) = torch.autograd.grad(value.sum(), huge)
    assert bool(torch.isfinite(value).all()) and bool(torch.isfinite(grad).all())
    logits = torch.tensor([[BIN_Z]], dtype=torch.float16)
    half = get_loss(name)(logits, torch.tensor([[BIN_T]]))
    assert half.dtype == torch.float32
    full = get_loss(name)(logits.double(), torch.tensor([[BIN_T]], dtype=torch.float64))
    assert half.item() == pytest.approx(full.item(), rel=1e-6)
