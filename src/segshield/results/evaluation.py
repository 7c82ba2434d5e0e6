"""Typed results of the evaluation-strength sections of a report: the worst case over every
attack per engine, the gradient-masking / weak-evaluation warnings, and certified robustness.

All three are measured by the audit (audits/evaluation.py) and stored; renderers and the gate
read them and compute nothing. Conventions as in :mod:`segshield.results.types`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segshield.results.catalogue import CERTIFIED_METRICS
from segshield.results.types import EngineEval, from_fields

WORST_CASE = "worst_case"
"""The pseudo-attack name of the worst case in cell ids and gate selectors."""
CERTIFIED = "certified"
"""The pseudo-attack name of certified robustness in gate selectors (ε = the L2 radius)."""


@dataclass
class WorstCase:
    """Per image, the strongest of every attack x loss of the audit at one ε, on each engine.

    cells: the ids of the cells it takes the minimum over (every finished L∞ cell at this ε;
    L2 cells have a far larger budget at the same ε and are left out); failed: the L∞ cells
    at this ε that failed (a worst case missing an attack cannot be verified by the gate).
    engines: one evaluation per engine, from the per-image worst member on THAT engine (an
    engine can be fooled by another member than the source): ``metrics.dice_per_image_mean``
    is the mean of the per-image minima over the images with a foreground (≤ every member's
    own per-image mean, by construction); for a binary model ``metrics.dice``/``iou`` are
    those of the summed confusion counts of the chosen members (the cells' definition; not
    bounded by construction, since a pooled Dice weighs images by their size), None for
    multi-class and multi-label models, whose class-mean Dice the foreground-summed per-image
    records cannot give; a classifier's ``accuracy`` is the share of images no member fooled.
    ``per_image.dice`` holds the minima (an image without foreground: the member with the
    most false positives); ``attack_success`` the relative drop from clean on that engine of
    Dice (binary), the per-image mean (multi-class, multi-label) or accuracy. chosen: per
    engine, per image, the cell id that was worst.
    """

    epsilon: float
    cells: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # L∞ cells at this ε that failed
    engines: dict[str, EngineEval] = field(default_factory=dict)
    chosen: dict[str, list[str | None]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{WORST_CASE}/*/{self.epsilon:.6g}"

    @classmethod
    def from_dict(cls, raw: dict) -> WorstCase:
        wc = from_fields(cls, raw)
        wc.engines = {k: EngineEval.from_dict(v) for k, v in (raw.get("engines") or {}).items()}
        wc.chosen = dict(raw.get("chosen") or {})
        return wc


@dataclass
class Evaluation:
    """How far the audit's verdict can be trusted: the worst case per engine and ε, the
    warnings of the gradient-masking checks (each ``{"check", "message", "attack", "loss",
    "epsilon", "engine", "evidence"}``), and the probe measurements they used (or None when
    the checks were off)."""

    worst_case: list[WorstCase] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    probes: dict[str, Any] | None = None
    checks: dict[str, Any] | None = None  # the checks' settings (tolerances, probe images)

    @classmethod
    def from_dict(cls, raw: dict | None) -> Evaluation | None:
        if raw is None:
            return None
        ev = from_fields(cls, raw)
        ev.worst_case = [WorstCase.from_dict(w) for w in raw.get("worst_case") or []]
        ev.warnings = list(raw.get("warnings") or [])
        return ev

    def worst_at(self, epsilon: float, tol: float = 1e-9) -> WorstCase | None:
        return next((w for w in self.worst_case if abs(w.epsilon - epsilon) <= tol), None)


def certified_rows(certified: dict | None) -> list[tuple[str, float, dict[str, Any]]]:
    """(engine, radius, {metric: value}) for every engine and radius of a stored certified
    section (engines that failed are left out; see ``certified["engines"][name]["error"]``)."""
    rows: list[tuple[str, float, dict[str, Any]]] = []
    for name, rec in ((certified or {}).get("engines") or {}).items():
        if not isinstance(rec, dict) or rec.get("error"):
            continue
        for i, radius in enumerate(rec.get("radii") or []):
            values = {m: _at(rec.get(m), i) for m in CERTIFIED_METRICS}
            rows.append((name, float(radius), values))
    return rows


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and i < len(values) else None
