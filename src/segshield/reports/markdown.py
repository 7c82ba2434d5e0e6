"""Markdown rendering of an audit report: a pure function of the report, computing nothing.

Units: fractions (accuracy, Dice, IoU, precision, recall, attack success, disagreement, SSIM)
are shown as percent with two decimals; the Dice gap in signed percentage points; loss and
pixel errors as plain floats; epsilon and L∞ in 1/255 steps; missing values as "—". The verdict
table alone shows plain fractions, in the units of the policy file it checks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from segshield.audits.results import SOURCE_ENGINE, AuditCell, AuditReport, EngineEval
from segshield.reports.format import (
    MISSING,
    format_epsilon,
    format_float,
    format_percent,
    format_points,
    format_steps,
)

# Table I of the seed paper (U-Net on BUSI): row label, metrics key, formatter.
TABLE_I_ROWS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("Accuracy", "accuracy", format_percent),
    ("Loss", "loss", format_float),
    ("Dice", "dice", format_percent),
    ("Mean IoU", "mean_iou", format_percent),
    ("IoU", "iou", format_percent),
    ("Precision", "precision", format_percent),
    ("Recall", "recall", format_percent),
    ("Pixel error (L2)", "pixel_error_l2", format_float),
)


# Provenance lists longer than this are shortened to their length and first items.
_MAX_LISTED = 8


def _text(value: Any) -> str:
    """A table-safe cell: no newlines, no unescaped pipes."""
    if value is None:
        return MISSING
    return " ".join(str(value).split()).replace("|", "\\|")


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _plain(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING if value is None else _text(value)
    return f"{value:.6g}"


def _attack_label(attack: str) -> str:
    return attack.upper()


def _metric(ev: EngineEval | None, key: str) -> Any:
    if ev is None or ev.status != "ok":
        return None
    return (ev.metrics or {}).get(key)


def _ok(ev: EngineEval | None) -> EngineEval | None:
    return ev if ev is not None and ev.status == "ok" else None


def _engines(report: AuditReport) -> list[str]:
    """Engines that were evaluated: ok records in order, then names only seen in evaluations."""
    names = [e.name for e in report.engines if e.status == "ok"]
    skipped = {e.name for e in report.engines if e.status != "ok"}
    for evals in [report.clean, *(c.engines for c in report.cells)]:
        names.extend(n for n in evals if n not in names and n not in skipped)
    return names


def _ordered(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _default_loss(report: AuditReport) -> str | None:
    """The audit's default loss: config "loss", else the first of config "losses", else the
    loss of the first cell."""
    config = report.config or {}
    if isinstance(config.get("loss"), str):
        return config["loss"]
    losses = config.get("losses")
    if isinstance(losses, list) and losses and isinstance(losses[0], str):
        return losses[0]
    return report.cells[0].loss if report.cells else None


def _section_title(report: AuditReport) -> list[str]:
    m = report.model
    model = m.get("name") or m.get("architecture") or m.get("factory") or m.get("source") or "model"
    dataset = report.dataset.get("name") or report.dataset.get("source") or "dataset"
    split = report.dataset.get("split")
    on = f"{dataset} ({split})" if split else str(dataset)
    return [f"# segshield audit: {_text(model)} on {_text(on)}", ""]


def _section_verdict(verdict: dict) -> list[str]:
    passed = verdict.get("passed")
    word = "PASS" if passed is True else "FAIL"
    outcomes = [o for o in verdict.get("outcomes", []) if isinstance(o, dict)]
    failed = [o for o in outcomes if o.get("passed") is not True]
    lines = [f"## Verdict: {word}", ""]
    policy = verdict.get("policy_name")
    lines += [
        f"Policy `{_text(policy)}`: {len(outcomes) - len(failed)} of {len(outcomes)} rules passed.",
        "",
    ]
    if failed:
        lines += ["Failed rules (values are fractions, as in the policy):", ""]
        rows = []
        for o in failed:
            op = "≥" if o.get("bound") == "min" else "≤"
            rows.append(
                [
                    _text(o.get("rule")),
                    _text(o.get("metric")),
                    _plain(o.get("worst_value")),
                    f"{op} {_plain(o.get('threshold'))}",
                    _text(o.get("worst_where")),
                    _text(o.get("reason")),
                ]
            )
        lines += _table(["Rule", "Metric", "Worst", "Threshold", "Where", "Reason"], rows)
    return lines


def _section_engines(report: AuditReport) -> list[str]:
    lines = ["## Engines", ""]
    if not report.engines:
        return [*lines, "No engine records.", ""]
    rows = []
    for e in report.engines:
        parity = e.parity or {}
        rows.append(
            [
                f"`{_text(e.name)}`" + (" (source)" if e.name == SOURCE_ENGINE else ""),
                _text(e.kind),
                _text(e.precision),
                _text(", ".join(e.providers)) if e.providers else MISSING,
                _text(e.status),
                _plain(parity.get("prob_max_abs_err", parity.get("max_abs_diff"))),
                _plain(parity.get("prob_median_abs_err")),
                _plain(parity.get("prob_p99_abs_err")),
                format_percent(parity.get("flip_share")),
                _plain(e.build_seconds),
                _text(e.reason),
            ]
        )
    header = ["Engine", "Kind", "Precision", "Providers used", "Status"]
    header += ["Max prob err", "Median prob err", "p99 prob err", "Mask pixels flipped"]
    header += ["Build (s)", "Reason"]
    lines += [
        "Clean parity against the FP32 source on the audited images: absolute error of the "
        "probabilities and the share of mask pixels that flip at the threshold.",
        "",
        *_table(header, rows),
    ]
    notes = [(e.name, n) for e in report.engines for n in (e.notes or [])]
    if notes:
        lines += ["Engine notes:", ""]
        lines += [f"- `{_text(name)}`: {_text(note)}" for name, note in notes]
        lines.append("")
    return lines


def _section_latency(report: AuditReport) -> list[str]:
    if not report.latency:
        return []
    header = ["Engine", "Batch", "Median ms", "p90 ms", "p99 ms", "Min ms", "Images/s", "Runs"]
    rows = []
    for r in report.latency:
        if r.get("status") != "ok":
            rows.append(
                [
                    f"`{_text(r.get('engine'))}`",
                    _plain(r.get("batch_size")),
                    f"error: {_text(r.get('error'))}",
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            continue
        rows.append(
            [
                f"`{_text(r.get('engine'))}`",
                _plain(r.get("batch_size")),
                format_float(r.get("median_ms")),
                format_float(r.get("p90_ms")),
                format_float(r.get("p99_ms")),
                format_float(r.get("min_ms")),
                format_float(r.get("throughput_ips")),
                _plain(r.get("iterations")),
            ]
        )
    return [
        "## Latency",
        "",
        "Wall time per `infer` call after a timed warm-up, on the machine in the provenance "
        "(`segshield bench` measures longer).",
        "",
        *_table(header, rows),
    ]


def _largest_cells(report: AuditReport, loss: str | None) -> list[AuditCell]:
    """Per attack (in order of appearance), the cell with the largest epsilon for `loss`."""
    best: dict[str, AuditCell] = {}
    for cell in report.cells:
        if cell.loss != loss:
            continue
        if cell.attack not in best or cell.epsilon > best[cell.attack].epsilon:
            best[cell.attack] = cell
    return list(best.values())


def _section_table_i(report: AuditReport) -> list[str]:
    loss = _default_loss(report)
    cells = _largest_cells(report, loss)
    lines = ["## Summary per engine (Table I)", ""]
    lines += [
        f"Clean inputs, then each attack at its largest epsilon with loss `{_text(loss)}`.",
        "",
    ]
    engines = _engines(report)
    if not engines:
        return [*lines, "No engine was evaluated.", ""]
    header = ["Metric", "Clean"]
    for cell in cells:
        failed = "" if cell.status == "ok" else " (failed)"
        header.append(f"{_attack_label(cell.attack)} ε={format_epsilon(cell.epsilon)}{failed}")
    for engine in engines:
        columns = [report.clean.get(engine)]
        columns += [c.engines.get(engine) if c.status == "ok" else None for c in cells]
        rows = [
            [label, *(fmt(_metric(ev, key)) for ev in columns)] for label, key, fmt in TABLE_I_ROWS
        ]
        lines += [f"### `{_text(engine)}`", "", *_table(header, rows)]
    return lines


def _section_curves(report: AuditReport) -> list[str]:
    lines = ["## Epsilon curves", ""]
    if not report.cells:
        return [*lines, "No attack cells.", ""]
    engines = _engines(report)
    header = ["ε"]
    for engine in engines:
        header += [f"Dice `{_text(engine)}`", f"Attack success `{_text(engine)}`"]
    header += ["SSIM mean", "L∞ max"]
    pairs = _ordered(f"{c.attack}\0{c.loss}" for c in report.cells)
    for pair in pairs:
        attack, loss = pair.split("\0")
        cells = sorted(
            (c for c in report.cells if c.attack == attack and c.loss == loss),
            key=lambda c: c.epsilon,
        )
        clean_row = ["0 (clean)"]
        for engine in engines:
            clean_row += [format_percent(_metric(report.clean.get(engine), "dice")), MISSING]
        rows = [[*clean_row, MISSING, MISSING]]
        for cell in cells:
            ok = cell.status == "ok"
            row = [format_epsilon(cell.epsilon) + ("" if ok else " (failed)")]
            for engine in engines:
                ev = _ok(cell.engines.get(engine)) if ok else None
                row += [
                    format_percent(_metric(ev, "dice")),
                    format_percent(ev.attack_success if ev else None),
                ]
            perturbation = (cell.perturbation or {}) if ok else {}
            row += [
                format_percent(perturbation.get("ssim_mean")),
                format_steps(perturbation.get("linf_max")),
            ]
            rows.append(row)
        lines += [f"### {_attack_label(attack)}, loss `{_text(loss)}`", "", *_table(header, rows)]
    return lines


def _section_transfer(report: AuditReport) -> list[str]:
    lines = ["## Engine transfer", ""]
    targets = [e for e in _engines(report) if e != SOURCE_ENGINE]
    if not targets:
        return [*lines, "No engine besides the source was evaluated.", ""]
    lines += [
        f"The adversarial images are crafted once on `{SOURCE_ENGINE}` and replayed on every "
        f"engine. Dice gap: the engine's Dice minus `{SOURCE_ENGINE}`'s on the same inputs; "
        "disagreement: share of pixels whose prediction differs from it; transfer ratio: the "
        "engine's attack success over the source's; fooled source only / engine only: share "
        "of images whose relative Dice drop reaches the audit's threshold on one side only "
        "(quantization can mask or amplify an attack).",
        "",
    ]
    rows = []
    sources: list[tuple[str, dict[str, EngineEval], bool]] = [("clean", report.clean, True)]
    sources += [(c.id, c.engines, c.status == "ok") for c in report.cells]
    for label, evals, ok in sources:
        for engine in targets:
            ev = _ok(evals.get(engine)) if ok else None
            rows.append(
                [
                    f"`{_text(label)}`",
                    f"`{_text(engine)}`",
                    format_percent(_metric(ev, "dice")),
                    format_points(ev.dice_gap if ev else None),
                    format_percent(ev.disagreement if ev else None),
                    format_float(ev.transfer_ratio if ev else None),
                    format_percent(ev.fooled_source_only if ev else None),
                    format_percent(ev.fooled_engine_only if ev else None),
                ]
            )
    header = ["Cell", "Engine", "Dice", "Dice gap", "Disagreement", "Transfer ratio"]
    header += ["Fooled source only", "Fooled engine only"]
    return lines + _table(header, rows)


def _section_failures(report: AuditReport) -> list[str]:
    lines = ["## Failed cells", ""]
    items = []
    for engine, ev in report.clean.items():
        if ev.status != "ok":
            items.append(f"- `clean` on `{_text(engine)}`: {_text(ev.error)}")
    for cell in report.cells:
        if cell.status != "ok":
            items.append(f"- `{_text(cell.id)}`: {_text(cell.error)}")
            continue
        for engine, ev in cell.engines.items():
            if ev.status != "ok":
                items.append(f"- `{_text(cell.id)}` on `{_text(engine)}`: {_text(ev.error)}")
    return [*lines, *(items or ["None."]), ""]


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested mappings -> dotted keys; lists of scalars joined, anything else as compact JSON."""
    if isinstance(value, dict):
        out: list[tuple[str, str]] = []
        for key in value:
            out += _flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        if len(value) > _MAX_LISTED:
            # e.g. every image name of the dataset: the count and a few say enough.
            shown = ", ".join(_plain(v) for v in value[:_MAX_LISTED])
            return [(prefix, f"{len(value)} items: {shown}, …")]
        return [(prefix, ", ".join(_plain(v) for v in value) if value else MISSING)]
    if isinstance(value, (dict, list)):
        return [(prefix, json.dumps(value, sort_keys=True, separators=(",", ":")))]
    if isinstance(value, float):
        return [(prefix, _plain(value))]
    return [(prefix, MISSING if value is None else str(value))]


