"""A readable summary of the audited data for the provenance section: image shape (2-D or
3-D), volumes, intensity scaling (and what ``auto`` resolved to), pixel/voxel spacing and
multi-label groups, each read from ``report.dataset`` as the data loader described it.

The raw key-value table of ``report.dataset`` stays below it; this only says the same facts
in words. A fact the dataset does not record has no row.
"""

from __future__ import annotations

import math
from typing import Any

from segshield.reports.view import Cell, Table, cell

__all__ = ["dataset_summary", "intensity_text", "shape_text", "spacing_text"]

_MAX_NAMES = 8  # volumes named in the summary; every one is in report.json
_MODES = {"dtype": "by the data type's range", "minmax": "min–max → [0, 1]", "none": "none"}
_AXES = {3: ("C × H × W", "2-D"), 4: ("C × D × H × W", "3-D")}


def _number(v: Any) -> float | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def shape_text(shape: Any) -> str | None:
    """``[1, 8, 32, 32]`` -> ``1 × 8 × 32 × 32 (3-D volume: C × D × H × W)``."""
    if not isinstance(shape, (list, tuple)) or not shape:
        return None
    dims = " × ".join(str(d) for d in shape)
    axes, kind = _AXES.get(len(shape), ("", ""))
    return f"{dims} ({kind} {'volume' if kind == '3-D' else 'image'}: {axes})" if axes else dims


def _one_scaling(d: Any) -> str:
    """One applied scaling (``Intensity.describe()``) in words."""
    if not isinstance(d, dict):
        return str(d)
    mode = str(d.get("mode", "?"))
    center, width = _number(d.get("center")), _number(d.get("width"))
    low, high = _number(d.get("low")), _number(d.get("high"))
    if mode == "window" and center is not None and width is not None:
        preset = f" ({d['preset']})" if d.get("preset") else ""
        return f"CT window center {center:g}, width {width:g} HU{preset}"
    if mode == "percentile" and low is not None and high is not None:
        return f"percentiles {low:g}–{high:g} → [0, 1]"
    return _MODES.get(mode, mode)


def intensity_text(intensity: Any) -> str | None:
    """``{"mode": "auto", "applied": [{"mode": "percentile", ...}]}`` -> ``auto → percentiles
    0.5–99.5 → [0, 1]``: the requested mode, then what was applied (each distinct one)."""
    if not isinstance(intensity, dict):
        return None if intensity is None else str(intensity)
    mode = str(intensity.get("mode", "?"))
    applied = intensity.get("applied")
    done = (
        list(dict.fromkeys(_one_scaling(a) for a in applied)) if isinstance(applied, list) else []
    )
    if not done:
        return _one_scaling(intensity)
    if mode == "auto":
        return "auto → " + "; ".join(done)
    return "; ".join(done)


def spacing_text(spacing: Any, three_d: bool) -> str | None:
    """Per-axis spacing in mm (one row for all images, or one per image) as ranges:
    ``H × W: 0.4456–0.4761 × 0.4277–0.5371 mm``."""
    if not isinstance(spacing, (list, tuple)) or not spacing:
        return None
    rows = spacing if isinstance(spacing[0], (list, tuple)) else [spacing]
    n = len(rows[0])
    if n == 0 or any(not isinstance(r, (list, tuple)) or len(r) != n for r in rows):
        return None
    columns = [[x for r in rows if (x := _number(r[k])) is not None] for k in range(n)]
    if any(not c for c in columns):
        return None
    parts = [f"{min(c):.4g}" + ("" if min(c) == max(c) else f"–{max(c):.4g}") for c in columns]
    axes = {2: "H × W", 3: "D × H × W"}.get(n)
    lead = f"{axes}: " if axes else ""
    where = " (per voxel" if three_d else " (per pixel"
    where += ", at the audited size)"
    return f"{lead}{' × '.join(parts)} mm{where}"


def _volumes_text(dataset: dict) -> str | None:
    """``2 (brain2: 3 slices, lung1: 3 slices)`` from the per-image volume ids."""
    ids = dataset.get("volume")
    if not isinstance(ids, (list, tuple)) or not ids:
        return None
    counts: dict[str, int] = {}
    for v in ids:
        counts[str(v)] = counts.get(str(v), 0) + 1
    slices = any(k > 1 for k in counts.values())
    named = [f"{v}: {k} slice{'s' if k != 1 else ''}" if slices else v for v, k in counts.items()]
    more = ", …" if len(named) > _MAX_NAMES else ""
    return f"{len(counts)} ({', '.join(named[:_MAX_NAMES])}{more})"


def _groups_text(groups: Any) -> str | None:
    if not isinstance(groups, dict) or not groups:
        return None
    items = []
    for name, values in groups.items():
        vals = values if isinstance(values, (list, tuple)) else [values]
        items.append(f"{name} = label {', '.join(str(v) for v in vals)}")
    return "; ".join(items) + " (one output channel each, from the label map)"


def dataset_summary(dataset: dict) -> Table | None:
    """The audited data in words (a two-column table), or None when nothing is recorded."""
    shape = dataset.get("image_shape")
    three_d = isinstance(shape, (list, tuple)) and len(shape) == 4
    mode = dataset.get("volume_mode")
    images = dataset.get("n_images")
    spacing = dataset.get("spacing")
    kind = "volumes" if three_d else ("slices" if mode == "slices" else "images")
    facts: list[tuple[str, str | None]] = [
        ("Images", None if images is None else f"{images} {kind}"),
        ("Image shape", shape_text(shape)),
        ("Volumes", _volumes_text(dataset)),
        ("Intensity scaling", intensity_text(dataset.get("intensity"))),
        ("Voxel spacing" if three_d else "Pixel spacing", spacing_text(spacing, three_d)),
        ("Label groups (multi-label)", _groups_text(dataset.get("label_groups"))),
    ]  # fmt: skip
    rows = [[cell(k), Cell(v)] for k, v in facts if v is not None]
    if not rows:
        return None
    return Table(["Fact", "Value"], rows, title=[cell("Data")], cls="kv")
