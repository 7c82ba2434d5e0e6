"""The worst case per engine: per image, the strongest of every attack x loss of the audit at
one ε, evaluated on each engine separately (Croce, Singh & Hein 2024's per-image worst case
over an ensemble; an engine can be fooled by another member than the source).

Pure: it reads the per-image records the cells already hold, so it costs no forward pass
and gives the same numbers whether the cells ran in one process, sharded, or resumed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segshield.attacks import ATTACKS
from segshield.enums import TaskKind
from segshield.metrics import attack_success, dice, iou
from segshield.results import AuditCell, EngineEval, Metrics, PerImage, WorstCase
from segshield.results.types import SURFACE_METRICS
from segshield.tasks import Task

__all__ = ["worst_cases"]


def worst_cases(
    cells: Sequence[AuditCell], clean: dict[str, EngineEval], task: Task
) -> list[WorstCase]:
    """One :class:`WorstCase` per ε > 0 of the finished cells (ε order), over every finished
    L∞ cell at that ε with per-image records, on every engine evaluated in all of them; the
    L∞ cells at that ε that failed are listed in ``failed`` (the gate cannot verify it)."""
    by_eps: dict[float, list[AuditCell]] = {}
    failed: dict[float, list[str]] = {}
    for cell in cells:
        if not _linf(cell) or float(cell.epsilon) == 0.0:
            continue
        if _usable(cell):
            by_eps.setdefault(float(cell.epsilon), []).append(cell)
        else:  # recorded: a worst case that misses an attack is not the worst case
            failed.setdefault(float(cell.epsilon), []).append(cell.id)
    out = []
    for eps in sorted(by_eps):
        members = by_eps[eps]
        wc = WorstCase(epsilon=eps, cells=[c.id for c in members], failed=failed.get(eps, []))
        engines = [n for n in members[0].engines if all(_ok(c.engines.get(n)) for c in members)]
        for name in engines:
            evals = [c.engines[name] for c in members]
            ev, chosen = _worst_on_engine(name, evals, [c.id for c in members], task)
            _with_success(ev, clean.get(name), task)
            wc.engines[name], wc.chosen[name] = ev, chosen
        out.append(wc)
    return out


def _linf(cell: AuditCell) -> bool:
    """L∞ attacks only: an L2 cell's budget is ε·√(C·H·W), a ball far larger than the L∞
    ball of the same ε, so it belongs to another threat model."""
    cls = ATTACKS.get(cell.attack)
    norm = cls.norm if cls is not None else (cell.params or {}).get("norm", "Linf")
    return norm == "Linf"


def _usable(cell: AuditCell) -> bool:
    return str(cell.status) == "ok" and bool(cell.engines)


def _ok(ev: EngineEval | None) -> bool:
    return ev is not None and ev.ok and ev.per_image is not None and bool(ev.per_image.tp)


def _worst_on_engine(
    name: str, evals: list[EngineEval], ids: list[str], task: Task
) -> tuple[EngineEval, list[str | None]]:
    """The per-image worst member of ``evals`` (one per cell, same engine, same images)."""
    scores = np.stack([task.image_scores(ev.per_image) for ev in evals])  # (M, N), NaN: empty
    fp = np.stack([np.asarray(ev.per_image.fp, dtype=np.float64) for ev in evals])
    # An image without foreground has no Dice: the member with the most false positives is
    # its worst. np.nanargmin keeps the first member on ties (the plan order).
    defined = ~np.isnan(scores).all(axis=0)
    pick = np.where(defined, np.nanargmin(np.where(np.isnan(scores), np.inf, scores), axis=0),
                    fp.argmax(axis=0))  # fmt: skip
    n = scores.shape[1]
    rows = np.arange(n)
    per = {k: np.stack([np.asarray(getattr(ev.per_image, k)) for ev in evals])[pick, rows]
           for k in ("tp", "fp", "fn", "tn")}  # fmt: skip
    minima = scores[pick, rows]
    mean = float(np.nanmean(minima)) if defined.any() else None
    metrics = Metrics(n_images=n, n_empty_truth=int((~defined).sum()),
                      num_classes=evals[0].metrics.num_classes,  # type: ignore[union-attr]
                      activation=evals[0].metrics.activation,  # type: ignore[union-attr]
                      **{k: int(v.sum()) for k, v in per.items()})  # fmt: skip
    if task.kind == TaskKind.CLASSIFICATION:
        metrics.accuracy = mean
    else:
        metrics.dice_per_image_mean = mean
    if task.kind == TaskKind.BINARY:
        # Only a binary model's Dice is the Dice of summed counts; a multi-class or
        # multi-label Dice is a mean over classes of per-class counts, which the per-image
        # records (foreground-summed) cannot give: there the per-image mean is the statistic.
        tp, fpp, fn = (float(per[k].sum()) for k in ("tp", "fp", "fn"))
        metrics.dice, metrics.iou = float(dice(tp, fpp, fn)), float(iou(tp, fpp, fn))
    per_image = PerImage(
        dice=[None if np.isnan(v) else float(v) for v in minima],
        **{k: v.astype(int).tolist() for k, v in per.items()},
    )
    _worst_surface(evals, pick, metrics, per_image)
    ev = EngineEval(engine=name, metrics=metrics, per_image=per_image)
    return ev, [ids[i] for i in pick]


def _worst_surface(
    evals: list[EngineEval], pick: np.ndarray, metrics: Metrics, per_image: PerImage
) -> None:
    """HD95 / ASD of each image's worst member (picked by the primary score, as Dice is),
    their means where defined, and how many images are undefined beyond the empty truths."""
    for key in SURFACE_METRICS:
        lists = [getattr(ev.per_image, key) for ev in evals]
        if any(values is None for values in lists):
            return  # a member without surface distances: the worst case has none either
        values = [lists[m][i] for i, m in enumerate(pick)]
        setattr(per_image, key, values)
        defined = [v for v in values if v is not None]
        setattr(metrics, key, float(np.mean(defined)) if defined else None)
    undefined = sum(v is None for v in per_image.hd95 or [])
    metrics.n_surface_undefined = max(undefined - metrics.n_empty_truth, 0)
    metrics.surface_unit = evals[0].metrics.surface_unit  # type: ignore[union-attr]


def _with_success(ev: EngineEval, clean: EngineEval | None, task: Task) -> None:
    """attack_success against the clean run on the same engine, with the same pooling."""
    if clean is None or not clean.ok or clean.per_image is None or ev.metrics is None:
        return
    if task.kind == TaskKind.CLASSIFICATION:
        before, after = clean.value("accuracy"), ev.metrics.accuracy
    elif task.kind == TaskKind.BINARY:
        before, after = clean.value("dice"), ev.metrics.dice
    else:  # the per-image means, the statistic the worst case has for these tasks
        before, after = clean.value("dice_per_image_mean"), ev.metrics.dice_per_image_mean
    if before is not None and after is not None:
        value = float(attack_success(before, after))
        ev.attack_success = None if np.isnan(value) else value