def _section_provenance(report: AuditReport) -> list[str]:
    lines = ["## Provenance", ""]
    for title, data in (
        ("Run", report.provenance),
        ("Model", report.model),
        ("Dataset", report.dataset),
    ):
        pairs = _flatten(data or {})
        lines += [f"### {title}", ""]
        if not pairs:
            lines += ["Not recorded.", ""]
            continue
        lines += _table(["Key", "Value"], [[f"`{_text(k)}`", _text(v)] for k, v in pairs])
    lines += [f"Report schema version {report.schema_version}.", ""]
    return lines


def _section_losses(report: AuditReport) -> list[str]:
    """Attack losses side by side (seed unet-family): source Dice and attack success per loss."""
    losses = _ordered(c.loss for c in report.cells)
    if len(losses) < 2:
        return []
    lines = [
        "## Attack losses compared",
        "",
        f"Dice and attack success on the source engine `{SOURCE_ENGINE}` for each attack loss.",
        "",
    ]
    by_key = {(c.attack, c.epsilon, c.loss): c for c in report.cells}
    header = ["Attack", "ε"]
    for loss in losses:
        header += [f"Dice `{loss}`", f"AS `{loss}`"]
    rows = []
    for attack in _ordered(c.attack for c in report.cells):
        for eps in sorted({c.epsilon for c in report.cells if c.attack == attack}):
            row = [_attack_label(attack), format_epsilon(eps)]
            for loss in losses:
                ev = (
                    _ok(by_key[(attack, eps, loss)].engines.get(SOURCE_ENGINE))
                    if (attack, eps, loss) in by_key
                    else None
                )
                row += [
                    format_percent(_metric(ev, "dice")),
                    format_percent(ev.attack_success if ev else None),
                ]
            rows.append(row)
    return lines + _table(header, rows)


