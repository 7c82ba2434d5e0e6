"""`run_audit`: the one audit loop, for every task (binary, multi-class, multi-label
segmentation and classification).

plan → for each attack x loss: craft on the source → for each epsilon: evaluate on every
engine → compare → panels. The adversarial batch is crafted once per cell and replayed on
every engine. A failing cell (or engine) is recorded with its error; it never loses the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from segshield.attacks import ATTACKS
from segshield.engines.health import HealthThresholds
from segshield.enums import Status
from segshield.errors import ModelOutputError
from segshield.metrics import bootstrap_indices, perturbation_norms, ssim
from segshield.models import LoadedModel
from segshield.results import SOURCE_ENGINE, AuditCell, AuditReport, EngineEval, Perturbation
from segshield.tasks import Task

from .compare import DEFAULT_COMPARISONS, Comparison, apply_comparisons
from .config import AuditConfig
from .craft import craft_group
from .engines import AuditEngine, audit_engines
from .evaluate import Outputs, evaluate_engines
from .health import assess_engines
from .inputs import (
    AuditData,
    audit_task,
    check_source,
    frozen,
    load_audit_data,
    load_audit_model,
)
from .panels import worst_hit_panels
from .plan import CellGroup, attack_params, build_targets, check_names, plan_groups, skip_reason
from .provenance import model_description, now, provenance
from .targeted import target_closeness

log = logging.getLogger(__name__)

# progress(cell_id, done, total): the CLI draws it, the library never.
ProgressFn = Callable[[str, int, int], None]


def _perturbation(clean: np.ndarray, adv: np.ndarray) -> Perturbation:
    l2, linf = perturbation_norms(clean, adv)
    s = ssim(clean, adv)
    return Perturbation(
        l2_mean=float(l2.mean()),
        l2_max=float(l2.max()),
        linf_max=float(linf.max()),
        ssim_mean=float(s.mean()),
        ssim_min=float(s.min()),
        per_image={"l2": l2.tolist(), "linf": linf.tolist(), "ssim": s.tolist()},
    )


class _Loop:
    """The state one audit shares between its cells (read-only once the clean run is done)."""

    def __init__(
        self,
        config: AuditConfig,
        model: torch.nn.Module,
        data: AuditData,
        task: Task,
        engines: list[AuditEngine],
        comparisons: Sequence[Comparison],
    ) -> None:
        self.config, self.model, self.data, self.task = config, model, data, task
        self.engines, self.comparisons = engines, comparisons
        n_boot = config.n_boot
        self.boot = bootstrap_indices(len(data), n_boot, seed=config.seed) if n_boot else None
        self.clean, self.clean_out = self.evaluate(data.images, None, None)
        self.targets: np.ndarray | None = None

    def evaluate(
        self, images: np.ndarray, clean: dict[str, EngineEval] | None, clean_out: Outputs | None
    ) -> tuple[dict[str, EngineEval], Outputs]:
        cfg = self.config
        evals, outputs = evaluate_engines(
            self.engines, images, self.data.labels, self.task, cfg.batch_size, self.boot
        )
        apply_comparisons(
            evals, outputs, self.task, clean=clean, clean_outputs=clean_out,
            fooled_threshold=cfg.fooled_threshold, boot=self.boot, comparisons=self.comparisons,
        )  # fmt: skip
        return evals, outputs

    def measure(self, cell: AuditCell, adv: np.ndarray) -> None:
        """Fill one cell from its adversarial images."""
        data, cfg = self.data, self.config
        cell.perturbation = _perturbation(data.images, adv)
        cell.engines, out = self.evaluate(adv, self.clean, self.clean_out)
        if self.task.has_panels:
            cell.panels = worst_hit_panels(
                cell, data.images, adv, data.labels, data.names, out.preds, self.clean,
                cfg.panels, cfg.out_dir, self.task.num_classes,
            )  # fmt: skip
        if ATTACKS[cell.attack].targeted and self.targets is not None:
            cell.targeted = target_closeness(
                cfg.target, self.targets, out.preds, self.model, adv, data.images, self.task
            )

    def run_group(self, group: CellGroup) -> Iterator[AuditCell]:
        """Craft one attack x loss over every epsilon, then measure each epsilon's cell
        (yielded as it is finished)."""
        t0 = time.perf_counter()
        cells = group.cells()
        targeted = ATTACKS[group.attack].targeted
        labels = self.targets if targeted and self.targets is not None else self.data.labels
        try:
            for cell in cells:
                cell.params = attack_params(
                    group.attack, group.loss, cell.epsilon, self.data.image_shape, self.config,
                    self.model,
                )  # fmt: skip
            advs = craft_group(self.model, group, self.data.images, labels, self.task, self.config)
        except Exception as exc:  # record and go on: one failing cell loses nothing else
            log.exception("crafting %s/%s failed", group.attack, group.loss)
            advs = [exc] * len(cells)
        craft_seconds = (time.perf_counter() - t0) / len(cells)
        for cell, adv in zip(cells, advs, strict=True):
            t1 = time.perf_counter()
            try:
                if isinstance(adv, Exception):
                    raise adv
                self.measure(cell, adv)
            except Exception as exc:
                log.exception("cell %s failed", cell.id)
                cell.status, cell.error = Status.ERROR, f"{type(exc).__name__}: {exc}"
            cell.seconds = round(craft_seconds + time.perf_counter() - t1, 4)
            yield cell


def _latency(config: AuditConfig, engines: list[AuditEngine], images: np.ndarray) -> list | None:
    if not config.bench:
        return None
    from segshield.bench import bench_engines

    # Short settings: the audit reports latency alongside robustness; `segshield bench`
    # measures with trtexec-like minimums when latency itself is the question.
    return bench_engines(
        [e.runner for e in engines if e.runner is not None],
        images,
        config.bench_batch_sizes,
        warmup_s=0.3,
        min_iters=20,
        min_duration_s=1.0,
    )


def run_audit(
    config: AuditConfig,
    progress: ProgressFn | None = None,
    command: str = "",
    comparisons: Sequence[Comparison] = DEFAULT_COMPARISONS,
    *,
    model: LoadedModel | None = None,
    data: AuditData | None = None,
) -> AuditReport:
    """Audit one model on one dataset for its task. Writes engines (and panels) into
    config.out_dir and returns the report; writing report files is the caller's job.

    comparisons: functions that fill each evaluation's comparison fields (see compare.py).
    model, data: already loaded inputs (a notebook's model and arrays) instead of the ones
    ``config`` names; the model's training mode and parameter flags are restored afterwards.
    """
    started, t_start = now(), time.perf_counter()
    check_names(config)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    data = load_audit_data(config) if data is None else data
    loaded = load_audit_model(config) if model is None else model
    with frozen(loaded.module):
        loop, engines, build_info, skipped, cells = _audit(
            config, loaded, data, comparisons, progress
        )
        latency = _latency(config, engines, data.images)  # inside the audit's clock
    onnx_export = (build_info or {}).get("onnx_export") or {}
    return AuditReport(
        provenance=provenance(
            command=command,
            seed=config.seed,
            started=started,
            seconds=time.perf_counter() - t_start,
            loaded=loaded,
            data_sha256=data.sha256,
            onnx_sha256=onnx_export.get("sha256"),
        ),
        config=config.to_dict(),
        model=model_description(loaded),
        dataset=data.description,
        task=loop.task.kind,
        engines=[e.record for e in engines],
        clean=loop.clean,
        cells=cells,
        latency=latency,
        build=build_info or None,
        skipped=skipped,
    )


def _audit(
    config: AuditConfig,
    loaded: LoadedModel,
    data: AuditData,
    comparisons: Sequence[Comparison],
    progress: ProgressFn | None,
) -> tuple[_Loop, list[AuditEngine], dict, list[dict], list[AuditCell]]:
    task = audit_task(config, data)
    check_source(loaded.module, data, task)
    engines, build_info = audit_engines(config, loaded, data, task)
    loop = _Loop(config, loaded.module, data, task, engines, comparisons)
    if loop.clean[SOURCE_ENGINE].status != Status.OK:
        raise ModelOutputError(
            f"the source model failed on clean images: {loop.clean[SOURCE_ENGINE].error}"
        )
    thresholds = HealthThresholds(config.health_ok_min, config.health_failed_below)
    assess_engines(engines, loop.clean, loop.clean_out, task, thresholds)
    reasons = {a: skip_reason(a, task.kind) for a in config.attacks}
    skipped = [{"attack": a, "reason": r} for a, r in reasons.items() if r]
    attacks = [a for a, r in reasons.items() if r is None]
    if any(ATTACKS[a].targeted for a in attacks):
        loop.targets = build_targets(config.target, data.labels, config.size)
    groups = plan_groups(config, attacks)
    cells: list[AuditCell] = []
    total = sum(len(g.epsilons) for g in groups)
    for group in groups:
        for cell in loop.run_group(group):
            cells.append(cell)
            if progress is not None:
                progress(cell.id, len(cells), total)
    return loop, engines, build_info, skipped, cells
