"""Image panels: decoration that never costs a cell its measurements, one file per image
(names that sanitise alike, 250-character and non-ASCII names), and the worst-hit choice
that an empty ground truth cannot win with one false-positive blob."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from segshield.audits import AuditConfig, AuditReport, run_audit
from segshield.audits import panels as panels_mod
from segshield.audits.inputs import load_audit_data
from segshield.audits.panels import panel_file_name, worst_hit_order, worst_hit_panels
from segshield.gate.policy import policy_from_dict
from segshield.results import SOURCE_ENGINE, AuditCell, EngineEval
from segshield.tasks import make_task, metrics_record, per_image_record

H = 8
FAST = {
    "limit": 2,
    "epsilons": (8 / 255,),
    "steps": 2,
    "engines": ("pytorch",),
    "bench": False,
    "attacks": ("fgsm",),
}


def _eval(preds: np.ndarray, labels: np.ndarray) -> EngineEval:
    """The source engine's evaluation of bool predictions, made as the audit makes it."""
    task = make_task("binary")
    acc = task.accumulator()
    acc.update(np.where(preds, 4.0, -4.0).astype(np.float32), labels)
    m = acc.result()
    return EngineEval(
        SOURCE_ENGINE, metrics=metrics_record(m), per_image=per_image_record(m, acc.counts())
    )


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """labels, clean and adversarial predictions (N, 1, H, W) of three images:
    0: empty truth, clean prediction empty, the attack adds a 2-pixel blob (Dice 100% -> 0%
       by the old convention); 1: a 16-pixel square, the attack removes 6 pixels (Dice drop
       0.23); 2: the same square, the attack removes 2 pixels (Dice drop 0.07)."""
    labels = np.zeros((3, 1, H, H), np.uint8)
    labels[1:, 0, 2:6, 2:6] = 1
    clean = labels.astype(bool)
    adv = clean.copy()
    adv[0, 0, 0, :2] = True
    adv[1, 0, 2, 2:6] = False
    adv[1, 0, 3, 2:4] = False
    adv[2, 0, 2, 2:4] = False
    return labels, clean, adv


def _cell(labels: np.ndarray, clean: np.ndarray, adv: np.ndarray):
    cell = AuditCell(id=AuditCell.make_id("fgsm", "bce", 8 / 255), attack="fgsm", loss="bce",
                     epsilon=8 / 255)  # fmt: skip
    cell.engines = {SOURCE_ENGINE: _eval(adv, labels)}
    return cell, {SOURCE_ENGINE: _eval(clean, labels)}


def _panels(tmp_path: Path, names: tuple[str, ...], count: int = 3, scene=None):
    labels, clean, adv = scene or _scene()
    cell, clean_evals = _cell(labels, clean, adv)
    images = np.linspace(0, 1, len(labels) * H * H, dtype=np.float32).reshape(-1, 1, H, H)
    out = worst_hit_panels(
        cell, images, images, labels, names, {SOURCE_ENGINE: adv}, clean_evals, count, tmp_path
    )
    return cell, out


# --- 3. the worst-hit choice ---------------------------------------------------------------


def test_an_empty_truth_blob_does_not_win_the_worst_hit_panels(tmp_path: Path) -> None:
    _, out = _panels(tmp_path, ("empty", "big", "small"), count=2)
    assert [p.image for p in out] == ["big", "small"]
    assert out[0].dice_clean == 1.0 and out[0].dice_adv < out[1].dice_adv


def test_empty_truth_images_fill_in_by_added_false_positives(tmp_path: Path) -> None:
    labels, clean, adv = _scene()
    # a fourth image, empty truth, where the attack adds 5 false-positive pixels
    labels = np.concatenate([labels, labels[:1]])
    clean = np.concatenate([clean, clean[:1]])
    more = np.zeros_like(adv[:1])
    more[0, 0, 7, :5] = True
    adv = np.concatenate([adv, more])
    _, out = _panels(tmp_path, ("e2", "big", "small", "e5"), count=4, scene=(labels, clean, adv))
    assert [p.image for p in out] == ["big", "small", "e5", "e2"]
    # an empty-truth image's per-image Dice is undefined, shown as missing
    assert out[2].dice_clean is None and out[2].dice_adv is None


def test_worst_hit_order_without_counts_uses_the_defined_dice() -> None:
    from segshield.results import PerImage

    clean = PerImage(dice=[None, 1.0, 1.0])
    adv = PerImage(dice=[None, 0.9, 0.5])
    assert worst_hit_order(clean, adv) == [2, 1, 0]


# --- 2. unique file names ------------------------------------------------------------------


def test_names_that_sanitise_alike_get_their_own_files(tmp_path: Path) -> None:
    _, out = _panels(tmp_path, ("a b", "a_b", "a?b"))
    files = [p.file for p in out]
    assert len(set(files)) == 3
    assert all((tmp_path / f).is_file() for f in files)
    # each file shows its own image: the ground-truth tiles differ (image 0 has none)
    truths = {
        p.image: np.asarray(Image.open(tmp_path / p.file))[:, 3 * (H + 4) :][:, :H] for p in out
    }
    assert truths["a b"].max() == 0 and truths["a_b"].max() == 255


