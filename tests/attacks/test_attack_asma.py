"""ASMA (Ozbulak et al., MICCAI 2019): the update rule by hand, per-image stopping, the
L-infinity cap, and the report with the paper's table columns."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import torch
from torch import Tensor, nn

from segshield.attacks import (
    ASMA,
    asma_report,
    iou_to_target,
    other_image_target,
    pixel_accuracy,
    predict_like,
    shifted_target,
)

if TYPE_CHECKING:  # fixtures' types; conftest is not imported at run time
    from conftest import Case, CaseFactory

TAU, BETA = 1e-3, 1e-2  # test-sized multipliers (the paper's 1e-7 / 1e-6 suit a large U-Net)


class BatchSizes(nn.Module):
    """Records the batch size of every forward pass."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(x.shape[0])
        return self.inner(x)


def hand_iou_binary(pred: Tensor, target: Tensor) -> Tensor:
    """The reference code's calculate_mask_similarity IoU, per image (1 for empty vs empty)."""
    inter = (pred * target).flatten(1).sum(dim=1)
    union = (pred + target).clamp(max=1).flatten(1).sum(dim=1)
    return torch.where(union > 0, inter.double() / union.double().clamp(min=1), 1.0)


def hand_iou_multiclass(pred: Tensor, target: Tensor, n_classes: int) -> Tensor:
    """Mean IoU over the foreground classes present in prediction or target, per image."""
    ious = []
    for i in range(pred.shape[0]):
        per_class = []
        for c in range(1, n_classes):
            p, t = pred[i] == c, target[i] == c
            union = int((p | t).sum())
            if union:
                per_class.append(int((p & t).sum()) / union)
        ious.append(sum(per_class) / len(per_class) if per_class else 1.0)
    return torch.tensor(ious, dtype=torch.float64)


def test_update_rule_by_hand_binary(binary_case: Case) -> None:
    """Two steps of P_n = ∇[Σ g_target ⊙ 1{pred ≠ target} - ‖x - x0‖²], x += (β IoU + τ) P_n.

    The second step checks the L2 pull-back term, which is zero at x0.
    """
    model, x0, target = binary_case.model, binary_case.images, binary_case.targets
    x = x0.clone()
    for _ in range(2):
        xg = x.clone().requires_grad_(True)
        z = model(xg)  # (N, 1, H, W) logits
        pred = (z.detach() > 0).float()
        not_yet_target = (pred != target).float()  # the adaptive mask
        target_logit = torch.where(target == 1, z, -z)  # sigmoid unit as 2 classes, signed
        objective = (target_logit * not_yet_target).sum() - ((xg - x0) ** 2).sum()
        (p_n,) = torch.autograd.grad(objective, xg)
        multiplier = BETA * hand_iou_binary(pred, target) + TAU  # dynamic multiplier
        x = (x + multiplier.float().view(-1, 1, 1, 1) * p_n).clamp(0.0, 1.0)
    attack = ASMA(model, "bce", 1.0, max_steps=2, tau=TAU, beta=BETA, iou_threshold=1.0)
    got = attack(x0, target)
    assert torch.equal(got, x)
    assert not torch.equal(got, x0)


def test_update_rule_by_hand_multiclass(case_factory: CaseFactory) -> None:
    """The paper's Σ over classes c of g_c ⊙ 1{Y^A = c} ⊙ 1{argmax ≠ c}, channel by channel."""
    case = case_factory("multiclass")
    model, x0, target = case.model, case.images, case.targets
    x = x0.clone()
    for _ in range(2):
        xg = x.clone().requires_grad_(True)
        out = model(xg)  # (N, 3, H, W)
        pred = out.detach().argmax(dim=1)
        objective = -((xg - x0) ** 2).sum()
        for c in range(out.shape[1]):
            objective = objective + (out[:, c] * (target == c) * (pred != c)).sum()
        (p_n,) = torch.autograd.grad(objective, xg)
        multiplier = BETA * hand_iou_multiclass(pred, target, 3) + TAU
        x = (x + multiplier.float().view(-1, 1, 1, 1) * p_n).clamp(0.0, 1.0)
    got = ASMA(model, "bce", 1.0, max_steps=2, tau=TAU, beta=BETA, iou_threshold=1.0)(x0, target)
    assert torch.equal(got, x)


