"""Integrity of report.json: a content hash of the measured sections, and the checks that a
report read back is one an audit can have produced.

What the hash covers: every top-level section of the report's JSON except ``verdict`` (filled
by the gate after the audit, and re-filled by each gating) and ``integrity`` itself — today
config, model, dataset, task, engines, clean, cells, latency, build, skipped, evaluation
(worst case, masking warnings), certified, provenance, schema_version and kind — as the
SHA-256 of their canonical JSON (:func:`segshield.hashing.canonical_json`: sorted keys, no
whitespace, UTF-8). The entry names the sections it covers, and verification recomputes it
over the same set of sections of the report as read, so a section added, removed or edited
after writing is found. The worst case's evaluations are checked like the cells'.

The hash only says the file was not changed after segshield wrote it; it is not a signature
(anyone can recompute it). The value checks say that what it holds is possible: ratios in
[0, 1], counts non-negative, the image counts consistent, and the gated aggregates equal to
what the metric functions give from the stored per-image confusion counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from segshield.enums import Activation, TaskKind
from segshield.hashing import canonical_json, sha256_bytes
from segshield.metrics import (
    ConfusionCounts,
    accuracy_of,
    attack_success,
    class_scores,
    dice,
    foreground_mean,
    mean_dice_of,
    mean_iou_of,
    nanmean,
)
from segshield.metrics.aggregate import keras_mean_iou_of
from segshield.results.types import (
    SOURCE_ENGINE,
    AuditReport,
    EngineEval,
    Metrics,
    Perturbation,
)

__all__ = [
    "ALGORITHM",
    "NOT_COVERED",
    "TOLERANCE",
    "content_hash",
    "covered_sections",
    "integrity_problems",
    "is_verified",
]

ALGORITHM = "sha256"
NOT_COVERED = ("verdict", "integrity")
"""Top-level sections the hash leaves out: the gate's verdict and the hash itself."""
TOLERANCE = 1e-9
"""Largest difference allowed between a stored aggregate and its recomputed value."""

_RATIOS = (
    "accuracy",
    "dice",
    "iou",
    "mean_iou",
    "precision",
    "recall",
    "pixel_error_rms",
    "dice_per_image_mean",
    "dice_per_volume_mean",
)
_NON_NEGATIVE = ("loss", "pixel_error_l2", "hd95", "asd")  # hd95/asd: distances
_SURFACE = ("hd95", "asd")
_COUNTS = ("tp", "fp", "fn", "tn")
_SHARES = ("disagreement", "fooled_source_only", "fooled_engine_only", "flip_rate", "success_rate")
_CLASS_RATIOS = ("dice", "iou", "precision", "recall")


def _raw(report: AuditReport | dict) -> dict:
    return report.to_dict() if isinstance(report, AuditReport) else report


def covered_sections(report: AuditReport | dict) -> list[str]:
    """The names of the sections the hash covers, sorted."""
    return sorted(k for k in _raw(report) if k not in NOT_COVERED)


def content_hash(report: AuditReport | dict) -> dict:
    """``{"algorithm": "sha256", "covers": [section names], "sha256": hex}`` of the report's
    measured sections (every section but ``verdict`` and ``integrity``). A dict is taken as
    the report's JSON as written or read; an :class:`AuditReport` as its ``to_dict()``."""
    raw = _raw(report)
    covers = covered_sections(raw)
    digest = sha256_bytes(canonical_json({k: raw[k] for k in covers}))
    return {"algorithm": ALGORITHM, "covers": covers, "sha256": digest}


def is_verified(report: AuditReport | dict) -> bool:
    """Whether the report carries an integrity entry (older reports do not: unverified)."""
    return bool(_raw(report).get("integrity"))


