"""The whole attack registry through the audit: budgets per norm, targeted ASMA, targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segshield.attacks import ATTACKS
from segshield.audits import AuditConfig, run_audit
from segshield.audits.plan import attack_budget, build_targets
from segshield.errors import SegShieldError


@pytest.fixture(scope="module")
def suite_report(tmp_path_factory: pytest.TempPathFactory):
    cfg = AuditConfig(
        tmp_path_factory.mktemp("suite"),
        attacks=tuple(ATTACKS),
        epsilons=(8 / 255,),
        steps=2,
        asma_steps=20,
        limit=2,
        engines=("pytorch",),
        n_boot=20,
        panels=0,
        target="other",
    )
    return run_audit(cfg)


def test_every_registered_attack_runs_in_the_audit(suite_report) -> None:
    assert [c.attack for c in suite_report.cells] == list(ATTACKS)
    for cell in suite_report.cells:
        assert cell.status == "ok", (cell.id, cell.error)
        assert cell.params["norm"] == ATTACKS[cell.attack].norm
        if cell.params["norm"] == "Linf":
            assert cell.perturbation.linf_max <= 8 / 255 + 1e-6, cell.id
        else:  # L2 budget: the corner of the L-infinity ball
            radius = 8 / 255 * np.sqrt(128 * 128)
            assert cell.params["eps"] == pytest.approx(radius)
            assert max(cell.perturbation.per_image["l2"]) <= radius + 1e-4


def test_asma_cell_reports_the_seed_columns(suite_report) -> None:
    cell = next(c for c in suite_report.cells if c.attack == "asma")
    assert cell.params["targeted"] is True and cell.params["target"] == "other"
    src = cell.targeted["source"]
    for key in ("iou_mean", "pixel_accuracy_mean", "l2_mean", "linf_mean", "clean_iou_mean"):
        assert key in src
    assert src["iou_mean"] >= src["clean_iou_mean"] - 1e-9  # moved towards the target
    assert 0.0 <= cell.targeted["engines"]["pytorch"]["iou_to_target"] <= 1.0


def test_attack_budget_per_norm() -> None:
    assert attack_budget("pgd", 0.1, (1, 4, 4)) == pytest.approx(0.1)
    assert attack_budget("pgdl2", 0.1, (1, 4, 4)) == pytest.approx(0.4)


def test_targets(tmp_path: Path) -> None:
    masks = np.zeros((3, 1, 8, 8), dtype=np.uint8)
    masks[0, 0, :2, :2] = 1
    masks[1, 0, 4:, 4:] = 1
    assert build_targets("empty", masks, 8).sum() == 0
    assert np.array_equal(build_targets("other", masks, 8)[1], masks[0])
    assert np.array_equal(build_targets("shift:1,0", masks, 8)[0, 0, 1:3, :2], np.ones((2, 2)))
    drawn = np.zeros((16, 16), dtype=np.uint8)
    drawn[:8] = 255
    Image.fromarray(drawn).save(tmp_path / "t.png")
    from_file = build_targets(f"file:{tmp_path / 't.png'}", masks, 8)
    assert (
        from_file.shape == (3, 1, 8, 8)
        and from_file[:, :, :4].all()
        and not from_file[:, :, 4:].any()
    )
    with pytest.raises(SegShieldError, match="target 'blob'"):
        build_targets("blob", masks, 8)
    with pytest.raises(SegShieldError, match="shift:DY,DX"):
        build_targets("shift:1", masks, 8)


def test_markdown_compares_losses_and_shows_targeted_columns(suite_report, tmp_path) -> None:
    from segshield.reports import render_markdown

    md = render_markdown(suite_report)
    assert "## Targeted attacks" in md and "`other`" in md
    losses = run_audit(
        AuditConfig(
            tmp_path,
            attacks=("fgsm",),
            losses=("bce", "dice", "focal", "dice_focal"),
            epsilons=(4 / 255,),
            limit=1,
            engines=("pytorch",),
            n_boot=10,
            panels=0,
        )
    )
    md = render_markdown(losses)
    assert "## Attack losses compared" in md
    assert all(f"AS {loss}" in md for loss in ("bce", "dice", "focal", "dice_focal"))


def test_targeted_attacks_are_skipped_where_they_do_not_apply() -> None:
    from segshield.audits.plan import skip_reason
    from segshield.enums import TaskKind

    assert skip_reason("asma", TaskKind.BINARY) is None
    assert skip_reason("asma", TaskKind.MULTICLASS) is None
    assert "targeted" in skip_reason("asma", TaskKind.CLASSIFICATION)
    assert "one per label" in skip_reason("asma", TaskKind.MULTILABEL)
    assert skip_reason("pgd", TaskKind.MULTILABEL) is None
