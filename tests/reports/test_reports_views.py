"""The report's reading views on a small hand-built multi-class audit with known values: the
first-screen matrix (engines that agree collapsed into one row, Δ against the source), the
per-image table (strongest attack per image, fooled, empty truth marked, worst first), the
per-class tables, Table I once for engines that agree, the bounded curve legends, and ε
written by format_epsilon everywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

from segshield.engines.records import EngineRecord
from segshield.reports import build_view, render_html, render_markdown
from segshield.reports.format import format_epsilon
from segshield.reports.svg import tick_decimals
from segshield.reports.view import Table
from segshield.reports.view_overview import engine_groups
from segshield.results import (
    AuditCell,
    AuditReport,
    ClassScores,
    EngineEval,
    Evaluation,
    Metrics,
    PerImage,
    Perturbation,
    WorstCase,
)

DATA = Path(__file__).parent / "data"
NAMES = ["img_a", "img_b", "img_c", "img_d"]  # img_c: an empty ground truth


def _per_image(dice: list[float | None]) -> PerImage:
    # tp + fn = 0 marks an image without foreground in the truth (its Dice is None)
    fg = [0 if d is None else 100 for d in dice]
    return PerImage(dice=dice, tp=[f // 2 for f in fg], fn=[f - f // 2 for f in fg],
                    fp=[3] * len(dice), tn=[900] * len(dice))  # fmt: skip


def _eval(
    engine: str, dice: float, per_image: list[float | None], shift: float = 0.0
) -> EngineEval:
    classes = [
        ClassScores(0, "background", foreground=False, dice=0.99, iou=0.98),
        ClassScores(1, "nucleus", dice=dice + 0.05 + shift, iou=dice - 0.1),
        ClassScores(2, "membrane", dice=dice - 0.05 + shift, iou=dice - 0.2),
    ]
    metrics = Metrics(
        dice=dice + shift,
        iou=dice - 0.15,
        accuracy=0.95,
        num_classes=3,
        activation="softmax",
        per_class=classes,
        n_images=4,
        n_empty_truth=1,
    )
    return EngineEval(engine, metrics=metrics, per_image=_per_image(per_image))


def _cell(attack: str, k: int, dice: float, per_image: list[float | None]) -> AuditCell:
    eps = k / 255
    return AuditCell(
        id=AuditCell.make_id(attack, "bce", eps),
        attack=attack,
        loss="bce",
        epsilon=eps,
        params={"norm": "Linf"},
        perturbation=Perturbation(ssim_mean=0.9, linf_max=eps),
        engines={
            "pytorch": _eval("pytorch", dice, per_image),
            "ort-fp32": _eval("ort-fp32", dice, per_image),
            "ort-int8": _eval("ort-int8", dice, per_image, shift=0.02),
        },
    )


def make_report() -> AuditReport:
    """pytorch and ort-fp32 agree exactly; ort-int8 reads 2 points higher on every cell.
    Per image (pytorch) at 8/255: img_a 90% -> PGD 50%, img_b 80% -> FGSM 70%, img_d 60% ->
    PGD 30%; img_c has no foreground."""
    clean = [0.9, 0.8, None, 0.6]
    return AuditReport(
        provenance={},
        config={"losses": ["bce"], "fooled_threshold": 0.2, "epsilons": [2 / 255, 8 / 255]},
        model={"name": "unet-3"},
        dataset={"name": "cells", "n_images": 4, "names": NAMES},
        task="multiclass",
        engines=[EngineRecord(name=n, kind="x") for n in ("pytorch", "ort-fp32", "ort-int8")],
        clean={
            "pytorch": _eval("pytorch", 0.85, clean),
            "ort-fp32": _eval("ort-fp32", 0.85, clean),
            "ort-int8": _eval("ort-int8", 0.85, clean, shift=0.001),
        },
        cells=[
            _cell("pgd", 2, 0.7, [0.8, 0.79, None, 0.5]),
            _cell("pgd", 8, 0.5, [0.5, 0.78, None, 0.3]),
            _cell("fgsm", 8, 0.6, [0.7, 0.7, None, 0.45]),
        ],
    )


def _texts(table: Table) -> list[list[str]]:
    return [[c.text for c in row] for row in table.rows]


def test_engines_that_agree_form_one_group() -> None:
    groups = engine_groups(make_report())
    assert [g.members for g in groups] == [("pytorch", "ort-fp32"), ("ort-int8",)]
    assert groups[0].label == "pytorch, ort-fp32 (agree)" and groups[0].has_source


def test_matrix_is_attack_rows_by_epsilon_with_deltas() -> None:
    view = build_view(make_report())
    assert view.section_ids[:3] == ["verdict", "matrix", "summary"]
    table = view.section("matrix").blocks[0]
    assert isinstance(table, Table)
    assert table.header == ["Attack", "Engines", "Clean", "ε=2/255", "ε=8/255"]
    assert _texts(table) == [
        ["PGD", "pytorch, ort-fp32 (agree)", "85.00%", "70.00%", "50.00%"],
        ["", "ort-int8", "85.10%", "72.00%", "52.00%"],
        ["FGSM", "pytorch, ort-fp32 (agree)", "85.00%", "—", "60.00%"],
        ["", "ort-int8", "85.10%", "—", "62.00%"],
    ]
    # the change against pytorch on the same images, under each value of the other group
    assert [c.sub for c in table.rows[1][2:]] == ["Δ +0.10 pp", "Δ +2.00 pp", "Δ +2.00 pp"]
    assert all(c.sub is None for c in table.rows[0])
    md = render_markdown(make_report())
    assert "| PGD | **`pytorch, ort-fp32 (agree)`** | 85.00% | 70.00% | 50.00% |" in md
    assert "|  | `ort-int8` | 85.10% (Δ +0.10 pp) | 72.00% (Δ +2.00 pp) |" in md


def test_per_image_table_worst_first_with_empty_truth_last() -> None:
    report = make_report()
    table = build_view(report).section("per-image").blocks[-1]
    assert isinstance(table, Table) and table.sortable
    assert table.header == ["#", "Image", "Dice clean", "Dice attacked", "Δ Dice",
                            "Strongest attack", "Fooled"]  # fmt: skip
    assert _texts(table) == [
        ["4", "img_d", "60.00%", "30.00%", "-30.00 pp", "PGD · bce", "yes"],
        ["1", "img_a", "90.00%", "50.00%", "-40.00 pp", "PGD · bce", "yes"],
        ["2", "img_b", "80.00%", "70.00%", "-10.00 pp", "FGSM · bce", "no"],
        ["3", "img_c", "—", "—", "—", "PGD · bce", "—"],
    ]
    assert [r[1].sub for r in table.rows] == [None, None, None, "empty truth"]
    # sort keys: numbers as text, a missing value empty (sorted last by the page's script)
    assert table.rows[0][3].sort == repr(0.3) and table.rows[3][3].sort == ""
    html = render_html(report)
    assert '<table class="per-image sortable">' in html
    assert '<td class="num" data-sort="0.3">30.00%</td>' in html
    assert '<code>img_c</code><span class="sub">empty truth</span>' in html
    assert "| 3 | `img_c` (empty truth) | — | — | — | PGD · bce | — |" in render_markdown(report)


def test_stored_worst_case_gives_the_matrix_row_and_the_per_image_choice() -> None:
    """With the audit's worst case stored, the matrix leads with it (multi-class: its
    per-image mean, as no pooled Dice is stored) and the per-image table takes its choice
    of cell per image, even where another cell reads lower on the source."""
    report = make_report()
    pgd, fgsm = report.cells[1].id, report.cells[2].id
    worst = {n: EngineEval(n, metrics=Metrics(dice_per_image_mean=m), per_image=_per_image([]))
             for n, m in (("pytorch", 0.4), ("ort-fp32", 0.4), ("ort-int8", 0.45))}  # fmt: skip
    report.evaluation = Evaluation(
        worst_case=[
            WorstCase(
                8 / 255,
                cells=[pgd, fgsm],
                engines=worst,
                chosen={"pytorch": [fgsm, fgsm, pgd, pgd]},
            )
        ],
    )
    for ev in report.clean.values():
        ev.metrics.dice_per_image_mean = 0.8
    view = build_view(report)
    matrix = view.section("matrix").blocks[0]
    assert isinstance(matrix, Table)
    assert _texts(matrix)[:2] == [
        ["Worst case (per-image mean)", "pytorch, ort-fp32 (agree)", "80.00%", "—", "40.00%"],
        ["", "ort-int8", "80.00%", "—", "45.00%"],
    ]
    assert matrix.rows[1][4].sub == "Δ +5.00 pp"
    table = view.section("per-image").blocks[-1]
    assert isinstance(table, Table)
    img_a = next(r for r in table.rows if r[1].text == "img_a")
    assert [c.text for c in img_a[2:]] == ["90.00%", "70.00%", "-20.00 pp", "FGSM · bce", "yes"]
    note = view.section("per-image").blocks[0]
    assert "(the stored worst case)" in "".join(c.text for c in note.parts)


def test_tick_labels_tell_quarter_steps_apart() -> None:
    assert tick_decimals([0.8, 0.825], 100) == 1  # 82.5%, not "82"
    assert tick_decimals([0.0, 0.2], 100) == 0
    assert tick_decimals([0.0, 0.0025], 100) == 2


def test_per_image_table_is_capped() -> None:
    report = make_report()
    n = 60
    evals = [*report.clean.values(), *(e for c in report.cells for e in c.engines.values())]
    for ev in evals:
        ev.per_image = _per_image([0.5 + i / 200 for i in range(n)])
    report.dataset["names"] = [f"im{i}" for i in range(n)]
    md = render_markdown(report)
    assert "The 50 worst of 60 images; every image is in report.json." in md
    section = md.split("## Per image", 1)[1].split("\n## ", 1)[0]
    assert section.count("| `im") == 50


def test_per_class_tables_collapse_agreeing_engines() -> None:
    view = build_view(make_report())
    blocks = [b for b in view.section("per-class").blocks if isinstance(b, Table)]
    assert [[c.text for c in b.title or []] for b in blocks] == [
        ["pytorch", " · same for: ort-fp32"],
        ["ort-int8"],
    ]
    assert blocks[0].header == ["Class", "Clean", "PGD ε=8/255", "FGSM ε=8/255"]
    rows = blocks[0].rows
    assert [r[0].text for r in rows] == ["background (background)", "nucleus", "membrane"]
    assert [(c.text, c.sub) for c in rows[1][1:]] == [
        ("90.00%", "IoU 75.00%"),
        ("55.00%", "IoU 40.00%"),
        ("65.00%", "IoU 50.00%"),
    ]


def test_table_i_once_for_engines_that_agree() -> None:
    md = render_markdown(make_report())
    assert "### `pytorch` (source) · same for: ort-fp32" in md
    assert "### `ort-fp32`" not in md and "### `ort-int8`" in md


def test_curve_legends_are_bounded() -> None:
    html = render_html(make_report())
    dice = re.search(r'id="curve-dice">(.*?)</figure>', html, re.S)
    assert dice
    # 2 attacks x 2 engine groups drawn; the legend: 2 colours + 2 line styles
    assert dice.group(1).count("<polyline") == 4
    assert dice.group(1).count('class="legend-item"') == 4


def test_legend_stays_small_with_many_engines() -> None:
    """Five engines that agree and 3 attacks x 2 losses: 6 lines, 6 legend entries (it
    was 30)."""
    report = AuditReport.from_dict(json.loads((DATA / "report_pass.json").read_text()))
    for c in [*report.cells, None]:
        evals = report.clean if c is None else c.engines
        for extra in ("aoti-fp32", "ort-cuda", "ort-trt"):
            if "pytorch" in evals:
                evals[extra] = evals["pytorch"]
    html = render_html(report)
    svg = re.search(r'id="curve-dice">(.*?)</figure>', html, re.S)
    assert svg
    pairs = len({(c.attack, c.loss) for c in report.cells})
    assert svg.group(1).count('class="legend-item"') == pairs + 2  # two engine groups


def test_epsilon_is_written_by_format_epsilon_everywhere() -> None:
    """No raw ε float (a cell id, a config list) is printed: every ε reads as format_epsilon
    writes it, in tables, the verdict's "where" and the provenance."""
    for name in ("pass", "fail", "v1"):
        report = AuditReport.from_dict(json.loads((DATA / f"report_{name}.json").read_text()))
        # panel image links are file names, not text: left out
        md = "\n".join(x for x in render_markdown(report).splitlines() if not x.startswith("!["))
        for c in report.cells:
            raw = f"{c.epsilon:.6g}"
            assert raw not in md, (name, raw)
            assert f"ε={format_epsilon(c.epsilon)}" in md
    md = render_markdown(make_report())
    assert "| `epsilons` | 2/255, 8/255 |" in md


