"""`segshield train`: train the seed U-Net, any model factory (`--model mod:fn` or
`--model path/to/file.py:fn`), or the seed CNN classifier (`--task classification`) on the
bundled or the user's data.

Exit codes: 0 trained; 1 the trained model is degenerate (it predicts one class everywhere
where the truth has several): like a crossed gate rule, the run itself worked (weights and
card are written, so the time is not lost) but its result must not pass a pipeline unseen,
and 1 is what CI reads as "check failed"; `--allow-degenerate` turns it into a warning and 0.
2: bad input, as everywhere.

A plain function with typer annotations; `segshield.cli.main` registers it on the app.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from segshield.cli.audit_options import AuditDataset, LabelGroups, VolumeMode, VolumeSize
from segshield.cli.errors import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    err_console,
    error_boundary,
    setup_logging,
)
from segshield.cli.options import (
    ModelKwargs,
    Size,
    Verbose,
    check_out,
    command_line,
    console,
    json_object,
)

# Plain (non-terminal) consoles get a batch line at most this often, plus the first batch:
# a CI log shows the run is alive without a line per batch.
BATCH_LINE_EVERY_S = 10.0


def parse_volume_size(text: str) -> tuple[int, int, int]:
    """``D,H,W`` -> (D, H, W), each >= 4."""
    try:
        d, h, w = (int(v) for v in text.split(","))
    except ValueError as exc:
        raise typer.BadParameter(
            f"--volume-size must be D,H,W (e.g. 32,64,64), got {text!r}"
        ) from exc
    if min(d, h, w) < 4:
        raise typer.BadParameter(f"--volume-size sides must be >= 4, got {text!r}")
    return d, h, w


def _label_groups(text: str | None) -> list:
    from segshield.data.labels import parse_label_groups

    return parse_label_groups([g for g in (text or "").split(";") if g.strip()])


def _multi_label(ds, groups: list):
    """A label-map dataset as multi-label masks (N, K, ...), one channel per group."""
    if ds is None:
        return None
    from dataclasses import replace

    from segshield.data.labels import multi_hot

    meta = {**ds.meta, "label_groups": {name: list(values) for name, values in groups}}
    return replace(ds, masks=multi_hot(ds.masks, groups), meta=meta)


def _dataset(
    data: Path | None,
    bundled: str,
    split: str,
    size: int,
    num_classes: int = 1,
    volumes: dict | None = None,
):
    """Training or test data; ``volumes``: volume_mode and volume_size for volume data."""
    from segshield.data import bundled_dataset, bundled_volumes_dataset, dataset_from_path

    volumes = volumes or {}
    if data is not None:
        return dataset_from_path(data, size=(size, size), num_classes=num_classes, **volumes)
    if bundled == "volumes":
        return bundled_volumes_dataset(split, (size, size), num_classes=num_classes, **volumes)
    return bundled_dataset(bundled, split, size=(size, size))


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _epoch_label(summary: Any, loss: str) -> str:
    text = f"epoch {summary.epoch} ({loss} {summary.train_loss:.4f}"
    if summary.val_dice is not None:
        text += f", val dice {summary.val_dice:.4f}{' best' if summary.best else ''}"
    return text + ")"


@contextmanager
def training_progress(epochs: int, loss: str) -> Iterator[tuple[Callable, Callable]]:
    """``(on_batch, on_epoch)`` for :func:`segshield.training.train`: on a terminal a bar
    over the epoch's batches (``epoch 3/40 batch 5/14 loss 0.231``) and a line per epoch;
    elsewhere one line per epoch (count, elapsed, ETA) and a batch line now and then."""
    from segshield.cli.progress import StepClock

    clock, last = StepClock(), [-BATCH_LINE_EVERY_S]

    def batch_text(b: Any) -> str:
        return f"epoch {b.epoch}/{b.epochs} batch {b.batch}/{b.batches} {loss} {b.loss:.4f}"

    if not console.is_terminal:

        def on_batch(b: Any) -> None:
            now = time.monotonic()
            if now - last[0] >= BATCH_LINE_EVERY_S or (b.epoch == 1 and b.batch == 1):
                last[0] = now
                _say(batch_text(b))

        yield on_batch, lambda s: _say(clock.line(s.epoch, epochs, _epoch_label(s, loss)))
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("training", total=None)

        def on_batch_bar(b: Any) -> None:
            progress.update(task, description=batch_text(b), completed=b.batch, total=b.batches)

        def on_epoch_line(s: Any) -> None:
            progress.console.print(clock.line(s.epoch, epochs, _epoch_label(s, loss)), markup=False)

        yield on_batch_bar, on_epoch_line


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _loud_degenerate(exc: Any, allowed: bool) -> None:
    result = exc.result if hasattr(exc, "result") else exc
    reason = getattr(result, "degenerate", None) or str(exc)
    err_console.print(
        f"[bold red]WARNING: the trained model is degenerate:[/] {reason}. "
        f"Weights and card were written ({getattr(result, 'card', '?')}, training.degenerate). "
        + (
            "Kept because of --allow-degenerate."
            if allowed
            else "Try --loss dice_focal --pos-weight auto, more --epochs or another --lr; "
            "--allow-degenerate keeps it with exit 0."
        ),
        highlight=False,
        soft_wrap=True,
    )


def _train_classifier(cfg: dict[str, Any], train_ds: Any, test_ds: Any, out: Path, cmd: str):
    """The seed CNN on patches cut from the segmentation masks (as the classifier audit cuts
    them); with no test data, a held-out split of the training images (by volume) is cut."""
    import numpy as np

    from segshield.data import SegDataset, patch_classification_from_segmentation
    from segshield.training import ClassifierTrainConfig, train_patch_classifier, validation_split

    if test_ds is None:
        volumes = train_ds.meta.get("volume")
        tr, te, _ = validation_split(len(train_ds), volumes, cfg["val_fraction"], cfg["seed"])
        if not len(te):
            raise typer.BadParameter(
                "--task classification without --test-data needs images to hold out"
            )

        def part(idx: np.ndarray, what: str) -> SegDataset:
            names = tuple(train_ds.names[i] for i in idx)
            return SegDataset(
                train_ds.images[idx], train_ds.masks[idx], names, f"{train_ds.source} ({what})"
            )

        train_ds, test_ds = part(tr, "train part"), part(te, "held-out part")
    train_cls = patch_classification_from_segmentation(train_ds, cfg["patch"], cfg["stride"])
    test_cls = patch_classification_from_segmentation(test_ds, cfg["patch"], cfg["patch"])
    config = ClassifierTrainConfig(
        name=cfg["name"], epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
        seed=cfg["seed"], width=cfg["base_width"],
    )  # fmt: skip
    with training_progress(config.epochs, "ce") as (on_batch, on_epoch):
        return train_patch_classifier(config, train_cls, test_cls, out, cmd, on_batch, on_epoch)


# Help panels (segshield.cli.help_format shows them in its order; "Training" after those).
MODEL, DATA, TRAINING, OUTPUT, RUN = "Model", "Data", "Training", "Output & tracking", "Run control"


def _opt(panel: str, help_text: str | None = None, *names: str, **kw: Any) -> Any:
    return typer.Option(*names, help=help_text, rich_help_panel=panel, **kw)


def train(
    ctx: typer.Context,
    out: Annotated[Path, _opt(OUTPUT, "Folder for <name>.safetensors and <name>.json.")],
    name: Annotated[str, _opt(OUTPUT, "File name stem of the weights and card.")] = "unet",
    task: Annotated[
        str,
        _opt(
            MODEL,
            "segmentation (masks) or classification (the seed CNN on patches cut from the "
            "masks, as the classifier audit cuts them).",
        ),
    ] = "segmentation",
    model: Annotated[
        str | None,
        _opt(
            MODEL,
            "Model factory to train: package.module:fn (found from the current folder) or "
            "path/to/file.py:fn (default: the seed U-Net).",
        ),
    ] = None,
    model_kwargs: ModelKwargs = None,
    num_classes: Annotated[
        int, _opt(MODEL, "1: binary masks; K > 1: label maps 0..K-1 (softmax).", min=1)
    ] = 1,
    label_groups: LabelGroups = None,
    base_width: Annotated[int, _opt(MODEL, "Seed U-Net / CNN width.", min=1)] = 16,
    depth: Annotated[int, _opt(MODEL, "Seed U-Net depth.", min=1, max=6)] = 3,
    dataset: AuditDataset = "nuclei",
    volume_mode: VolumeMode = "slices",
    volume_size: VolumeSize = "32,64,64",
    data: Annotated[
        Path | None, _opt(DATA, "Your training data (images/+masks/ or BUSI layout).")
    ] = None,
    test_data: Annotated[
        Path | None, _opt(DATA, "Your test data (default: bundled test split; with --data: none).")
    ] = None,
    size: Size = 128,
    val_fraction: Annotated[
        float,
        _opt(DATA, "Share of the training volumes (else images) held out.", min=0.0, max=0.95),
    ] = 0.2,
    patch: Annotated[int, _opt(DATA, "Classification: patch side.", min=4)] = 32,
    stride: Annotated[int, _opt(DATA, "Classification: training patch step.", min=1)] = 16,
    loss: Annotated[
        str, _opt(TRAINING, "bce, dice, focal or dice_focal (the seed MRI paper's Dice + Focal).")
    ] = "bce",
    pos_weight: Annotated[
        str,
        _opt(
            TRAINING,
            "Weight of foreground pixels in bce/focal: a number, or auto (negatives / positives "
            "of the training masks, at most 100; recorded in the card).",
        ),
    ] = "1",
    focal_gamma: Annotated[float, _opt(TRAINING, "Focal loss gamma.", min=0.0)] = 2.0,
    patience: Annotated[
        int, _opt(TRAINING, "Stop after N epochs without a better val Dice (0: never).", min=0)
    ] = 10,
    epochs: Annotated[
        int | None, _opt(TRAINING, "Default 60 (segmentation), 20 (classification).", min=1)
    ] = None,
    batch_size: Annotated[
        int | None, _opt(TRAINING, "Default 4 (segmentation), 32 (classification).", min=1)
    ] = None,
    lr: Annotated[float, _opt(TRAINING, "Adam learning rate.", min=0.0)] = 1e-3,
    seed: Annotated[int, _opt(TRAINING, "Seeds weights, split and augmentation.")] = 0,
    allow_degenerate: Annotated[
        bool, _opt(TRAINING, "Exit 0 even if the model predicts one class everywhere.")
    ] = False,
    device: Annotated[str, _opt(RUN, "Where training runs: cpu, cuda, cuda:N or auto.")] = "cpu",
    verbose: Verbose = False,
) -> None:
    """Train a segmentation model (seed U-Net or your factory; BCE/Dice/Focal/Dice+Focal,
    validation, early stopping) or the seed CNN classifier; exit 1 if it is degenerate."""
    setup_logging(verbose)
    from segshield.devices import resolve_device
    from segshield.training import TrainConfig

    kind = task.strip().lower()
    with error_boundary():
        if kind not in ("segmentation", "classification"):
            raise typer.BadParameter(f"--task must be segmentation or classification, not {task!r}")
        if kind == "classification" and model is not None:
            raise typer.BadParameter(
                "--task classification trains the seed CNN; --model is for segmentation"
            )
        resolve_device(device)  # refused before any work
        check_out(out)
        kwargs = json_object(model_kwargs)
        volumes = {"volume_mode": volume_mode, "volume_size": parse_volume_size(volume_size)}
        from segshield.data.labels import label_map_classes

        groups = _label_groups(label_groups)
        read_classes = label_map_classes(groups) if groups else num_classes
        train_ds = _dataset(data, dataset, "train", size, read_classes, volumes)
        test_ds = (
            _dataset(test_data, dataset, "test", size, read_classes, volumes)
            if data is None or test_data
            else None
        )
        if groups:  # multi-label: one {0, 1} channel per group, the classes named
            train_ds, test_ds = (_multi_label(d, groups) for d in (train_ds, test_ds))
        if kind == "classification":
            cfg = {
                "name": name, "epochs": epochs or 20, "batch_size": batch_size or 32, "lr": lr,
                "seed": seed, "base_width": base_width, "patch": patch, "stride": stride,
                "val_fraction": val_fraction,
            }  # fmt: skip
            res = _train_classifier(cfg, train_ds, test_ds, out, command_line(ctx))
            _finish_classifier(res, allow_degenerate)
        config = TrainConfig(
            name=name, epochs=epochs or 60, batch_size=batch_size or 4, lr=lr, seed=seed,
            base_width=base_width, depth=depth, device=device, loss=loss,
            pos_weight=pos_weight, focal_gamma=focal_gamma, val_fraction=val_fraction,
            patience=patience, allow_degenerate=allow_degenerate, model=model,
            model_kwargs=kwargs, num_classes=num_classes,
        )  # fmt: skip
        result, degenerate = _train_segmentation(config, train_ds, test_ds, out, command_line(ctx))
    _finish(result, degenerate)


def _train_segmentation(config: Any, train_ds: Any, test_ds: Any, out: Path, cmd: str):
    """(TrainResult, the DegenerateModelError or None), with progress drawn meanwhile."""
    from segshield.training import DegenerateModelError
    from segshield.training import train as run_train

    with training_progress(config.epochs, config.loss) as (on_batch, on_epoch):
        try:
            return run_train(config, train_ds, test_ds, out, cmd, on_epoch, on_batch), None
        except DegenerateModelError as exc:
            return exc.result, exc


def _finish(result: Any, degenerate: Exception | None) -> None:
    """The closing lines and the exit code (1: degenerate and not allowed)."""
    if degenerate is not None:
        _loud_degenerate(degenerate, allowed=False)
        raise typer.Exit(EXIT_GATE_FAILED)
    if result.degenerate:
        _loud_degenerate(result, allowed=True)
    m = result.test_metrics
    _say(
        f"wrote {result.weights} and {result.card} in {result.seconds:.0f} s; test Dice "
        f"{_fmt(m['dice'])}, IoU {_fmt(m['iou'])}, accuracy {_fmt(m['accuracy'])}"
    )
    raise typer.Exit(EXIT_OK)


def _finish_classifier(result: Any, allow_degenerate: bool) -> None:
    m = result.test_metrics
    _say(
        f"wrote {result.weights} and {result.card} in {result.seconds:.0f} s; test accuracy "
        f"{m['accuracy']:.4f}, balanced accuracy {m['balanced_accuracy']:.4f}"
    )
    if result.degenerate:
        _loud_degenerate(result, allowed=allow_degenerate)
        if not allow_degenerate:
            raise typer.Exit(EXIT_GATE_FAILED)
    raise typer.Exit(EXIT_OK)
