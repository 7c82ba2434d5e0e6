"""Markdown tables for latency, engine builds/parity and attack throughput. Pure formatting."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A GitHub-flavoured Markdown table. `align` has one of "l"/"r" per column (default:
    first column left, the rest right). Pipes and newlines in cells are escaped."""
    align = align or "l" + "r" * (len(headers) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt_num(value: Any, digits: int = 3) -> str:
    """Compact number: '-' for None/NaN, fixed for ordinary magnitudes, scientific for tiny."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf"
    if value == 0:
        return "0"
    if abs(value) < 10 ** -(digits - 1) or abs(value) >= 1e6:
        return f"{value:.{max(digits - 1, 1)}e}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.{digits - 1}f}"


def latency_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows from `bench_engines` (or `LatencyStats.to_dict()` plus engine/precision)."""
    headers = ["Engine", "Precision", "Batch", "Median ms", "p90 ms", "p99 ms", "p99.9 ms",
               "Min ms", "Mean ms", "Images/s", "Iterations"]  # fmt: skip
    body = []
    for r in rows:
        if r.get("status", "ok") != "ok":
            body.append([r.get("engine"), r.get("precision") or "-", r.get("batch_size"),
                         f"error: {r.get('error')}", *["-"] * 7])  # fmt: skip
            continue
        body.append([
            r.get("engine"), r.get("precision") or "-", r.get("batch_size"),
            fmt_num(r.get("median_ms")), fmt_num(r.get("p90_ms")), fmt_num(r.get("p99_ms")),
            fmt_num(r.get("p999_ms")), fmt_num(r.get("min_ms")), fmt_num(r.get("mean_ms")),
            fmt_num(r.get("throughput_ips"), 4), r.get("iterations"),
        ])  # fmt: skip
    return markdown_table(headers, body)


def engines_table(records: Sequence[Any]) -> str:
    """Engine builds with clean parity: `EngineBuildRecord`s or their `to_dict()`s."""
    headers = ["Engine", "Status", "Precision", "Providers", "Build s", "Max prob err",
               "Median prob err", "p99 prob err", "Flip share", "Mask Dice", "Reason"]  # fmt: skip
    body = []
    for rec in records:
        r = rec.to_dict() if hasattr(rec, "to_dict") else dict(rec)
        p = r.get("parity") or {}
        body.append([
            r.get("name"), r.get("status"), r.get("precision"),
            ", ".join(r.get("providers") or []) or "-", fmt_num(r.get("build_seconds")),
            fmt_num(p.get("prob_max_abs_err")), fmt_num(p.get("prob_median_abs_err")),
            fmt_num(p.get("prob_p99_abs_err")), fmt_num(p.get("flip_share")),
            fmt_num(p.get("mask_dice"), 4), r.get("reason") or "",
        ])  # fmt: skip
    return markdown_table(headers, body, "lllrrrrrrrl")


def attack_throughput_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows from `measure_attack_throughput`."""
    headers = ["Attack", "Steps k", "Batch", "Attack ms", "Images/s", "fwd+bwd ms",
               "Floor ms (k x fwd+bwd)", "Ratio to floor"]  # fmt: skip
    body = [
        [r.get("attack"), r.get("steps"), r.get("batch_size"), fmt_num(r.get("attack_ms")),
         fmt_num(r.get("images_per_s"), 4), fmt_num(r.get("fwd_bwd_ms")),
         fmt_num(r.get("floor_ms")), fmt_num(r.get("ratio_to_floor"))]
        for r in rows
    ]  # fmt: skip
    return markdown_table(headers, body)


def bench_markdown(latency: Sequence[dict[str, Any]], throughput: Sequence[dict[str, Any]]) -> str:
    """bench.md: the latency table and the attack-throughput table."""
    return (
        "# segshield bench\n\n## Engine latency\n\n"
        + latency_table(latency)
        + "\n\n## Attack throughput\n\n"
        + attack_throughput_table(throughput)
        + "\n"
    )


def _cell(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


__all__ = [
    "attack_throughput_table",
    "engines_table",
    "fmt_num",
    "latency_table",
    "markdown_table",
]
