"""Classifier audit (seed mammography: accuracy and SSIM vs ε) on the shipped patch classifier
and real nuclei patches; the shipped classifier's card and accuracy; the training recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import segshield.audits.craft as craft
import segshield.audits.loop as run
import segshield.audits.plan as plan
from segshield.api import SEED_CLASSIFIER_EPSILONS, classifier_config
from segshield.audits import AuditReport, run_audit
from segshield.audits.inputs import classification_audit_data
from segshield.audits.provenance import model_description
from segshield.data import bundled_dataset
from segshield.data.classification import (
    ClassificationDataset,
    patch_classification_from_segmentation,
)
from segshield.errors import ModelLoadError, ModelOutputError, ReportError, SegShieldError
from segshield.hashing import sha256_file
from segshield.models import LoadedModel, SmallCNN
from segshield.models.card import ModelCard
from segshield.results import REPORT_KIND, AuditCell, EngineEval
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
def loaded() -> LoadedModel:
    return bundled_patch_classifier()


@pytest.fixture(scope="module")
def model(loaded: LoadedModel) -> nn.Module:
    return loaded.module


def classify(
    model: nn.Module | LoadedModel, data: ClassificationDataset, out: Path, **options: object
) -> AuditReport:
    """The classifier audit: the one audit loop with task "classification"."""
    if isinstance(model, nn.Module):
        model = LoadedModel(model, {"source": "test"})
    config = classifier_config(out, **options)
    return run_audit(config, command="pytest", model=model, data=classification_audit_data(data))


@pytest.fixture(scope="module")
def report(
    model: nn.Module, few: ClassificationDataset, tmp_path_factory: pytest.TempPathFactory
) -> AuditReport:
    out = tmp_path_factory.mktemp("cls")
    return classify(model, few, out, epsilons=EPS, steps=3, batch_size=8, n_boot=200)


def cell(report: AuditReport, attack: str, eps: float) -> AuditCell:
    return next(c for c in report.cells if c.attack == attack and c.epsilon == eps)


def src(cell_or_report: AuditCell | AuditReport) -> EngineEval:
    """The source model's evaluation of a cell, or of the clean images."""
    if isinstance(cell_or_report, AuditReport):
        return cell_or_report.clean["pytorch"]
    return cell_or_report.engines["pytorch"]


def per_class_accuracy(ev: EngineEval) -> dict[str, float | None]:
    """A class's accuracy is its recall: the share of its images classified right."""
    return {c.name: c.recall for c in ev.metrics.per_class}


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


def test_config_defaults_and_validation(tmp_path: Path) -> None:
    config = classifier_config(tmp_path)
    assert config.attacks == ("fgsm", "bim", "pgd")
    assert config.epsilons == SEED_CLASSIFIER_EPSILONS
    assert config.task == "classification" and config.engines == ("pytorch",)
    assert 0.0 in config.epsilons and 0.3 in config.epsilons and 8 / 255 in config.epsilons
    assert config.to_dict()["epsilons"] == list(SEED_CLASSIFIER_EPSILONS)
    with pytest.raises(ValueError, match="epsilons"):
        classifier_config(tmp_path, epsilons=(0.1, 1.5))
    with pytest.raises(ValueError, match="steps"):
        classifier_config(tmp_path, steps=0)
    with pytest.raises(ValueError, match="task"):
        classifier_config(tmp_path, task="regression")
    # A loss name is checked before anything runs (an input error, exit 2 from the CLI).
    with pytest.raises(SegShieldError, match="no-such-loss"):
        run_audit(classifier_config(tmp_path, losses=("no-such-loss",)))


def test_epsilon_zero_is_clean(report: AuditReport) -> None:
    assert report.kind == REPORT_KIND and report.schema_version == 2
    assert report.task == "classification" and report.primary_metric == "accuracy"
    clean = src(report)
    for attack in ("fgsm", "bim", "pgd"):
        c = cell(report, attack, 0.0)
        assert c.status == "ok", c.error
        assert src(c).metrics.accuracy == clean.metrics.accuracy
        assert per_class_accuracy(src(c)) == per_class_accuracy(clean)
        assert src(c).flip_rate == 0.0
        assert c.perturbation.ssim_mean == pytest.approx(1.0, abs=1e-12)
        assert c.perturbation.ssim_min == pytest.approx(1.0, abs=1e-12)
        assert c.perturbation.linf_max == 0.0 and c.perturbation.l2_max == 0.0


