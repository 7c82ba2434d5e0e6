"""Terminal rendering of results (rich). Reads values from the report; computes nothing."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from segshield.audits import SOURCE_ENGINE, AuditReport
from segshield.gate import GateResult
from segshield.reports import MISSING, format_epsilon


def _pct(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.2f}"


def summary_table(report: AuditReport) -> Table:
    """Dice per engine, attack success on the source, engine-vs-source disagreement, SSIM."""
    engines = [e.name for e in report.engines if e.status == "ok"]
    others = [e for e in engines if e != SOURCE_ENGINE]
    model = report.model.get("name", report.model.get("source", "model"))
    table = Table(title=f"segshield audit — {model} on {report.dataset['source']} (values in %)")
    for col in ("attack", "loss", "ε"):
        table.add_column(col)
    for e in engines:
        table.add_column(f"Dice {e}", justify="right")
    table.add_column(f"AS {SOURCE_ENGINE}", justify="right")
    for e in others:
        table.add_column(f"disagree {e}", justify="right")
    table.add_column("SSIM", justify="right")
    row = ["clean", "—", "0"]
    row += [_pct(report.clean[e].metrics and report.clean[e].metrics["dice"]) for e in engines]
    row += [MISSING] + [_pct(report.clean[e].disagreement) for e in others] + ["100.00"]
    table.add_row(*row, style="bold")
    for cell in report.cells:
        if cell.status != "ok":
            table.add_row(
                cell.attack, cell.loss, format_epsilon(cell.epsilon), f"[red]error: {cell.error}[/]"
            )
            continue
        row = [cell.attack, cell.loss, format_epsilon(cell.epsilon)]
        for e in engines:
            ev = cell.engines.get(e)
            row.append(_pct(ev.metrics["dice"]) if ev and ev.metrics else "[red]error[/]")
        src = cell.engines.get(SOURCE_ENGINE)
        row.append(_pct(src.attack_success if src else None))
        row += [
            _pct(cell.engines[e].disagreement) if e in cell.engines else MISSING for e in others
        ]
        row.append(_pct(cell.perturbation["ssim_mean"] if cell.perturbation else None))
        table.add_row(*row)
    return table


def print_engines(console: Console, report: AuditReport) -> None:
    for e in report.engines:
        if e.status == "ok":
            parity = f", parity max |Δlogit| {e.parity['max_abs_diff']:.2e}" if e.parity else ""
            console.print(f"engine [bold]{e.name}[/]: runs on {', '.join(e.providers)}{parity}")
        else:
            console.print(f"engine [bold]{e.name}[/]: [yellow]{e.status}[/] — {e.reason}")


def print_verdict(console: Console, result: GateResult) -> None:
    failed = result.failed_rules()
    if not failed:
        console.print(
            f"[bold green]PASS[/] policy {result.policy_name!r}: all {len(result.outcomes)} "
            "rules hold"
        )
        return
    console.print(
        f"[bold red]FAIL[/] policy {result.policy_name!r}: {len(failed)} of "
        f"{len(result.outcomes)} rules crossed"
    )
    for o in failed:
        measured = MISSING if o.worst_value is None else f"{o.worst_value:.4f}"
        detail = o.reason or f"at {o.worst_where}"
        console.print(
            f"  [red]✗[/] {o.rule}: {o.metric} {measured} (needs {o.bound} {o.threshold:g}); "
            f"{detail}",
            highlight=False,
        )
