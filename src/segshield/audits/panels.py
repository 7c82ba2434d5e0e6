"""Image panels like the seeds' figures: clean image, amplified perturbation, adversarial
image, ground truth, and the prediction of the source and of each engine, side by side.

Panels are decoration: a panel that cannot be made or written (a read-only folder, a full
disk) costs the cell no measurement; it becomes a sentence in ``AuditCell.warnings``."""

from __future__ import annotations

import hashlib
import logging
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image

from segshield.results import SOURCE_ENGINE, AuditCell, EngineEval, Panel, PerImage

log = logging.getLogger(__name__)

GAP = 4  # white pixels between tiles
STEM_MAX = 40  # characters kept of a sanitised cell id or image name in a panel's file name
HASH_CHARS = 10  # hex digits of SHA-256 of the exact cell id and image name


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


def panel_slice(truth: np.ndarray) -> int | None:
    """The depth index a volume's panel shows: the slice with the most ground-truth
    foreground (the middle one when the truth is empty); None for a 2-D image (C, H, W)."""
    if truth.ndim != 4:  # (C, D, H, W) volumes only
        return None
    per_slice = (truth != 0).sum(axis=(0, 2, 3))
    return int(per_slice.argmax()) if per_slice.any() else truth.shape[1] // 2


def compose_panel(
    clean: np.ndarray,
    adv: np.ndarray,
    truth: np.ndarray,
    predictions: dict[str, np.ndarray],
    eps: float,
    num_classes: int = 1,
) -> tuple[np.ndarray, list[str]]:
    """One row of tiles (H, W * k + gaps, 3) uint8 and the tile titles, left to right.

    Images (C, H, W); volumes (C, D, H, W) show one slice, :func:`panel_slice`, named in the
    titles."""
    z = panel_slice(truth)
    if z is not None:
        clean, adv, truth = clean[:, z], adv[:, z], truth[:, z]
        predictions = {k: v[:, z] for k, v in predictions.items()}
    tiles = [_gray(clean), _perturbation(adv - clean, eps), _gray(adv), _mask(truth, num_classes)]
    titles = ["clean image", "perturbation (amplified)", "adversarial image", "ground truth"]
    if z is not None:
        titles[0] = f"clean image (slice {z})"
    for engine, pred in predictions.items():
        tiles.append(_mask(pred, num_classes))
        titles.append(f"prediction: {engine}")
    h = tiles[0].shape[0]
    gap = np.full((h, GAP, 3), 255, dtype=np.uint8)
    row = [tiles[0]]
    for t in tiles[1:]:
        row += [gap, t]
    return np.concatenate(row, axis=1), titles


def slug(text: str, limit: int | None = None) -> str:
    """``text`` with every run of characters other than ASCII letters, digits and ``_.-``
    replaced by ``_`` (stripped of leading/trailing ``_``), cut to ``limit`` characters."""
    out = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")
    return out if limit is None else out[:limit].rstrip("_.")


def panel_file_name(cell_id: str, index: int, name: str) -> str:
    """The file name of one panel: ``{cell}__{index}-{hash}[-{stem}].png``.

    ``cell`` and ``stem`` are the sanitised cell id and image name (readable, ASCII only,
    :data:`STEM_MAX` characters at most), ``index`` the image's dataset index and ``hash``
    the first :data:`HASH_CHARS` hex digits of SHA-256 of the exact cell id and name. Names
    that sanitise alike (``a b``, ``a_b``, ``a?b``, two non-ASCII names) or differ only past
    the cap get different files, and a 250-character name stays far below the 255-byte limit
    of a file name (at most about 110 bytes).
    """
    digest = hashlib.sha256(f"{cell_id}\0{index}\0{name}".encode()).hexdigest()[:HASH_CHARS]
    stem = slug(name, STEM_MAX)
    return f"{slug(cell_id, STEM_MAX)}__{index:04d}-{digest}{'-' + stem if stem else ''}.png"


