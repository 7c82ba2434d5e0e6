"""`segshield` commands: thin wrappers that parse options, build a frozen config, call one
library function, render, and set the exit code (0 ok, 1 gate failed, 2 usage/input error)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from segshield.cli.errors import EXIT_GATE_FAILED, EXIT_OK, error_boundary, setup_logging

app = typer.Typer(
    name="segshield",
    help="Robustness audits of medical segmentation models and their deployed engines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


@app.callback()
def root() -> None:
    """Robustness audits of medical segmentation models and their deployed engines."""


def _command_line(ctx: typer.Context) -> str:
    """The command as it could be re-typed: its path plus every option not at its default
    (rebuilt from the parsed options, so it is right under CliRunner and `python -m` too)."""
    words = ctx.command_path.split()
    words[0] = "segshield"
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        is_option = getattr(param, "param_type_name", "") == "option"
        if value is None or value == param.default or not is_option:
            if not is_option and value is not None:
                words.append(str(value))
            continue
        flag = max(param.opts, key=len)
        if isinstance(value, bool):
            words.append(flag if value else (param.secondary_opts or [flag])[0])
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def _dataset(data: Path | None, bundled: str, split: str, size: int):
    from segshield.data import bundled_dataset, dataset_from_path

    if data is not None:
        return dataset_from_path(data, size=(size, size))
    return bundled_dataset(bundled, split, size=(size, size))


@app.command()
def train(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder for <name>.safetensors and <name>.json.")],
    name: Annotated[str, typer.Option(help="File name stem of the weights and card.")] = "unet",
    dataset: Annotated[str, typer.Option(help="Bundled dataset: nuclei or lesions.")] = "nuclei",
    data: Annotated[
        Path | None, typer.Option(help="Your training data (images/+masks/ or BUSI layout).")
    ] = None,
    test_data: Annotated[
        Path | None, typer.Option(help="Your test data (default: the bundled test split).")
    ] = None,
    size: Annotated[int, typer.Option(help="Images are resized to size x size.")] = 128,
    epochs: Annotated[int, typer.Option(min=1)] = 60,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    seed: int = 0,
    base_width: Annotated[int, typer.Option(min=1)] = 16,
    depth: Annotated[int, typer.Option(min=1, max=6)] = 3,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Train the seed U-Net (Adam, BCE, flip/rotate/zoom augmentation, seeded)."""
    setup_logging(verbose)
    from rich.progress import Progress

    from segshield.training import TrainConfig
    from segshield.training import train as run_train

    with error_boundary():
        cfg = TrainConfig(
            name=name,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            base_width=base_width,
            depth=depth,
        )
        train_ds = _dataset(data, dataset, "train", size)
        test_ds = (
            _dataset(test_data, dataset, "test", size) if data is None or test_data else (train_ds)
        )
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("training", total=epochs)

            def on_epoch(epoch: int, loss: float) -> None:
                progress.update(task, completed=epoch, description=f"training (bce {loss:.4f})")

            result = run_train(cfg, train_ds, test_ds, out, _command_line(ctx), on_epoch)
    m = result.test_metrics
    console.print(
        f"wrote {result.weights} and {result.card} in {result.seconds:.0f} s; test Dice "
        f"{m['dice']:.4f}, IoU {m['iou']:.4f}, accuracy {m['accuracy']:.4f}"
    )
    raise typer.Exit(EXIT_OK)


def _explicit(ctx: typer.Context) -> set[str]:
    """Names of the options the user actually typed (not left at their defaults)."""
    explicit = set()
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            explicit.add(name)
    return explicit