def integrity_problems(report: AuditReport, raw: dict | None = None) -> list[str]:
    """Every reason to distrust ``report``, as sentences naming where (impossible or
    inconsistent values first, then a content-hash mismatch); [] when none.

    raw: the report's JSON as read from disk (the hash is checked on it when given, so a
    section this segshield does not know still counts); else ``report.to_dict()``. A report
    without an integrity entry (written before it existed) is not a problem here: see
    :func:`is_verified`.
    """
    problems: list[str] = []
    n_images = (report.dataset or {}).get("n_images")
    n_images = n_images if isinstance(n_images, int) and not isinstance(n_images, bool) else None
    binary = report.task == TaskKind.BINARY
    for where, ev in _evaluations(report):
        problems += _eval_problems(where, ev, n_images, binary)
    for cell in report.cells:
        where = f"cells[{cell.id}]"
        if cell.perturbation is not None:
            problems += _perturbation_problems(where, cell.perturbation, cell, n_images)
        problems += _comparison_problems(where, cell.engines, report)
    problems += _health_problems(report)
    # the hash last: an edited value is named first, the mismatch it caused after it
    return problems + list(_hash_problems(raw if raw is not None else report.to_dict()))


def _health_problems(report: AuditReport) -> list[str]:
    """Each engine's stored health must follow from its agreement and the audit's own
    thresholds (the gate judges health from these records)."""
    from segshield.engines.health import HealthThresholds

    problems: list[str] = []
    config = report.config or {}
    for record in report.engines:
        h = record.health
        if not isinstance(h, dict) or not h:
            continue
        where = f"engines[{record.name}].health"
        for key in ("ok_min", "failed_below"):
            want = config.get(f"health_{key}")
            if want is not None and h.get(key) != want:
                problems.append(f"{where}.{key} {h.get(key)!r} is not the audit's {want!r}")
        agreement = h.get("mask_dice")
        if agreement is not None and not (
            isinstance(agreement, (int, float)) and 0.0 <= agreement <= 1.0
        ):
            problems.append(f"{where}.mask_dice {agreement!r} is not in [0, 1]")
            continue
        try:
            rule = HealthThresholds(float(h.get("ok_min")), float(h.get("failed_below")))
        except (TypeError, ValueError):
            problems.append(f"{where}: thresholds {h.get('ok_min')!r}/{h.get('failed_below')!r}")
            continue
        if agreement is not None and str(rule.classify(agreement)) != h.get("status"):
            problems.append(
                f"{where}.status {h.get('status')!r} does not follow from agreement "
                f"{agreement} and its thresholds ({rule.classify(agreement)})"
            )
    return problems


# ------------------------------------------------------------------------------- the hash


def _hash_problems(raw: dict) -> Iterator[str]:
    entry = raw.get("integrity")
    if not entry:
        return
    if not isinstance(entry, dict) or entry.get("algorithm") != ALGORITHM:
        yield f"integrity entry is not a {ALGORITHM} content hash: {entry!r:.80}"
        return
    expected = content_hash(raw)
    covers = entry.get("covers")
    if covers != expected["covers"]:
        yield (
            f"integrity: the report's sections {expected['covers']} are not the ones hashed "
            f"when it was written ({covers})"
        )
    elif entry.get("sha256") != expected["sha256"]:
        yield "integrity: content hash mismatch (the report was changed after it was written)"


# ----------------------------------------------------------------------------- the values


def _evaluations(report: AuditReport) -> Iterator[tuple[str, EngineEval]]:
    for name, ev in report.clean.items():
        yield f"clean[{name}]", ev
    for cell in report.cells:
        for name, ev in cell.engines.items():
            yield f"cells[{cell.id}].engines[{name}]", ev
    # the worst case holds per-image counts too: its aggregates are checked the same way
    for wc in report.evaluation.worst_case if report.evaluation else []:
        for name, ev in wc.engines.items():
            yield f"evaluation.worst_case[{wc.id}].engines[{name}]", ev


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _outside(value: Any, lo: float, hi: float) -> bool:
    return value is not None and (not _number(value) or not (lo <= value <= hi))


def _count_bad(value: Any) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or value < 0


def _near(stored: Any, expected: float) -> bool:
    if not math.isfinite(expected):
        return True  # undefined here: nothing to compare (stored as null or a convention)
    return _number(stored) and abs(stored - expected) <= TOLERANCE


