"""Markdown and HTML renderers of a classifier audit: the seed's accuracy-vs-ε and SSIM-vs-ε
tables and charts, failures and skipped attacks, escaping, and that nothing is recomputed."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from segshield.audits.classify import (
    ClassifierAuditConfig,
    ClassifierAuditReport,
    run_classifier_audit,
)
from segshield.data import bundled_dataset
from segshield.data.classification import (
    ClassificationDataset,
    patch_classification_from_segmentation,
)
from segshield.reports.classify import (
    CLASSIFIER_SECTION_IDS,
    render_classifier_html,
    render_classifier_markdown,
)
from segshield.reports.format import format_epsilon, format_percent
from segshield.training.classifier import bundled_patch_classifier

EPS = (0.0, 4 / 255, 0.1)
HOSTILE = "<script>alert('pwned')</script> | x"


@pytest.fixture(scope="module")
def report() -> ClassifierAuditReport:
    """A real audit of the shipped classifier on 8 test patches: fgsm and pgd succeed, an
    unknown attack fails, the targeted asma is skipped."""
    patches = patch_classification_from_segmentation(bundled_dataset("nuclei", "test"))
    idx = np.concatenate([np.flatnonzero(patches.labels == k)[:4] for k in (0, 1)])
    few = ClassificationDataset(
        patches.images[idx],
        patches.labels[idx],
        tuple(patches.names[i] for i in idx),
        patches.source,
    )
    config = ClassifierAuditConfig(
        attacks=("fgsm", "pgd", "nope", "asma"), epsilons=EPS, steps=2, n_boot=100
    )
    loaded = bundled_patch_classifier()
    return run_classifier_audit(loaded.module, few, config, model_info={"name": "cnn"})


def test_markdown_tables(report: ClassifierAuditReport) -> None:
    md = render_classifier_markdown(report)
    assert md.startswith("# segshield classifier audit: cnn")
    assert "## Accuracy vs ε" in md and "## SSIM vs ε" in md
    assert "### FGSM" in md and "### PGD" in md and "### NOPE" in md
    assert "| ε | Accuracy | 95% CI | Acc. background | Acc. nucleus | Flipped |" in md
    assert "| ε | FGSM mean | FGSM min | PGD mean | PGD min | NOPE mean | NOPE min |" in md
    for c in report.cells_of("fgsm"):
        ci = f"[{format_percent(c.accuracy_ci['low'])}, {format_percent(c.accuracy_ci['high'])}]"
        row = f"| {format_epsilon(c.epsilon)} | {format_percent(c.accuracy)} | {ci} |"
        assert row in md
    # Every ε of the SSIM table, ε = 0 with SSIM exactly shown as 1.
    assert "| 0 | 1 | 1 | 1 | 1 | — | — |" in md
    assert "| 4/255 |" in md and "| 0.1 |" in md
    assert f"Clean accuracy: **{format_percent(report.clean['accuracy'])}**" in md
    assert "## Failed cells" in md and "nope/0.1" in md and "unknown attack" in md
    assert "## Skipped attacks" in md and "| asma | targeted attack" in md
    assert "## Provenance" in md and report.provenance["data_sha256"] in md


def test_markdown_from_dict_and_escaping(report: ClassifierAuditReport) -> None:
    assert render_classifier_markdown(report.to_dict()) == render_classifier_markdown(report)
    hostile = copy.deepcopy(report)
    hostile.cells_of("nope")[0].error = HOSTILE + "\nsecond line"
    md = render_classifier_markdown(hostile)
    line = next(x for x in md.splitlines() if x.startswith("| nope/0 |"))
    assert "\\| x second line" in line  # one table row, pipe escaped


def test_renderers_compute_nothing(report: ClassifierAuditReport) -> None:
    edited = copy.deepcopy(report)
    c = edited.cells_of("pgd")[1]
    c.accuracy, c.ssim_mean = 0.123456, 0.5
    md = render_classifier_markdown(edited)
    assert "12.35%" in md and "| 0.5 |" in md
    assert "12.35%" in render_classifier_html(edited)


def test_html_is_self_contained_with_two_charts(report: ClassifierAuditReport) -> None:
    html = render_classifier_html(report)
    assert html.startswith("<!DOCTYPE html>")
    assert 'http-equiv="Content-Security-Policy"' in html and "default-src 'none'" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert html.count("<svg") == 2
    assert 'aria-label="Accuracy vs ε"' in html
    assert 'aria-label="Mean SSIM (adversarial vs clean) vs ε"' in html
    for sid in CLASSIFIER_SECTION_IDS:
        assert f'<section id="{sid}">' in html
    # One line per attack with data in each chart (the failing one has none).
    assert len(re.findall(r'<polyline class="series" data-series="FGSM"', html)) == 2
    assert len(re.findall(r'<polyline class="series" data-series="PGD"', html)) == 2
    assert 'data-series="NOPE"' not in html
    assert 'class="interval"' in html  # accuracy CI bars
    assert format_percent(report.clean["accuracy"]) in html


def test_html_escapes_report_text(report: ClassifierAuditReport) -> None:
    hostile = copy.deepcopy(report)
    hostile.model["name"] = HOSTILE
    hostile.cells_of("nope")[0].error = HOSTILE
    hostile.skipped[0]["reason"] = HOSTILE
    html = render_classifier_html(hostile)
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html
