"""`segshield engines`, `export` and `bench`: the engine matrix on its own, without an audit.

Plain functions with typer annotations; `segshield.cli.main` registers them on the app.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from segshield.cli.errors import EXIT_OK, error_boundary, setup_logging
from segshield.cli.help_format import ATTACKS, DATA, ENGINES, MEASUREMENT, MODEL, OUTPUT, RUN
from segshield.cli.options import (
    CalibrationData,
    CalibrationMethod,
    Engines,
    Size,
    TrustPickle,
    Verbose,
    attack_names,
    check_out,
    complete_list,
    console,
    split_list,
)


def list_engines() -> None:
    """List the engines segshield can build, and whether each can run on this machine."""
    from rich.table import Table

    from segshield.engines import ENGINE_SPECS, engine_unavailable_reason

    table = Table(title="segshield engines")
    for col in ("engine", "kind", "precision", "device", "here"):
        table.add_column(col)
    for name, spec in ENGINE_SPECS.items():
        reason = engine_unavailable_reason(name)
        table.add_row(
            name,
            spec.kind,
            spec.precision,
            spec.device,
            "[green]available[/]" if reason is None else f"[yellow]{escape(reason)}[/]",
        )
    console.print(table)
    raise typer.Exit(EXIT_OK)


def export(
    out: Annotated[
        Path,
        typer.Option(help="Folder for the engines and manifest.json.", rich_help_panel=OUTPUT),
    ],
    engines: Engines = "{DEFAULT_ENGINES}",
    model: Annotated[
        str | None, typer.Option(help="package.module:factory", rich_help_panel=MODEL)
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Weights, TorchScript or card.", rich_help_panel=MODEL)
    ] = None,
    trust_pickle: TrustPickle = False,
    data: Annotated[
        Path | None,
        typer.Option(help="Images for clean parity (default: bundled test).", rich_help_panel=DATA),
    ] = None,
    calibration_data: CalibrationData = None,
    calibration_method: CalibrationMethod = "minmax",
    size: Size = 128,
    verbose: Verbose = False,
) -> None:
    """Build engines into a folder with a manifest (hashes, parity, build time, notes)."""
    setup_logging(verbose)
    from segshield.api import export_engines
    from segshield.models import ModelSpec

    with error_boundary():
        check_out(out)
        built, manifest = export_engines(
            ModelSpec(model, weights, allow_pickle=trust_pickle),
            split_list(engines),
            out,
            data=data,
            calibration_data=calibration_data,
            calibration_method=calibration_method,
            size=size,
        )
    from segshield.bench import engines_table

    console.print(engines_table([b.record for b in built]), markup=False)
    console.print(f"wrote {manifest}", markup=False, highlight=False)
    raise typer.Exit(EXIT_OK)


BenchDevice = Annotated[
    str,
    typer.Option(
        help="Where the pytorch engine and the attacks run: cpu, cuda, cuda:N or auto (the "
        "other engines run where their name says).",
        rich_help_panel=RUN,
    ),
]
# `bench`'s measurement settings.
Measure = functools.partial(typer.Option, rich_help_panel=MEASUREMENT)


def bench_command(
    out: Annotated[
        Path, typer.Option(help="Folder for bench.json and bench.md.", rich_help_panel=OUTPUT)
    ] = Path("segshield-bench"),
    engines_dir: Annotated[
        Path | None,
        typer.Option(
            help="Engines from `segshield export` (default: build).", rich_help_panel=ENGINES
        ),
    ] = None,
    engines: Engines = "{DEFAULT_ENGINES}",
    batch_sizes: Annotated[str, Measure(help="Comma list of batch sizes.")] = "1,8",
    attacks: Annotated[
        str,
        typer.Option(
            help="Attacks whose throughput to measure.",
            autocompletion=complete_list(attack_names),
            rich_help_panel=ATTACKS,
        ),
    ] = "fgsm,pgd",
    steps: Annotated[
        int, typer.Option(help="Steps of the iterative attacks.", rich_help_panel=ATTACKS)
    ] = 10,
    warmup_s: Annotated[
        float, Measure(help="Untimed warm-up seconds per engine and batch size.")
    ] = 1.0,
    min_iters: Annotated[
        int, Measure(help="Timed calls per engine and batch size, at least.")
    ] = 50,
    min_duration_s: Annotated[
        float, Measure(help="Timed seconds per engine and batch size, at least.")
    ] = 2.0,
    device: BenchDevice = "cpu",
    verbose: Verbose = False,
) -> None:
    """Engine latency (trtexec-style percentiles, images/s) and attack throughput vs its
    k x (forward + backward) floor, on the bundled model and real images."""
    setup_logging(verbose)
    from segshield.api import run_bench

    with error_boundary():
        check_out(out)
        try:
            sizes = tuple(int(b) for b in split_list(batch_sizes))
        except ValueError as exc:
            from segshield.errors import SegShieldError

            raise SegShieldError(f"--batch-sizes: {exc}") from exc
        _, files = run_bench(
            out,
            engines=split_list(engines),
            engines_dir=engines_dir,
            batch_sizes=sizes,
            attacks=split_list(attacks),
            steps=steps,
            warmup_s=warmup_s,
            min_iters=min_iters,
            min_duration_s=min_duration_s,
            device=device,
        )
    console.print(files["markdown"].read_text(), markup=False, highlight=False)
    raise typer.Exit(EXIT_OK)