def test_real_multiclass_report() -> None:
    """report_multiclass.json: a real audit of a seeded, untrained 3-class U-Net
    (segshield.models.unet:unet, base_width 4, depth 2) on five synthetic 32x32 label maps,
    slice_03 without foreground; FGSM and PGD at 2/255 and 8/255; pytorch, ort-fp32 and
    ort-fp16 ran, ort-int8 was unavailable (no calibration data); a two-rule FAIL verdict."""
    report = AuditReport.from_dict(json.loads((DATA / "report_multiclass.json").read_text()))
    view = build_view(report)
    assert view.section_ids[:4] == ["verdict", "health", "matrix", "evaluation-warnings"]
    matrix = view.section("matrix").blocks[0]
    assert isinstance(matrix, Table)
    assert [r[0].text for r in matrix.rows] == ["Worst case (per-image mean)", "", "FGSM", "",
                                                "PGD", ""]  # fmt: skip
    assert [r[1].text for r in matrix.rows[:2]] == ["pytorch, ort-fp32 (agree)", "ort-fp16"]
    images = view.section("per-image").blocks[-1]
    assert isinstance(images, Table)
    last = images.rows[-1]  # no Dice without foreground: sorted last, marked
    assert (last[1].text, last[1].sub, last[3].text) == ("slice_03", "empty truth", "—")
    per_class = [b for b in view.section("per-class").blocks if isinstance(b, Table)]
    assert [r[0].text for r in per_class[0].rows] == ["class 0 (background)", "class 1", "class 2"]
    md = render_markdown(report)
    assert "Not run: ort-int8 (see Engines)." in md
    assert "| `slice_03` (empty truth) | — | — | — |" in md