def test_long_and_non_ascii_names_are_written(tmp_path: Path) -> None:
    names = ("x" * 250, "肺" * 200, "肝" * 200)
    cell, out = _panels(tmp_path, names)
    assert not cell.warnings
    assert len({p.file for p in out}) == 3
    for p in out:
        assert (tmp_path / p.file).is_file()
        assert len(Path(p.file).name.encode()) <= 120
        assert p.file.isascii()
    assert "x" * panels_mod.STEM_MAX in next(p.file for p in out if p.image == names[0])


def test_panel_file_name_is_stable_and_readable() -> None:
    a = panel_file_name("pgd/bce/0.0313725", 7, "case 12.png")
    assert a == panel_file_name("pgd/bce/0.0313725", 7, "case 12.png")
    assert a.startswith("pgd_bce_0.0313725__0007-") and a.endswith("-case_12.png.png")
    assert panel_file_name("pgd/bce/0.0313725", 7, "case?12.png") != a
    assert panel_file_name("fgsm/bce/0.0313725", 7, "case 12.png") != a


# --- 1. a panel failure is a warning, not the cell's failure -------------------------------


def test_panels_folder_that_is_a_file_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "panels").write_text("not a folder")
    cell, out = _panels(tmp_path, ("a", "b", "c"), count=2)
    assert out == []
    (warning,) = cell.warnings
    assert warning.startswith("2 of 2 image panels were not written (FileExistsError")
    assert warning.endswith("the cell's measurements are unaffected.")


def test_read_only_panels_folder_is_a_warning(tmp_path: Path, monkeypatch, caplog) -> None:
    real = Image.Image.save

    def save(self, fp, *args, **kwargs):
        if "b" in Path(str(fp)).name.rsplit("-", 1)[-1]:
            raise PermissionError(13, "Permission denied", str(fp))
        return real(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    with caplog.at_level("WARNING", logger="segshield.audits.panels"):
        cell, out = _panels(tmp_path, ("a", "b", "c"), count=2)  # picks images 1 ("b"), 2
    assert [p.image for p in out] == ["c"]
    (warning,) = cell.warnings
    assert "1 of 2 image panels were not written (PermissionError" in warning
    assert any(warning in r.getMessage() for r in caplog.records)  # and logged


def test_a_measured_cell_survives_its_panels(tmp_path: Path) -> None:
    """End to end: a `panels` path that is a file fails every panel, the cell keeps its
    numbers and its status, the warning is in report.json, and the gate passes on it."""
    (tmp_path / "panels").write_text("not a folder")
    report = run_audit(AuditConfig(tmp_path, **FAST))
    (cell,) = report.cells
    assert cell.status == "ok" and cell.error is None
    assert cell.engines[SOURCE_ENGINE].metrics.dice is not None and cell.panels == []
    assert cell.warnings and "image panels were not written" in cell.warnings[0]
    back = AuditReport.from_dict(report.to_dict())
    assert back.cells[0].warnings == cell.warnings
    from segshield.gate.evaluate import evaluate

    policy = policy_from_dict(
        {"policy": {"name": "t"},
         "rules": [{"name": "fgsm dice", "metric": "dice", "attack": "fgsm", "min": 0.0}]}
    )  # fmt: skip
    assert evaluate(back, policy).passed


def test_a_250_character_image_name_keeps_the_cell(tmp_path: Path) -> None:
    cfg = AuditConfig(tmp_path, **FAST)
    data = load_audit_data(cfg)
    names = tuple(f"{i}-" + "n" * 248 for i in range(len(data)))
    report = run_audit(cfg, data=dataclasses.replace(data, names=names))
    (cell,) = report.cells
    assert cell.status == "ok" and not cell.warnings
    assert len(cell.panels) == 2
    assert all((tmp_path / p.file).is_file() for p in cell.panels)


def test_no_panels_asked_no_warning(tmp_path: Path) -> None:
    cell, out = _panels(tmp_path, ("a", "b", "c"), count=0)
    assert out == [] and cell.warnings == []


def test_a_volume_panel_shows_the_slice_with_the_most_ground_truth() -> None:
    """(C, D, H, W) volumes: one slice per tile, the truth's largest, named in the title."""
    rng = np.random.default_rng(0)
    clean = rng.random((1, 5, H, H), dtype=np.float32)
    truth = np.zeros((1, 5, H, H), dtype=np.uint8)
    truth[0, 1, 2:4, 2:4] = 1
    truth[0, 3, 1:6, 1:6] = 1  # the largest slice
    assert panels_mod.panel_slice(truth) == 3
    assert panels_mod.panel_slice(np.zeros_like(truth)) == 2  # empty truth: the middle
    assert panels_mod.panel_slice(truth[:, 0]) is None  # a 2-D image
    tile, titles = panels_mod.compose_panel(clean, clean, truth, {SOURCE_ENGINE: truth}, 8 / 255)
    assert tile.shape == (H, 5 * H + 4 * panels_mod.GAP, 3)
    assert titles[0] == "clean image (slice 3)"
    # the ground-truth tile is slice 3's mask: 25 white pixels
    truth_tile = tile[:, 3 * (H + panels_mod.GAP) : 3 * (H + panels_mod.GAP) + H, 0]
    assert int((truth_tile == 255).sum()) == 25
