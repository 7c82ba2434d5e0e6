"""Gate rules on one label of a multi-label (or one class of a multi-class) audit:
``label = "name"`` selects that class's per-class score; a class the report lacks fails the
rule, naming the classes it has."""

from __future__ import annotations

from pathlib import Path

import pytest

from segshield.audits import AuditConfig, run_audit
from segshield.errors import PolicyError
from segshield.gate import evaluate, policy_from_dict
from segshield.models import LoadedModel


@pytest.fixture(scope="module")
def multilabel_report(tmp_path_factory: pytest.TempPathFactory, conv_net):
    """A two-label audit of the bundled lesion slices (labels from the label map)."""
    net = conv_net(2, out_channels=2)
    config = AuditConfig(
        out_dir=tmp_path_factory.mktemp("ml"), dataset="volumes", size=32, limit=3,
        label_groups=("lesion=1", "tissue=0"), attacks=("fgsm",), epsilons=(8 / 255,),
        engines=("pytorch",), bench=False, checks=False, n_boot=0, panels=0, resume=False,
    )  # fmt: skip
    return run_audit(config, model=LoadedModel(net, {"source": "test"}))


def _gate(report, **rule):
    return evaluate(report, policy_from_dict({"rules": [{"metric": "dice", **rule}]}))


def test_a_rule_reads_one_label_s_score(multilabel_report) -> None:
    ev = multilabel_report.cells[0].engines["pytorch"]
    scores = {c.name: c.dice for c in ev.metrics.per_class}
    assert set(scores) == {"lesion", "tissue"}
    assert scores["lesion"] != scores["tissue"]
    for name, dice in scores.items():
        passing = _gate(multilabel_report, attack="fgsm", label=name, min=dice - 1e-9)
        failing = _gate(multilabel_report, attack="fgsm", label=name, min=dice + 1e-6)
        assert passing.passed and not failing.passed
        assert f"label={name}" in failing.outcomes[0].rule


def test_a_missing_label_fails_naming_the_classes(multilabel_report) -> None:
    result = _gate(multilabel_report, attack="fgsm", label="edema", min=0.0)
    assert not result.passed
    text = repr(result.to_dict())
    assert "no class 'edema'" in text and "lesion" in text and "tissue" in text


def test_label_needs_a_per_class_metric(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="per-class score"):
        policy_from_dict({"rules": [{"metric": "attack_success", "label": "core", "max": 0.5}]})
