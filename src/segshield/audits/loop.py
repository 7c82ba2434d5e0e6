"""The cell loop every audit runs, for every task: craft one attack x loss over every ε on
the source model, replay each ε's images on every engine, score, compare, draw panels.

Each rank of a sharded audit (audits/distributed.py; one process is rank 0 of 1) crafts
and replays its own block of whole batches; rank 0 gathers the blocks in dataset order and
scores them, so the cells do not depend on how many ranks ran them. A failing cell (or
engine) is recorded with its error; it never loses the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from segshield.attacks import ATTACKS
from segshield.enums import Status
from segshield.metrics import bootstrap_indices, perturbation_norms, ssim
from segshield.results import AuditCell, EngineEval, Perturbation
from segshield.tasks import Task

from .compare import Comparison, apply_comparisons
from .config import AuditConfig
from .craft import craft_group
from .distributed import Ranks
from .engines import AuditEngine
from .evaluate import EngineRun, Outputs, merge_runs, replay_engines, score_engines
from .inputs import AuditData
from .panels import worst_hit_panels
from .plan import CellGroup, attack_params
from .targeted import target_closeness

log = logging.getLogger(__name__)

# What one rank sends for one input set: its adversarial block (or why crafting failed),
# every engine's run on it, and for an ensemble the member each of its images kept.
Block = tuple[np.ndarray | str, dict[str, EngineRun], np.ndarray | None]


def perturbation_record(clean: np.ndarray, adv: np.ndarray) -> Perturbation:
    """Per-image L2, L∞ and SSIM of ``adv`` against ``clean`` (both (N, C, H, W))."""
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


def ensemble_record(cell: AuditCell, winners: np.ndarray) -> dict:
    """Which member of an ensemble cell each image kept: {"members", "wins" (images per
    member, in member order), "winner_per_image" (member index, -1: none)}."""
    members = list(cell.params.get("members") or [])
    wins = [int((winners == i).sum()) for i in range(len(members))]
    return {"members": members, "wins": wins, "winner_per_image": winners.astype(int).tolist()}


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class AuditLoop:
    """The state one audit shares between its cells (read-only once the clean run is done).

    ``clean`` and ``clean_out`` are filled on rank 0 only (the others hold empty values).
    """

    def __init__(
        self,
        config: AuditConfig,
        model: torch.nn.Module,
        data: AuditData,
        task: Task,
        engines: list[AuditEngine],
        comparisons: Sequence[Comparison],
        ranks: Ranks,
    ) -> None:
        self.config, self.model, self.data, self.task = config, model, data, task
        self.engines, self.comparisons, self.ranks = engines, comparisons, ranks
        self.start, self.stop = ranks.bounds(len(data), config.batch_size)
        self.images = data.images[self.start : self.stop]
        self.labels = data.labels[self.start : self.stop]
        spacing = data.spacing
        self.spacing = None if spacing is None else spacing[self.start : self.stop]
        n_boot = config.n_boot
        self.boot = bootstrap_indices(len(data), n_boot, seed=config.seed) if n_boot else None
        self.targets: np.ndarray | None = None
        self.clean: dict[str, EngineEval] = {}
        self.clean_out: Outputs | None = None
        blocks = ranks.gather((self.images, self.replay(self.images)))
        if blocks is not None:
            self.clean, self.clean_out = self.score([b[1] for b in blocks], None, None)

    def replay(self, images: np.ndarray) -> dict[str, EngineRun]:
        """Every engine on this rank's block of images."""
        return replay_engines(
            self.engines, images, self.labels, self.task, self.config.batch_size, self.spacing
        )

    def score(
        self,
        runs: list[dict[str, EngineRun]],
        clean: dict[str, EngineEval] | None,
        clean_out: Outputs | None,
    ) -> tuple[dict[str, EngineEval], Outputs]:
        """The evaluations of one input set from every rank's runs (in rank order)."""
        cfg = self.config
        evals, outputs = score_engines(self.engines, merge_runs(runs), self.task, self.boot)
        apply_comparisons(
            evals, outputs, self.task, clean=clean, clean_outputs=clean_out,
            fooled_threshold=cfg.fooled_threshold, boot=self.boot, comparisons=self.comparisons,
        )  # fmt: skip
        return evals, outputs

    def measure(self, cell: AuditCell, blocks: list[Block]) -> None:
        """Fill one cell from every rank's block (rank 0)."""
        data, cfg = self.data, self.config
        adv = np.concatenate([a for a, _, _ in blocks])  # type: ignore[misc]
        cell.perturbation = perturbation_record(data.images, adv)
        cell.engines, out = self.score([r for _, r, _ in blocks], self.clean, self.clean_out)
        winners = [w for _, _, w in blocks]
        if any(w is not None for w in winners):  # an ensemble (ranks with no images: None)
            none = np.zeros(0, np.int64)
            cell.ensemble = ensemble_record(
                cell, np.concatenate([none if w is None else w for w in winners])
            )
        if self.task.has_panels:
            cell.panels = worst_hit_panels(
                cell, data.images, adv, data.labels, data.names, out.preds, self.clean,
                cfg.panels, cfg.out_dir, self.task.num_classes,
            )  # fmt: skip
        if ATTACKS[cell.attack].targeted and self.targets is not None:
            cell.targeted = target_closeness(
                cfg.target, self.targets, out.preds, self.model, adv, data.images, self.task
            )

    def _craft(
        self, group: CellGroup, cells: list[AuditCell], winners: dict[int, np.ndarray]
    ) -> list[np.ndarray | str]:
        """Each cell's parameters, and this rank's adversarial block per ε of ``group`` (an
        error message where its crafting failed); ``winners`` is filled for ensembles."""
        n_cells = len(cells)
        targeted = ATTACKS[group.attack].targeted and self.targets is not None
        labels = self.targets[self.start : self.stop] if targeted else self.labels  # type: ignore[index]
        try:
            for cell in cells:
                cell.params = attack_params(
                    group.attack, group.loss, cell.epsilon, self.data.image_shape, self.config,
                    self.model,
                )  # fmt: skip
            if self.stop == self.start:  # more ranks than batches: nothing to craft here
                return [self.images.copy() for _ in range(n_cells)]
            advs = craft_group(
                self.model, group, self.images, labels, self.task, self.config, self.start,
                winners,
            )  # fmt: skip
        except Exception as exc:  # record and go on: one failing cell loses nothing else
            log.exception("crafting %s/%s failed", group.attack, group.loss)
            return [_error(exc)] * n_cells
        return [a if isinstance(a, np.ndarray) else _error(a) for a in advs]

    def run_group(self, group: CellGroup) -> Iterator[AuditCell]:
        """Craft one attack x loss over every ε, then measure each ε's cell; rank 0 yields
        each cell as it is finished (the other ranks only craft and replay)."""
        t0 = time.perf_counter()
        cells = group.cells()
        winners: dict[int, np.ndarray] = {}
        advs = self._craft(group, cells, winners)
        craft_seconds = (time.perf_counter() - t0) / len(cells)
        for k, (cell, adv) in enumerate(zip(cells, advs, strict=True)):
            t1 = time.perf_counter()
            runs = self.replay(adv) if isinstance(adv, np.ndarray) else {}
            blocks = self.ranks.gather((adv, runs, winners.get(k)))
            if blocks is None:
                continue
            failed = [a for a, _, _ in blocks if isinstance(a, str)]
            try:
                if failed:  # crafting failed on some rank: that message is the cell's error
                    cell.status, cell.error = Status.ERROR, failed[0]
                else:
                    self.measure(cell, blocks)
            except Exception as exc:
                log.exception("cell %s failed", cell.id)
                cell.status, cell.error = Status.ERROR, _error(exc)
            cell.seconds = round(craft_seconds + time.perf_counter() - t1, 4)
            yield cell
