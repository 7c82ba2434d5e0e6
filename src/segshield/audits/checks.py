"""Gradient-masking and weak-evaluation checks, after Athalye, Carlini & Wagner 2018
("Obfuscated gradients give a false sense of security") and Carlini et al. 2019 ("On
evaluating adversarial robustness"): signs that an audit's attacks did not really try.

Two checks read the finished cells only (``non_monotone_eps``, the cell half of
``more_steps_weaker``); the others read probes run on the first ``config.probe_images``
images on the source model (audits/probes.py): the audit's iterative attack with more
steps, an unbounded PGD, random noise at each ε, and the input gradient at the clean images.
Lower scores are stronger attacks: scores are the task's primary metric (Dice; accuracy for a
classifier). Every rule and its tolerance is in :class:`CheckTolerances`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from torch import nn

from segshield.attacks import ATTACKS
from segshield.enums import Status
from segshield.epsilon import format_epsilon
from segshield.metrics import nanmean
from segshield.results import SOURCE_ENGINE, AuditCell, EngineEval, clean_json
from segshield.tasks import Task

from .config import AuditConfig
from .probes import UNBOUNDED_EPS, noise_comparable, run_probes
from .tolerances import DEFAULT_TOLERANCES, CheckTolerances

log = logging.getLogger(__name__)

__all__ = [
    "CheckTolerances",
    "eps_monotonicity",
    "evaluation_checks",
    "one_step_vs_iterative",
    "probe_warnings",
]

# DAG ascends its own objective with steps normalised by the largest gradient entry (most
# pixels move far less than α), so being weaker than a one-step sign attack is no anomaly.
_OWN_OBJECTIVE = frozenset({"dag"})
_LABEL = {"dice": "Dice", "accuracy": "accuracy"}


def evaluation_checks(
    cells: Sequence[AuditCell],
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    task: Task,
    config: AuditConfig,
    tolerances: CheckTolerances = DEFAULT_TOLERANCES,
) -> tuple[list[dict], dict]:
    """(warnings, probes) of every check on an audit's finished cells.

    cells: the audit's cells (those not ok are skipped), evaluated on the whole dataset in
    dataset order. images (N, C, H, W) float in [0, 1] and labels: that dataset; the probes
    use the first ``min(config.probe_images, N)``. model: the source, in eval mode on its
    device. Warnings: ``{"check", "message", "attack", "loss", "epsilon", "engine",
    "evidence"}`` in check order; probes: JSON-ready measurements (see
    :func:`~segshield.audits.probes.run_probes`) plus the tolerances.
    """
    metric = task.primary
    ok = _finished(cells)
    warnings = eps_monotonicity(ok, metric, tolerances)
    warnings += one_step_vs_iterative(ok, metric, tolerances)
    n = min(config.probe_images, len(images))
    probes: dict[str, Any] = {"images": n, "metric": metric}
    if n > 0:
        probes = run_probes(
            model, images[:n], labels[:n], task, config, ok, flat_norm=tolerances.flat_norm
        )
        probes = clean_json(probes)
        warnings += probe_warnings(probes, ok, task, tolerances)
    probes["tolerances"] = asdict(tolerances)
    log.info("evaluation checks: %d warning(s) on %d probe image(s)", len(warnings), n)
    return clean_json(warnings), clean_json(probes)


def _warning(
    check: str,
    message: str,
    evidence: dict[str, Any],
    *,
    attack: str | None = None,
    loss: str | None = None,
    epsilon: float | None = None,
    engine: str | None = SOURCE_ENGINE,
) -> dict[str, Any]:
    return {
        "check": check,
        "message": message,
        "attack": attack,
        "loss": loss,
        "epsilon": None if epsilon is None else float(epsilon),
        "engine": engine,
        "evidence": evidence,
    }


def _finished(cells: Sequence[AuditCell]) -> list[AuditCell]:
    return [c for c in cells if c.status == Status.OK]


def _value(ev: EngineEval | None, metric: str) -> float | None:
    """An engine's primary metric, None when it failed or it is undefined."""
    if ev is None or not ev.ok:
        return None
    value = getattr(ev.metrics, metric, None)
    return None if value is None or not math.isfinite(value) else float(value)