def _section_targeted(report: AuditReport) -> list[str]:
    """Targeted attacks (seed asma's table): IoU and pixel accuracy to the target, L2, L∞."""
    cells = [c for c in report.cells if c.targeted]
    if not cells:
        return []
    engines = _ordered(e for c in cells for e in c.targeted.get("engines", {}))
    header = [
        "Attack",
        "ε cap",
        "Target",
        "IoU to target (clean → adv)",
        "Pixel acc. to target",
        "L2 mean",
        "L∞ mean",
    ] + [f"IoU to target `{e}`" for e in engines]
    rows = []
    for c in cells:
        src = c.targeted.get("source", {})
        row = [
            _attack_label(c.attack),
            format_epsilon(c.epsilon),
            f"`{_text(c.targeted.get('target'))}`",
            f"{format_percent(src.get('clean_iou_mean'))} → {format_percent(src.get('iou_mean'))}",
            format_percent(src.get("pixel_accuracy_mean")),
            format_float(src.get("l2_mean")),
            format_float(src.get("linf_mean")),
        ]
        row += [
            format_percent(c.targeted["engines"].get(e, {}).get("iou_to_target")) for e in engines
        ]
        rows.append(row)
    return ["## Targeted attacks", "", *_table(header, rows)]


def render_markdown(report: AuditReport) -> str:
    """The report as Markdown: verdict, engines, Table I, epsilon curves, engine transfer,
    failed cells, provenance. Formats values already in `report` and computes none."""
    lines = _section_title(report)
    if report.verdict is not None:
        lines += _section_verdict(report.verdict)
    lines += [
        "Fractions are shown as percent with two decimals; the Dice gap in percentage points; "
        "loss and pixel errors as plain values; ε and L∞ in 1/255 steps; — marks a missing value.",
        "",
    ]
    lines += _section_engines(report)
    lines += _section_table_i(report)
    lines += _section_curves(report)
    lines += _section_losses(report)
    lines += _section_targeted(report)
    lines += _section_transfer(report)
    lines += _section_latency(report)
    lines += _section_failures(report)
    lines += _section_provenance(report)
    return "\n".join(lines).rstrip() + "\n"
