"""A team's own loss as an attack loss: `--losses mod:fn` / `file.py:fn` resolves, is checked
on a real batch before the audit (a per-image (N,) finite loss, differentiable, images
independent), and the report records it by its spec."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from segshield.attacks import bce_loss, get_attack, get_loss, validate_loss
from segshield.audits import AuditConfig, run_audit
from segshield.audits.inputs import segmentation_audit_data
from segshield.audits.plan import check_names, validate_losses
from segshield.data import bundled_dataset
from segshield.errors import SegShieldError
from segshield.models import LoadedModel
from segshield.tasks import make_task

LOSSES = """
import torch.nn.functional as F

def per_image_bce(logits, target):
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)

def scaled(logits, target, *, scale=1.0):
    return scale * per_image_bce(logits, target)

def scalar(logits, target):
    return F.binary_cross_entropy_with_logits(logits, target)

def detached(logits, target):
    return per_image_bce(logits.detach(), target)

def non_finite(logits, target):
    return per_image_bce(logits, target) / 0.0

def batch_mixing(logits, target):
    per = per_image_bce(logits, target)
    return per / per.sum()

def raises(logits, target):
    raise KeyError("label_map")
"""


@pytest.fixture(autouse=True)
def losses_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`team_losses_g7.py` in the current folder (no PYTHONPATH), sys.path restored after."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "team_losses_g7.py"
    path.write_text(textwrap.dedent(LOSSES))
    return path


def _batch(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(n, 1, 6, 6, generator=gen)
    return logits, (torch.rand(n, 1, 6, 6, generator=gen) > 0.5).float()


def test_module_and_file_specs_resolve_to_the_users_function(losses_module: Path) -> None:
    logits, target = _batch()
    by_module = get_loss("team_losses_g7:per_image_bce")
    by_file = get_loss("team_losses_g7.py:per_image_bce")
    for fn in (by_module, by_file):
        torch.testing.assert_close(fn(logits, target), bce_loss(logits, target))
        validate_loss(fn, logits, target, "team")
    bound = get_loss(f"{losses_module}:scaled", scale=2.0)  # options are bound
    torch.testing.assert_close(bound(logits, target), 2 * bce_loss(logits, target))
    # an attack takes it by name, as a registry loss
    attack = get_attack("fgsm", nn.Conv2d(1, 1, 1), "team_losses_g7:per_image_bce", 0.01)
    assert attack.loss is by_module


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("scalar", r"returned \(\) .*a per-image loss \(N,\) = \(3,\) is needed"),
        ("detached", "not differentiable w.r.t. the logits"),
        ("non_finite", "NaN/Inf"),
        ("batch_mixing", "mixes the images of a batch"),
        ("raises", r"failed on logits \(3, 1, 6, 6\).*KeyError"),
    ],
)
def test_validation_refuses_with_a_clear_message(name: str, needle: str) -> None:
    logits, target = _batch()
    spec = f"team_losses_g7:{name}"
    with pytest.raises(ValueError, match=needle) as info:
        validate_loss(get_loss(spec), logits, target, spec)
    assert spec in str(info.value) and len(str(info.value).splitlines()) == 1


def test_unknown_specs_fail_the_name_check_before_anything_runs(tmp_path: Path) -> None:
    for losses, needle in [
        (("team_losses_g7:nope",), "has no attribute 'nope'"),
        (("no_such_module_g7:fn",), "cannot import 'no_such_module_g7'"),
        (("sub/team_losses_g7.py:per_image_bce",), "path with '/' cannot name a cell"),
    ]:
        with pytest.raises(SegShieldError, match=needle):
            check_names(AuditConfig(tmp_path / "o", losses=losses, engines=("pytorch",)))
    check_names(AuditConfig(tmp_path / "o", losses=("team_losses_g7:per_image_bce", "bce")))


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 3, padding=1))


def test_validate_losses_on_the_first_real_batch(tmp_path: Path) -> None:
    ds = bundled_dataset("nuclei", "test", size=(32, 32))
    task = make_task("binary")
    ok = AuditConfig(tmp_path / "o", losses=("bce", "team_losses_g7:per_image_bce"))
    validate_losses(ok, _tiny().eval(), ds.images, ds.masks, task)
    bad = AuditConfig(tmp_path / "o", losses=("team_losses_g7:scalar",))
    with pytest.raises(SegShieldError, match=r"--losses team_losses_g7:scalar: .*\(N,\)"):
        validate_losses(bad, _tiny().eval(), ds.images, ds.masks, task)


def test_an_audit_with_a_custom_loss_records_it(tmp_path: Path) -> None:
    ds = bundled_dataset("nuclei", "test", size=(32, 32))
    spec = "team_losses_g7:per_image_bce"
    config = AuditConfig(
        tmp_path / "audit",
        attacks=("fgsm", "pgd"),
        losses=(spec, "bce"),
        epsilons=(2 / 255,),
        steps=2,
        engines=("pytorch",),
        bench=False,
        n_boot=0,
        panels=0,
        checks=False,
        size=32,
    )
    data = segmentation_audit_data(ds)
    report = run_audit(config, model=LoadedModel(_tiny().eval(), {"source": "test"}), data=data)
    assert report is not None
    by_loss = {(c.attack, c.loss): c for c in report.cells}
    assert set(by_loss) == {(a, loss) for a in ("fgsm", "pgd") for loss in (spec, "bce")}
    assert report.config["losses"] == [spec, "bce"]
    for attack in ("fgsm", "pgd"):
        custom = by_loss[(attack, spec)]
        assert custom.id == f"{attack}/{spec}/{2 / 255:.6g}"
        assert custom.status.value == "ok", custom.error
    # the same per-pixel BCE written by the team: FGSM (no random start) crafts the same
    # images; PGD's random start is seeded by the cell, whose loss name differs
    a = by_loss[("fgsm", spec)].engines["pytorch"].per_image.dice
    b = by_loss[("fgsm", "bce")].engines["pytorch"].per_image.dice
    np.testing.assert_allclose(np.array(a, float), np.array(b, float), atol=1e-6)
    seeds = {by_loss[("pgd", loss)].params["random_start_seed"] for loss in (spec, "bce")}
    assert len(seeds) == 2


def test_registered_losses_are_found_by_name_only_inside_the_block(tmp_path: Path) -> None:
    from segshield.attacks import is_custom_loss, registered_losses

    def mine(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return bce_loss(logits, target)

    with registered_losses({"team": mine}):
        assert get_loss("team") is mine and is_custom_loss("team")
        check_names(AuditConfig(tmp_path / "o", losses=("team",)))
    assert not is_custom_loss("team")
    with pytest.raises(ValueError, match="unknown loss 'team'"):
        get_loss("team")
    with pytest.raises(ValueError, match="built-in"), registered_losses({"bce": mine}):
        pass