def _eval_problems(where: str, ev: EngineEval, n_images: int | None, binary: bool) -> list[str]:
    m = ev.metrics
    if m is None:
        return []
    out = [
        f"{where}.metrics.{k} = {getattr(m, k)!r} is outside [0, 1]"
        for k in _RATIOS
        if _outside(getattr(m, k), 0.0, 1.0)
    ]
    out += [
        f"{where}.metrics.{k} = {getattr(m, k)!r} is negative"
        for k in _NON_NEGATIVE
        if _outside(getattr(m, k), 0.0, math.inf)
    ]
    out += [
        f"{where}.metrics.{k} = {getattr(m, k)!r} is not a count"
        for k in (*_COUNTS, "n_images", "n_empty_truth", "n_surface_undefined")
        if _count_bad(getattr(m, k))
    ]
    if out:
        return out  # the consistency checks below assume sane fields
    if n_images is not None and m.n_images != n_images:
        out.append(f"{where}.metrics.n_images = {m.n_images} but the dataset has {n_images}")
    if m.n_empty_truth > m.n_images:
        out.append(f"{where}.metrics.n_empty_truth = {m.n_empty_truth} > n_images")
    if m.n_empty_truth + m.n_surface_undefined > m.n_images:
        out.append(f"{where}.metrics: n_empty_truth + n_surface_undefined > n_images")
    if binary:
        out += _binary_aggregates(where, m)
    if ev.per_image is not None:
        out += _per_image_problems(where, ev, m, binary)
        out += _surface_problems(where, ev, m)
    out += _class_problems(where, m)
    out += _interval_problems(where, ev)
    return out


def _interval_problems(where: str, ev: EngineEval) -> list[str]:
    out = []
    for name, ci in (ev.ci or {}).items():
        bounds = [b for b in (ci.low, ci.high) if b is not None]
        if name in _RATIOS and any(_outside(b, 0.0, 1.0) for b in bounds):
            out.append(f"{where}.ci.{name} [{ci.low}, {ci.high}] is outside [0, 1]")
        elif len(bounds) == 2 and _number(ci.low) and _number(ci.high) and ci.low > ci.high:
            out.append(f"{where}.ci.{name}: low {ci.low} > high {ci.high}")
    return out


def _counts_of(rows: list[Any]) -> ConfusionCounts:
    """(1, C) counts from objects with tp/fp/fn/tn attributes (one per class)."""
    return ConfusionCounts(
        *(np.array([[getattr(r, k) for r in rows]], dtype=np.int64) for k in _COUNTS)
    )


def _class_problems(where: str, m: Metrics) -> list[str]:
    if not m.per_class:
        return []
    out = []
    for c in m.per_class:
        at = f"{where}.metrics.per_class[{c.index}]"
        out += [
            f"{at}.{k} = {getattr(c, k)!r} is outside [0, 1]"
            for k in _CLASS_RATIOS
            if _outside(getattr(c, k), 0.0, 1.0)
        ]
        out += [f"{at}.{k} is not a count" for k in _COUNTS if _count_bad(getattr(c, k))]
        out += [
            f"{at}.{k} = {getattr(c, k)!r} is negative"
            for k in _SURFACE
            if _outside(getattr(c, k), 0.0, math.inf)
        ]
    if out:
        return out
    scores = class_scores(_counts_of(m.per_class), empty_value=math.nan)
    for k, c in enumerate(m.per_class):
        for name in _CLASS_RATIOS:
            expected = float(scores[name][0, k])
            if getattr(c, name) is not None and not _near(getattr(c, name), expected):
                out.append(
                    f"{where}.metrics.per_class[{c.index}].{name} = {getattr(c, name)!r} but "
                    f"its confusion counts give {expected!r}"
                )
    fg = tuple(k for k, c in enumerate(m.per_class) if c.foreground)
    if not fg:
        return out
    for key in _COUNTS:
        total = sum(getattr(m.per_class[k], key) for k in fg)
        if total != getattr(m, key):
            out.append(
                f"{where}.metrics.{key} = {getattr(m, key)} but the foreground classes sum "
                f"to {total}"
            )
    stored = np.array([[_nan(c.dice) for c in m.per_class]], dtype=np.float64)
    mean = float(foreground_mean(stored, fg)[0])
    if m.dice is not None and not _near(m.dice, mean):
        out.append(
            f"{where}.metrics.dice = {m.dice!r} but the mean over the foreground classes "
            f"is {mean!r}"
        )
    return out


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _per_image_problems(where: str, ev: EngineEval, m: Metrics, binary: bool) -> list[str]:
    pi = ev.per_image
    assert pi is not None
    out = []
    lists = {k: getattr(pi, k) for k in ("dice", "iou", "pixel_error_l2", "loss", *_COUNTS)}
    lists = {k: v for k, v in lists.items() if v}
    for k, v in lists.items():
        if len(v) != m.n_images:
            out.append(f"{where}.per_image.{k} has {len(v)} values for {m.n_images} images")
    for k in ("dice", "iou"):
        if any(_outside(v, 0.0, 1.0) for v in lists.get(k, [])):
            out.append(f"{where}.per_image.{k} has values outside [0, 1]")
    for k in _COUNTS:
        if any(_count_bad(v) for v in lists.get(k, [])):
            out.append(f"{where}.per_image.{k} holds a value that is not a count")
    if out or not all(k in lists for k in _COUNTS):
        return out
    for k in _COUNTS:
        total = sum(lists[k])
        if total != getattr(m, k):
            out.append(
                f"{where}.metrics.{k} = {getattr(m, k)} but the per-image counts sum to {total}"
            )
    if binary and "dice" in lists:
        counts = ConfusionCounts(*(np.array(lists[k], dtype=np.int64) for k in _COUNTS))
        empty = (counts.tp + counts.fn)[:, 0] == 0
        expected = np.where(empty, np.nan, dice(counts.tp[:, 0], counts.fp[:, 0], counts.fn[:, 0]))
        for i, (stored, exp) in enumerate(zip(lists["dice"], expected.tolist(), strict=True)):
            if math.isfinite(exp) and not _near(stored, exp):
                out.append(f"{where}.per_image.dice[{i}] = {stored!r} but its counts give {exp!r}")
                break
        mean = float(nanmean(np.array([_nan(v) for v in lists["dice"]])))
        if m.dice_per_image_mean is not None and not _near(m.dice_per_image_mean, mean):
            out.append(
                f"{where}.metrics.dice_per_image_mean = {m.dice_per_image_mean!r} but the "
                f"per-image Dice average {mean!r}"
            )
    return out


