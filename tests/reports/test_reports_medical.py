"""What a report shows for medical data, on real small audits of the bundled lesion volumes
(tests/reports/conftest.py): HD95 / ASD in Table I with their unit and the undefined-image
note, the per-image HD95 columns, the HD95 curve, the per-volume table, 3-D volumes, and the
data summary (intensity scaling, spacing, volumes, shape, label groups); in HTML and
Markdown. Expected texts are the stored values through the report's own formatters."""

from __future__ import annotations

import json
import re
from pathlib import Path

from segshield.reports import SECTION_IDS, build_view, render_html, render_markdown
from segshield.reports.format import format_float, format_percent, format_points
from segshield.reports.view import Chart, Table
from segshield.reports.view_common import flatten
from segshield.reports.view_dataset import intensity_text, shape_text, spacing_text
from segshield.results import AuditReport

Audit = tuple[AuditReport, Path]  # tests/reports/conftest.py: (report, output folder)
DATA = Path(__file__).parent / "data"


def _table(report: AuditReport, sid: str, cls: str) -> Table:
    section = build_view(report).section(sid)
    assert section is not None, f"no #{sid}"
    return next(b for b in section.blocks if isinstance(b, Table) and b.cls == cls)


def _texts(row: list) -> list[str]:
    return [c.text for c in row]


def test_table_i_has_hd95_and_asd_with_their_unit(slices_audit: Audit) -> None:
    report, _ = slices_audit
    clean, cell = report.clean["pytorch"], report.cells[0].engines["pytorch"]
    assert clean.metrics.surface_unit == "mm" and clean.metrics.n_surface_undefined == 0
    rows = {r[0].text: r for r in _table(report, "summary", "table-i").rows}
    for label, name in (("HD95 (mm)", "hd95"), ("ASD (mm)", "asd")):
        expected = [format_float(getattr(ev.metrics, name)) for ev in (clean, cell)]
        assert _texts(rows[label][1:]) == expected
        assert all(c.sub is None for c in rows[label][1:])  # defined on every image
    md, html = render_markdown(report), render_html(report)
    line = f"| HD95 (mm) | {format_float(clean.metrics.hd95)} | {format_float(cell.metrics.hd95)} |"
    assert line in md
    assert "<td>HD95 (mm)</td>" in html and "<td>ASD (mm)</td>" in html
    assert "whose prediction misses a class" not in md  # no undefined image: no note
    k, n = clean.metrics.n_empty_truth, clean.metrics.n_images
    assert 0 < k < n  # slices without lesion: left out of per-image Dice means and HD95
    assert f"{k} of {n} images have an empty ground truth" in md
    assert "per-image means, HD95 and ASD, fooled shares" in md


def test_undefined_surface_distances_are_counted_and_noted(multilabel_audit: Audit) -> None:
    report, _ = multilabel_audit
    clean = report.clean["pytorch"]
    n = clean.metrics.n_surface_undefined
    assert n == clean.metrics.n_images == 6 and clean.metrics.hd95 is None
    assert clean.value("hd95") is None  # what the gate reads
    rows = {r[0].text: r for r in _table(report, "summary", "table-i").rows}
    assert [(c.text, c.sub) for c in rows["HD95 (mm)"][1:2]] == [("—", "undefined: 6 images")]
    note = "undefined for 6 images whose prediction misses a class"
    gate = "a gate rule on hd95 fails there"
    md, html = render_markdown(report), render_html(report)
    assert note in md and gate in md and note in html and gate in html
    assert "| HD95 (mm) | — (undefined: 6 images) |" in md
    view = build_view(report)
    charts = [b.slug for b in view.section("curves").blocks if isinstance(b, Chart)]
    assert "hd95" not in charts and 'id="curve-hd95"' not in html  # nothing to draw


def test_per_image_table_has_hd95_columns(slices_audit: Audit) -> None:
    report, _ = slices_audit
    table = _table(report, "per-image", "per-image")
    assert table.header[2:8] == [
        "Dice clean", "Dice attacked", "Δ Dice",
        "HD95 (mm) clean", "HD95 (mm) attacked", "Δ HD95 (mm)",
    ]  # fmt: skip
    names = report.dataset["names"]
    clean = report.clean["pytorch"].per_image.hd95
    attacked = report.cells[0].engines["pytorch"].per_image.hd95
    assert len(table.rows) == len(names) == len(clean)
    for row in table.rows:
        i = names.index(row[1].text)
        assert _texts(row[5:7]) == [format_float(clean[i]), format_float(attacked[i])]
        both = clean[i] is not None and attacked[i] is not None
        assert row[7].text == (f"{attacked[i] - clean[i]:+.4g}" if both else "—")
        # an empty ground truth has no HD95 (and is marked); every other slice has one here
        assert (clean[i] is None) == (row[1].sub == "empty truth")
    md = render_markdown(report)
    assert "| HD95 (mm) clean | HD95 (mm) attacked | Δ HD95 (mm) |" in md


