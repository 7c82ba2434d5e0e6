"""Comparisons of an engine's evaluation with the clean run and with the source engine,
passed to the audit loop as functions (Polygraphy's comparator style): each fills fields of
one :class:`EngineEval` from the evaluations and outputs it is given, and computes nothing
it is not handed. ``DEFAULT_COMPARISONS`` is what every audit applies, in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from segshield.metrics import attack_success, bootstrap_attack_success_ci, fooled_shares
from segshield.metrics import label_disagreement as _label_disagreement
from segshield.results import SOURCE_ENGINE, EngineEval, Interval, PerVolume
from segshield.tasks import Task

from .evaluate import Outputs


@dataclass
class Context:
    """What a comparison may read for one engine's evaluation ``ev`` on one input set."""

    name: str
    ev: EngineEval
    evals: dict[str, EngineEval]  # every engine on the same inputs
    outputs: Outputs  # their predictions and counts
    clean: dict[str, EngineEval] | None  # every engine on the clean images (None: clean run)
    clean_outputs: Outputs | None
    task: Task
    fooled_threshold: float
    boot: np.ndarray | None

    def source(self) -> EngineEval | None:
        src = self.evals.get(SOURCE_ENGINE)
        return src if src is not None and src.ok else None

    def clean_of(self, name: str) -> EngineEval | None:
        ev = (self.clean or {}).get(name)
        return ev if ev is not None and ev.ok else None


Comparison = Callable[[Context], None]


def _primary(ev: EngineEval, task: Task) -> float | None:
    return ev.value(task.primary)


def attack_success_vs_clean(ctx: Context) -> None:
    """AS = relative drop of the task's primary metric from clean, with its paired CI."""
    before = ctx.clean_of(ctx.name)
    if before is None:
        return
    clean_value, adv_value = _primary(before, ctx.task), _primary(ctx.ev, ctx.task)
    if clean_value is None or adv_value is None:
        return
    ctx.ev.attack_success = float(attack_success(clean_value, adv_value))
    counts = ctx.outputs.counts.get(ctx.name)
    clean_counts = (ctx.clean_outputs.counts if ctx.clean_outputs else {}).get(ctx.name)
    if ctx.boot is not None and ctx.ev.ci is not None and counts is not None and clean_counts:
        stat = ctx.task.statistics()[ctx.task.primary]
        ctx.ev.ci["attack_success"] = Interval(
            **bootstrap_attack_success_ci(clean_counts, counts, indices=ctx.boot, stat=stat)
        )


def disagreement_with_source(ctx: Context) -> None:
    """Share of pixels predicted differently from the source on the same inputs, and the
    Dice gap to the source."""
    src, preds = ctx.source(), ctx.outputs.preds
    if src is None or ctx.name not in preds or SOURCE_ENGINE not in preds:
        return
    ctx.ev.disagreement = float(_label_disagreement(preds[ctx.name], preds[SOURCE_ENGINE]).mean())
    if (
        ctx.ev.metrics
        and src.metrics
        and ctx.ev.metrics.dice is not None
        and src.metrics.dice is not None
    ):
        ctx.ev.dice_gap = float(ctx.ev.metrics.dice - src.metrics.dice)


def flips_vs_clean(ctx: Context) -> None:
    """Share of pixels (images, for a classifier) whose prediction on this engine changed
    from its clean prediction, and the share of images fooled."""
    clean_pred = (ctx.clean_outputs.preds if ctx.clean_outputs else {}).get(ctx.name)
    pred, before = ctx.outputs.preds.get(ctx.name), ctx.clean_of(ctx.name)
    if clean_pred is None or pred is None or before is None:
        return
    ctx.ev.flip_rate = float(_label_disagreement(pred, clean_pred).mean())
    if before.per_image is None or ctx.ev.per_image is None:
        return
    s0 = ctx.task.image_scores(before.per_image)
    s1 = ctx.task.image_scores(ctx.ev.per_image)
    scored = s0 > 0  # nothing to degrade where the clean score is 0
    if scored.any():
        drop = np.where(scored, (s0 - s1) / np.where(scored, s0, 1.0), 0.0)
        ctx.ev.success_rate = float(np.mean(drop[scored] >= ctx.fooled_threshold))


def transfer_from_source(ctx: Context) -> None:
    """Engine AS / source AS, and the shares of images fooled on one side only."""
    src, src_clean, eng_clean = ctx.source(), ctx.clean_of(SOURCE_ENGINE), ctx.clean_of(ctx.name)
    if ctx.name == SOURCE_ENGINE or src is None or src_clean is None or eng_clean is None:
        return
    if src.attack_success and ctx.ev.attack_success is not None:
        ctx.ev.transfer_ratio = float(ctx.ev.attack_success / src.attack_success)
    parts = (src_clean.per_image, src.per_image, eng_clean.per_image, ctx.ev.per_image)
    if any(p is None for p in parts):
        return
    ctx.ev.fooled_source_only, ctx.ev.fooled_engine_only = fooled_shares(
        *(ctx.task.image_scores(p) for p in parts),  # type: ignore[arg-type]
        ctx.fooled_threshold,
    )


def per_volume_scores(volume_ids: Sequence[str]) -> Comparison:
    """A comparison that scores each volume (patient) of an audit of slices: the Dice of the
    summed counts of its slices (``volume_ids``: each image's volume, in dataset order),
    into ``ev.per_volume`` and their mean into ``metrics.dice_per_volume_mean``."""
    groups: dict[str, list[int]] = {}
    for i, vol in enumerate(volume_ids):
        groups.setdefault(str(vol), []).append(i)

    def per_volume_scores(ctx: Context) -> None:
        counts = ctx.outputs.counts.get(ctx.name)
        stat = ctx.task.statistics().get("dice")
        if counts is None or stat is None or ctx.ev.metrics is None:
            return
        values: list[float | None] = []
        for rows in groups.values():
            value = float(np.asarray(stat(counts.resample(np.asarray([rows])))).reshape(-1)[0])
            values.append(value if np.isfinite(value) else None)
        names, sizes = list(groups), [len(rows) for rows in groups.values()]
        ctx.ev.per_volume = PerVolume(names, sizes, values)
        defined = [v for v in values if v is not None]
        ctx.ev.metrics.dice_per_volume_mean = float(np.mean(defined)) if defined else None

    return per_volume_scores


DEFAULT_COMPARISONS: tuple[Comparison, ...] = (
    attack_success_vs_clean,
    disagreement_with_source,
    flips_vs_clean,
    transfer_from_source,
)


def apply_comparisons(
    evals: dict[str, EngineEval],
    outputs: Outputs,
    task: Task,
    *,
    clean: dict[str, EngineEval] | None,
    clean_outputs: Outputs | None,
    fooled_threshold: float,
    boot: np.ndarray | None,
    comparisons: Sequence[Comparison] = DEFAULT_COMPARISONS,
) -> None:
    """Apply every comparison to every successful evaluation of one input set (in order:
    the source's attack success is set before the others' transfer ratio reads it)."""
    for comparison in comparisons:
        for name, ev in evals.items():
            if ev.ok:
                comparison(
                    Context(name, ev, evals, outputs, clean, clean_outputs, task,
                            fooled_threshold, boot)
                )  # fmt: skip