def _per_image(metric: str) -> str:
    return "mean per-image Dice" if metric == "dice" else _LABEL[metric]


def _eps(e: float) -> str:
    return f"ε={format_epsilon(e)}"


def _rises(points: list[tuple[float, float]]) -> list[tuple[tuple[float, float], float, float]]:
    """For each point (ε, score) sorted by ε: (the lowest point at a smaller ε, ε, score)."""
    out, best = [], None
    for eps, value in points:
        if best is not None and eps > best[0]:
            out.append((best, eps, value))
        if best is None or value < best[1]:
            best = (eps, value)
    return out


def eps_monotonicity(
    cells: Sequence[AuditCell], metric: str, tolerances: CheckTolerances = DEFAULT_TOLERANCES
) -> list[dict]:
    """``non_monotone_eps``: one warning per cell x engine whose score exceeds the lowest
    score of the same attack x loss on that engine at a smaller ε by more than
    ``tolerances.eps_rise``. A larger ball holds the smaller one, so an attack that converges
    can only do as well or better. Untargeted attacks only."""
    series: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for cell in _finished(cells):
        cls = ATTACKS.get(cell.attack)
        if cls is None or cls.targeted:  # a targeted attack aims at its target, not at a low
            continue  # score against the truth: that score may rightly rise with ε
        for engine, ev in cell.engines.items():
            value = _value(ev, metric)
            if value is not None:
                key = (cell.attack, cell.loss, engine)
                series.setdefault(key, []).append((float(cell.epsilon), value))
    out = []
    for (attack, loss, engine), points in series.items():
        for (e_low, v_low), eps, value in _rises(sorted(points)):
            rise = value - v_low
            if rise <= tolerances.eps_rise:
                continue
            message = (
                f"{attack}/{loss} at {_eps(eps)} on {engine}: {_LABEL[metric]} {value:.3f} is "
                f"higher than {v_low:.3f} at {_eps(e_low)} (+{rise:.3f}, tolerance "
                f"{tolerances.eps_rise:g}): a larger budget made the attack weaker."
            )
            evidence = {
                "metric": metric, "value": value, "epsilon_low": e_low, "value_low": v_low,
                "rise": rise, "tolerance": tolerances.eps_rise,
            }  # fmt: skip
            out.append(
                _warning("non_monotone_eps", message, evidence, attack=attack, loss=loss,
                         epsilon=eps, engine=engine)
            )  # fmt: skip
    return out


def _one_step(attack: str) -> bool:
    cls = ATTACKS.get(attack)
    return cls is not None and not cls.iterative and cls.norm == "Linf" and not cls.targeted


def _iterative(attack: str) -> bool:
    cls = ATTACKS.get(attack)
    return (
        cls is not None
        and cls.iterative
        and cls.norm == "Linf"
        and not cls.targeted
        and attack not in _OWN_OBJECTIVE
    )


