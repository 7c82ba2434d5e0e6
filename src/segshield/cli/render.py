"""Terminal rendering of results (rich). Reads values from the report; computes nothing.

Every ε shows as `segshield.epsilon.format_epsilon` writes it (k/255 when exact, else a
decimal), in the tables and inside the library's sentences that name a cell id
(`readable_epsilons`).
"""

from __future__ import annotations

from rich import box
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from segshield.cli.progress import readable_epsilons
from segshield.epsilon import MISSING, format_epsilon
from segshield.gate import GateResult
from segshield.results import SOURCE_ENGINE, AuditReport, certified_rows


def _pct(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.2f}"


def summary_tables(report: AuditReport) -> list[RenderableType]:
    """Two tables that fit a terminal: the task's primary metric (Dice; accuracy for a
    classifier) per engine, the worst case over every attack last; then attack success on
    the source, the largest engine-vs-source disagreement and SSIM. Then, when the audit
    measured them, certified robustness per engine and radius and one yellow line per
    evaluation warning. Values in %, all read from the report."""
    engines = [e.name for e in report.engines if e.status == "ok"]
    others = [e for e in engines if e != SOURCE_ENGINE]
    model = report.model.get("name", report.model.get("source", "model"))

    def table(title: str, columns: list[str]) -> Table:
        t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
        for i, col in enumerate(["attack", "loss", "ε", *columns]):
            t.add_column(escape(col), no_wrap=True, justify="left" if i < 3 else "right")
        return t

    metric = report.primary_metric
    label = "Accuracy" if metric == "accuracy" else "Dice"
    source = report.dataset.get("source", "?")
    dice = table(
        f"{label} (%) of {escape(str(model))} on {escape(str(source))}, per engine", engines
    )
    transfer = table(
        "Attack success on the source, max engine-vs-source disagreement, SSIM (%)",
        ["AS", "disagree", "SSIM"],
    )

    def worst_disagreement(evals: dict) -> str:
        values = [evals[e].disagreement for e in others if e in evals]
        values = [v for v in values if v is not None]
        return _pct(max(values)) if values else MISSING

    clean = ["clean", "—", "0"]
    dice.add_row(
        *clean,
        *[_pct(report.clean[e].value(metric)) if e in report.clean else MISSING for e in engines],
        style="bold",
    )
    transfer.add_row(*clean, MISSING, worst_disagreement(report.clean), "100.00", style="bold")
    for cell in report.cells:
        key = [cell.attack, cell.loss, format_epsilon(cell.epsilon)]
        if cell.status != "ok":
            for t in (dice, transfer):
                t.add_row(*key, f"[red]error: {escape(str(cell.error))}[/]")
            continue
        row = []
        for e in engines:
            ev = cell.engines.get(e)
            row.append(_pct(ev.value(metric)) if ev and ev.ok else "[red]error[/]")
        dice.add_row(*key, *row)
        src = cell.engines.get(SOURCE_ENGINE)
        transfer.add_row(
            *key,
            _pct(src.attack_success if src else None),
            worst_disagreement(cell.engines),
            _pct(cell.perturbation.ssim_mean if cell.perturbation else None),
        )
    for wc in report.evaluation.worst_case if report.evaluation is not None else []:
        values = [wc.engines[e].value(metric) if e in wc.engines else None for e in engines]
        dice.add_row("worst case", "*", format_epsilon(wc.epsilon), *map(_pct, values),
                     style="bold")  # fmt: skip
    return [dice, transfer, *_certified(report), *_warning_lines(report)]


def _certified(report: AuditReport) -> list[RenderableType]:
    """Certified Dice, certified-and-correct and abstained share (%) per engine and radius."""
    section = report.certified
    if not isinstance(section, dict):
        return []
    if section.get("error"):
        return [Text(f"certification failed: {section['error']}", style="red")]
    t = Table(title="Certified robustness (randomized smoothing, %)", box=box.SIMPLE_HEAD,
              pad_edge=False)  # fmt: skip
    for i, col in enumerate(["engine", "L2 radius", "certified Dice", "certified", "abstained"]):
        t.add_column(col, no_wrap=True, justify="left" if i < 2 else "right")
    for name, radius, v in certified_rows(section):
        shares = (v.get(k) for k in ("certified_dice", "certified_share", "abstain_share"))
        t.add_row(escape(name), f"{radius:g}", *map(_pct, shares))
    failed = [
        Text(f"certification of {name} failed: {rec['error']}", style="red")
        for name, rec in (section.get("engines") or {}).items()
        if isinstance(rec, dict) and rec.get("error")
    ]  # after the table: an error row would widen its columns
    return [t, *failed]


