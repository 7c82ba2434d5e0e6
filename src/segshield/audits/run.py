"""`run_audit`: one audit, for every task (binary, multi-class, multi-label segmentation
and classification), in one process or sharded over torchrun's ranks.

load → engines (built, cached or loaded) → the clean run and engine health → plan → the cell
loop (audits/loop.py) → latency → the report. Each finished cell is kept on disk as it
completes (audits/checkpoint.py), so a killed audit resumes where it stopped; the output
folder is locked while the audit runs.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from segshield.attacks import ATTACKS
from segshield.devices import placed, resolve_device
from segshield.engines.health import HealthThresholds
from segshield.enums import Status, TaskKind
from segshield.errors import ModelOutputError, SegShieldError
from segshield.models import LoadedModel, module_fingerprint
from segshield.results import SOURCE_ENGINE, AuditCell, AuditReport, Evaluation

from .checkpoint import CellStore, audit_key, output_lock
from .compare import DEFAULT_COMPARISONS, Comparison, per_volume_scores
from .config import AuditConfig
from .distributed import Ranks, join, rank_device
from .engines import AuditEngine, audit_engines
from .evaluation import certified_section, evaluation_section
from .health import assess_engines
from .inputs import AuditData, audit_task, check_source, frozen, load_audit_data, load_audit_model
from .loop import AuditLoop
from .plan import (
    CellGroup,
    build_targets,
    check_names,
    custom_losses,
    plan_groups,
    skip_reason,
    validate_losses,
)
from .provenance import model_description, now, provenance

log = logging.getLogger(__name__)

# progress(cell_id, done, total): the CLI draws it, the library never.
ProgressFn = Callable[[str, int, int], None]


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


@dataclass
class _Done:
    """What the audit measured, for the report (rank 0)."""

    loop: AuditLoop
    engines: list[AuditEngine]
    build_info: dict
    skipped: list[dict]
    cells: list[AuditCell]
    latency: list | None = None
    resumed: list[str] = field(default_factory=list)
    evaluation: Evaluation | None = None
    certified: dict | None = None


def run_audit(
    config: AuditConfig,
    progress: ProgressFn | None = None,
    command: str = "",
    comparisons: Sequence[Comparison] = DEFAULT_COMPARISONS,
    *,
    model: LoadedModel | None = None,
    data: AuditData | None = None,
) -> AuditReport | None:
    """Audit one model on one dataset for its task. Writes engines, panels and finished
    cells into config.out_dir (locked meanwhile) and returns the report; writing report
    files is the caller's job. Under torchrun every rank calls it; rank 0 returns the
    report, the other ranks None.

    comparisons: functions that fill each evaluation's comparison fields (see compare.py).
    model, data: already loaded inputs (a notebook's model and arrays) instead of the ones
    ``config`` names; the model's training mode, parameter flags and device are restored.
    """
    started, t_start = now(), time.perf_counter()
    check_names(config)
    device = resolve_device(config.device)
    ranks = join(device)
    device = rank_device(device, ranks)
    if not ranks.root:  # engines and panels of the other ranks go to a scratch folder
        with tempfile.TemporaryDirectory(prefix=f"segshield-rank{ranks.rank}-") as tmp:
            scratch = replace(config, out_dir=Path(tmp), panels=0, bench=False)
            _load_and_audit(scratch, comparisons, progress, ranks, device, model, data)
        return None
    with output_lock(config.out_dir):
        loaded, data, done = _load_and_audit(
            config, comparisons, progress, ranks, device, model, data
        )
    return _report(config, command, started, time.perf_counter() - t_start, loaded, data, done)


def _load_and_audit(
    config: AuditConfig,
    comparisons: Sequence[Comparison],
    progress: ProgressFn | None,
    ranks: Ranks,
    device: torch.device,
    model: LoadedModel | None,
    data: AuditData | None,
) -> tuple[LoadedModel, AuditData, _Done]:
    loaded = load_audit_model(config) if model is None else model
    # the data are read for the model: its first layer decides 2-D vs 3-D and the channels
    data = load_audit_data(config, loaded.module) if data is None else data
    with frozen(loaded.module):
        done = _audit(config, loaded, data, comparisons, progress, ranks, device)
    return loaded, data, done


def _report(
    config: AuditConfig,
    command: str,
    started: str,
    seconds: float,
    loaded: LoadedModel,
    data: AuditData,
    done: _Done,
) -> AuditReport:
    build_info = done.build_info
    onnx_export = (build_info or {}).get("onnx_export") or {}
    prov = provenance(
        command=command,
        seed=config.seed,
        started=started,
        seconds=seconds,
        loaded=loaded,
        data_sha256=data.sha256,
        onnx_sha256=onnx_export.get("sha256"),
    )
    prov["ranks"] = done.loop.ranks.world
    # class + parameters: the model's identity whatever file it came from (tracking tags it)
    prov["model_fingerprint"] = module_fingerprint(loaded.module)
    prov["device"] = next(e.record.device for e in done.engines if e.name == SOURCE_ENGINE)
    prov["resumed_cells"] = done.resumed
    return AuditReport(
        provenance=prov,
        config=config.to_dict(),
        model=model_description(loaded),
        dataset=data.description,
        task=done.loop.task.kind,
        engines=[e.record for e in done.engines],
        clean=done.loop.clean,
        cells=done.cells,
        latency=done.latency,
        build=build_info or None,
        skipped=done.skipped,
        evaluation=done.evaluation,
        certified=done.certified,
    )


def _engines(
    config: AuditConfig, loaded: LoadedModel, data: AuditData, task, ranks: Ranks
) -> tuple[list[AuditEngine], dict]:
    """Rank 0 builds first (filling the engine cache), then the others (reading it)."""
    error, built = None, None
    if ranks.root:
        try:
            built = audit_engines(config, loaded, data, task)
        except SegShieldError as exc:
            error = str(exc)
    error = ranks.broadcast(error)
    if error is not None:
        raise SegShieldError(error)
    if not ranks.root:
        built = audit_engines(config, loaded, data, task)
    assert built is not None
    return built


def _audit(
    config: AuditConfig,
    loaded: LoadedModel,
    data: AuditData,
    comparisons: Sequence[Comparison],
    progress: ProgressFn | None,
    ranks: Ranks,
    device: torch.device,
) -> _Done:
    task = audit_task(config, data)
    check_source(loaded.module, data, task)
    validate_losses(config, loaded.module, data.images, data.labels, task)
    volumes = data.description.get("volume")
    slices = volumes is not None and len(set(volumes)) < len(volumes)
    if slices and task.kind != TaskKind.CLASSIFICATION:
        comparisons = (*comparisons, per_volume_scores(volumes))
    engines, build_info = _engines(config, loaded, data, task, ranks)
    with placed(loaded.module, device, config.channels_last):
        for e in engines:
            if e.name == SOURCE_ENGINE:
                e.record.device = str(device)
        loop = AuditLoop(config, loaded.module, data, task, engines, comparisons, ranks)
        source = loop.clean.get(SOURCE_ENGINE)
        failure = ranks.broadcast(
            None if source is None or source.status == Status.OK else str(source.error)
        )
        if failure is not None:
            raise ModelOutputError(f"the source model failed on clean images: {failure}")
        if ranks.root:
            thresholds = HealthThresholds(config.health_ok_min, config.health_failed_below)
            assess_engines(engines, loop.clean, loop.clean_out, task, thresholds)
        reasons = {a: skip_reason(a, task.kind) for a in config.attacks}
        skipped = [{"attack": a, "reason": r} for a, r in reasons.items() if r]
        attacks = [a for a, r in reasons.items() if r is None]
        if any(ATTACKS[a].targeted for a in attacks):
            loop.targets = build_targets(config.target, data.labels, config.size)
        cells, resumed = _cells(config, loaded, data, loop, plan_groups(config, attacks), progress)
        done = _Done(loop, engines, build_info, skipped, cells, resumed=resumed)
        if ranks.root:
            done.evaluation = evaluation_section(
                config, cells, loop.clean, task, loaded.module, data
            )
            done.certified = certified_section(config, engines, task, data)
            done.latency = _latency(config, engines, data.images)
    return done


def _cells(
    config: AuditConfig,
    loaded: LoadedModel,
    data: AuditData,
    loop: AuditLoop,
    groups: list[CellGroup],
    progress: ProgressFn | None,
) -> tuple[list[AuditCell], list[str]]:
    """Every planned cell in plan order: the finished ones of an interrupted run of this
    audit read back, the others run (and written as each finishes)."""
    ranks = loop.ranks
    store, finished = None, {}
    if ranks.root:
        key = audit_key(
            config,
            model_fingerprint=module_fingerprint(loaded.module),
            data_sha256=data.sha256,
            functions=[*loop.comparisons, *custom_losses(config)],
        )
        store = CellStore(config.out_dir, key)
        finished = store.load(config.resume)
    done_ids = ranks.broadcast(sorted(finished))
    order = [c.id for g in groups for c in g.cells()]
    total = len(order)
    if done_ids:
        log.info("resuming: %d of %d cells were finished", len(done_ids), total)
    by_id: dict[str, AuditCell] = dict(finished)
    for group in groups:
        todo = [(e, s) for e, s, c in zip(group.epsilons, group.seeds, group.cells(), strict=True)
                if c.id not in done_ids]  # fmt: skip
        if not todo:
            continue
        rest = replace(group, epsilons=tuple(e for e, _ in todo), seeds=tuple(s for _, s in todo))
        for cell in loop.run_group(rest):
            by_id[cell.id] = cell
            if store is not None:
                store.save(order.index(cell.id), cell)
            if progress is not None:
                progress(cell.id, len(by_id), total)
    if not ranks.root:
        return [], []
    return [by_id[i] for i in order], [i for i in order if i in done_ids]