def _surface_problems(where: str, ev: EngineEval, m: Metrics) -> list[str]:
    """Per-image HD95/ASD (when stored): one per image, >= 0, null exactly for the images
    with an empty ground truth or an undefined distance, and averaging to the stored mean."""
    out = []
    for k in _SURFACE:
        values = getattr(ev.per_image, k, None)
        if values is None:
            continue  # not measured (classifier, older report, worst case)
        at = f"{where}.per_image.{k}"
        if len(values) != m.n_images or any(_outside(v, 0.0, math.inf) for v in values):
            out.append(f"{at} must hold {m.n_images} distances >= 0 or null")
            continue
        n_null, expected = sum(v is None for v in values), m.n_empty_truth + m.n_surface_undefined
        if n_null != expected:
            out.append(
                f"{at} has {n_null} nulls but n_empty_truth + n_surface_undefined = {expected}"
            )
        mean = float(nanmean(np.array([_nan(v) for v in values])))
        if getattr(m, k) is not None and not _near(getattr(m, k), mean):
            out.append(f"{where}.metrics.{k} = {getattr(m, k)!r} but its images give {mean!r}")
    return out


def _binary_aggregates(where: str, m: Metrics) -> list[str]:
    """Dice, IoU, mean IoU, precision, recall and accuracy from the summed counts, by the
    functions the accumulator uses."""
    t = _counts_of([m])
    cls = class_scores(t)
    expected = {
        "dice": float(mean_dice_of(t)[0]),
        "iou": float(mean_iou_of(t)[0]),
        "mean_iou": float(keras_mean_iou_of(t)[0]),
        "precision": float(cls["precision"][0, 0]),
        "recall": float(cls["recall"][0, 0]),
        "accuracy": float(accuracy_of(t, Activation.SIGMOID)[0]),
    }
    return [
        f"{where}.metrics.{k} = {getattr(m, k)!r} but the confusion counts give {v!r}"
        for k, v in expected.items()
        if getattr(m, k) is not None and not _near(getattr(m, k), v)
    ]