def _json_object(value: str | None) -> dict:
    import json

    from segshield.errors import SegShieldError

    if value is None:
        return {}
    try:
        obj = json.loads(value)
    except json.JSONDecodeError as exc:
        raise SegShieldError(f"--model-kwargs is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise SegShieldError("--model-kwargs must be a JSON object")
    return obj


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _epsilons(value: str) -> tuple[float, ...]:
    from segshield.audits import ADVUNET_EPSILONS, DEFAULT_EPSILONS
    from segshield.errors import SegShieldError
    from segshield.gate import parse_epsilon

    if value == "default":
        return DEFAULT_EPSILONS
    if value == "advunet":
        return ADVUNET_EPSILONS
    try:
        return tuple(parse_epsilon(v) for v in _split_list(value))
    except Exception as exc:
        raise SegShieldError(f"--epsilons: {exc}") from exc


@app.command()
def audit(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option(help="Output folder (report.json, report.md, model.onnx).")
    ] = Path("segshield-out"),
    model: Annotated[
        str | None,
        typer.Option(help="Your model factory package.module:callable (default: bundled U-Net)."),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Weights (.safetensors or state dict), a TorchScript file, or a model card .json."
        ),
    ] = None,
    trust_pickle: Annotated[
        bool, typer.Option(help="Allow unpickling a checkpoint (runs code from the file).")
    ] = False,
    model_kwargs: Annotated[
        str | None,
        typer.Option(
            help="Keyword arguments of the factory as JSON, e.g. '{\"out_channels\": 3}'."
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Your dataset: images/+masks/ folders or BUSI layout.")
    ] = None,
    num_classes: Annotated[
        int,
        typer.Option(
            min=1,
            help="1: binary model (one sigmoid logit); N > 1: softmax model, masks are label "
            "maps 0..N-1.",
        ),
    ] = 1,
    dataset: Annotated[str, typer.Option(help="Bundled dataset: nuclei or lesions.")] = "nuclei",
    split: Annotated[str, typer.Option(help="Bundled split: test or train.")] = "test",
    size: Annotated[int, typer.Option(help="Images are resized to size x size.")] = 128,
    limit: Annotated[int | None, typer.Option(min=1, help="Audit the first N images.")] = None,
    attacks: Annotated[str, typer.Option(help="Comma list of attacks.")] = "fgsm,bim,pgd",
    losses: Annotated[
        str, typer.Option(help="Comma list of attack losses: bce, dice, focal, dice_focal.")
    ] = "bce",
    epsilons: Annotated[
        str,
        typer.Option(
            help="Comma list (0.01 or 4/255), 'default' (1,2,4,8 /255) or 'advunet' (0.1..0.9)."
        ),
    ] = "default",
    steps: Annotated[int, typer.Option(min=1, help="Steps of iterative attacks.")] = 10,
    alpha: Annotated[
        float | None, typer.Option(help="Step size of iterative attacks (default eps/4).")
    ] = None,
    engines: Annotated[
        str,
        typer.Option(
            help="Comma list of engines (pytorch, ort-fp32, ort-fp16, ort-int8, "
            "ort-int8-dynamic, aoti-fp32; GPU: ort-cuda, ort-trt, tensorrt-fp16, aoti-cuda-fp16, "
            "...; see `segshield engines`)."
        ),
    ] = "pytorch,ort-fp32,ort-fp16,ort-int8,aoti-fp32",
    engines_dir: Annotated[
        Path | None, typer.Option(help="Use engines built by `segshield export` (manifest).")
    ] = None,
    calibration_method: Annotated[
        str, typer.Option(help="Static INT8 calibration: minmax, entropy or percentile.")
    ] = "minmax",
    calibration_data: Annotated[
        Path | None,
        typer.Option(help="INT8 calibration images (default: the bundled training split)."),
    ] = None,
    bench: Annotated[
        bool, typer.Option(help="Measure each engine's latency into the report.")
    ] = True,
    target: Annotated[
        str,
        typer.Option(
            help="Target of targeted attacks (asma): empty, other, shift:DY,DX, scale:F, file:PATH."
        ),
    ] = "empty",
    asma_steps: Annotated[int, typer.Option(min=1, help="Step budget of ASMA.")] = 300,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    seed: int = 0,
    policy: Annotated[
        Path | None, typer.Option(help="Gate policy (TOML): exit 1 when a rule is crossed.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="Settings file (segshield.toml, or pyproject.toml with [tool.segshield]); "
            "default: look for either in the current folder. Options given here override it."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Attack the model on PyTorch, replay on the engines, write report.json and report.md."""
    setup_logging(verbose)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from segshield.api import audit as run
    from segshield.gate import policy_from_toml

    from .render import print_engines, print_verdict, summary_tables

    with error_boundary():
        from segshield.audits.settings import config_from_settings, load_settings
        from segshield.errors import SegShieldError
        from segshield.gate import policy_from_dict

        settings = load_settings(config)
        explicit = _explicit(ctx)
        given = {
            "out_dir": out,
            "model": model,
            "model_kwargs": _json_object(model_kwargs),
            "num_classes": num_classes,
            "weights": weights,
            "trust_pickle": trust_pickle,
            "data": data,
            "dataset": dataset,
            "split": split,
            "size": size,
            "limit": limit,
            "attacks": _split_list(attacks),
            "losses": _split_list(losses),
            "epsilons": _epsilons(epsilons),
            "steps": steps,
            "alpha": alpha,
            "engines": _split_list(engines),
            "engines_dir": engines_dir,
            "calibration_method": calibration_method,
            "calibration_data": calibration_data,
            "bench": bench,
            "target": target,
            "asma_steps": asma_steps,
            "batch_size": batch_size,
            "seed": seed,
        }
        cli_name = {"out_dir": "out"}
        overrides = {k: v for k, v in given.items() if cli_name.get(k, k) in explicit}
        if policy is not None:
            pol = policy_from_toml(policy)
        elif settings.policy is not None:
            pol = policy_from_dict(settings.policy, origin=str(settings.origin))
        else:
            pol = None
        base = settings.origin.parent if settings.origin else None
        try:
            cfg = config_from_settings(settings.audit, overrides, base)
        except ValueError as exc:
            raise SegShieldError(f"invalid audit settings: {exc}") from exc
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("preparing (data, model, ONNX export)", total=None)

            def on_progress(stage: str, done: int, total: int) -> None:
                progress.update(
                    task, description=f"attacking: {stage}", completed=done, total=total
                )

            outcome = run(cfg, pol, on_progress, _command_line(ctx))
    report = outcome.report
    print_engines(console, report)
    for table in summary_tables(report):
        console.print(table)
    console.print(
        f"audit took {report.provenance['seconds']:.1f} s; wrote "
        + ", ".join(str(p) for p in outcome.files.values())
    )
    failed_cells = [c for c in report.cells if c.status != "ok"]
    if failed_cells:
        console.print(f"[yellow]{len(failed_cells)} cell(s) failed; see the report[/]")
    if outcome.gate is not None:
        print_verdict(console, outcome.gate)
        raise typer.Exit(EXIT_OK if outcome.gate.passed else EXIT_GATE_FAILED)
    raise typer.Exit(EXIT_OK)


@app.command("audit-classifier")
def audit_classifier(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("segshield-classifier-out"),
    weights: Annotated[
        Path | None,
        typer.Option(help="A classifier model card .json (default: the bundled patch CNN)."),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Your segmentation data to cut into labelled patches.")
    ] = None,
    dataset: Annotated[str, typer.Option(help="Bundled dataset: nuclei or lesions.")] = "nuclei",
    split: Annotated[str, typer.Option(help="Bundled split: test or train.")] = "test",
    patch: Annotated[int, typer.Option(min=8, help="Patch side in pixels.")] = 32,
    stride: Annotated[int, typer.Option(min=1)] = 32,
    limit: Annotated[int | None, typer.Option(min=1, help="Audit the first N patches.")] = None,
    attacks: Annotated[str, typer.Option(help="Comma list of attacks.")] = "fgsm,bim,pgd",
    epsilons: Annotated[
        str, typer.Option(help="Comma list, or 'seed' (0 .. 8/255 and 0.05 .. 0.3).")
    ] = "seed",
    steps: Annotated[int, typer.Option(min=1)] = 10,
    seed: int = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Attack a CNN classifier (seed mammography): accuracy and SSIM vs ε."""
    setup_logging(verbose)
    from segshield.api import audit_classifier as run

    with error_boundary():
        from segshield.audits import SEED_CLASSIFIER_EPSILONS, ClassifierAuditConfig

        eps = SEED_CLASSIFIER_EPSILONS if epsilons == "seed" else _epsilons(epsilons)
        cfg = ClassifierAuditConfig(
            attacks=_split_list(attacks), epsilons=eps, steps=steps, seed=seed
        )
        ds = _dataset(data, dataset, split, 128)
        report, files = run(
            cfg,
            ds,
            out,
            weights=weights,
            patch=patch,
            stride=stride,
            limit=limit,
            command=_command_line(ctx),
        )
    clean = report.clean.get("accuracy") if isinstance(report.clean, dict) else None
    console.print(
        f"classifier audit: {report.dataset.get('n_images')} patches, clean accuracy "
        f"{clean if clean is None else f'{100 * clean:.2f}%'}; wrote "
        + ", ".join(str(p) for p in files.values())
    )
    for cell in report.cells:
        if cell.status != "ok":
            console.print(f"[red]{cell.attack} ε={cell.epsilon:g}: {cell.error}[/]")
    raise typer.Exit(EXIT_OK)


@app.command("engines")
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
            "[green]available[/]" if reason is None else f"[yellow]{reason}[/]",
        )
    console.print(table)
    raise typer.Exit(EXIT_OK)


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="Folder for the engines and manifest.json.")],
    engines: Annotated[str, typer.Option(help="Comma list of engines.")] = (
        "pytorch,ort-fp32,ort-fp16,ort-int8,aoti-fp32"
    ),
    model: Annotated[str | None, typer.Option(help="package.module:factory")] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights, TorchScript or card.")] = None,
    trust_pickle: bool = False,
    data: Annotated[
        Path | None, typer.Option(help="Images for clean parity (default: bundled test).")
    ] = None,
    calibration_data: Annotated[
        Path | None, typer.Option(help="INT8 calibration images (default: bundled train).")
    ] = None,
    calibration_method: str = "minmax",
    size: int = 128,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Build engines into a folder with a manifest (hashes, parity, build time, notes)."""
    setup_logging(verbose)
    from segshield.api import export_engines
    from segshield.models import ModelSpec

    with error_boundary():
        built, manifest = export_engines(
            ModelSpec(model, weights, allow_pickle=trust_pickle),
            _split_list(engines),
            out,
            data=data,
            calibration_data=calibration_data,
            calibration_method=calibration_method,
            size=size,
        )
    from segshield.bench import engines_table

    console.print(engines_table([b.record for b in built]), markup=False)
    console.print(f"wrote {manifest}")
    raise typer.Exit(EXIT_OK)


@app.command("bench")
def bench_command(
    out: Annotated[Path, typer.Option(help="Folder for bench.json and bench.md.")] = Path(
        "segshield-bench"
    ),
    engines_dir: Annotated[
        Path | None, typer.Option(help="Engines from `segshield export` (default: build).")
    ] = None,
    engines: str = "pytorch,ort-fp32,ort-fp16,ort-int8,aoti-fp32",
    batch_sizes: Annotated[str, typer.Option(help="Comma list of batch sizes.")] = "1,8",
    attacks: Annotated[str, typer.Option(help="Attacks whose throughput to measure.")] = (
        "fgsm,pgd"
    ),
    steps: int = 10,
    warmup_s: float = 1.0,
    min_iters: int = 50,
    min_duration_s: float = 2.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Engine latency (trtexec-style percentiles, images/s) and attack throughput vs its
    k x (forward + backward) floor, on the bundled model and real images."""
    setup_logging(verbose)
    from segshield.api import run_bench

    with error_boundary():
        try:
            sizes = tuple(int(b) for b in _split_list(batch_sizes))
        except ValueError as exc:
            from segshield.errors import SegShieldError

            raise SegShieldError(f"--batch-sizes: {exc}") from exc
        _, files = run_bench(
            out,
            engines=_split_list(engines),
            engines_dir=engines_dir,
            batch_sizes=sizes,
            attacks=_split_list(attacks),
            steps=steps,
            warmup_s=warmup_s,
            min_iters=min_iters,
            min_duration_s=min_duration_s,
        )
    console.print(files["markdown"].read_text(), markup=False, highlight=False)
    raise typer.Exit(EXIT_OK)