def test_hd95_curve_next_to_dice_with_the_same_legend(slices_audit: Audit) -> None:
    report, _ = slices_audit
    charts = [b for b in build_view(report).section("curves").blocks if isinstance(b, Chart)]
    assert [c.slug for c in charts][:3] == ["dice", "hd95", "iou"]
    dice, hd95 = charts[0], charts[1]
    assert hd95.legend == dice.legend and hd95.y_label == "HD95 (mm)" and not hd95.fraction
    stored = [report.clean["pytorch"].metrics.hd95, report.cells[0].engines["pytorch"].metrics.hd95]
    assert [s.points for s in hd95.series] == [
        [(0.0, stored[0]), (report.cells[0].epsilon, stored[1])]
    ]
    html = render_html(report)
    assert 'id="curve-hd95"' in html and "HD95 vs ε" in html
    # the folded value table carries the plotted numbers (Markdown has no charts)
    assert f"| 0 (clean) | {format_percent(report.clean['pytorch'].metrics.dice)} | — | " in (
        md := render_markdown(report)
    )
    assert "| HD95 (mm) pytorch |" in md


def test_per_volume_section(slices_audit: Audit) -> None:
    report, _ = slices_audit
    assert SECTION_IDS.index("per-volume") == SECTION_IDS.index("per-image") + 1
    view = build_view(report)
    ids = view.section_ids
    assert ids.index("per-volume") == ids.index("per-image") + 1
    pv = report.clean["pytorch"].per_volume
    adv = report.cells[0].engines["pytorch"].per_volume
    volumes = list(dict.fromkeys(report.dataset["volume"]))
    assert pv.names == adv.names == volumes and len(volumes) == 2
    table = _table(report, "per-volume", "per-volume")
    assert table.header == ["Volume", "Slices", "Dice clean", "Dice FGSM ε=8/255"]
    for k, row in enumerate(table.rows[:-1]):
        count = report.dataset["volume"].count(volumes[k])
        assert _texts(row) == [volumes[k], str(count), format_percent(pv.dice[k]),
                               format_percent(adv.dice[k])]  # fmt: skip
        assert row[3].sub == f"Δ {format_points(adv.dice[k] - pv.dice[k])}"
    evals = (report.clean["pytorch"], report.cells[0].engines["pytorch"])
    means = [ev.metrics.dice_per_volume_mean for ev in evals]
    assert _texts(table.rows[-1]) == ["Mean over volumes", "", *map(format_percent, means)]
    md, html = render_markdown(report), render_html(report)
    assert (
        "## Per volume" in md
        and f"| **Mean over volumes** |  | **{format_percent(means[0])}** |" in md
    )
    assert '<section id="per-volume">' in html and f"<code>{volumes[0]}</code>" in html


def test_data_summary_of_slices(slices_audit: Audit) -> None:
    report, _ = slices_audit
    facts = {r[0].text: r[1].text for r in _table(report, "provenance", "kv").rows}
    ids = report.dataset["volume"]
    counts = {v: ids.count(v) for v in dict.fromkeys(ids)}
    assert facts["Images"] == f"{len(ids)} slices"
    assert facts["Image shape"] == "1 × 64 × 64 (2-D image: C × H × W)"
    listed = ", ".join(f"{v}: {k} slices" for v, k in counts.items())
    assert facts["Volumes"] == f"{len(counts)} ({listed})"
    assert facts["Intensity scaling"] == "auto → percentiles 0.5–99.5 → [0, 1]"
    spacing = report.dataset["spacing"]
    h = [row[0] for row in spacing]
    assert facts["Pixel spacing"].startswith(f"H × W: {min(h):.4g}–{max(h):.4g} × ")
    assert facts["Pixel spacing"].endswith(" mm (per pixel, at the audited size)")
    assert "Label groups (multi-label)" not in facts
    md = render_markdown(report)
    assert "| Intensity scaling | auto → percentiles 0.5–99.5 → [0, 1] |" in md
    assert f"{len(ids)} slices of {len(counts)} volumes" in build_view(report).facts