def _perturbation_problems(
    where: str, p: Perturbation, cell: Any, n_images: int | None
) -> list[str]:
    out = []
    for k in ("l2_mean", "l2_max", "linf_max"):
        if _outside(getattr(p, k), 0.0, math.inf):
            out.append(f"{where}.perturbation.{k} = {getattr(p, k)!r} is negative")
    if _outside(p.linf_max, 0.0, 1.0):
        out.append(f"{where}.perturbation.linf_max = {p.linf_max!r} is outside [0, 1]")
    for k in ("ssim_mean", "ssim_min"):
        if _outside(getattr(p, k), -1.0, 1.0):
            out.append(f"{where}.perturbation.{k} = {getattr(p, k)!r} is outside [-1, 1]")
    norm = (cell.params or {}).get("norm")
    linf_ok = norm != "Linf" or not (_number(p.linf_max) and _number(cell.epsilon))
    if not linf_ok and p.linf_max > cell.epsilon + 1e-5:
        out.append(
            f"{where}.perturbation.linf_max = {p.linf_max!r} exceeds the cell's "
            f"ε = {cell.epsilon!r}"
        )
    if out:
        return out
    per = p.per_image or {}
    for k, v in per.items():
        if n_images is not None and len(v) != n_images:
            out.append(f"{where}.perturbation.per_image.{k} has {len(v)} values for {n_images}")
    pairs = (("l2", "l2_mean", "l2_max"), ("ssim", "ssim_mean", "ssim_min"))
    for key, mean_key, ext_key in pairs:
        values = [v for v in per.get(key) or [] if _number(v)]
        if not values or out:
            continue
        extreme = max(values) if ext_key.endswith("max") else min(values)
        stored_mean, stored_ext = getattr(p, mean_key), getattr(p, ext_key)
        mean = float(np.mean(values))
        if stored_mean is not None and abs(stored_mean - mean) > 1e-6 * max(1.0, abs(mean)):
            out.append(
                f"{where}.perturbation.{mean_key} = {stored_mean!r} but its images give {mean!r}"
            )
        if stored_ext is not None and abs(stored_ext - extreme) > 1e-6 * max(1.0, abs(extreme)):
            out.append(
                f"{where}.perturbation.{ext_key} = {stored_ext!r} but its images give {extreme!r}"
            )
    linf = [v for v in per.get("linf") or [] if _number(v)]
    if linf and _number(p.linf_max) and abs(p.linf_max - max(linf)) > 1e-6:
        out.append(
            f"{where}.perturbation.linf_max = {p.linf_max!r} but its images give {max(linf)!r}"
        )
    return out


def _comparison_problems(
    where: str, engines: dict[str, EngineEval], report: AuditReport
) -> list[str]:
    out = []
    primary = report.primary_metric
    src = engines.get(SOURCE_ENGINE)
    for name, ev in engines.items():
        at = f"{where}.engines[{name}]"
        out += [
            f"{at}.{k} = {getattr(ev, k)!r} is outside [0, 1]"
            for k in _SHARES
            if _outside(getattr(ev, k), 0.0, 1.0)
        ]
        if _outside(ev.attack_success, -math.inf, 1.0):
            out.append(f"{at}.attack_success = {ev.attack_success!r} is above 1")
        if _outside(ev.dice_gap, -1.0, 1.0):
            out.append(f"{at}.dice_gap = {ev.dice_gap!r} is outside [-1, 1]")
        if not ev.ok:
            continue
        clean = report.clean.get(name)
        before = clean.value(primary) if clean is not None and clean.ok else None
        after = ev.value(primary)
        if ev.attack_success is not None and _number(before) and _number(after):
            expected = float(attack_success(before, after))
            if not _near(ev.attack_success, expected):
                out.append(
                    f"{at}.attack_success = {ev.attack_success!r} but the clean and "
                    f"adversarial {primary} give {expected!r}"
                )
        out += _dice_gap_problems(at, ev, src)
    return out


def _dice_gap_problems(at: str, ev: EngineEval, src: EngineEval | None) -> list[str]:
    if ev.dice_gap is None or src is None or not src.ok or not ev.metrics or not src.metrics:
        return []
    if not (_number(ev.metrics.dice) and _number(src.metrics.dice)):
        return []
    gap = float(ev.metrics.dice - src.metrics.dice)
    return (
        []
        if _near(ev.dice_gap, gap)
        else [f"{at}.dice_gap = {ev.dice_gap!r} but the Dice give {gap!r}"]
    )