@app.command()
def gate(
    report: Annotated[Path, typer.Argument(help="report.json written by segshield audit.")],
    policy: Annotated[Path, typer.Option(help="Gate policy (TOML).")],
) -> None:
    """Check a report against a policy: exit 0 pass, 1 a rule crossed, 2 bad input."""
    from segshield.api import gate_report
    from segshield.gate import policy_from_toml

    from .render import print_verdict

    with error_boundary():
        pol = policy_from_toml(policy)
        _, result = gate_report(report, pol)
    print_verdict(console, result)
    raise typer.Exit(EXIT_OK if result.passed else EXIT_GATE_FAILED)


@app.command()
def report(
    report_json: Annotated[Path, typer.Argument(help="report.json written by segshield audit.")],
    fmt: Annotated[
        str, typer.Option("--format", help="md, html, junit, csv or summary (PR comment).")
    ] = "md",
    out: Annotated[Path | None, typer.Option(help="Output file (default: stdout).")] = None,
) -> None:
    """Re-render a report from report.json without re-running the audit."""
    from segshield.api import render_report_file

    with error_boundary():
        text = render_report_file(report_json, fmt)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, newline="" if fmt == "csv" else None)
        console.print(f"wrote {out}")
    raise typer.Exit(EXIT_OK)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
