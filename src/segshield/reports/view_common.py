"""View sections every task shares: verdict, engines, transfer, skipped attacks, failed
cells, provenance; and the small readers the task views use (which engines, which cells)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from segshield.reports.format import (
    MISSING,
    format_epsilon,
    format_float,
    format_percent,
    format_points,
)
from segshield.reports.view import Bullets, Cell, Para, Section, Table, cell, code
from segshield.results import SOURCE_ENGINE, AuditCell, AuditReport, EngineEval, Status

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
        return [(prefix, json.dumps(data, sort_keys=True, separators=(",", ":")))]
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
    if report.dataset.get("n_images") is not None:
        out.append(f"{report.dataset['n_images']} images")
    if report.engines:
        out.append("engines: " + ", ".join(e.name for e in report.engines))
    return out


def _rule_row(o: dict, with_result: bool) -> list[Cell]:
    op = "≥" if o.get("bound") == "min" else "≤"
    passed = o.get("passed") is True
    result = [Cell("pass" if passed else "fail", badge="ok" if passed else "bad")]
    return [
        cell(o.get("rule")),
        *(result if with_result else []),
        code(o.get("metric")),
        Cell(plain(o.get("worst_value")), num=True),
        Cell(f"{op} {plain(o.get('threshold'))}", num=True),
        cell(o.get("worst_where")),
        Cell(plain(o.get("n_checked")), num=True),
        cell(o.get("reason")),
    ]


def _failure_items(o: dict) -> Bullets | None:
    failures = [f for f in o.get("failures") or [] if isinstance(f, dict)]
    if not failures:
        return None
    items = []
    for f in failures[:_MAX_FAILURES_SHOWN]:
        why = f" ({f['reason']})" if f.get("reason") else ""
        items.append([cell(f"{plain(f.get('where'))}: {plain(f.get('value'))}{why}")])
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
    header = ["Rule", "Metric", "Measured (worst)", "Threshold", "Where", "Checked", "Reason"]
    units = Para(
        [cell("Measured values and thresholds are plain fractions, as in the policy file.")],
        note=True,
    )
    blocks: list[Any] = []
    if failed:
        rows = [_rule_row(o, False) for o in failed]
        blocks += [units, Table(header, rows, title=[cell("Failed rules")], cls="failed-rules")]
        blocks += [b for o in failed if (b := _failure_items(o)) is not None]
    if outcomes:
        all_header = [header[0], "Result", *header[1:]]
        title_text = f"All rules ({len(outcomes)})" if failed else "Rules checked"
        table = Table(all_header, [_rule_row(o, True) for o in outcomes], [cell(title_text)])
        table.cls, table.folded, table.markdown = "all-rules", bool(failed), not failed
        blocks += [] if failed else [units]
        blocks.append(table)
    banner = Banner(word, word.lower(), parts)
    return Section("verdict", "Verdict", blocks=blocks, banner=banner)


def _engine_row(e: Any) -> list[Cell]:
    parity = e.parity or {}
    sha = e.sha256
    short = f"{sha[:12]}…" if isinstance(sha, str) and len(sha) > 12 else sha
    badge = "ok" if e.status == Status.OK else ("warn" if e.status == Status.UNAVAILABLE else "bad")
    return [
        Cell(e.name, code=True)
        if e.name != SOURCE_ENGINE
        else Cell(e.name, code=True, strong=True),
        cell(e.kind),
        cell(e.precision),
        cell(", ".join(e.providers) if e.providers else None),
        Cell(str(e.status), badge=badge),
        _health_cell(e),
        Cell(plain(parity.get("prob_max_abs_err", parity.get("max_abs_diff"))), num=True),
        Cell(plain(parity.get("prob_median_abs_err")), num=True),
        Cell(plain(parity.get("prob_p99_abs_err")), num=True),
        Cell(format_percent(parity.get("flip_share")), num=True),
        Cell(plain(e.build_seconds), num=True),
        cell(e.artifact),
        Cell(short, code=True, title=sha) if short else cell(None),
        cell(e.reason),
    ]


def _health_cell(e: Any) -> Cell:
    from segshield.reports.view_health import HEALTH_BADGE, health_of

    status = health_of(e).get("status")
    return cell(None) if status is None else Cell(str(status), badge=HEALTH_BADGE.get(status))


def _parity_images(report: AuditReport) -> str:
    counts = {(e.parity or {}).get("n_images") for e in report.engines if e.parity}
    counts.discard(None)
    if len(counts) == 1:
        n = counts.pop()
        total = (report.dataset or {}).get("n_images")
        return f"the first {n} audited images" if total and n != total else f"{n} audited images"
    return "a sample of the audited images"


def engines_section(report: AuditReport) -> Section:
    if not report.engines:
        return Section("engines", "Engines", [Para([cell("No engine records.")])])
    header = ["Engine", "Kind", "Precision", "Providers used", "Status", "Health"]
    header += ["Max prob err"]
    header += ["Median prob err", "p99 prob err", "Mask pixels flipped", "Build (s)"]
    header += ["Artifact", "SHA-256", "Reason"]
    what = "predicted classes" if report.task == "classification" else "mask pixels"
    blocks: list[Any] = [
        Para(
            [
                cell(
                    f"Clean parity against the source {SOURCE_ENGINE} (bold) on "
                    f"{_parity_images(report)}: absolute error of the probabilities and the "
                    f"share of {what} that flip. Health (every audited image): see Engine health."
                )
            ],
            note=True,
        ),
        Table(header, [_engine_row(e) for e in report.engines], cls="engines"),
    ]
    notes = [[code(e.name), cell(f": {n}")] for e in report.engines for n in e.notes or []]
    if notes:
        blocks.append(Bullets(notes, summary=None))
        blocks.insert(len(blocks) - 1, Para([cell("Engine notes:")]))
    parity = {e.name: e.parity for e in report.engines if isinstance(e.parity, dict)}
    if parity:
        blocks.append(generic_table(parity, "Parity with the source engine"))
    latency = report.latency if report.latency is not None else report.provenance.get("latency")
    if latency:
        blocks.append(generic_table(latency, "Latency"))
        blocks.append(
            Para([cell("Wall time per infer call after a timed warm-up, on the machine in the "
                       "provenance (segshield bench measures longer).")], note=True)
        )  # fmt: skip
    return Section("engines", "Engines", blocks)


def transfer_section(report: AuditReport) -> Section:
    targets = [e for e in engines(report) if e != SOURCE_ENGINE]
    if not targets:
        para = Para([cell("No engine besides the source was evaluated.")])
        return Section("transfer", "Engine transfer", [para])
    primary = report.primary_metric
    label = PRIMARY_LABEL.get(primary, primary)
    intro = (
        f"The adversarial images are crafted once on {SOURCE_ENGINE} and replayed on every "
        f"engine. Dice gap: the engine's Dice (for a classifier its macro F1; {label} is in the "
        f"tables above) minus {SOURCE_ENGINE}'s on the same inputs, in percentage points; "
        "disagreement: share of predictions that differ from it; transfer "
        "ratio: the engine's attack success over the source's; fooled source only / engine "
        "only: share of images fooled on one side only (quantization can mask or amplify an "
        "attack)."
    )
    rows = []
    sources = [("clean", report.clean, True)]
    sources += [(c.id, c.engines, c.status == Status.OK) for c in report.cells]
    for where, evals, ok in sources:
        for engine in targets:
            ev = ok_eval(evals.get(engine)) if ok else None
            rows.append(
                [
                    code(where),
                    code(engine),
                    Cell(format_percent(value(ev, primary)), num=True),
                    Cell(format_points(value(ev, "dice_gap")), num=True),
                    Cell(format_percent(value(ev, "disagreement")), num=True),
                    Cell(format_float(value(ev, "transfer_ratio")), num=True),
                    Cell(format_percent(value(ev, "fooled_source_only")), num=True),
                    Cell(format_percent(value(ev, "fooled_engine_only")), num=True),
                ]
            )
    header = ["Cell", "Engine", label, "Dice gap", "Disagreement", "Transfer ratio"]
    header += ["Fooled source only", "Fooled engine only"]
    return Section(
        "transfer", "Engine transfer", [Para([cell(intro)], note=True), Table(header, rows)]
    )


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
            rows.append([code("clean"), code(engine), cell(ev.error or ev.status)])
    for c in report.cells:
        if c.status != Status.OK:
            rows.append([code(c.id), cell("all"), cell(c.error or c.status)])
            continue
        for engine, ev in c.engines.items():
            if ev.status != Status.OK and engine not in skip:
                rows.append([code(c.id), code(engine), cell(ev.error or ev.status)])
    if not rows:
        return Section("failed-cells", "Failed cells", [Para([cell("None: every cell ran.")])])
    return Section("failed-cells", "Failed cells", [Table(["Cell", "Engine", "Error"], rows)])


def provenance_section(report: AuditReport) -> Section:
    blocks: list[Any] = []
    for name, data in (
        ("Run", report.provenance),
        ("Model", report.model),
        ("Dataset", report.dataset),
        ("Audit configuration", report.config),
    ):
        if not data:
            blocks.append(Table(["Key", "Value"], [], title=[cell(name)]))
            continue
        rows = [[code(k), cell(v)] for k, v in flatten(data)]
        blocks.append(Table(["Key", "Value"], rows, title=[cell(name)], cls="kv"))
    note = f"Report kind {report.kind}, schema version {report.schema_version}, task {report.task}."
    blocks.append(Para([cell(note)], note=True))
    return Section("provenance", "Provenance", blocks)


def cell_header(c: AuditCell) -> str:
    """``PGD ε=4/255`` (+ `` (failed)``): a cell as a column title."""
    failed = "" if c.status == Status.OK else " (failed)"
    return f"{attack_label(c.attack)} ε={format_epsilon(c.epsilon)}{failed}"