def one_step_vs_iterative(
    cells: Sequence[AuditCell], metric: str, tolerances: CheckTolerances = DEFAULT_TOLERANCES
) -> list[dict]:
    """The cell half of ``more_steps_weaker``: one warning per cell of an iterative untargeted
    L∞ attack (BIM, PGD, SegPGD, CosPGD, ...; not DAG) at ε > 0 whose source score exceeds
    a one-step attack's (FGSM) of the same loss and ε by more than ``tolerances.steps_rise``."""
    one_step: dict[tuple[str, float], list[tuple[str, float]]] = {}
    cells = _finished(cells)
    for cell in cells:
        value = _value(cell.engines.get(SOURCE_ENGINE), metric)
        if value is not None and cell.epsilon > 0 and _one_step(cell.attack):
            one_step.setdefault((cell.loss, float(cell.epsilon)), []).append((cell.attack, value))
    out = []
    for cell in cells:
        value = _value(cell.engines.get(SOURCE_ENGINE), metric)
        if value is None or not _iterative(cell.attack):
            continue
        for first, v_first in one_step.get((cell.loss, float(cell.epsilon)), []):
            gap = value - v_first
            if gap <= tolerances.steps_rise:
                continue
            message = (
                f"{cell.attack}/{cell.loss} at {_eps(cell.epsilon)} on {SOURCE_ENGINE}: "
                f"{_LABEL[metric]} {value:.3f} vs {v_first:.3f} after one-step {first} "
                f"(+{gap:.3f}, tolerance {tolerances.steps_rise:g}): the iterative attack is "
                "weaker than a single step."
            )
            evidence = {
                "metric": metric, "value": value, "one_step_attack": first,
                "one_step_value": v_first, "gap": gap, "tolerance": tolerances.steps_rise,
            }  # fmt: skip
            out.append(
                _warning("more_steps_weaker", message, evidence, attack=cell.attack,
                         loss=cell.loss, epsilon=cell.epsilon)
            )  # fmt: skip
    return out


def probe_warnings(
    probes: dict[str, Any],
    cells: Sequence[AuditCell],
    task: Task,
    tolerances: CheckTolerances = DEFAULT_TOLERANCES,
) -> list[dict]:
    """The probe checks (``more_steps_weaker`` probe half, ``unbounded_fails``,
    ``noise_as_strong``, ``flat_loss``) from :func:`run_probes`' measurements; a probe that
    could not run gives a ``probe_failed`` warning (the evaluation is then unverified)."""
    out = _failed(probes)
    out += _steps_warnings(probes, tolerances)
    out += _unbounded_warnings(probes, tolerances)
    out += _noise_warnings(probes, cells, task, tolerances)
    out += _flat_warnings(probes, tolerances)
    return out


def _failed(probes: dict[str, Any]) -> list[dict]:
    entries = [
        ("clean", probes.get("clean")),
        ("unbounded", probes.get("unbounded")),
        ("steps", probes.get("steps")),
        *(("noise", r) for r in probes.get("noise") or []),
        *((f"flat loss ({k})", r) for k, r in (probes.get("flat_loss") or {}).items()),
    ]
    return [
        _warning(
            "probe_failed",
            f"the {name} probe could not run ({r['error']}): its check is unverified.",
            {"probe": name, "error": r["error"]},
            epsilon=r.get("epsilon"),
        )
        for name, r in entries
        if isinstance(r, dict) and r.get("error")
    ]


def _measured(record: Any, key: str) -> float | None:
    """A number of a probe record, None when the probe failed or the value is undefined."""
    if not isinstance(record, dict) or record.get("error"):
        return None
    value = record.get(key)
    return None if value is None or not math.isfinite(value) else float(value)


def _steps_warnings(probes: dict[str, Any], tol: CheckTolerances) -> list[dict]:
    rec, metric, n = probes.get("steps"), probes["metric"], probes["images"]
    if not isinstance(rec, dict) or rec.get("error"):
        return []
    short, long = rec["runs"]
    v_short, v_long = _measured(short, "per_image_mean"), _measured(long, "per_image_mean")
    if v_short is None or v_long is None or v_long - v_short <= tol.steps_rise:
        return []
    attack, loss, eps = rec["attack"], rec["loss"], rec["epsilon"]
    message = (
        f"{attack}/{loss} at {_eps(eps)} on the first {n} images: {_per_image(metric)} "
        f"{v_long:.3f} with {long['steps']} steps vs {v_short:.3f} with {short['steps']} "
        f"(+{v_long - v_short:.3f}, tolerance {tol.steps_rise:g}): more steps made the "
        "attack weaker."
    )
    evidence = {
        "metric": metric, "images": n, "steps": [short["steps"], long["steps"]],
        "values": [v_short, v_long], "rise": v_long - v_short, "tolerance": tol.steps_rise,
    }  # fmt: skip
    return [_warning("more_steps_weaker", message, evidence, attack=attack, loss=loss, epsilon=eps)]