def test_label_groups_in_the_data_summary(multilabel_audit: Audit) -> None:
    report, _ = multilabel_audit
    assert report.task == "multilabel"
    facts = {r[0].text: r[1].text for r in _table(report, "provenance", "kv").rows}
    assert facts["Label groups (multi-label)"] == (
        "lesion = label 1; tissue = label 0 (one output channel each, from the label map)"
    )
    assert "Label groups (multi-label)" in render_html(report)


def test_3d_volumes(volumes_audit: Audit) -> None:
    report, folder = volumes_audit
    assert report.dataset["image_shape"] == [1, 8, 32, 32]
    view = build_view(report)
    assert "per-volume" not in view.section_ids  # each image is a whole volume
    assert "2 volumes (3-D)" in view.facts
    facts = {r[0].text: r[1].text for r in _table(report, "provenance", "kv").rows}
    assert facts["Image shape"] == "1 × 8 × 32 × 32 (3-D volume: C × D × H × W)"
    assert facts["Voxel spacing"].startswith("D × H × W: ")
    rows = {r[0].text: r for r in _table(report, "summary", "table-i").rows}
    assert rows["HD95 (mm)"][1].text == format_float(report.clean["pytorch"].metrics.hd95)
    html = render_html(report, folder)
    first = {p.columns[0] for c in report.cells for p in c.panels}
    assert first and all(re.fullmatch(r"clean image \(slice \d+\)", t) for t in first)
    assert all(f"<span>{t}</span>" in html for t in first)
    assert "3-D volumes: each panel shows one slice" in render_markdown(report)
    assert html.count('src="data:image/png;base64,') == sum(len(c.panels) for c in report.cells)


def test_reports_without_the_new_fields_are_unchanged() -> None:
    """A report written before surface distances and volumes: no HD95 row, column, chart
    or per-volume section."""
    report = AuditReport.from_dict(json.loads((DATA / "report_pass.json").read_text()))
    view = build_view(report)
    assert "per-volume" not in view.section_ids
    md = render_markdown(report)
    assert "HD95" not in md and "ASD (mm)" not in md


def test_data_summary_texts() -> None:
    """Hand-written cases of the intensity, spacing and shape texts."""
    ct = {"mode": "window", "center": 40.0, "width": 400.0, "preset": "ct-soft-tissue"}
    pct = {"mode": "percentile", "low": 1.0, "high": 99.0}
    auto = {"mode": "auto", "applied": [ct, pct, dict(ct)]}
    assert intensity_text(auto) == (
        "auto → CT window center 40, width 400 HU (ct-soft-tissue); percentiles 1–99 → [0, 1]"
    )
    assert intensity_text({"mode": "dtype", "applied": [{"mode": "dtype"}]}) == (
        "by the data type's range"
    )
    assert intensity_text({"mode": "minmax"}) == "min–max → [0, 1]"
    assert (
        spacing_text([0.5, 0.5, 2.0], True)
        == "D × H × W: 0.5 × 0.5 × 2 mm (per voxel, at the audited size)"
    )
    assert spacing_text([[0.25, 1.0], [0.75, 1.0]], False) == (
        "H × W: 0.25–0.75 × 1 mm (per pixel, at the audited size)"
    )
    assert spacing_text([[0.5], [0.5, 1.0]], False) is None  # ragged: not guessed
    assert shape_text([3, 256, 256]) == "3 × 256 × 256 (2-D image: C × H × W)"


def test_long_per_volume_records_are_summarised_in_provenance() -> None:
    """One record per volume and one spacing row per image would flood the key-value table:
    past 8 entries they show their count and the first few."""
    volumes = {f"case{k:02d}": {"spacing": [1.0, 1.0, 2.5]} for k in range(10)}
    spacing = [[0.5, 0.5]] * 12
    rows = dict(flatten({"volumes": volumes, "spacing": spacing, "few": [[1, 2]]}))
    names = ", ".join(f"case{k:02d}" for k in range(8))
    assert rows["volumes"] == f"10 entries: {names}, … (all in report.json)"
    assert rows["spacing"] == "12 items: [0.5,0.5],[0.5,0.5], …"
    assert rows["few"] == "[[1,2]]"