def test_multiplier_grows_with_iou(binary_case: Case) -> None:
    attack = ASMA(binary_case.model, "bce", 1.0)  # the paper's tau=1e-7, beta=1e-6
    iou = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert attack.multiplier(iou).tolist() == pytest.approx([1e-7, 6e-7, 1.1e-6])


def test_converged_images_stop_changing(binary_case: Case) -> None:
    model, x0 = binary_case.model, binary_case.images
    with torch.no_grad():
        own = predict_like(model(x0), binary_case.targets)  # what the model already predicts
    target = binary_case.targets.clone()
    target[0] = own[0]  # image 0 is at its target from the start (IoU 1)
    sizes = BatchSizes(model)
    adv = ASMA(sizes, "bce", 1.0, max_steps=5, tau=TAU, beta=BETA)(x0, target)
    assert torch.equal(adv[0], x0[0])  # untouched, bit for bit
    assert all(not torch.equal(adv[i], x0[i]) for i in range(1, 4))
    assert sizes.sizes == [4, 3, 3, 3, 3]  # converged images leave the batch
    # all at their targets: one forward pass, nothing changes
    sizes.sizes.clear()
    assert torch.equal(ASMA(sizes, "bce", 1.0, max_steps=5)(x0, own), x0)
    assert sizes.sizes == [4]


def test_stops_at_iou_threshold(binary_case: Case) -> None:
    """Push each image towards another one's prediction: it stops once IoU >= threshold."""
    model, x0 = binary_case.model, binary_case.images
    with torch.no_grad():
        target = other_image_target(predict_like(model(x0), binary_case.targets))
        start = iou_to_target(model(x0), target)
    assert bool((start < 0.95).all())
    sizes = BatchSizes(model)
    attack = ASMA(sizes, "bce", 1.0, max_steps=200, tau=1e-2, beta=1e-1, iou_threshold=0.95)
    adv = attack(x0, target)
    with torch.no_grad():
        reached = iou_to_target(model(adv), target)
    assert bool((reached >= 0.95).all())
    assert len(sizes.sizes) < 200  # stopped early
    assert sizes.sizes == sorted(sizes.sizes, reverse=True)


def test_eps_caps_linf(binary_case: Case) -> None:
    x0, target = binary_case.images, shifted_target(binary_case.targets, 2, 3)
    free = ASMA(binary_case.model, "bce", 1.0, max_steps=20, tau=TAU, beta=BETA)(x0, target)
    capped = ASMA(binary_case.model, "bce", 2 / 255, max_steps=20, tau=TAU, beta=BETA)(x0, target)
    assert (free - x0).abs().max().item() > 2 / 255
    assert (capped - x0).abs().max().item() <= 2 / 255 + 1e-6
    assert ASMA(binary_case.model, "bce", 1.5, max_steps=20, tau=TAU, beta=BETA)(x0, target).equal(
        free
    )  # eps >= 1: uncapped


def test_report_columns(case: Case) -> None:
    model, x0, target = case.model, case.images, case.targets
    adv = ASMA(model, "bce", 1.0, max_steps=10, tau=TAU, beta=BETA)(x0, target)
    report = asma_report(model, adv, x0, target)
    assert json.loads(json.dumps(report)) == report
    assert report["n"] == 4
    with torch.no_grad():
        logits, clean_logits = model(adv), model(x0)
    delta = (adv - x0).flatten(1).double()
    expected = {
        "iou": iou_to_target(logits, target),
        "pixel_accuracy": pixel_accuracy(logits, target),
        "l2": delta.norm(dim=1),
        "linf": delta.abs().max(dim=1).values,
        "clean_iou": iou_to_target(clean_logits, target),
    }
    for key, values in expected.items():
        assert report[key] == pytest.approx(values.tolist(), rel=1e-9)
        assert report[f"{key}_mean"] == pytest.approx(values.mean().item(), rel=1e-9)
        assert report[f"{key}_std"] == pytest.approx(values.std(unbiased=False).item(), abs=1e-12)
    assert report["l2_mean"] > 0 and report["iou_mean"] >= report["clean_iou_mean"]


def test_report_rejects_mismatched_batches(binary_case: Case) -> None:
    with pytest.raises(ValueError, match="same shape"):
        asma_report(
            binary_case.model, binary_case.images[:2], binary_case.images, binary_case.targets
        )