def _unbounded_warnings(probes: dict[str, Any], tol: CheckTolerances) -> list[dict]:
    rec, metric, n = probes.get("unbounded"), probes["metric"], probes["images"]
    value, limit = _measured(rec, metric), tol.unbounded_limit(metric)
    if value is None or value <= limit:
        return []
    assert isinstance(rec, dict)
    clean = _measured(probes.get("clean"), metric)
    shown = "—" if clean is None else f"{clean:.3f}"
    message = (
        f"{rec['attack']}/{rec['loss']} at ε=1 (unbounded, {rec['steps']} steps) on the first "
        f"{n} images leaves the source's {_LABEL[metric]} at {value:.3f} (clean {shown}, "
        f"limit {limit:g}): an unbounded attack must reach ~0, so its gradients lead nowhere "
        "(gradient masking, or a broken attack)."
    )
    evidence = {
        "metric": metric, "images": n, "value": value, "clean": clean, "limit": limit,
        "steps": rec["steps"], "alpha": rec["alpha"],
    }  # fmt: skip
    return [
        _warning("unbounded_fails", message, evidence, attack=rec["attack"], loss=rec["loss"],
                 epsilon=UNBOUNDED_EPS)
    ]  # fmt: skip


def _noise_warnings(
    probes: dict[str, Any], cells: Sequence[AuditCell], task: Task, tol: CheckTolerances
) -> list[dict]:
    metric, n = probes["metric"], probes["images"]
    clean = _measured(probes.get("clean"), "per_image_mean")
    noise = {float(r["epsilon"]): _measured(r, "per_image_mean") for r in probes["noise"]}
    limit = tol.unbounded_limit(metric)
    out = []
    for cell in cells:
        noisy = noise.get(float(cell.epsilon))
        if clean is None or noisy is None or not noise_comparable(cell, n):
            continue
        per_image = cell.engines[SOURCE_ENGINE].per_image
        assert per_image is not None
        attacked = float(nanmean(task.image_scores(per_image)[:n]))
        if not math.isfinite(attacked) or attacked <= limit:
            continue
        if clean - noisy < tol.noise_min_drop or noisy > attacked + tol.noise_margin:
            continue
        message = (
            f"{cell.attack}/{cell.loss} at {_eps(cell.epsilon)} on the first {n} images: "
            f"random ±ε noise lowers the source's {_per_image(metric)} to {noisy:.3f}, as low "
            f"as the attack's {attacked:.3f} (clean {clean:.3f}, margin {tol.noise_margin:g}): "
            "the gradient attack is no stronger than noise."
        )
        evidence = {
            "metric": metric, "images": n, "noise": noisy, "attack": attacked, "clean": clean,
            "margin": tol.noise_margin, "min_drop": tol.noise_min_drop,
        }  # fmt: skip
        out.append(
            _warning("noise_as_strong", message, evidence, attack=cell.attack, loss=cell.loss,
                     epsilon=cell.epsilon)
        )  # fmt: skip
    return out


def _flat_warnings(probes: dict[str, Any], tol: CheckTolerances) -> list[dict]:
    n, out = probes["images"], []
    for loss, rec in (probes.get("flat_loss") or {}).items():
        share = _measured(rec, "share")
        if share is None or share <= tol.flat_share:
            continue
        message = (
            f"loss {loss}: the input gradient at the clean image is zero (L2 norm <= "
            f"{tol.flat_norm:g}) on {rec['flat_images']} of {n} probe images ({share:.0%} > "
            f"{tol.flat_share:.0%}): attacks ascending this loss cannot move those images."
        )
        evidence = {
            "images": n, "flat_images": rec["flat_images"], "share": share,
            "median_norm": rec["median_norm"], "flat_norm": tol.flat_norm,
            "tolerance": tol.flat_share,
        }  # fmt: skip
        out.append(_warning("flat_loss", message, evidence, loss=loss))
    return out