def test_fgsm_large_epsilon_lowers_accuracy(report: AuditReport) -> None:
    clean = src(report).metrics.accuracy
    assert clean > 0.8
    assert src(cell(report, "fgsm", 0.3)).metrics.accuracy < clean
    for attack in ("fgsm", "bim", "pgd"):
        big, small = cell(report, attack, 0.3), cell(report, attack, 2 / 255)
        assert src(big).metrics.accuracy <= src(small).metrics.accuracy <= clean
        assert big.perturbation.ssim_mean < small.perturbation.ssim_mean < 1.0
        assert src(big).flip_rate > 0.0
        # attack success is the relative accuracy drop
        assert src(big).attack_success == pytest.approx((clean - src(big).metrics.accuracy) / clean)


def test_perturbations_stay_in_budget(report: AuditReport) -> None:
    n_images = src(report).metrics.n_images
    for c in report.cells:
        assert c.status == "ok", c.error
        assert c.params["norm"] == "Linf"
        assert c.perturbation.linf_max <= c.epsilon + 1e-6
        assert max(c.perturbation.per_image["linf"]) <= c.epsilon + 1e-6
        assert len(src(c).per_image.pred) == n_images


def test_statistics_are_consistent(report: AuditReport, few: ClassificationDataset) -> None:
    counts = few.class_counts()
    for ev in [*(src(c) for c in report.cells), src(report)]:
        acc, ci = ev.metrics.accuracy, ev.ci["accuracy"]
        assert ci.low <= acc <= ci.high and ci.n_boot == 200 and ci.level == 0.95
        per = per_class_accuracy(ev)
        weighted = sum(per[k] * n for k, n in counts.items()) / len(few)
        assert weighted == pytest.approx(acc)
    fgsm = src(cell(report, "fgsm", 0.3))
    clean_pred = np.array(src(report).per_image.pred)
    assert fgsm.flip_rate == pytest.approx(np.mean(np.array(fgsm.per_image.pred) != clean_pred))
    # success rate: share of the clean-correct images that are now wrong
    right = clean_pred == few.labels
    now_wrong = np.array(fgsm.per_image.pred) != few.labels
    assert fgsm.success_rate == pytest.approx(np.mean(now_wrong[right]))


def test_json_roundtrip(report: AuditReport) -> None:
    raw = report.to_dict()
    text = json.dumps(raw, allow_nan=False)
    back = AuditReport.from_dict(json.loads(text))
    assert back.to_dict() == raw
    assert back.provenance["data_sha256"] and back.provenance["seed"] == 0
    assert back.provenance["command"] == "pytest"
    assert back.dataset["class_counts"] == {"background": 6, "nucleus": 6}
    with pytest.raises(ReportError, match="kind"):
        AuditReport.from_dict({**raw, "kind": "segshield.classifier_audit"})
    with pytest.raises(ReportError, match="schema_version"):
        AuditReport.from_dict({**raw, "schema_version": 99})
    with pytest.raises(ReportError, match="malformed"):
        AuditReport.from_dict({k: v for k, v in raw.items() if k != "config"})


def test_nan_is_stored_as_null(report: AuditReport) -> None:
    raw = AuditReport.from_dict(report.to_dict())
    raw.cells[0].perturbation.ssim_mean = float("nan")
    assert raw.to_dict()["cells"][0]["perturbation"]["ssim_mean"] is None


