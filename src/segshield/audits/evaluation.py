"""How far an audit's verdict can be trusted, measured after its cells (rank 0): the worst
case per engine over every attack (worst_case.py), the gradient-masking and weak-evaluation
checks (checks.py) and, when asked, randomized-smoothing certification (certify.py).

Each part is isolated: a part that fails is logged and recorded as a warning of the
evaluation, and never loses the cells or the other parts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from torch import nn

from segshield.enums import Status, TaskKind
from segshield.results import AuditCell, EngineEval, Evaluation
from segshield.tasks import Task

from .config import AuditConfig
from .engines import AuditEngine
from .inputs import AuditData
from .worst_case import worst_cases

log = logging.getLogger(__name__)

__all__ = ["certified_section", "evaluation_section"]


def _failure(check: str, exc: BaseException) -> dict[str, Any]:
    message = f"the {check} could not be measured: {type(exc).__name__}: {exc}"
    return {
        "check": f"{check.replace(' ', '_')}_failed",
        "message": message,
        "attack": None,
        "loss": None,
        "epsilon": None,
        "engine": None,
        "evidence": {},
    }


def evaluation_section(
    config: AuditConfig,
    cells: Sequence[AuditCell],
    clean: dict[str, EngineEval],
    task: Task,
    model: nn.Module,
    data: AuditData,
) -> Evaluation:
    """The worst case per engine and ε, and (``config.checks``) the masking warnings with
    the probe measurements behind them. ``model`` is the source, on its audit device."""
    evaluation = Evaluation()
    try:
        evaluation.worst_case = worst_cases(cells, clean, task)
    except Exception as exc:  # never lose the cells for a summary of them
        log.exception("the worst case could not be computed")
        evaluation.warnings.append(_failure("worst case", exc))
    if not config.checks:
        return evaluation
    from .checks import evaluation_checks

    t0 = time.perf_counter()
    log.info("gradient-masking probes on %d images", min(config.probe_images, len(data)))
    try:
        warnings, probes = evaluation_checks(cells, model, data.images, data.labels, task, config)
    except Exception as exc:
        log.exception("the gradient-masking checks failed")
        evaluation.warnings.append(_failure("gradient-masking checks", exc))
        return evaluation
    evaluation.warnings.extend(warnings)
    evaluation.probes = {**probes, "seconds": time.perf_counter() - t0}
    evaluation.checks = {"probe_images": min(config.probe_images, len(data))}
    return evaluation


def certified_section(
    config: AuditConfig, engines: Sequence[AuditEngine], task: Task, data: AuditData
) -> dict | None:
    """Randomized-smoothing certification of the source and every engine that runs here
    (``config.certify``), on the first ``config.certify_images`` images; None when off."""
    if not config.certify:
        return None
    from .certify import certify_engines

    runners = {
        e.name: e.runner for e in engines if e.runner is not None and e.record.status == Status.OK
    }
    count = len(data) if config.certify_images is None else min(config.certify_images, len(data))
    settings = {"sigma": config.certify_sigma, "n": config.certify_n, "images": count}
    if task.kind == TaskKind.CLASSIFICATION:
        why = "certification by randomized smoothing is implemented for segmentation models"
        return {"settings": settings, "error": why}
    log.info(
        "certifying %d images on %d engines (n0=%d, n=%d, sigma=%g)",
        count, len(runners), config.certify_n0, config.certify_n, config.certify_sigma,
    )  # fmt: skip
    try:
        return certify_engines(
            runners,
            data.images[:count],
            data.labels[:count],
            kind=task.kind,
            sigma=config.certify_sigma,
            n0=config.certify_n0,
            n=config.certify_n,
            alpha=config.certify_alpha,
            radii=tuple(config.certify_radii),
            correction=config.certify_correction,
            batch_size=config.batch_size,
            seed=config.seed,
            threshold=getattr(task, "threshold", 0.5),
            foreground=getattr(task, "foreground", None),
        )
    except Exception as exc:  # the cells stay; the section says why it is missing
        log.exception("certification failed")
        return {
            "settings": {"sigma": config.certify_sigma},
            "error": f"{type(exc).__name__}: {exc}",
        }
