"""Segmentation-specific attacks (SegPGD, CosPGD, DAG) and L2 PGD: their update rules by hand,
and the per-step objective hook of the shared loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from segshield.attacks import DAG, PGD, PGDL2, Attack, CosPGD, SegPGD, get_loss

if TYPE_CHECKING:  # fixtures' types; conftest is not imported at run time
    from conftest import Case, CaseFactory

EPS, ALPHA = 8 / 255, 2 / 255


def sign_step(x: Tensor, x0: Tensor, grad: Tensor, alpha: float, eps: float) -> Tensor:
    return torch.clamp(x + alpha * grad.sign(), x0 - eps, x0 + eps).clamp(0.0, 1.0)


def input_grad(objective, x: Tensor) -> Tensor:  # type: ignore[no-untyped-def]
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(xg), xg)
    return grad


# ------------------------------------------------------------------------------- the hook


class Recorder(Attack):
    """A minimal attack that uses the shared loop's per-step objective hook."""

    name: ClassVar[str] = "recorder"
    iterative: ClassVar[bool] = True
    targeted: ClassVar[bool] = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[tuple[int, int]] = []

    def _perturb(self, images: Tensor, targets: Tensor) -> Tensor:
        def loss_at_step(logits: Tensor, targets: Tensor, step: int, steps: int) -> Tensor:
            self.calls.append((step, steps))
            return self.loss(logits, targets) * (step + 1)

        return self._iterate(images, targets, images, 3, 0.01, self.eps, loss_at_step=loss_at_step)


def test_loss_at_step_hook(binary_case: Case) -> None:
    attack = Recorder(binary_case.model, "bce", 0.05)
    adv = attack(binary_case.images, binary_case.targets)
    assert attack.calls == [(0, 3), (1, 3), (2, 3)]
    # a positive rescaling of the loss does not change signed steps: it is BIM
    bim = get_loss("bce")
    x = binary_case.images
    for _ in range(3):
        grad = input_grad(lambda v: bim(binary_case.model(v), binary_case.targets).sum(), x)
        x = sign_step(x, binary_case.images, grad, 0.01, 0.05)
    assert torch.equal(adv, x)


# --------------------------------------------------------------------------------- SegPGD


def test_segpgd_schedule() -> None:
    correct = torch.tensor([True, False])
    weights = [SegPGD.weight_at_step(correct, t, 4, torch.float64).tolist() for t in range(4)]
    # λ_t = (t - 1) / (2T) for t = 1..T: 0, 1/8, 2/8, 3/8
    assert weights == [[1.0, 0.0], [7 / 8, 1 / 8], [6 / 8, 2 / 8], [5 / 8, 3 / 8]]


@pytest.mark.parametrize("kind", ["binary", "multiclass", "classification"])
def test_segpgd_by_hand(kind: str, case_factory: CaseFactory) -> None:
    """Two steps of x <- Π(x + α sign ∇[(1-λ)/HW Σ_correct L_j + λ/HW Σ_wrong L_j])."""
    case = case_factory(kind)
    model, x0, y = case.model, case.images, case.targets
    sigmoid = kind == "binary"

    def per_pixel(logits: Tensor) -> Tensor:
        if sigmoid:
            return F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        return F.cross_entropy(logits, y, reduction="none")

    def correct(logits: Tensor) -> Tensor:
        return ((logits > 0).float() == y) if sigmoid else (logits.argmax(dim=1) == y)

    x = x0
    steps = 2
    for t in range(1, steps + 1):
        lam = (t - 1) / (2 * steps)

        def objective(v: Tensor, lam: float = lam) -> Tensor:
            logits = model(v)
            ok = correct(logits.detach()).float()
            weighted = per_pixel(logits) * (ok * (1 - lam) + (1 - ok) * lam)
            return weighted.reshape(len(v), -1).mean(dim=1).sum()

        x = sign_step(x, x0, input_grad(objective, x), ALPHA, EPS)
    got = SegPGD(model, "bce", EPS, steps=steps, alpha=ALPHA, random_start=False)(x0, y)
    assert torch.equal(got, x)
    pgd = PGD(model, "bce", EPS, steps=steps, alpha=ALPHA, random_start=False)(x0, y)
    assert not torch.equal(got, pgd)


# --------------------------------------------------------------------------------- CosPGD


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_cospgd_by_hand(kind: str, case_factory: CaseFactory) -> None:
    case = case_factory(kind)
    model, x0, y = case.model, case.images, case.targets

    def objective(v: Tensor) -> Tensor:
        logits = model(v)
        if kind == "binary":
            p = torch.sigmoid(logits.detach())
            two = torch.cat([1 - p, p], dim=1)  # (N, 2, H, W)
            onehot = torch.cat([1 - y, y], dim=1)
            cos = F.cosine_similarity(two, onehot, dim=1, eps=0.0).unsqueeze(1)
            per_pixel = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        else:
            probs = torch.softmax(logits.detach(), dim=1)
            onehot = F.one_hot(y, 3).permute(0, 3, 1, 2).float()
            cos = F.cosine_similarity(probs, onehot, dim=1, eps=0.0)
            per_pixel = F.cross_entropy(logits, y, reduction="none")
        return (cos * per_pixel).flatten(1).mean(dim=1).sum()

    x = sign_step(x0, x0, input_grad(objective, x0), ALPHA, EPS)
    got = CosPGD(model, "bce", EPS, steps=1, alpha=ALPHA, random_start=False)(x0, y)
    torch.testing.assert_close(got, x, rtol=0, atol=0)


