"""Attack losses: golden values computed by hand, shapes, validation and numerical stability."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from segshield.attacks.losses import (
    LOSSES,
    accepts_weight,
    bce_loss,
    dice_focal_loss,
    dice_loss,
    focal_loss,
    get_loss,
)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def softmax(zs: list[float]) -> list[float]:
    exps = [math.exp(z) for z in zs]
    return [e / sum(exps) for e in exps]


# Binary: one sample, two pixels. Logits [0, 2], target [1, 0].
BIN_LOGITS = torch.tensor([[[[0.0, 2.0]]]], dtype=torch.float64)  # (1, 1, 1, 2)
BIN_TARGET = torch.tensor([[[[1.0, 0.0]]]], dtype=torch.float64)
P1 = sigmoid(2.0)  # probability of pixel 1; pixel 0 has probability 0.5

# Multi-class: one sample, two pixels, three classes. Pixel 0 logits [1, 0, -1] with class 0,
# pixel 1 logits [0, 2, 0] with class 2.
MC_LOGITS = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]], [[-1.0, 0.0]]]], dtype=torch.float64)
MC_TARGET = torch.tensor([[[0, 2]]])  # (1, 1, 2)
Q0 = softmax([1.0, 0.0, -1.0])
Q1 = softmax([0.0, 2.0, 0.0])


def test_bce_binary_golden() -> None:
    expected = (-math.log(0.5) - math.log(1.0 - P1)) / 2.0  # = (log 2 + log(1 + e^2)) / 2
    assert math.isclose(expected, (math.log(2) + math.log(1 + math.e**2)) / 2)
    got = bce_loss(BIN_LOGITS, BIN_TARGET)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_bce_multiclass_is_cross_entropy_golden() -> None:
    expected = (-math.log(Q0[0]) - math.log(Q1[2])) / 2.0
    assert bce_loss(MC_LOGITS, MC_TARGET).item() == pytest.approx(expected, rel=1e-12)


def test_dice_binary_golden() -> None:
    inter = 0.5 * 1.0 + P1 * 0.0
    expected = 1.0 - (2.0 * inter + 1.0) / ((0.5 + P1) + 1.0 + 1.0)
    assert dice_loss(BIN_LOGITS, BIN_TARGET).item() == pytest.approx(expected, rel=1e-12)
    # smooth is honoured
    expected_s0 = 1.0 - (2.0 * inter) / ((0.5 + P1) + 1.0)
    got_s0 = dice_loss(BIN_LOGITS, BIN_TARGET, smooth=0.0).item()
    assert got_s0 == pytest.approx(expected_s0, rel=1e-12)


def test_dice_multiclass_golden() -> None:
    # Per class: (2 * intersection + 1) / (sum of probabilities + pixel count + 1), then mean.
    dice_c0 = (2 * Q0[0] + 1) / (Q0[0] + Q1[0] + 1 + 1)
    dice_c1 = (2 * 0.0 + 1) / (Q0[1] + Q1[1] + 0 + 1)
    dice_c2 = (2 * Q1[2] + 1) / (Q0[2] + Q1[2] + 1 + 1)
    expected = 1.0 - (dice_c0 + dice_c1 + dice_c2) / 3.0
    assert dice_loss(MC_LOGITS, MC_TARGET).item() == pytest.approx(expected, rel=1e-12)


def test_focal_binary_golden() -> None:
    # p_t = 0.5 for pixel 0 (target 1), p_t = 1 - P1 for pixel 1 (target 0).
    fl0 = (1 - 0.5) ** 2 * -math.log(0.5)
    fl1 = (1 - (1 - P1)) ** 2 * -math.log(1 - P1)
    got = focal_loss(BIN_LOGITS, BIN_TARGET).item()  # gamma=2 by default
    assert got == pytest.approx((fl0 + fl1) / 2, rel=1e-12)
    # alpha weights the positive pixel by alpha and the negative one by 1 - alpha
    got_a = focal_loss(BIN_LOGITS, BIN_TARGET, alpha=0.25).item()
    assert got_a == pytest.approx((0.25 * fl0 + 0.75 * fl1) / 2, rel=1e-12)
    got_g = focal_loss(BIN_LOGITS, BIN_TARGET, gamma=0.5).item()
    expected_g = ((0.5**0.5) * -math.log(0.5) + (P1**0.5) * -math.log(1 - P1)) / 2
    assert got_g == pytest.approx(expected_g, rel=1e-12)


def test_focal_multiclass_golden() -> None:
    fl0 = (1 - Q0[0]) ** 2 * -math.log(Q0[0])
    fl1 = (1 - Q1[2]) ** 2 * -math.log(Q1[2])
    assert focal_loss(MC_LOGITS, MC_TARGET).item() == pytest.approx((fl0 + fl1) / 2, rel=1e-12)
    got_a = focal_loss(MC_LOGITS, MC_TARGET, alpha=[0.2, 0.3, 0.5]).item()
    assert got_a == pytest.approx((0.2 * fl0 + 0.5 * fl1) / 2, rel=1e-12)


@pytest.mark.parametrize(("logits", "target"), [(BIN_LOGITS, BIN_TARGET), (MC_LOGITS, MC_TARGET)])
def test_dice_focal_is_sum(logits: torch.Tensor, target: torch.Tensor) -> None:
    expected = dice_loss(logits, target) + focal_loss(logits, target)
    torch.testing.assert_close(dice_focal_loss(logits, target), expected)
    assert get_loss("dice_focal", gamma=1.0)(logits, target).item() == pytest.approx(
        (dice_loss(logits, target) + focal_loss(logits, target, gamma=1.0)).item()
    )


@pytest.mark.parametrize(("logits", "target"), [(BIN_LOGITS, BIN_TARGET), (MC_LOGITS, MC_TARGET)])
def test_focal_with_gamma_zero_is_bce(logits: torch.Tensor, target: torch.Tensor) -> None:
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0), bce_loss(logits, target))


def random_batch(kind: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 logits and targets of 3 samples in each layout."""
    gen = torch.Generator().manual_seed(seed)
    shape = {"binary": (3, 1, 5, 4), "multilabel": (3, 4, 5, 4), "multiclass": (3, 4, 5, 4)}
    if kind in ("binary", "multilabel"):
        logits = torch.randn(shape[kind], generator=gen, dtype=torch.float64)
        return logits, (torch.rand(shape[kind], generator=gen) > 0.5).double()
    if kind == "multiclass":
        logits = torch.randn(shape[kind], generator=gen, dtype=torch.float64)
        return logits, torch.randint(0, 4, (3, 5, 4), generator=gen)
    logits = torch.randn(3, 4, generator=gen, dtype=torch.float64)  # classification
    return logits, torch.randint(0, 4, (3,), generator=gen)


