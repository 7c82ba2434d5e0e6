"""View sections every task shares: verdict, transfer, skipped attacks, failed cells,
provenance; and the small readers the task views use (which engines, which cells, the
report's one ε style)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from segshield.reports.format import (
    MISSING,
    format_epsilon,
    in_steps,
    magnitude_formatter,
)
from segshield.reports.view import Bullets, Cell, Para, Section, Table, cell, code
from segshield.reports.view_dataset import dataset_summary
from segshield.results import AuditCell, AuditReport, EngineEval, Status

_MAX_LISTED = 8  # provenance lists longer than this show their length and first items
_MAX_FAILURES_SHOWN = 20
PRIMARY_LABEL = {"dice": "Dice", "accuracy": "Accuracy"}


# ----------------------------------------------------------------------------- readers


def ordered(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def attack_label(attack: str) -> str:
    return attack.upper()


def plain(value: Any) -> str:
    """A number with six significant digits, anything else as text, None as missing."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING if value is None else str(value)
    if isinstance(value, float) and math.isnan(value):
        return MISSING
    return f"{value:.6g}"


def report_epsilons(report: AuditReport) -> list[float]:
    """Every ε the report shows: its cells', its worst cases' and its configured ones."""
    eps = [c.epsilon for c in report.cells]
    eps += [w.epsilon for w in report.evaluation.worst_case] if report.evaluation else []
    configured = (report.config or {}).get("epsilons")
    eps += (
        [e for e in configured if isinstance(e, (int, float))]
        if isinstance(configured, list)
        else []
    )
    return eps


def eps_format(report: AuditReport) -> Callable[[float | None], str]:
    """How the report writes ε: :func:`segshield.epsilon.format_epsilon`, the one rule of
    the reports, the gate and the CLI (one hook, so a report never writes it another way)."""
    del report  # the rule is per value; the report is the hook's argument for callers
    return format_epsilon


def linf_format(report: AuditReport) -> Callable[[float | None], str]:
    """Measured L∞ sizes in the report's ε style (1/255 steps, or decimals)."""
    return magnitude_formatter(in_steps(report_epsilons(report)))


def units(report: AuditReport, template: str) -> str:
    """A task's units note with the report's ε style filled in (``{eps}``)."""
    steps = in_steps(report_epsilons(report))
    eps = (
        "ε and L∞ in 1/255 steps"
        if steps
        else "ε in 1/255 steps where exact, else as a decimal of the [0, 1] range; L∞ as a decimal"
    )
    return template.format(eps=eps)


def cell_label(report: AuditReport, c: AuditCell) -> str:
    """``PGD · bce · ε=4/255``: a cell for people (its id stays in report.json)."""
    return f"{attack_label(c.attack)} · {c.loss} · ε={eps_format(report)(c.epsilon)}"


def readable(report: AuditReport, text: str | None) -> str | None:
    """Free text (a gate's "worst at" place) with every cell id of the report written as
    :func:`cell_label` (``pgd/bce/0.0156863 on ort`` -> ``PGD · bce · ε=4/255 on ort``)."""
    if not text:
        return text
    fe = eps_format(report)
    labels = {c.id: cell_label(report, c) for c in report.cells}
    for wc in report.evaluation.worst_case if report.evaluation else []:
        labels[wc.id] = f"worst case · ε={fe(wc.epsilon)}"
    ids = sorted(labels, key=len, reverse=True)  # "a/b/0.1" must not eat "a/b/0.12"
    if not ids:
        return text
    pattern = re.compile("|".join(re.escape(i) for i in ids) + r"(?![\w.])")
    return pattern.sub(lambda m: labels[m.group(0)], text)


def ok_eval(ev: EngineEval | None) -> EngineEval | None:
    return ev if ev is not None and ev.ok else None


def value(ev: EngineEval | None, name: str) -> Any:
    """A stored number of an ok evaluation by name (EngineEval.value), else None."""
    ev = ok_eval(ev)
    return None if ev is None else ev.value(name)


