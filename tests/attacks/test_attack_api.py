"""Attack registry, constructor/input validation, report parameters and class metadata."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest
import torch
from torch import Tensor, nn

from segshield.attacks import ATTACKS, BIM, FGSM, PGD, Attack, dice_loss, get_attack
from segshield.errors import ModelOutputError

if TYPE_CHECKING:  # fixtures' types; conftest is not imported at run time
    from conftest import Case

ATTACK_NAMES = sorted(ATTACKS)


def test_registry_contents() -> None:
    assert ATTACKS == {"fgsm": FGSM, "bim": BIM, "pgd": PGD}
    for key, cls in ATTACKS.items():
        assert issubclass(cls, Attack)
        assert cls.name == key
        assert cls.norm == "Linf"
    assert FGSM.iterative is False
    assert BIM.iterative is True and PGD.iterative is True


@pytest.mark.parametrize(
    ("name", "citation"),
    [("fgsm", "Goodfellow et al., 2015"), ("bim", "Kurakin et al., 2017"), ("pgd", "Madry")],
)
def test_docstrings_cite_paper_norm_and_shapes(name: str, citation: str) -> None:
    doc = ATTACKS[name].__doc__ or ""
    assert citation in doc
    assert "L-infinity" in doc
    assert "(N, C, H, W)" in doc and "[0, 1]" in doc


def test_get_attack(binary_case: Case) -> None:
    attack = get_attack("PGD", binary_case.model, dice_loss, 0.1, steps=3, random_start=False)
    assert isinstance(attack, PGD)
    assert (attack.eps, attack.steps, attack.random_start) == (0.1, 3, False)
    assert attack.loss is dice_loss
    assert get_attack("bim", binary_case.model, "dice", 0.1).loss is dice_loss  # loss by name


def test_unknown_attack_lists_valid_names(binary_case: Case) -> None:
    with pytest.raises(ValueError, match=r"'cw'.*bim, fgsm, pgd"):
        get_attack("cw", binary_case.model, "bce", 0.1)


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_unknown_parameter_lists_valid_ones(name: str, binary_case: Case) -> None:
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['stepz'\]"):
        get_attack(name, binary_case.model, "bce", 0.1, stepz=3)
    with pytest.raises(ValueError, match="valid parameters"):
        get_attack(name, binary_case.model, "bce", 0.1, stepz=3)


def test_param_names() -> None:
    assert FGSM.param_names() == []
    assert BIM.param_names() == ["steps", "alpha"]
    assert PGD.param_names() == ["steps", "alpha", "random_start", "generator"]


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf"), "big"])
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_bad_eps(name: str, eps: object, binary_case: Case) -> None:
    with pytest.raises(ValueError, match="eps"):
        get_attack(name, binary_case.model, "bce", eps)  # type: ignore[arg-type]
    attack = get_attack(name, binary_case.model, "bce", 0.1)
    with pytest.raises(ValueError, match="eps"):
        attack.with_eps(eps)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        attack.sweep(binary_case.images, binary_case.targets, [0.1, eps])  # type: ignore[list-item]


@pytest.mark.parametrize("cls", [BIM, PGD])
def test_bad_steps_and_alpha(cls: type[Attack], binary_case: Case) -> None:
    for steps in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            cls(binary_case.model, "bce", 0.1, steps=steps)
    with pytest.raises(ValueError, match="alpha"):
        cls(binary_case.model, "bce", 0.1, alpha=-0.01)


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_image_validation(name: str, binary_case: Case) -> None:
    attack = get_attack(name, binary_case.model, "bce", 0.1)
    images, targets = binary_case.images, binary_case.targets
    shifted = torch.linspace(-0.5, 1.0, images.numel()).view_as(images)
    with pytest.raises(ValueError, match=re.escape("found values in [-0.5, 1]")):
        attack(shifted, targets)
    with pytest.raises(ValueError, match=re.escape("found values in [0, 255]")):
        attack(torch.linspace(0, 255, images.numel()).view_as(images), targets)
    with pytest.raises(ValueError, match="4-D"):
        attack(images[0], targets[0])
    with pytest.raises(ValueError, match="floating point"):
        attack((images * 255).to(torch.uint8), targets)
    nan_images = images.clone()
    nan_images[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(nan_images, targets)


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_target_shape_mismatch(name: str, binary_case: Case) -> None:
    attack = get_attack(name, binary_case.model, "bce", 0.1)
    with pytest.raises(ValueError, match=r"\(4, 1, 16, 16\).*\(4, 16, 16\)"):
        attack(binary_case.images, binary_case.targets[:, 0])


def test_inference_mode_is_refused(binary_case: Case) -> None:
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        FGSM(binary_case.model, "bce", 0.1)(binary_case.images, binary_case.targets)


def test_model_returning_non_tensor(binary_case: Case) -> None:
    class TupleModel(nn.Module):
        def forward(self, x: Tensor) -> tuple[Tensor]:
            return (x[:, :1],)

    with pytest.raises(ModelOutputError, match=r"bim: .*tuple"):
        BIM(TupleModel(), "bce", 0.1)(binary_case.images, binary_case.targets)


def test_loss_must_be_per_sample(binary_case: Case) -> None:
    def mean_loss(logits: Tensor, target: Tensor) -> Tensor:
        return logits.mean()

    with pytest.raises(ValueError, match=r"one value per sample.*\(4,\)"):
        FGSM(binary_case.model, mean_loss, 0.1)(binary_case.images, binary_case.targets)


def test_attack_params_are_json(binary_case: Case) -> None:
    m = binary_case.model
    gen = torch.Generator().manual_seed(0)
    expected = {
        "fgsm": {"eps": 0.25, "steps": 1, "alpha": 0.25, "random_start": False},
        "bim": {"eps": 0.25, "steps": 10, "alpha": 0.0625, "random_start": False},
        "pgd": {"eps": 0.25, "steps": 10, "alpha": 0.0625, "random_start": True},
    }
    for name, params in expected.items():
        attack = get_attack(name, m, "bce", 0.25, **({"generator": gen} if name == "pgd" else {}))
        got = attack.attack_params()
        assert got == params
        assert json.loads(json.dumps(got)) == params
    assert repr(PGD(m, "bce", 0.25, steps=2, alpha=0.1)) == (
        "PGD(eps=0.25, steps=2, alpha=0.1, random_start=True)"
    )


def test_with_eps_copies_and_rescales_default_alpha(binary_case: Case) -> None:
    gen = torch.Generator()
    pgd = PGD(binary_case.model, "bce", 0.2, steps=4, generator=gen)
    other = pgd.with_eps(0.4)
    assert other is not pgd and isinstance(other, PGD)
    assert (other.eps, other.alpha, other.steps, other.generator) == (0.4, 0.1, 4, gen)
    assert (pgd.eps, pgd.alpha) == (0.2, 0.05)  # original untouched
    fixed = BIM(binary_case.model, "bce", 0.2, alpha=0.01).with_eps(0.4)
    assert fixed.alpha == 0.01  # an explicit step size is kept


def test_pgd_generator_type(binary_case: Case) -> None:
    with pytest.raises(TypeError, match="generator"):
        PGD(binary_case.model, "bce", 0.1, generator=0)  # type: ignore[arg-type]