KINDS = ["binary", "multilabel", "multiclass", "classification"]


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("kind", KINDS)
def test_per_sample_shape_and_batch_independence(name: str, kind: str) -> None:
    logits, target = random_batch(kind)
    fn = get_loss(name)
    batch = fn(logits, target)
    assert batch.shape == (3,)
    for i in range(3):
        torch.testing.assert_close(batch[i : i + 1], fn(logits[i : i + 1], target[i : i + 1]))


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_stable_for_huge_logits(name: str, kind: str) -> None:
    # Confidently right on some pixels, confidently wrong on others: values and gradients
    # must stay finite (naive log(sigmoid) / (1-p)^gamma would give inf or NaN here).
    if kind == "binary":
        logits = torch.tensor([[[[1e4, -1e4, 1e4, -1e4]]]], requires_grad=True)
        target = torch.tensor([[[[1.0, 0.0, 0.0, 1.0]]]])
    else:
        base = torch.tensor([[[[1e4, -1e4]], [[-1e4, 1e4]]]])
        logits = base.clone().requires_grad_(True)
        target = torch.tensor([[[0, 0]]])
    loss = get_loss(name)(logits, target)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    assert torch.isfinite(loss).all()
    assert torch.isfinite(grad).all()
    if name in ("bce", "focal"):
        # half the pixels are wrong by a margin of 1e4 (binary) or 2e4 (multi-class)
        margin = 1e4 if kind == "binary" else 2e4
        assert loss.item() == pytest.approx(margin / 2, rel=1e-4)


def test_low_precision_logits_are_upcast() -> None:
    logits = BIN_LOGITS.to(torch.bfloat16)
    out = bce_loss(logits, BIN_TARGET)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(bce_loss(BIN_LOGITS, BIN_TARGET).item(), rel=1e-6)


def test_targets_of_other_dtypes_are_accepted() -> None:
    expected = bce_loss(BIN_LOGITS, BIN_TARGET)
    torch.testing.assert_close(bce_loss(BIN_LOGITS, BIN_TARGET.bool()), expected)
    torch.testing.assert_close(bce_loss(BIN_LOGITS, BIN_TARGET.to(torch.uint8)), expected)
    expected_mc = bce_loss(MC_LOGITS, MC_TARGET)
    torch.testing.assert_close(bce_loss(MC_LOGITS, MC_TARGET.to(torch.int32)), expected_mc)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_shape_mismatch_names_both_shapes(name: str) -> None:
    fn = get_loss(name)
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 4\).*\(2, 4, 4\)"):
        fn(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\).*\(2, 1, 4, 4\)"):
        fn(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 4\).*\(3, 1, 4, 4\)"):
        fn(torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match=r"4-D.*\(1, 4, 4\)"):
        fn(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))


