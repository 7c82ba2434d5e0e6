"""Export check of the MONAI model zoo (segshield.models.zoo) on the default CPU engines.

    .venv/bin/python scripts/zoo_parity.py [--out /tmp/zoo-parity] [--models unetpp,flex-r18]
        [--engines ort-fp32,ort-fp16,ort-int8,aoti-fp32] [--size 128] [--json rows.json]
        [--weights unetpp=models/unetpp.safetensors ...] [--int8-search auto|off]

For each zoo model (seeded random initialisation, eval mode) it builds the engines through
segshield's own builder (`build_engines`), calibrating INT8 on the bundled training split and
measuring parity against the PyTorch source on test images: 2D models on the first 4 bundled
lesion test slices (1x128x128), the 3D U-Net on the 2 bundled test volumes (brain2, lung1)
resized to 32x64x64 (INT8 calibrated on the 3 training volumes). Prints a Markdown table:
model, parameters, engine, status, max |Δ logit| vs PyTorch, mask agreement with the source
and the health it gives (ok >= 0.97 > degraded >= 0.80 > failed), build seconds; an engine
that failed shows its error under the table.

Random weights give masks that are not anatomy, but FP32/FP16 parity is about the engines
computing the same function as the source and needs no trained model; INT8 depends on the
activation ranges, so pass `--weights` to check a trained model too.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segshield.data import (
    BUNDLED_VOLUMES_TEST,
    bundled_dataset,
    bundled_volumes_path,
    split_by_volume,
    volume_pairs,
    volumes_dataset,
)
from segshield.engines.build import BuildOptions, BuiltEngine, build_engines
from segshield.models import state_dict_from_file, zoo

DEFAULT_ENGINES = ("ort-fp32", "ort-fp16", "ort-int8", "aoti-fp32")

# name -> (factory, kwargs shown in the table, 3D?)
MODELS: dict[str, tuple[Callable[..., nn.Module], dict, bool]] = {
    "unet": (zoo.monai_unet, {}, False),
    "unetpp": (zoo.monai_unetpp, {}, False),
    "flex-r18": (zoo.monai_flexible_unet, {"backbone": "resnet18"}, False),
    "flex-b0": (zoo.monai_flexible_unet, {"backbone": "efficientnet-b0"}, False),
    "unet3d": (zoo.monai_unet3d, {}, True),
}


def images_2d(size: int, n_sample: int) -> tuple[np.ndarray, np.ndarray]:
    """(sample, calibration): bundled lesion test / train slices, (N, 1, size, size)."""
    test = bundled_dataset("lesions", "test", size=(size, size))
    train = bundled_dataset("lesions", "train", size=(size, size))
    return test.images[:n_sample], train.images


def volumes_3d(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(sample, calibration): the bundled test / training volumes, (N, 1, D, H, W)."""
    ds = volumes_dataset(volume_pairs(bundled_volumes_path()), size=shape)
    train, test = split_by_volume(ds, test_volumes=BUNDLED_VOLUMES_TEST)
    return test.images, train.images


def health(agreement: float | None) -> str:
    if agreement is None:
        return "—"
    opts = BuildOptions()
    return opts.health().classify(agreement).value


def row(model: str, params: int, built: BuiltEngine) -> dict:
    rec = built.record
    parity = rec.parity or {}
    agreement = parity.get("mask_dice")
    return {
        "model": model,
        "params": params,
        "engine": rec.name,
        "status": str(rec.status),
        "logit_max_abs_err": parity.get("logit_max_abs_err"),
        "logit_scale": parity.get("logit_scale"),
        "flipped": parity.get("flipped_pixels"),
        "pixels": parity.get("pixels"),
        "mask_agreement": agreement,
        "health": health(agreement) if rec.status == "ok" else "—",
        "build_s": rec.build_seconds,
        "reason": rec.reason,
        "notes": list(rec.notes),
    }


def run_model(
    name: str,
    engines: list[str],
    out: Path,
    size: int,
    n_sample: int,
    weights: Path | None,
    options: BuildOptions,
) -> list[dict]:
    factory, kwargs, is_3d = MODELS[name]
    torch.manual_seed(0)
    model = factory(**kwargs).eval()
    if weights is not None:  # e.g. trained by `segshield train --model ...`
        model.load_state_dict(state_dict_from_file(weights), strict=True)
        name = f"{name} (trained)"
    params = sum(p.numel() for p in model.parameters())
    if is_3d:
        sample, calib = volumes_3d((32, 64, 64))
    else:
        sample, calib = images_2d(size, n_sample)
    start = time.perf_counter()
    folder = out / name.replace(" ", "-").replace("(", "").replace(")", "")
    built = build_engines(engines, model, calib, folder, sample=sample, options=options)
    print(f"# {name}: {len(engines)} engines in {time.perf_counter() - start:.1f} s", flush=True)
    return [row(name, params, b) for b in built]


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | params | engine | status | max abs Δ logit (logit scale) "
        "| mask agreement (pixels flipped) | health | build s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        delta = f"{_num(r['logit_max_abs_err'], '.2e')} (±{_num(r['logit_scale'], '.2g')})"
        agree = f"{_num(r['mask_agreement'], '.4f')} ({r['flipped']}/{r['pixels']})"
        if r["status"] != "ok":
            delta, agree = "—", "—"
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.2f} M | `{r['engine']}` | {r['status']} "
            f"| {delta} | {agree} | {r['health']} | {_num(r['build_s'], '.1f')} |"
        )
    errors = [r for r in rows if r["status"] != "ok"]
    for r in errors:
        lines.append(f"\n- {r['model']} / {r['engine']}: {r['reason']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/zoo-parity"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--engines", default=",".join(DEFAULT_ENGINES))
    parser.add_argument("--size", type=int, default=128, help="2D image side")
    parser.add_argument("--images", type=int, default=4, help="2D parity images")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--int8-search", choices=("auto", "off"), default="auto")
    parser.add_argument(
        "--weights", action="append", default=[], metavar="MODEL=PATH",
        help="trained weights (safetensors) for a model instead of its random init; repeatable",
    )  # fmt: skip
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    weights = dict(w.split("=", 1) for w in args.weights)
    options = BuildOptions(int8_search=args.int8_search)
    rows: list[dict] = []
    for name in [m for m in args.models.split(",") if m]:
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        path = Path(weights[name]) if name in weights else None
        rows.extend(run_model(name, engines, args.out, args.size, args.images, path, options))
        if args.json:  # after each model, so an interrupted run keeps what it measured
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
