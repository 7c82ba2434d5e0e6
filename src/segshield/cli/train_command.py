"""`segshield train`: train the seed U-Net on the bundled or the user's data.

A plain function with typer annotations; `segshield.cli.main` registers it on the app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segshield.cli.errors import EXIT_OK, error_boundary, setup_logging
from segshield.cli.options import Dataset, Size, Verbose, check_out, command_line, console


def _dataset(data: Path | None, bundled: str, split: str, size: int):
    from segshield.data import bundled_dataset, dataset_from_path

    if data is not None:
        return dataset_from_path(data, size=(size, size))
    return bundled_dataset(bundled, split, size=(size, size))


def train(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder for <name>.safetensors and <name>.json.")],
    name: Annotated[str, typer.Option(help="File name stem of the weights and card.")] = "unet",
    dataset: Dataset = "nuclei",
    data: Annotated[
        Path | None, typer.Option(help="Your training data (images/+masks/ or BUSI layout).")
    ] = None,
    test_data: Annotated[
        Path | None, typer.Option(help="Your test data (default: the bundled test split).")
    ] = None,
    size: Size = 128,
    epochs: Annotated[int, typer.Option(min=1)] = 60,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    seed: int = 0,
    base_width: Annotated[int, typer.Option(min=1)] = 16,
    depth: Annotated[int, typer.Option(min=1, max=6)] = 3,
    device: Annotated[
        str, typer.Option(help="Where training runs: cpu, cuda, cuda:N or auto.")
    ] = "cpu",
    verbose: Verbose = False,
) -> None:
    """Train the seed U-Net (Adam, BCE, flip/rotate/zoom augmentation, seeded)."""
    setup_logging(verbose)
    from segshield.cli.progress import epoch_progress
    from segshield.devices import resolve_device
    from segshield.training import TrainConfig
    from segshield.training import train as run_train

    with error_boundary():
        resolve_device(device)  # refused before any work
        check_out(out)
        cfg = TrainConfig(
            name=name,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            base_width=base_width,
            depth=depth,
            device=device,
        )
        train_ds = _dataset(data, dataset, "train", size)
        test_ds = (
            _dataset(test_data, dataset, "test", size) if data is None or test_data else (train_ds)
        )
        with epoch_progress(console, epochs) as on_epoch:
            result = run_train(cfg, train_ds, test_ds, out, command_line(ctx), on_epoch)
    m = result.test_metrics
    console.print(
        f"wrote {result.weights} and {result.card} in {result.seconds:.0f} s; test Dice "
        f"{m['dice']:.4f}, IoU {m['iou']:.4f}, accuracy {m['accuracy']:.4f}",
        markup=False,
    )
    raise typer.Exit(EXIT_OK)