def test_bad_target_values_and_dtypes() -> None:
    with pytest.raises(ValueError, match="only 0 and 1"):
        bce_loss(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        bce_loss(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 3))
    with pytest.raises(ValueError, match="integer class indices"):
        dice_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="floating-point"):
        bce_loss(torch.zeros(1, 1, 2, 2, dtype=torch.long), torch.zeros(1, 1, 2, 2))


def test_bad_focal_alpha() -> None:
    with pytest.raises(ValueError, match="per-class weights"):
        focal_loss(MC_LOGITS, MC_TARGET, alpha=0.25)
    with pytest.raises(ValueError, match="per-class weights"):
        focal_loss(MC_LOGITS, MC_TARGET, alpha=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        focal_loss(BIN_LOGITS, BIN_TARGET, alpha=1.5)


def test_registry_and_get_loss() -> None:
    assert set(LOSSES) == {
        "bce", "dice", "focal", "dice_focal", "masked_ce", "balanced_masked_ce", "js"
    }  # fmt: skip
    assert get_loss("bce") is bce_loss
    assert get_loss("DICE") is dice_loss
    focal1 = get_loss("focal", gamma=1.0)
    assert focal1.__name__ == "focal_loss"
    torch.testing.assert_close(
        focal1(BIN_LOGITS, BIN_TARGET), focal_loss(BIN_LOGITS, BIN_TARGET, gamma=1.0)
    )
    with pytest.raises(ValueError, match="bce, dice, dice_focal, focal"):
        get_loss("hinge")
    with pytest.raises(ValueError, match="unknown option"):
        get_loss("bce", gamma=2.0)
    with pytest.raises(ValueError, match="unknown option"):
        get_loss("bce", weight=torch.ones(1))  # weights are per call, not bound
    with pytest.raises(ValueError, match="gamma"):
        get_loss("focal", gamma=-1.0)
    with pytest.raises(ValueError, match="smooth"):
        get_loss("dice", smooth=float("nan"))


# --------------------------------------------------------------------------- multi-label

# One sample, two channels (e.g. two organs that may overlap), two pixels.
ML_LOGITS = torch.tensor([[[[0.0, 2.0]], [[-1.0, 3.0]]]], dtype=torch.float64)  # (1, 2, 1, 2)
ML_TARGET = torch.tensor([[[[1.0, 0.0]], [[1.0, 1.0]]]], dtype=torch.float64)


def test_bce_multilabel_golden() -> None:
    terms = [
        -math.log(0.5),
        -math.log(1 - sigmoid(2.0)),
        -math.log(sigmoid(-1.0)),
        -math.log(sigmoid(3.0)),
    ]
    assert bce_loss(ML_LOGITS, ML_TARGET).item() == pytest.approx(sum(terms) / 4, rel=1e-12)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_multilabel_is_the_binary_loss_per_channel(name: str) -> None:
    """Independent sigmoids: the multi-label loss averages the binary loss of each channel."""
    logits, target = random_batch("multilabel")
    fn = get_loss(name)
    per_channel = [fn(logits[:, c : c + 1], target[:, c : c + 1]) for c in range(4)]
    torch.testing.assert_close(fn(logits, target), torch.stack(per_channel).mean(dim=0))


def test_multilabel_targets_of_other_dtypes() -> None:
    expected = dice_loss(ML_LOGITS, ML_TARGET)
    torch.testing.assert_close(dice_loss(ML_LOGITS, ML_TARGET.bool()), expected)
    torch.testing.assert_close(dice_loss(ML_LOGITS, ML_TARGET.long()), expected)
    with pytest.raises(ValueError, match="only 0 and 1"):
        dice_loss(ML_LOGITS, ML_TARGET * 2)


# ------------------------------------------------------------------------ classification


def test_classification_bce_is_cross_entropy() -> None:
    logits, target = random_batch("classification")
    expected = F.cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(bce_loss(logits, target), expected)
    assert get_loss("bce")(logits, target).shape == (3,)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_classification_is_a_one_pixel_image(name: str) -> None:
    logits, target = random_batch("classification")
    fn = get_loss(name)
    torch.testing.assert_close(
        fn(logits, target), fn(logits[:, :, None, None], target[:, None, None])
    )


def test_classification_sigmoid_outputs() -> None:
    logits = torch.tensor([[0.5], [-2.0]], dtype=torch.float64)  # one logit: binary classifier
    target = torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    expected = F.binary_cross_entropy_with_logits(logits, target, reduction="none")[:, 0]
    torch.testing.assert_close(bce_loss(logits, target), expected)
    multi = torch.randn(2, 3, dtype=torch.float64)  # multi-label classifier, (N, K) 0/1
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    expected = F.binary_cross_entropy_with_logits(multi, labels, reduction="none").mean(dim=1)
    torch.testing.assert_close(bce_loss(multi, labels), expected)


def test_classification_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2,\).*\(2, 4\)"):
        bce_loss(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(2, 1\).*\(2,\)"):
        bce_loss(torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        bce_loss(torch.zeros(2, 3), torch.tensor([0, 3]))


# ------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("kind", KINDS)
def test_unit_weight_is_no_weight(name: str, kind: str) -> None:
    logits, target = random_batch(kind)
    fn = get_loss(name)
    torch.testing.assert_close(
        fn(logits, target, weight=torch.ones(target.shape, dtype=torch.float64)),
        fn(logits, target),
    )


@pytest.mark.parametrize("kind", KINDS)
def test_weighted_pixelwise_losses_golden(kind: str) -> None:
    """bce/focal: mean over ALL pixels of w * l (SegPGD's 1/(HW) normalisation)."""
    logits, target = random_batch(kind, seed=1)
    weight = torch.rand(target.shape, generator=torch.Generator().manual_seed(2))
    for fn, plain in (
        (bce_loss, lambda z, t: _per_pixel_bce(z, t, kind)),
        (focal_loss, None),
    ):
        got = fn(logits, target, weight=weight)
        if plain is not None:
            expected = (plain(logits, target) * weight).reshape(len(target), -1).mean(dim=1)
            torch.testing.assert_close(got, expected)
        # zero weight on every pixel: nothing left
        assert fn(logits, target, weight=torch.zeros(target.shape)).abs().max().item() == 0.0


def _per_pixel_bce(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind in ("binary", "multilabel"):
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return F.cross_entropy(logits, target, reduction="none")


def test_weighted_dice_golden() -> None:
    # Binary, pixel 0 (p=0.5, t=1) with weight 0.25, pixel 1 (p=P1, t=0) with weight 2.
    w = torch.tensor([[[[0.25, 2.0]]]], dtype=torch.float64)
    inter = 0.25 * 0.5 * 1.0
    denom = (0.25 * 0.5 + 2.0 * P1) + 0.25 * 1.0
    expected = 1.0 - (2.0 * inter + 1.0) / (denom + 1.0)
    got = dice_loss(BIN_LOGITS, BIN_TARGET, weight=w).item()
    assert got == pytest.approx(expected, rel=1e-12)
    # multi-class: per-pixel weight (N, H, W) scales every class's sums at that pixel
    wm = torch.tensor([[[0.5, 1.5]]], dtype=torch.float64)
    dice = []
    for c, t in enumerate(([1.0, 0.0], [0.0, 0.0], [0.0, 1.0])):
        probs = [Q0[c], Q1[c]]
        inter = sum(w_ * p * t_ for w_, p, t_ in zip((0.5, 1.5), probs, t, strict=True))
        den = sum(w_ * (p + t_) for w_, p, t_ in zip((0.5, 1.5), probs, t, strict=True))
        dice.append((2 * inter + 1) / (den + 1))
    got_mc = dice_loss(MC_LOGITS, MC_TARGET, weight=wm).item()
    assert got_mc == pytest.approx(1.0 - sum(dice) / 3, rel=1e-12)


def test_weight_broadcasts_and_is_constant() -> None:
    logits, target = random_batch("multilabel")
    per_pixel = torch.rand(3, 1, 5, 4, dtype=torch.float64)  # same weight for every channel
    torch.testing.assert_close(
        bce_loss(logits, target, weight=per_pixel),
        bce_loss(logits, target, weight=per_pixel.expand(3, 4, 5, 4)),
    )
    with pytest.raises(ValueError, match=r"\(2, 5, 4\).*broadcast.*\(3, 4, 5, 4\)"):
        bce_loss(logits, target, weight=torch.ones(2, 5, 4))
    w = torch.rand(3, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    z = logits.clone().requires_grad_(True)
    bce_loss(z, target, weight=w).sum().backward()
    assert z.grad is not None and w.grad is None  # weights are detached constants


def test_accepts_weight() -> None:
    assert all(accepts_weight(fn) for fn in LOSSES.values())
    assert accepts_weight(get_loss("focal", gamma=1.0))

    def plain(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return logits.sum()

    def kwargs(logits: torch.Tensor, target: torch.Tensor, **kw: object) -> torch.Tensor:
        return logits.sum()

    assert not accepts_weight(plain)
    assert accepts_weight(kwargs)