def engines(report: AuditReport) -> list[str]:
    """Engines that were evaluated: ok records in order, then names only seen in evaluations."""
    names = [e.name for e in report.engines if e.status == Status.OK]
    skipped = {e.name for e in report.engines if e.status != Status.OK}
    for evals in [report.clean, *(c.engines for c in report.cells)]:
        names.extend(n for n in evals if n not in names and n not in skipped)
    return names


def default_loss(report: AuditReport) -> str | None:
    """The audit's default loss: config "loss", else the first of "losses", else the first
    cell's."""
    config = report.config or {}
    if isinstance(config.get("loss"), str):
        return config["loss"]
    losses = config.get("losses")
    if isinstance(losses, list) and losses and isinstance(losses[0], str):
        return losses[0]
    return report.cells[0].loss if report.cells else None


def largest_cells(report: AuditReport, loss: str | None) -> list[AuditCell]:
    """Per attack (in order of appearance), the cell with the largest epsilon for `loss`."""
    best: dict[str, AuditCell] = {}
    for c in report.cells:
        if c.loss == loss and (c.attack not in best or c.epsilon > best[c.attack].epsilon):
            best[c.attack] = c
    return list(best.values())


def ci_text(ev: EngineEval | None, name: str) -> tuple[str | None, str | None]:
    """(bounds text "[91.0, 95.1]" in percent, hover title) of a stored interval, or Nones."""
    ci = (ev.ci or {}).get(name) if ev is not None else None
    if ci is None or ci.low is None or ci.high is None:
        return None, None
    title = f"{ci.level * 100:g}% bootstrap confidence interval over images"
    return f"[{ci.low * 100:.1f}, {ci.high * 100:.1f}]", f"{title} ({ci.n_boot} resamples)"


def with_ci(text: str, ev: EngineEval | None, name: str, **kw: Any) -> Cell:
    bounds, title = ci_text(ok_eval(ev), name)
    if text == MISSING:
        bounds = title = None
    return Cell(text, ci=bounds, title=title, **kw)


def has_ci(report: AuditReport) -> bool:
    evals = [*report.clean.values(), *(e for c in report.cells for e in c.engines.values())]
    return any(ev.ci for ev in evals)


def flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested mappings -> dotted keys with plain-text values."""
    if (
        isinstance(data, dict)
        and len(data) > _MAX_LISTED
        and all(isinstance(v, dict) for v in data.values())
    ):  # e.g. one record per volume: the count and a few names say enough
        names = ", ".join(map(str, list(data)[:_MAX_LISTED]))
        return [(prefix, f"{len(data)} entries: {names}, … (all in report.json)")]
    if isinstance(data, dict):
        out: list[tuple[str, str]] = []
        for key in data:
            out += flatten(data[key], f"{prefix}.{key}" if prefix else str(key))
        return out or [(prefix, "{}")]
    if isinstance(data, list) and all(not isinstance(v, (dict, list)) for v in data):
        items = [plain(v) for v in data]
        if len(items) > _MAX_LISTED:  # e.g. every image name: the count and a few say enough
            return [(prefix, f"{len(items)} items: {', '.join(items[:_MAX_LISTED])}, …")]
        return [(prefix, ", ".join(items) if items else MISSING)]
    if isinstance(data, list):
        shown = data[:2] if len(data) > _MAX_LISTED else data  # e.g. a spacing row per image
        text = json.dumps(shown, sort_keys=True, separators=(",", ":"))
        return [(prefix, f"{len(data)} items: {text[1:-1]}, …" if shown is not data else text)]
    return [(prefix, plain(data))]


def generic_table(data: Any, title: str | None = None) -> Table | Para:
    """Rows of dicts (or a dict of dicts) as a table with their own keys as columns."""
    heading = [cell(title)] if title else None
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        keys = ordered(k for v in data.values() for k in v)
        rows = [[code(n), *(_num_cell(v.get(k)) for k in keys)] for n, v in data.items()]
        return Table(["", *map(str, keys)], rows, title=heading)
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        keys = ordered(k for d in data for k in d)
        return Table(
            list(map(str, keys)), [[_num_cell(d.get(k)) for k in keys] for d in data], title=heading
        )
    return Para([cell(json.dumps(data, sort_keys=True, default=str))])


def _num_cell(v: Any) -> Cell:
    return Cell(plain(v), num=isinstance(v, (int, float)) and not isinstance(v, bool))


# ----------------------------------------------------------------------------- sections


def title(report: AuditReport) -> str:
    m = report.model or {}
    model = m.get("name") or m.get("architecture") or m.get("factory") or m.get("source")
    dataset = report.dataset.get("name") or report.dataset.get("source") or "dataset"
    split = report.dataset.get("split")
    on = f"{dataset} ({split})" if split else str(dataset)
    kind = "classifier audit" if report.task == "classification" else "audit"
    return f"segshield {kind}: {model or 'model'} on {on}"


def facts(report: AuditReport) -> list[str]:
    prov = report.provenance or {}
    out = [f"task {report.task}"]
    when = prov.get("finished_at") or prov.get("started_at") or prov.get("started")
    if when:
        out.append(f"finished {when}")
    version = prov.get("segshield") or (prov.get("versions") or {}).get("segshield")
    if version:
        out.append(f"segshield {version}")
    n = report.dataset.get("n_images")
    shape = report.dataset.get("image_shape")
    volumes = report.dataset.get("volume")
    n_volumes = len(set(map(str, volumes))) if isinstance(volumes, list) else 0
    if n is not None and isinstance(shape, (list, tuple)) and len(shape) == 4:
        out.append(f"{n} volumes (3-D)")
    elif n is not None and n_volumes:
        out.append(f"{n} slices of {n_volumes} volumes")
    elif n is not None:
        out.append(f"{n} images")
    if report.engines:
        out.append("engines: " + ", ".join(e.name for e in report.engines))
    return out


def _rule_row(report: AuditReport, o: dict, with_result: bool) -> list[Cell]:
    """A rule's row; the failed-rules table (no result column) leaves the reason to the list
    below it, so the first screen stays short."""
    op = "≥" if o.get("bound") == "min" else "≤"
    passed = o.get("passed") is True
    result = [Cell("pass" if passed else "fail", badge="ok" if passed else "bad")]
    return [
        cell(o.get("rule")),
        *(result if with_result else []),
        code(o.get("metric")),
        Cell(plain(o.get("worst_value")), num=True),
        Cell(f"{op} {plain(o.get('threshold'))}", num=True),
        cell(readable(report, o.get("worst_where"))),
        Cell(plain(o.get("n_checked")), num=True),
        *([cell(readable(report, o.get("reason")))] if with_result else []),
    ]


def _reasons(report: AuditReport, failed: list[dict]) -> list[Any]:
    """Why each failed rule failed, one full-width line per rule."""
    items = [
        [Cell(str(o.get("rule")), strong=True), cell(f": {readable(report, o['reason'])}")]
        for o in failed
        if o.get("reason")
    ]
    return [Bullets(items)] if items else []


def _failure_items(report: AuditReport, o: dict) -> Bullets | None:
    failures = [f for f in o.get("failures") or [] if isinstance(f, dict)]
    if not failures:
        return None
    items = []
    for f in failures[:_MAX_FAILURES_SHOWN]:
        why = f" ({f['reason']})" if f.get("reason") else ""
        where = readable(report, plain(f.get("where")))
        items.append([cell(f"{where}: {plain(f.get('value'))}{why}")])
    if len(failures) > _MAX_FAILURES_SHOWN:
        items.append([cell(f"… and {len(failures) - _MAX_FAILURES_SHOWN} more")])
    summary = f"{plain(o.get('rule'))}: {len(failures)} failing measurement(s)"
    return Bullets(items, summary=summary, markdown=False)


def verdict_section(report: AuditReport) -> Section:
    from segshield.reports.view import Banner

    verdict = report.verdict
    if not isinstance(verdict, dict):
        banner = Banner("NO VERDICT", "none", [cell("No gate policy was applied to this audit.")])
        return Section("verdict", "Verdict", banner=banner, markdown=False)
    outcomes = [o for o in verdict.get("outcomes") or [] if isinstance(o, dict)]
    failed = [o for o in outcomes if o.get("passed") is not True]
    word = "PASS" if verdict.get("passed") is True else "FAIL"
    parts = [
        cell("Policy "),
        code(verdict.get("policy_name")),
        cell(f": {len(outcomes) - len(failed)} of {len(outcomes)} rules passed."),
    ]
    header = ["Rule", "Metric", "Measured (worst)", "Threshold", "Where", "Checked"]
    units = Para(
        [cell("Measured values and thresholds are plain fractions, as in the policy file.")],
        note=True,
    )
    blocks: list[Any] = []
    if failed:
        rows = [_rule_row(report, o, False) for o in failed]
        blocks += [units, Table(header, rows, title=[cell("Failed rules")], cls="failed-rules")]
        blocks += _reasons(report, failed)
        blocks += [b for o in failed if (b := _failure_items(report, o)) is not None]
    if outcomes:
        all_header = [header[0], "Result", *header[1:], "Reason"]
        title_text = f"All rules ({len(outcomes)})" if failed else "Rules checked"
        rows = [_rule_row(report, o, True) for o in outcomes]
        table = Table(all_header, rows, [cell(title_text)], cls="all-rules", folded=True)
        table.markdown = not failed  # folded in HTML: the banner line is the first screen
        blocks += [] if failed else [units]
        blocks.append(table)
    banner = Banner(word, word.lower(), parts)
    return Section("verdict", "Verdict", blocks=blocks, banner=banner)


def skipped_sections(report: AuditReport) -> list[Section]:
    if not report.skipped:
        return []
    rows = [[cell(s.get("attack")), cell(s.get("reason"))] for s in report.skipped]
    return [Section("skipped", "Skipped attacks", [Table(["Attack", "Reason"], rows)])]


def not_run(report: AuditReport) -> set[str]:
    """Engines whose record is not ok: their evaluations are expected to fail, and the engine
    table says why once (not once per cell)."""
    return {e.name for e in report.engines if e.status != Status.OK}


def failures_section(report: AuditReport) -> Section:
    rows = []
    skip = not_run(report)
    for engine, ev in report.clean.items():
        if ev.status != Status.OK and engine not in skip:
            rows.append([cell("clean"), code(engine), cell(ev.error or ev.status)])
    for c in report.cells:
        where = Cell(cell_label(report, c), title=c.id)
        if c.status != Status.OK:
            rows.append([where, cell("all"), cell(c.error or c.status)])
            continue
        for engine, ev in c.engines.items():
            if ev.status != Status.OK and engine not in skip:
                rows.append([where, code(engine), cell(ev.error or ev.status)])
    if not rows:
        return Section("failed-cells", "Failed cells", [Para([cell("None: every cell ran.")])])
    header = ["Cell", "Engine", "Error"]
    return Section("failed-cells", "Failed cells", [Table(header, rows)])


def provenance_section(report: AuditReport) -> Section:
    blocks: list[Any] = []
    config = dict(report.config or {})
    if isinstance(config.get("epsilons"), list):  # the report's ε style, not raw floats
        config["epsilons"] = [eps_format(report)(e) for e in config["epsilons"]]
    summary = dataset_summary(report.dataset or {})
    blocks += [summary] if summary is not None else []
    for name, data in (
        ("Run", report.provenance),
        ("Model", report.model),
        ("Dataset", report.dataset),
        ("Audit configuration", config),
    ):
        if not data:
            blocks.append(Table(["Key", "Value"], [], title=[cell(name)]))
            continue
        rows = [[code(k), cell(v)] for k, v in flatten(data)]
        blocks.append(Table(["Key", "Value"], rows, title=[cell(name)], cls="kv"))
    note = f"Report kind {report.kind}, schema version {report.schema_version}, task {report.task}."
    blocks.append(Para([cell(note)], note=True))
    return Section("provenance", "Provenance", blocks)


def cell_header(report: AuditReport, c: AuditCell) -> str:
    """``PGD ε=4/255`` (+ `` (failed)``): a cell as a column title."""
    failed = "" if c.status == Status.OK else " (failed)"
    return f"{attack_label(c.attack)} ε={eps_format(report)(c.epsilon)}{failed}"