def test_failures_are_recorded_per_cell(
    model: nn.Module, few: ClassificationDataset, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_ssim = run.ssim

    def ssim_failing_at_large_eps(clean: np.ndarray, adv: np.ndarray, **kw: float) -> np.ndarray:
        if np.abs(adv - clean).max() > 0.2:
            raise RuntimeError("ssim exploded")
        return real_ssim(clean, adv, **kw)

    monkeypatch.setattr(run, "ssim", ssim_failing_at_large_eps)
    # An unknown attack is an input error found before anything runs.
    with pytest.raises(SegShieldError, match="no-such-attack"):
        classify(model, few, tmp_path, attacks=("fgsm", "no-such-attack"), epsilons=EPS)
    rep = classify(model, few, tmp_path, attacks=("fgsm", "asma"), epsilons=EPS, n_boot=0)
    assert [c.status for c in rep.cells if c.attack == "fgsm"] == ["ok", "ok", "error"]
    assert "ssim exploded" in cell(rep, "fgsm", 0.3).error
    assert src(cell(rep, "fgsm", 0.0)).ci is None  # n_boot=0
    assert rep.skipped == [{"attack": "asma", "reason": rep.skipped[0]["reason"]}]
    assert "targeted" in rep.skipped[0]["reason"]
    assert not [c for c in rep.cells if c.attack == "asma"]
    json.dumps(rep.to_dict(), allow_nan=False)


def test_failing_attack_loses_no_other_attack(
    model: nn.Module, few: ClassificationDataset, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = craft.get_attack

    def get_attack(name: str, *args: object, **kwargs: object) -> object:
        if name == "bim":
            raise RuntimeError("bim is broken")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(craft, "get_attack", get_attack)
    monkeypatch.setattr(plan, "get_attack", get_attack)
    rep = classify(model, few, tmp_path, attacks=("fgsm", "bim"), epsilons=(0.0, 0.1), n_boot=0)
    bim = [c for c in rep.cells if c.attack == "bim"]
    assert bim and all(c.status == "error" and "bim is broken" in c.error for c in bim)
    assert all(c.status == "ok" for c in rep.cells if c.attack == "fgsm")


def test_seeded_and_mode_restored(
    model: nn.Module, few: ClassificationDataset, tmp_path: Path
) -> None:
    options = {"attacks": ("pgd",), "epsilons": (0.05,), "steps": 2, "n_boot": 50}
    model.train()
    try:
        a = classify(model, few, tmp_path, **options)
        assert model.training  # restored
    finally:
        model.eval()
    b = classify(model, few, tmp_path, **options)
    assert src(a.cells[0]).per_image == src(b.cells[0]).per_image
    assert src(a.cells[0]).ci == src(b.cells[0]).ci


def test_wrong_model_output_is_an_error(few: ClassificationDataset, tmp_path: Path) -> None:
    three_classes = SmallCNN(num_classes=3, width=2, hidden=4)
    with pytest.raises(ModelOutputError, match=r"\(N, 2\)"):
        classify(three_classes, few, tmp_path, epsilons=(0.0,))


def test_model_info_from_card(
    loaded: LoadedModel, few: ClassificationDataset, tmp_path: Path
) -> None:
    info = model_description(loaded)
    assert info["name"] == BUNDLED_CLASSIFIER
    assert info["weights_sha256"] == loaded.description["card"]["weights_sha256"]
    rep = classify(loaded, few.subset(2), tmp_path, attacks=("fgsm",), epsilons=(0.0,), n_boot=0)
    assert rep.provenance["weights_sha256"] == info["weights_sha256"]
    assert rep.model["architecture"]["architecture"] == "small_cnn"
    assert rep.model["card_test_metrics"]["accuracy"] > 0.9


def test_failed_sweep_falls_back_to_each_epsilon(
    model: nn.Module,
    few: ClassificationDataset,
    report: AuditReport,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
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
    rep = classify(model, few, tmp_path, attacks=("fgsm",), epsilons=EPS, batch_size=8, n_boot=200)
    assert [c.status for c in rep.cells] == ["ok", "ok", "error"]
    assert "too large" in rep.cells[2].error
    # Per-ε FGSM equals the shared-gradient sweep of the main report.
    for c in rep.cells[:2]:
        assert src(c).per_image == src(cell(report, "fgsm", c.epsilon)).per_image


def test_classification_through_the_cli_alias_config_matches_the_library(
    few: ClassificationDataset, report: AuditReport
) -> None:
    """The classifier audit is the segmentation audit's loop: same report type and cells."""
    assert {c.loss for c in report.cells} == {"bce"}
    assert [c.id for c in report.cells] == [
        AuditCell.make_id(a, "bce", e) for a in ("fgsm", "bim", "pgd") for e in EPS
    ]


def test_a_class_without_images_is_undefined_not_perfect(
    model: nn.Module, test_patches: ClassificationDataset, tmp_path: Path
) -> None:
    only_nuclei = np.flatnonzero(test_patches.labels == 1)[:4]
    data = ClassificationDataset(
        test_patches.images[only_nuclei],
        test_patches.labels[only_nuclei],
        tuple(test_patches.names[i] for i in only_nuclei),
        test_patches.source,
    )
    rep = classify(model, data, tmp_path, attacks=("fgsm",), epsilons=(0.0,), n_boot=0)
    accuracy = per_class_accuracy(src(rep))
    assert accuracy["background"] is None  # no background image: undefined (null in JSON)
    assert accuracy["nucleus"] == src(rep).metrics.accuracy