def write_panel(path: Path, panel: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(panel).save(path, optimize=True)


def _floats(values: list[float | None]) -> np.ndarray:
    return np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)


def worst_hit_order(clean: PerImage, adv: PerImage) -> list[int]:
    """Image indices, the worst hit first, by the source engine's per-image values.

    First the images with a non-empty ground truth, by Dice drop (clean minus adversarial
    per-image Dice, largest first): the quantity the cell's Dice and attack success are made
    of, and what each panel's caption shows. An empty-truth image has no per-image Dice (see
    :class:`~segshield.metrics.SegmentationMetrics`); ranked by the convention value, one
    false-positive blob would take it from 100% to 0% and win every cell. They come after,
    by the false-positive pixels the attack added (adversarial minus clean; with an empty
    truth every predicted foreground pixel is one), so a cell still shows a panel on a
    dataset of empty masks and the image the attack hallucinated most on leads them. Ties
    keep dataset order.
    """
    d0, d1 = _floats(clean.dice), _floats(adv.dice)
    n = len(d0)
    if len(clean.tp) == n and len(clean.fn) == n:
        has_truth = (np.asarray(clean.tp) + np.asarray(clean.fn)) > 0
    else:  # no counts stored: an undefined clean Dice is the empty truth
        has_truth = np.isfinite(d0)
    by_drop = np.argsort(-np.nan_to_num(d0 - d1, nan=-np.inf), kind="stable")
    first = [int(i) for i in by_drop if has_truth[i]]
    rest = [i for i in range(n) if not has_truth[i]]
    if rest and len(clean.fp) == n and len(adv.fp) == n:
        added = np.asarray(adv.fp, dtype=np.int64) - np.asarray(clean.fp, dtype=np.int64)
        rest = sorted(rest, key=lambda i: -int(added[i]))
    return first + rest


def _opt(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


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
    """Write PNG panels of the ``count`` images the source model was hit worst on (see
    :func:`worst_hit_order`) under ``out_dir/panels`` (file names: :func:`panel_file_name`).

    Never raises for a panel: one that cannot be composed or written is left out, logged,
    and told in one report-ready sentence appended to ``cell.warnings``; the cell keeps its
    measurements and its status.
    """
    src_clean, src_adv = clean.get(SOURCE_ENGINE), cell.engines.get(SOURCE_ENGINE)
    if count < 1 or not (src_clean and src_adv and src_adv.per_image and src_clean.per_image):
        return []
    try:
        order = worst_hit_order(src_clean.per_image, src_adv.per_image)[:count]
    except Exception as exc:  # panels are decoration: never the cell's failure
        _warn(cell, f"Image panels were not made ({type(exc).__name__}: {exc})")
        return []
    d0, d1 = _floats(src_clean.per_image.dice), _floats(src_adv.per_image.dice)
    panels, failed = [], []
    for i in order:
        try:
            tile, titles = compose_panel(
                images[i],
                adv[i],
                labels[i],
                {n: p[i] for n, p in preds.items()},
                cell.epsilon,
                num_classes,
            )
            rel = Path("panels") / panel_file_name(cell.id, i, names[i])
            write_panel(out_dir / rel, tile)
        except Exception as exc:  # a read-only folder, a full disk, a name the disk refuses
            log.debug("panel of image %r in cell %s failed", names[i], cell.id, exc_info=True)
            failed.append(exc)
            continue
        panels.append(Panel(names[i], i, rel.as_posix(), _opt(d0[i]), _opt(d1[i]), titles))
    if failed:
        exc = failed[0]
        _warn(
            cell,
            f"{len(failed)} of {len(order)} image panels were not written "
            f"({type(exc).__name__}: {exc})",
        )
    return panels


def _warn(cell: AuditCell, what: str) -> None:
    sentence = f"{what}; the cell's measurements are unaffected."
    log.warning("cell %s: %s", cell.id, sentence)
    cell.warnings.append(sentence)
