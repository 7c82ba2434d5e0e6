"""Attack registry, constructor/input validation, report parameters and class metadata."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest
import torch
from torch import Tensor, nn

from segshield.attacks import (
    APGD,
    APGDL2,
    ASMA,
    ATTACKS,
    BIM,
    DAG,
    FGSM,
    PGD,
    PGDL2,
    SEA,
    Attack,
    CosPGD,
    SegPGD,
    dice_loss,
    get_attack,
)
from segshield.errors import ModelOutputError

if TYPE_CHECKING:  # fixtures' types; conftest is not imported at run time
    from conftest import Case

ATTACK_NAMES = sorted(ATTACKS)


def test_registry_contents() -> None:
    assert {
        "fgsm": FGSM,
        "bim": BIM,
        "pgd": PGD,
        "pgdl2": PGDL2,
        "segpgd": SegPGD,
        "cospgd": CosPGD,
        "dag": DAG,
        "asma": ASMA,
        "apgd": APGD,
        "apgdl2": APGDL2,
        "sea": SEA,
    } == ATTACKS
    for key, cls in ATTACKS.items():
        assert issubclass(cls, Attack)
        assert cls.name == key
        assert cls.norm == ("L2" if key in ("pgdl2", "apgdl2") else "Linf")
        assert "targeted" in vars(cls), f"{key} must declare targeted explicitly"
        assert cls.targeted is (key == "asma")
        assert "iterative" in vars(cls)
    assert FGSM.iterative is False
    assert all(cls.iterative for key, cls in ATTACKS.items() if key != "fgsm")


@pytest.mark.parametrize(
    ("name", "citation", "norm_word"),
    [
        ("fgsm", "Goodfellow et al., 2015", "L-infinity"),
        ("bim", "Kurakin et al., 2017", "L-infinity"),
        ("pgd", "Madry", "L-infinity"),
        ("pgdl2", "Madry et al., 2018", "L2"),
        ("segpgd", "Gu et al., ECCV 2022", "L-infinity"),
        ("cospgd", "Agnihotri, Jung & Keuper, ICML 2024", "L-infinity"),
        ("dag", "Xie et al., ICCV 2017", "L-infinity"),
        ("asma", "Ozbulak et al., MICCAI 2019", "L2"),
        ("apgd", "Croce & Hein, ICML 2020", "L-infinity"),
        ("apgdl2", "Croce & Hein, ICML 2020", "L2"),
        ("sea", "Croce, Singh & Hein, 2024", "L-infinity"),
    ],
)
def test_docstrings_cite_paper_norm_and_shapes(name: str, citation: str, norm_word: str) -> None:
    doc = " ".join((ATTACKS[name].__doc__ or "").split())  # unwrap lines
    assert citation in doc
    assert norm_word in doc
    assert "(N, C, H, W)" in doc and "[0, 1]" in doc


def test_get_attack(binary_case: Case) -> None:
    attack = get_attack("PGD", binary_case.model, dice_loss, 0.1, steps=3, random_start=False)
    assert isinstance(attack, PGD)
    assert (attack.eps, attack.steps, attack.random_start) == (0.1, 3, False)
    assert attack.loss is dice_loss
    assert get_attack("bim", binary_case.model, "dice", 0.1).loss is dice_loss  # loss by name


def test_unknown_attack_lists_valid_names(binary_case: Case) -> None:
    with pytest.raises(
        ValueError,
        match=r"'cw'.*apgd, apgdl2, asma, bim, cospgd, dag, fgsm, pgd, pgdl2, sea, segpgd",
    ):
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
    assert DAG.param_names() == ["steps", "alpha"]
    for cls in (PGD, PGDL2, SegPGD, CosPGD):
        assert cls.param_names() == ["steps", "alpha", "random_start", "generator"]
    assert ASMA.param_names() == ["max_steps", "tau", "beta", "iou_threshold"]


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


@pytest.mark.parametrize("cls", [BIM, PGD, PGDL2, SegPGD, CosPGD, DAG])
def test_bad_steps_and_alpha(cls: type[Attack], binary_case: Case) -> None:
    for steps in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            cls(binary_case.model, "bce", 0.1, steps=steps)
    with pytest.raises(ValueError, match="alpha"):
        cls(binary_case.model, "bce", 0.1, alpha=-0.01)


def test_bad_asma_options(binary_case: Case) -> None:
    m = binary_case.model
    for steps in (0, 2.5, True):
        with pytest.raises(ValueError, match="max_steps"):
            ASMA(m, "bce", 1.0, max_steps=steps)
    for name in ("tau", "beta"):
        for value in (-1e-7, float("nan"), "x"):
            with pytest.raises(ValueError, match=name):
                ASMA(m, "bce", 1.0, **{name: value})
    for value in (-0.1, 1.5):
        with pytest.raises(ValueError, match="iou_threshold"):
            ASMA(m, "bce", 1.0, iou_threshold=value)


@pytest.mark.parametrize("cls", [SegPGD, CosPGD])
def test_weighted_attacks_need_a_weight_aware_loss(cls: type[Attack], binary_case: Case) -> None:
    def plain(logits: Tensor, target: Tensor) -> Tensor:
        return logits.flatten(1).mean(dim=1)

    def flexible(logits: Tensor, target: Tensor, **kwargs: object) -> Tensor:
        return logits.flatten(1).mean(dim=1)

    with pytest.raises(ValueError, match="weight="):
        cls(binary_case.model, plain, 0.1)
    cls(binary_case.model, flexible, 0.1)  # **kwargs takes weight=
    cls(binary_case.model, "focal", 0.1)


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

    with pytest.raises(ModelOutputError, match=r"bim: .*tuple.*SelectOutput"):
        BIM(TupleModel(), "bce", 0.1)(binary_case.images, binary_case.targets)


def test_loss_must_be_per_sample(binary_case: Case) -> None:
    def mean_loss(logits: Tensor, target: Tensor) -> Tensor:
        return logits.mean()

    with pytest.raises(ValueError, match=r"one value per sample.*\(4,\)"):
        FGSM(binary_case.model, mean_loss, 0.1)(binary_case.images, binary_case.targets)


APGD_PARAMS = {
    "eps": 0.25,
    "steps": 10,
    "rho": 0.75,
    "momentum": 0.75,
    "schedule": None,
    "random_start": True,
}


def test_attack_params_are_json(binary_case: Case) -> None:
    m = binary_case.model
    gen = torch.Generator().manual_seed(0)
    expected = {
        "fgsm": {"eps": 0.25, "steps": 1, "alpha": 0.25, "random_start": False},
        "bim": {"eps": 0.25, "steps": 10, "alpha": 0.0625, "random_start": False},
        "pgd": {"eps": 0.25, "steps": 10, "alpha": 0.0625, "random_start": True},
        "segpgd": {"eps": 0.25, "steps": 10, "alpha": 0.0625, "random_start": True},
        "cospgd": {"eps": 0.25, "steps": 10, "alpha": 0.0625, "random_start": True},
        "pgdl2": {"eps": 0.25, "steps": 10, "alpha": 0.0625, "random_start": True},  # 2.5 eps/10
        "dag": {"eps": 0.25, "steps": 10, "alpha": 0.0625, "random_start": False},
        "asma": {
            "eps": 0.25,
            "max_steps": 2500,
            "tau": 1e-7,
            "beta": 1e-6,
            "iou_threshold": 0.97,
        },
        "apgd": APGD_PARAMS,
        "apgdl2": APGD_PARAMS,
        "sea": {
            "eps": 0.25,
            "steps": 10,
            "members": ["apgd:masked_ce", "apgd:balanced_masked_ce", "apgd:js", "segpgd:*"],
            "random_start": True,
            "selection": "iou_to_target",
        },
    }
    assert set(expected) == set(ATTACKS)
    for name, params in expected.items():
        extra = {"generator": gen} if "generator" in ATTACKS[name].param_names() else {}
        attack = get_attack(name, m, "bce", 0.25, **extra)
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
    l2 = PGDL2(binary_case.model, "bce", 1.0, steps=5)
    assert l2.alpha == 0.5 and l2.with_eps(2.0).alpha == 1.0  # 2.5 * eps / steps
    assert DAG(binary_case.model, "bce", 0.2).with_eps(0.4).alpha == 0.1


def test_pgd_generator_type(binary_case: Case) -> None:
    with pytest.raises(TypeError, match="generator"):
        PGD(binary_case.model, "bce", 0.1, generator=0)  # type: ignore[arg-type]
