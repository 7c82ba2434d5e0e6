"""Markdown rendering: a pure function of the report that shows what the report holds."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from segshield.engines.records import EngineRecord
from segshield.reports import format_epsilon, render_markdown
from segshield.reports.format import format_float, format_percent, format_points, format_steps
from segshield.results import AuditCell, AuditReport, EngineEval, Metrics, Perturbation

ORT = "onnxruntime"


def _metrics(dice: float) -> Metrics:
    return Metrics(
        **{
            "accuracy": 0.95,
            "loss": 0.1234,
            "dice": dice,
            "iou": dice - 0.1,
            "mean_iou": dice - 0.05,
            "precision": 0.9,
            "recall": 0.8,
            "pixel_error_l2": 3.21,
            "pixel_error_rms": 0.05,
        }
    )


def _cell(attack: str, k: int, dice: float) -> AuditCell:
    eps = k / 255
    return AuditCell(
        id=AuditCell.make_id(attack, "bce", eps),
        attack=attack,
        loss="bce",
        epsilon=eps,
        perturbation=Perturbation(ssim_mean=0.97, ssim_min=0.9, linf_max=eps, l2_mean=0.5),
        engines={
            "pytorch": EngineEval("pytorch", metrics=_metrics(dice), attack_success=0.25),
            ORT: EngineEval(
                ORT,
                metrics=_metrics(dice - 0.001),
                attack_success=0.26,
                disagreement=0.0005,
                dice_gap=-0.001,
            ),
        },
    )


def make_report() -> AuditReport:
    """Two ok engines, one unavailable; PGD at 2 and 4/255, FGSM at 4/255 and a failed 8/255."""
    clean_ort = EngineEval(ORT, metrics=_metrics(0.8464), disagreement=0.0, dice_gap=-0.0001)
    clean_ort.metrics.recall = None  # a metric the engine could not compute
    return AuditReport(
        provenance={
            "versions": {"segshield": "0.1.0", "torch": "2.13.0"},
            "seed": 1234,
            "command": "segshield audit --out out",
            "started": "2026-05-09T07:00:00Z",
        },
        config={"losses": ["bce"]},
        model={"name": "unet-small", "sha256": "abc123"},
        dataset={
            "name": "nuclei",
            "split": "test",
            "n_images": 6,
            "names": [f"img{i}" for i in range(20)],
        },
        engines=[
            EngineRecord(name="pytorch", kind="torch"),
            EngineRecord(
                name=ORT,
                kind="onnxruntime",
                providers=["CPUExecutionProvider"],
                parity={"max_abs_diff": 4e-8, "tolerance": 1e-4},
            ),
            EngineRecord(
                name="tensorrt", kind="tensorrt", status="unavailable", reason="no CUDA device"
            ),
        ],
        clean={"pytorch": EngineEval("pytorch", metrics=_metrics(0.8465)), ORT: clean_ort},
        cells=[
            _cell("pgd", 2, 0.7),
            _cell("pgd", 4, 0.6),
            _cell("fgsm", 4, 0.65),
            AuditCell(
                id=AuditCell.make_id("fgsm", "bce", 8 / 255),
                attack="fgsm",
                loss="bce",
                epsilon=8 / 255,
                status="error",
                error="RuntimeError: gradient is NaN",
            ),
        ],
        verdict={
            "policy_name": "example",
            "passed": False,
            "n_rules": 2,
            "n_failed": 1,
            "outcomes": [
                {"rule": "clean dice", "metric": "dice", "bound": "min", "threshold": 0.6,
                 "passed": True, "worst_value": 0.8464, "worst_where": "clean on onnxruntime",
                 "n_checked": 2, "failures": [], "reason": None},
                {"rule": "PGD Dice at eps <= 4/255", "metric": "dice", "bound": "min",
                 "threshold": 0.65, "passed": False, "worst_value": 0.599,
                 "worst_where": "pgd/bce/0.0156863 on onnxruntime", "n_checked": 4,
                 "failures": [], "reason": "2 of 4 measurement(s) below min 0.65"},
            ],
        },
    )  # fmt: skip


@pytest.mark.parametrize(
    ("eps", "text"),
    [
        (4 / 255, "4/255"),
        (0.0156863, "0.0156863"),  # 4.0000065/255: more than 1e-6 from an integer
        (8 / 255 + 1e-10, "8/255"),
        (0.0, "0"),
        (0.01, "0.01"),
        (None, "—"),
        (float("nan"), "—"),
    ],
)
def test_format_epsilon(eps: float | None, text: str) -> None:
    assert format_epsilon(eps) == text


@pytest.mark.parametrize(
    ("func", "value", "text"),
    [
        (format_percent, 0.84651, "84.65%"),
        (format_percent, 0.0, "0.00%"),
        (format_percent, 3e-6, "<0.01%"),
        (format_percent, None, "—"),
        (format_points, -0.0012, "-0.12 pp"),
        (format_points, 2e-7, "+<0.01 pp"),
        (format_float, 3.14159, "3.142"),
        (format_steps, 4 / 255, "4.00/255"),
    ],
)
def test_value_formats(func: Callable[[float | None], str], value: float | None, text: str) -> None:
    assert func(value) == text


def test_sections_in_order() -> None:
    md = render_markdown(make_report())
    headings = [
        "# segshield audit: unet-small on nuclei (test)",
        "## Verdict: FAIL",
        "## Summary per engine (Table I)",
        "## ε curves",
        "## Engines",
        "## Engine transfer",
        "## Failed cells",
        "## Provenance",
    ]
    positions = [md.index(h) for h in headings]
    assert positions == sorted(positions)


def test_verdict_lists_failed_rules_only() -> None:
    md = render_markdown(make_report())
    assert "Policy `example`: 1 of 2 rules passed." in md
    assert (
        "| PGD Dice at eps &lt;= 4/255 | `dice` | 0.599 | ≥ 0.65 "
        "| PGD · bce · ε=4/255 on onnxruntime |" in md  # the gate's cell id, readable
    )
    assert "| clean dice |" not in md


def test_verdict_pass_and_absent() -> None:
    report = make_report()
    report.verdict = {"policy_name": "p", "passed": True, "outcomes": []}
    assert "## Verdict: PASS" in render_markdown(report)
    report.verdict = None
    assert "Verdict" not in render_markdown(report)


def test_engines_note() -> None:
    md = render_markdown(make_report())
    # the Health column is empty: this report measured none
    assert "| `onnxruntime` | onnxruntime | fp32 | ok | — | — |" in md
    assert "| `tensorrt` | tensorrt | fp32 | unavailable | — | — |" in md
    # legacy export parity (max_abs_diff) shows as the max probability error, with units
    header = "| Engine | max \\|Δ logit\\| | max \\|Δ prob\\| | median \\|Δ prob\\| |"
    assert header in md
    assert "| `onnxruntime` | — | 4e-08 | — | — | — | — | — |" in md
    assert "| `max_abs_diff` | 4e-08 |" in md  # every stored field, keys as row labels
    # providers and the reason an engine did not run, once, in the details table
    assert "| `onnxruntime` | CPUExecutionProvider | — | — | — |" in md
    assert md.count("no CUDA device |") == 1


def test_table_i_rows_and_columns() -> None:
    md = render_markdown(make_report())
    for row in ("Accuracy", "Loss", "Dice", "Mean IoU", "IoU", "Precision", "Recall"):
        assert f"| {row} |" in md
    assert "| Pixel error (L2) | 3.21 |" in md
    # Largest epsilon per attack for the default loss; the failed FGSM 8/255 cell is shown as such.
    assert "| Metric | Clean | PGD ε=4/255 | FGSM ε=8/255 (failed) |" in md
    assert "| Dice | 84.65% | 60.00% | — |" in md
    assert "| Dice | 84.64% | 59.90% | — |" in md  # onnxruntime
    assert "| Recall | — | 80.00% | — |" in md  # clean recall missing on onnxruntime
    assert "### `tensorrt`" not in md  # unavailable engines have no table


def test_epsilon_curve() -> None:
    md = render_markdown(make_report())
    assert "### PGD, loss `bce`" in md
    assert "| ε | Dice pytorch | Attack success pytorch | Dice onnxruntime |" in md
    assert "| 0 (clean) | 84.65% | — | 84.64% | — | — | — |" in md
    assert "| 2/255 | 70.00% | 25.00% | 69.90% | 26.00% | 97.00% | 2.00/255 |" in md
    assert "| 8/255 (failed) | — | — | — | — | — | — |" in md


def test_transfer_and_failures() -> None:
    md = render_markdown(make_report())
    assert "| PGD · bce · ε=4/255 | `onnxruntime` | 59.90% | -0.10 pp | 0.05% |" in md
    assert "| clean | `onnxruntime` | 84.64% | -0.01 pp | 0.00% |" in md
    assert "| FGSM · bce · ε=8/255 | all | RuntimeError: gradient is NaN |" in md
    # the largest ε of each attack first; smaller ones in a second (folded in HTML) table
    assert md.index("| PGD · bce · ε=4/255 |") < md.index("### Smaller ε (2 more cells)")
    assert md.index("### Smaller ε") < md.index("| PGD · bce · ε=2/255 | `onnxruntime`")


def test_engine_eval_error_listed() -> None:
    report = make_report()
    report.cells[0].engines[ORT] = EngineEval(ORT, status="error", error="shape\nmismatch | x")
    md = render_markdown(report)
    assert "| PGD · bce · ε=2/255 | `onnxruntime` | shape mismatch \\| x |" in md


def test_provenance() -> None:
    md = render_markdown(make_report())
    for needle in (
        "| `versions.torch` | 2.13.0 |",
        "| `seed` | 1234 |",
        "| `command` | segshield audit --out out |",
        "| `started` | 2026-05-09T07:00:00Z |",
        "| `sha256` | abc123 |",
        "| `names` | 20 items: img0, img1, img2, img3, img4, img5, img6, img7, … |",
    ):
        assert needle in md, needle


def test_renderer_is_pure() -> None:
    report = make_report()
    before = copy.deepcopy(report.to_dict())
    first = render_markdown(report)
    assert report.to_dict() == before
    assert render_markdown(AuditReport.from_dict(report.to_dict())) == first


def test_minimal_report_renders() -> None:
    report = AuditReport(provenance={}, config={}, model={}, dataset={})
    md = render_markdown(report)
    assert "No engine records." in md
    assert "No attack cells." in md
    assert "None: every cell ran." in md
