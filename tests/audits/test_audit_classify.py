"""Classifier audit (seed mammography: accuracy and SSIM vs ε) on the shipped patch classifier
and real nuclei patches; the shipped classifier's card and accuracy; the training recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import segshield.audits.classify as classify
from segshield.audits.classify import (
    CLASSIFIER_REPORT_KIND,
    SEED_CLASSIFIER_EPSILONS,
    ClassifierAuditConfig,
    ClassifierAuditReport,
    model_info_from_loaded,
    run_classifier_audit,
)
from segshield.data import bundled_dataset
from segshield.data.classification import (
    ClassificationDataset,
    patch_classification_from_segmentation,
)
from segshield.errors import ModelLoadError, ModelOutputError, ReportError
from segshield.hashing import sha256_file
from segshield.models import SmallCNN
from segshield.models.card import ModelCard
from segshield.training.classifier import (
    BUNDLED_CLASSIFIER,
    ClassifierTrainConfig,
    bundled_patch_classifier,
    classifier_from_card,
    evaluate_classifier,
    train_patch_classifier,
)

EPS = (0.0, 2 / 255, 0.3)
# Measured: the shipped classifier gets 50 of the 51 bundled test patches right (98.04%).
SHIPPED_TEST_ACCURACY = 50 / 51
ACCURACY_MARGIN = 0.04  # two more mistakes, for other platforms' float differences


@pytest.fixture(scope="module")
def test_patches() -> ClassificationDataset:
    return patch_classification_from_segmentation(bundled_dataset("nuclei", "test"))


@pytest.fixture(scope="module")
def few(test_patches: ClassificationDataset) -> ClassificationDataset:
    """Six patches of each class from the real test split."""
    idx = np.concatenate(
        [np.flatnonzero(test_patches.labels == k)[:6] for k in range(len(test_patches.classes))]
    )
    return ClassificationDataset(
        test_patches.images[idx],
        test_patches.labels[idx],
        tuple(test_patches.names[i] for i in idx),
        test_patches.source,
    )


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return bundled_patch_classifier().module


@pytest.fixture(scope="module")
def report(model: nn.Module, few: ClassificationDataset) -> ClassifierAuditReport:
    config = ClassifierAuditConfig(epsilons=EPS, steps=3, batch_size=8, n_boot=200)
    return run_classifier_audit(model, few, config, command="pytest")


def cell(report: ClassifierAuditReport, attack: str, eps: float) -> classify.ClassifierCell:
    return next(c for c in report.cells if c.attack == attack and c.epsilon == eps)


# ------------------------------------------------------------------------ shipped classifier


def test_shipped_classifier_card_and_test_accuracy(test_patches: ClassificationDataset) -> None:
    loaded = bundled_patch_classifier()
    card = loaded.description["card"]
    assert card["name"] == BUNDLED_CLASSIFIER
    assert card["architecture"] == loaded.module.to_dict()
    assert sha256_file(loaded.description["weights"]) == card["weights_sha256"]
    assert card["data"]["test"]["sha256"] == test_patches.sha256()
    assert "train_nuclei_patch_classifier(" in card["command"]
    metrics = evaluate_classifier(loaded.module, test_patches)
    assert metrics["accuracy"] >= SHIPPED_TEST_ACCURACY - ACCURACY_MARGIN
    assert metrics["accuracy"] == pytest.approx(card["test_metrics"]["accuracy"], abs=1.5 / 51)
    assert all(v is not None and v > 0.5 for v in metrics["per_class_accuracy"].values())


def test_classifier_from_card_rejects_other_cards(tmp_path: Path) -> None:
    from segshield.models import bundled_model_dir

    with pytest.raises(ModelLoadError, match="small_cnn"):
        classifier_from_card(bundled_model_dir() / "unet_nuclei.json")
    src = bundled_model_dir() / f"{BUNDLED_CLASSIFIER}.json"
    card = ModelCard.read(src)
    (tmp_path / card.weights_file).write_bytes((src.parent / card.weights_file).read_bytes())
    raw = card.to_dict()
    raw["weights_sha256"] = "0" * 64
    (tmp_path / "c.json").write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="SHA-256"):
        classifier_from_card(tmp_path / "c.json")


def test_train_patch_classifier_writes_a_loadable_card(
    few: ClassificationDataset, tmp_path: Path
) -> None:
    config = ClassifierTrainConfig(name="tiny", epochs=1, batch_size=4, width=4, hidden=8)
    result = train_patch_classifier(config, few, few, tmp_path, command="test call")
    assert result.weights.is_file() and result.card.is_file()
    card = ModelCard.read(result.card)
    assert card.command == "test call" and card.training["epochs"] == 1
    assert card.architecture == SmallCNN(1, 2, 4, 8).to_dict()
    assert card.data["train"]["class_counts"] == {"background": 6, "nucleus": 6}
    loaded = classifier_from_card(result.card)
    x = torch.from_numpy(few.images)
    with torch.no_grad():
        again = evaluate_classifier(loaded.module, few)
    assert again["accuracy"] == pytest.approx(result.test_metrics["accuracy"])
    assert loaded.module(x).shape == (len(few), 2)


# --------------------------------------------------------------------------------- audit


def test_config_defaults_and_validation() -> None:
    config = ClassifierAuditConfig()
    assert config.attacks == ("fgsm", "bim", "pgd")
    assert config.epsilons == SEED_CLASSIFIER_EPSILONS
    assert 0.0 in config.epsilons and 0.3 in config.epsilons and 8 / 255 in config.epsilons
    assert config.to_dict()["epsilons"] == list(SEED_CLASSIFIER_EPSILONS)
    with pytest.raises(ValueError, match="epsilons"):
        ClassifierAuditConfig(epsilons=(0.1, 1.5))
    with pytest.raises(ValueError, match="steps"):
        ClassifierAuditConfig(steps=0)
    with pytest.raises(ValueError):
        ClassifierAuditConfig(loss="no-such-loss")


def test_epsilon_zero_is_clean(report: ClassifierAuditReport) -> None:
    assert report.kind == CLASSIFIER_REPORT_KIND and report.schema_version == 1
    for attack in ("fgsm", "bim", "pgd"):
        c = cell(report, attack, 0.0)
        assert c.status == "ok", c.error
        assert c.accuracy == report.clean["accuracy"]
        assert c.per_class_accuracy == report.clean["per_class_accuracy"]
        assert c.flip_rate == 0.0
        assert c.ssim_mean == pytest.approx(1.0, abs=1e-12)
        assert c.ssim_min == pytest.approx(1.0, abs=1e-12)
        assert c.linf_max == 0.0 and c.l2_max == 0.0


def test_fgsm_large_epsilon_lowers_accuracy(report: ClassifierAuditReport) -> None:
    clean = report.clean["accuracy"]
    assert clean > 0.8
    assert cell(report, "fgsm", 0.3).accuracy < clean
    for attack in ("fgsm", "bim", "pgd"):
        big = cell(report, attack, 0.3)
        assert big.accuracy <= cell(report, attack, 2 / 255).accuracy <= clean
        assert big.ssim_mean < cell(report, attack, 2 / 255).ssim_mean < 1.0
        assert big.flip_rate > 0.0


def test_perturbations_stay_in_budget(report: ClassifierAuditReport) -> None:
    for c in report.cells:
        assert c.status == "ok", c.error
        assert c.params["norm"] == "Linf"
        assert c.linf_max <= c.epsilon + 1e-6
        assert max(c.per_image["linf"]) <= c.epsilon + 1e-6
        assert len(c.per_image["pred"]) == report.clean["n_images"]


def test_statistics_are_consistent(
    report: ClassifierAuditReport, few: ClassificationDataset
) -> None:
    counts = few.class_counts()
    for c in [*report.cells, None]:
        stats = report.clean if c is None else c.__dict__
        acc, ci = stats["accuracy"], stats["accuracy_ci"]
        assert ci["low"] <= acc <= ci["high"] and ci["n_boot"] == 200 and ci["level"] == 0.95
        per = stats["per_class_accuracy"]
        weighted = sum(per[k] * n for k, n in counts.items()) / len(few)
        assert weighted == pytest.approx(acc)
    fgsm = cell(report, "fgsm", 0.3)
    clean_pred = np.array(report.clean["per_image"]["pred"])
    assert fgsm.flip_rate == pytest.approx(np.mean(np.array(fgsm.per_image["pred"]) != clean_pred))


def test_json_roundtrip(report: ClassifierAuditReport) -> None:
    raw = report.to_dict()
    text = json.dumps(raw, allow_nan=False)
    back = ClassifierAuditReport.from_dict(json.loads(text))
    assert back.to_dict() == raw
    assert back.provenance["data_sha256"] and back.provenance["seed"] == 0
    assert back.provenance["command"] == "pytest"
    assert back.dataset["class_counts"] == {"background": 6, "nucleus": 6}
    with pytest.raises(ReportError, match="kind"):
        ClassifierAuditReport.from_dict({**raw, "kind": "segshield.audit"})
    with pytest.raises(ReportError, match="schema_version"):
        ClassifierAuditReport.from_dict({**raw, "schema_version": 99})
    with pytest.raises(ReportError, match="malformed"):
        ClassifierAuditReport.from_dict({k: v for k, v in raw.items() if k != "clean"})


def test_nan_is_stored_as_null(report: ClassifierAuditReport) -> None:
    raw = ClassifierAuditReport.from_dict(report.to_dict())
    raw.cells[0].ssim_mean = float("nan")
    assert raw.to_dict()["cells"][0]["ssim_mean"] is None


def test_failures_are_recorded_per_cell(
    model: nn.Module, few: ClassificationDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_ssim = classify.ssim

    def ssim_failing_at_large_eps(clean: np.ndarray, adv: np.ndarray, **kw: float) -> np.ndarray:
        if np.abs(adv - clean).max() > 0.2:
            raise RuntimeError("ssim exploded")
        return real_ssim(clean, adv, **kw)

    monkeypatch.setattr(classify, "ssim", ssim_failing_at_large_eps)
    config = ClassifierAuditConfig(
        attacks=("fgsm", "no-such-attack", "asma"), epsilons=EPS, n_boot=0
    )
    rep = run_classifier_audit(model, few, config)
    assert [c.id for c in rep.cells if c.attack == "no-such-attack"] == [
        "no-such-attack/0",
        "no-such-attack/0.00784314",
        "no-such-attack/0.3",
    ]
    for c in rep.cells_of("no-such-attack"):
        assert c.status == "error" and "unknown attack" in c.error and c.accuracy is None
    assert [c.status for c in rep.cells_of("fgsm")] == ["ok", "ok", "error"]
    assert "ssim exploded" in cell(rep, "fgsm", 0.3).error
    assert cell(rep, "fgsm", 0.0).accuracy_ci is None  # n_boot=0
    assert rep.skipped == [{"attack": "asma", "reason": rep.skipped[0]["reason"]}]
    assert "targeted" in rep.skipped[0]["reason"]
    assert not rep.cells_of("asma")
    json.dumps(rep.to_dict(), allow_nan=False)


def test_failing_attack_loses_no_other_attack(
    model: nn.Module, few: ClassificationDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = classify.get_attack

    def get_attack(name: str, *args: object, **kwargs: object) -> object:
        if name == "bim":
            raise RuntimeError("bim is broken")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(classify, "get_attack", get_attack)
    rep = run_classifier_audit(
        model, few, ClassifierAuditConfig(attacks=("fgsm", "bim"), epsilons=(0.0, 0.1), n_boot=0)
    )
    assert all(c.status == "error" and "bim is broken" in c.error for c in rep.cells_of("bim"))
    assert all(c.status == "ok" for c in rep.cells_of("fgsm"))


def test_seeded_and_mode_restored(model: nn.Module, few: ClassificationDataset) -> None:
    config = ClassifierAuditConfig(attacks=("pgd",), epsilons=(0.05,), steps=2, n_boot=50)
    model.train()
    try:
        a = run_classifier_audit(model, few, config)
        assert model.training  # restored
    finally:
        model.eval()
    b = run_classifier_audit(model, few, config)
    assert a.cells[0].per_image == b.cells[0].per_image
    assert a.cells[0].accuracy_ci == b.cells[0].accuracy_ci


def test_wrong_model_output_is_an_error(few: ClassificationDataset) -> None:
    three_classes = SmallCNN(num_classes=3, width=2, hidden=4)
    with pytest.raises(ModelOutputError, match=r"\(N, 2\)"):
        run_classifier_audit(three_classes, few, ClassifierAuditConfig(epsilons=(0.0,)))


def test_model_info_from_card(few: ClassificationDataset) -> None:
    loaded = bundled_patch_classifier()
    info = model_info_from_loaded(loaded)
    assert info["name"] == BUNDLED_CLASSIFIER
    assert info["weights_sha256"] == loaded.description["card"]["weights_sha256"]
    rep = run_classifier_audit(
        loaded.module,
        few.subset(2),
        ClassifierAuditConfig(attacks=("fgsm",), epsilons=(0.0,), n_boot=0),
        model_info=info,
    )
    assert rep.provenance["weights_sha256"] == info["weights_sha256"]
    assert rep.model["architecture"]["architecture"] == "small_cnn"
    assert rep.model["card_test_metrics"]["accuracy"] > 0.9


def test_failed_sweep_falls_back_to_each_epsilon(
    model: nn.Module,
    few: ClassificationDataset,
    report: ClassifierAuditReport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from segshield.attacks.fgsm import FGSM

    real_perturb = FGSM._perturb

    def broken_sweep(self: FGSM, *args: object, **kwargs: object) -> list:
        raise RuntimeError("sweep broken")

    def perturb(self: FGSM, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.eps > 0.2:
            raise RuntimeError("too large")
        return real_perturb(self, images, targets)

    monkeypatch.setattr(FGSM, "sweep", broken_sweep)
    monkeypatch.setattr(FGSM, "_perturb", perturb)
    config = ClassifierAuditConfig(attacks=("fgsm",), epsilons=EPS, batch_size=8, n_boot=200)
    rep = run_classifier_audit(model, few, config)
    assert [c.status for c in rep.cells] == ["ok", "ok", "error"]
    assert "too large" in rep.cells[2].error
    # Per-ε FGSM equals the shared-gradient sweep of the main report.
    for c in rep.cells[:2]:
        assert c.per_image == cell(report, "fgsm", c.epsilon).per_image