def test_random_starts_are_seeded(binary_case: Case) -> None:
    x, y = binary_case.images, binary_case.targets
    for cls in (SegPGD, CosPGD, PGDL2):

        def run(seed: int, cls: type[PGD] = cls) -> Tensor:
            gen = torch.Generator().manual_seed(seed)
            return cls(binary_case.model, "bce", EPS, steps=2, generator=gen)(x, y)

        assert torch.equal(run(1), run(1))
        assert not torch.equal(run(1), run(2))


# ------------------------------------------------------------------------------------ DAG


@pytest.mark.parametrize("kind", ["binary", "multilabel", "multiclass"])
def test_dag_by_hand(kind: str, case_factory: CaseFactory) -> None:
    """r = γ g / ‖g‖∞ with g = ∇ Σ_{still correct} (f_adv - f_true); l' fixed at the start."""
    case = case_factory(kind)
    model, x0, y = case.model, case.images, case.targets
    with torch.no_grad():
        clean = model(x0)
    if kind == "multiclass":
        runner_up = clean.scatter(1, y.unsqueeze(1), float("-inf")).argmax(dim=1)

    def objective(v: Tensor) -> Tensor:
        z = model(v)
        if kind == "multiclass":
            active = z.detach().argmax(dim=1) == y
            margin = z.gather(1, runner_up.unsqueeze(1))[:, 0] - z.gather(1, y.unsqueeze(1))[:, 0]
        else:  # flip: +z where y = 0, -z where y = 1
            active = (z.detach() > 0).float() == y
            margin = torch.where(y == 1, -z, z)
        return (margin * active).sum()

    x, gamma = x0, 1 / 255
    for _ in range(3):
        g = input_grad(objective, x)
        r = gamma * g / g.flatten(1).abs().max(dim=1).values.view(-1, 1, 1, 1)
        x = torch.clamp(x + r, x0 - EPS, x0 + EPS).clamp(0, 1)
    got = DAG(model, "bce", EPS, steps=3, alpha=gamma)(x0, y)
    torch.testing.assert_close(got, x, rtol=0, atol=1e-7)


def test_dag_ignores_the_loss_and_stops_when_all_pixels_fooled(case: Case) -> None:
    model, x0, y = case.model, case.images, case.targets
    by_bce = DAG(model, "bce", EPS)(x0, y)
    assert torch.equal(DAG(model, "dice", EPS)(x0, y), by_bce)
    # targets nothing is predicted as: the active set is empty from the start, nothing moves
    with torch.no_grad():
        logits = model(x0)
    if case.kind in ("binary", "multilabel"):
        wrong = (logits <= 0).to(y.dtype)
    else:
        wrong = (logits.argmax(dim=1) + 1) % logits.shape[1]
    assert torch.equal(DAG(model, "bce", EPS)(x0, wrong), x0)


def test_dag_step_is_linf_normalised(binary_case: Case) -> None:
    x0 = binary_case.images * 0.5 + 0.25  # away from the [0, 1] edges
    adv = DAG(binary_case.model, "bce", 1.0, steps=1, alpha=0.01)(x0, binary_case.targets)
    per_image = (adv - x0).flatten(1).abs().max(dim=1).values
    torch.testing.assert_close(per_image, torch.full((4,), 0.01), rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------------- PGDL2


def test_pgdl2_by_hand(case: Case) -> None:
    model, x0, y, eps, alpha = case.model, case.images, case.targets, 0.5, 0.3
    loss = get_loss("bce")
    x = x0
    for _ in range(3):
        g = input_grad(lambda v: loss(model(v), y).sum(), x)
        x = x + alpha * g / (g.flatten(1).norm(dim=1) + 1e-10).view(-1, 1, 1, 1)
        delta = x - x0
        scale = (eps / delta.flatten(1).norm(dim=1)).clamp(max=1.0)
        x = (x0 + delta * scale.view(-1, 1, 1, 1)).clamp(0, 1)
    got = PGDL2(model, "bce", eps, steps=3, alpha=alpha, random_start=False)(x0, y)
    torch.testing.assert_close(got, x, rtol=0, atol=1e-7)


def test_pgdl2_projects_onto_the_l2_ball(binary_case: Case) -> None:
    x0 = binary_case.images * 0.5 + 0.25  # the [0, 1] clip cannot shorten the perturbation
    eps = 0.2
    adv = PGDL2(binary_case.model, "bce", eps, steps=2, alpha=5.0, random_start=False)(
        x0, binary_case.targets
    )
    norms = (adv - x0).flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full((4,), eps), rtol=1e-5, atol=0)  # on the sphere


def test_pgdl2_random_start(binary_case: Case) -> None:
    x0 = binary_case.images * 0.5 + 0.25
    eps = 0.3
    starts = [
        PGDL2(
            binary_case.model,
            "bce",
            eps,
            steps=1,
            alpha=0.0,
            generator=torch.Generator().manual_seed(s),
        )(x0, binary_case.targets)
        for s in range(5)
    ]
    radii = torch.stack([(s - x0).flatten(1).norm(dim=1) for s in starts]).flatten()
    assert radii.max().item() <= eps + 1e-6
    assert radii.min().item() > 0.0 and radii.std().item() > 0.01  # uniform radius, not fixed