def _warning_lines(report: AuditReport) -> list[RenderableType]:
    """One yellow line per gradient-masking / weak-evaluation warning (plain text: a
    message may hold user-provided names, never read as markup)."""
    warnings = report.evaluation.warnings if report.evaluation is not None else []
    return [
        Text(
            f"evaluation warning: {readable_epsilons(str(w.get('message') or w.get('check')))}",
            style="yellow",
        )
        for w in warnings
        if isinstance(w, dict)
    ]


_HEALTH_STYLE = {"ok": "green", "degraded": "yellow", "failed": "bold red"}


def _health(e: object) -> str:
    """ ", health ok (mask agreement 0.9950 on 4 images)" for the engine line, or ""."""
    h = getattr(e, "health", None)
    if not isinstance(h, dict) or h.get("status") is None:
        return ""
    status, agreement = str(h["status"]), h.get("mask_dice")
    shown = "not measured" if agreement is None else f"{agreement:.4f}"
    style = _HEALTH_STYLE.get(status, "bold")
    n = h.get("n_images")
    text = f", health [{style}]{escape(status)}[/] (mask agreement {shown} on {n} images)"
    if status != "ok" and h.get("reason"):
        text += f": {escape(str(h['reason']))}"
    return text


def print_engines(console: Console, report: AuditReport) -> None:
    for e in report.engines:
        if e.status == "ok":
            p = e.parity or {}
            parity = (
                f", clean parity: max |Δprob| {p['prob_max_abs_err']:.2e}, "
                f"{100 * p['flip_share']:.3f}% of mask pixels flipped"
                if "prob_max_abs_err" in p and "flip_share" in p
                else ""
            )
            console.print(
                f"engine [bold]{escape(e.name)}[/]: runs on "
                f"{escape(', '.join(e.providers))}{_health(e)}{parity}"
            )
        else:
            console.print(
                f"engine [bold]{escape(e.name)}[/]: [yellow]{e.status}[/] — {escape(str(e.reason))}"
            )


def print_verdict(console: Console, result: GateResult) -> None:
    failed = result.failed_rules()
    if not failed:
        console.print(
            f"[bold green]PASS[/] policy {escape(repr(result.policy_name))}: all "
            f"{len(result.outcomes)} "
            "rules hold"
        )
        return
    console.print(
        f"[bold red]FAIL[/] policy {escape(repr(result.policy_name))}: {len(failed)} of "
        f"{len(result.outcomes)} rules crossed"
    )
    for o in failed:
        measured = MISSING if o.worst_value is None else f"{o.worst_value:.4f}"
        detail = readable_epsilons(o.reason or f"at {o.worst_where}")
        console.print(
            f"  [red]✗[/] {escape(str(o.rule))}: {o.metric} {measured} (needs {o.bound} "
            f"{o.threshold:g}); {escape(str(detail))}",
            highlight=False,
        )


def print_problems(console: Console, problems: list[str], strict: bool) -> None:
    """What `--strict` refuses (`segshield.gate.strict.strict_problems`): one line each, as
    errors under --strict, else as warnings."""
    label = "[bold red]strict:[/]" if strict else "[yellow]warning:[/]"
    for problem in problems:
        text = escape(readable_epsilons(problem))
        console.print(f"{label} {text}", highlight=False, soft_wrap=True)
    if problems and strict:
        console.print(
            f"[bold red]FAIL[/] --strict: {len(problems)} problem(s) in the audit", highlight=False
        )
    elif problems:
        console.print(
            f"[yellow]{len(problems)} problem(s) in the audit; --strict makes them exit 1[/]",
            highlight=False,
        )
