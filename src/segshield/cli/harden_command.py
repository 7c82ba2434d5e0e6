"""`segshield harden`: adversarial fine-tuning of a segmentation model, then (by default) the
same quick audit of the model before and after, compared.

A plain function with typer annotations; `segshield.cli.main` registers it on the app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from segshield.cli.errors import EXIT_OK, error_boundary, setup_logging
from segshield.cli.options import (
    AuditWeights,
    Dataset,
    Model,
    ModelKwargs,
    Size,
    TrustPickle,
    Verbose,
    check_out,
    command_line,
    console,
    json_object,
)
from segshield.cli.train_command import _dataset
from segshield.epsilon import format_epsilon

Method = Annotated[
    str, typer.Option(help="pgd (Madry 2018), fgsm-rs (Wong 2020) or trades (Zhang 2019).")
]


def _load(model: str | None, weights: Path | None, kwargs: dict[str, Any], trust: bool):
    from segshield.models import ModelSpec, load_model

    spec = ModelSpec(factory=model, weights=weights, factory_kwargs=kwargs, allow_pickle=trust)
    return spec, load_model(spec)


def _hardened_spec(spec: Any, loaded: Any, weights: Path, card: Path) -> Any:
    """The hardened model as a ModelSpec: the card for segshield's own architectures (bundled,
    card, U-Net), else the same factory with the new weights."""
    from segshield.models import ModelSpec

    if spec.factory is not None:
        return ModelSpec(spec.factory, weights, spec.factory_kwargs, spec.allow_pickle)
    if loaded.description.get("source") in ("bundled", "card"):
        return ModelSpec(weights=card)
    raise typer.BadParameter("--audit needs a factory (--model) or a segshield model card")


def harden(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder for the weights, card and before/after.")],
    name: Annotated[str, typer.Option(help="File name stem of the weights and card.")] = (
        "hardened"
    ),
    model: Model = None,
    weights: AuditWeights = None,
    model_kwargs: ModelKwargs = None,
    trust_pickle: TrustPickle = False,
    dataset: Dataset = "nuclei",
    data: Annotated[
        Path | None, typer.Option(help="Your training data (images/+masks/ or BUSI layout).")
    ] = None,
    test_data: Annotated[
        Path | None, typer.Option(help="Audit data (default: the bundled test split).")
    ] = None,
    size: Size = 128,
    method: Method = "pgd",
    epsilon: Annotated[str, typer.Option(help="L-inf training budget, e.g. 8/255.")] = "8/255",
    attack_steps: Annotated[int, typer.Option(min=1, help="PGD / TRADES steps.")] = 3,
    epochs: Annotated[int, typer.Option(min=1)] = 20,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    clean_fraction: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.0,
    beta: Annotated[float, typer.Option(min=0.0, help="TRADES KL weight.")] = 6.0,
    seed: int = 0,
    audit: Annotated[
        bool, typer.Option(help="Audit the model before and after (PGD at 2/255, 4/255, 8/255).")
    ] = True,
    verbose: Verbose = False,
) -> None:
    """Adversarially fine-tune a model (PGD, FGSM-RS or TRADES), write weights + model card."""
    setup_logging(verbose)
    from segshield.training import HardenConfig
    from segshield.training import harden as run_harden

    with error_boundary():
        check_out(out)
        cfg = HardenConfig(
            method=method, epsilon=_epsilon(epsilon), attack_steps=attack_steps, epochs=epochs,
            batch_size=batch_size, lr=lr, clean_fraction=clean_fraction, beta=beta, seed=seed,
        )  # fmt: skip
        spec, loaded = _load(model, weights, json_object(model_kwargs), trust_pickle)
        train_ds = _dataset(data, dataset, "train", size)

        def progress(epoch: int, step: int, loss: float) -> None:
            if verbose:
                console.print(f"epoch {epoch} step {step} loss {loss:.4f}", markup=False)

        result = run_harden(loaded.module, train_ds, cfg, progress)
        w_path, card_path = _save(result, out, name, loaded, train_ds, command_line(ctx))
        if audit:
            after = _hardened_spec(spec, loaded, w_path, card_path)
            _audit(spec, after, out, dataset, test_data, size, ctx)
    raise typer.Exit(EXIT_OK)


def _is_8(eps: float | None) -> bool:
    return eps is not None and abs(eps - 8 / 255) < 1e-6


def _audit(
    before: Any, after: Any, out: Path, dataset: str, test_data: Path | None, size: int, ctx: Any
) -> None:
    from segshield.api import audit_before_after

    cmd = command_line(ctx)
    cmp = audit_before_after(
        before, after, out, dataset=dataset, data=test_data, size=size, command=cmd
    )
    lines = []
    for row in cmp.rows:
        dice = row.metrics.get("dice")
        if row.engine != "pytorch" or dice is None or dice.base is None or dice.new is None:
            continue
        if row.kind == "clean":
            lines.append(f"clean Dice {dice.base:.4f} -> {dice.new:.4f} ({dice.change:+.4f})")
        elif row.kind == "cell" and row.attack == "pgd" and _is_8(row.epsilon):
            lines.append(f"PGD 8/255 Dice {dice.base:.4f} -> {dice.new:.4f} ({dice.change:+.4f})")
    for line in lines:
        console.print(line, markup=False)
    console.print(f"wrote {out / 'before_after.md'} (.html, .json)", markup=False)


def _epsilon(text: str) -> float:
    from segshield.epsilon import parse_epsilon

    try:
        return parse_epsilon(text)
    except ValueError as exc:
        raise typer.BadParameter(f"--epsilon: {exc}") from exc


def _save(result: Any, out: Path, name: str, loaded: Any, train_ds: Any, command: str) -> tuple:
    """Weights + card of the hardened model, and the one line that says so."""
    from segshield.training import save_hardened
    from segshield.training.harden import architecture_of

    w_path, card_path = save_hardened(
        result,
        out,
        name,
        architecture=architecture_of(loaded.module, loaded.description.get("card")),
        data={"train": {k: v for k, v in train_ds.describe().items() if k != "names"}},
        base={k: v for k, v in loaded.description.items() if k != "card"},
        command=command,
    )
    last = result.history[-1]
    eps = float(result.recipe["epsilon"])  # asdict(HardenConfig) in the recipe
    console.print(
        f"wrote {w_path} and {card_path} in {result.seconds:.0f} s (kept epoch "
        f"{result.best_epoch}); validation Dice {last.val_dice:.4f}, PGD-10 "
        f"{format_epsilon(eps)} Dice {last.val_robust_dice:.4f}",
        markup=False,
    )
    return w_path, card_path
