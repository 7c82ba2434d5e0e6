"""Image panels like the seeds' figures: clean image, amplified perturbation, adversarial
image, ground truth, and the prediction of the source and of each engine, side by side."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from segshield.results import SOURCE_ENGINE, AuditCell, EngineEval, Panel

GAP = 4  # white pixels between tiles


def _gray(img: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) uint8."""
    arr = img if img.shape[0] == 3 else np.repeat(img[:1], 3, axis=0)
    return (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8).transpose(1, 2, 0)


def _mask(mask: np.ndarray, num_classes: int = 1) -> np.ndarray:
    """(1, H, W) labels -> (H, W, 3) uint8: background black, the highest class white, other
    classes evenly spaced grays (a binary mask: foreground white)."""
    top = max(num_classes - 1, 1)
    gray = (np.clip(mask[0].astype(np.float64), 0, top) * (255.0 / top)).round().astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def _perturbation(delta: np.ndarray, eps: float) -> np.ndarray:
    """(C, H, W) delta in [-eps, eps] -> gray (H, W, 3): mid-gray is 0, white +eps, black -eps."""
    scale = max(float(np.abs(delta).max()), eps, 1e-12)
    return _gray(0.5 + delta / (2.0 * scale))


def compose_panel(
    clean: np.ndarray,
    adv: np.ndarray,
    truth: np.ndarray,
    predictions: dict[str, np.ndarray],
    eps: float,
    num_classes: int = 1,
) -> tuple[np.ndarray, list[str]]:
    """One row of tiles (H, W * k + gaps, 3) uint8 and the tile titles, left to right."""
    tiles = [_gray(clean), _perturbation(adv - clean, eps), _gray(adv), _mask(truth, num_classes)]
    titles = ["clean image", "perturbation (amplified)", "adversarial image", "ground truth"]
    for engine, pred in predictions.items():
        tiles.append(_mask(pred, num_classes))
        titles.append(f"prediction: {engine}")
    h = tiles[0].shape[0]
    gap = np.full((h, GAP, 3), 255, dtype=np.uint8)
    row = [tiles[0]]
    for t in tiles[1:]:
        row += [gap, t]
    return np.concatenate(row, axis=1), titles


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def write_panel(path: Path, panel: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(panel).save(path, optimize=True)


def worst_hit_panels(
    cell: AuditCell,
    images: np.ndarray,
    adv: np.ndarray,
    labels: np.ndarray,
    names: tuple[str, ...],
    preds: dict[str, np.ndarray],
    clean: dict[str, EngineEval],
    count: int,
    out_dir: Path,
    num_classes: int = 1,
) -> list[Panel]:
    """Write PNG panels of the ``count`` images the source model lost most Dice on."""
    src_clean, src_adv = clean.get(SOURCE_ENGINE), cell.engines.get(SOURCE_ENGINE)
    if count < 1 or not (src_clean and src_adv and src_adv.per_image and src_clean.per_image):
        return []
    d0 = np.asarray(src_clean.per_image.dice, dtype=np.float64)
    d1 = np.asarray(src_adv.per_image.dice, dtype=np.float64)
    panels = []
    for i in np.argsort(-(d0 - d1), kind="stable")[:count]:
        tile, titles = compose_panel(
            images[i],
            adv[i],
            labels[i],
            {n: p[i] for n, p in preds.items()},
            cell.epsilon,
            num_classes,
        )
        rel = Path("panels") / f"{slug(cell.id)}__{slug(names[i])}.png"
        write_panel(out_dir / rel, tile)
        panels.append(Panel(names[i], int(i), rel.as_posix(), float(d0[i]), float(d1[i]), titles))
    return panels
