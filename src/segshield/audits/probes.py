"""The probe runs behind the evaluation checks (audits/checks.py): a few extra attacks and
random noise on the first images of the audit, on the source model, scored by the task's
accumulator so that every number follows the audit's own conventions.

Each probe draws its randomness from CPU generators seeded by
:func:`~segshield.hashing.stable_seed` of the audit seed and what the probe is (per image
where an attack has a random start), so its draws depend neither on the batch size nor on
the device nor on the other probes. Nothing here seeds torch globally, writes or prints. A
probe that fails is recorded as ``{"error": ...}`` and loses no other probe.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from segshield.attacks import ATTACKS, get_attack, get_loss
from segshield.devices import module_device
from segshield.enums import Status
from segshield.hashing import stable_seed
from segshield.metrics import nanmean
from segshield.results import SOURCE_ENGINE, AuditCell
from segshield.tasks import Task, per_image_record

from .config import AuditConfig
from .plan import cell_seed, image_seed

log = logging.getLogger(__name__)

__all__ = [
    "STEPS_FACTOR",
    "UNBOUNDED_EPS",
    "Measured",
    "Prober",
    "noise_comparable",
    "run_probes",
]

UNBOUNDED_EPS = 1.0
"""The unbounded probe's L∞ budget: the whole [0, 1] pixel range."""
STEPS_FACTOR = 4
"""The steps probe's longer run has this many times the audit's steps."""


@dataclass(frozen=True)
class Measured:
    """One probe run on the probe images: ``pooled``, the task's primary metric over all of
    them from the summed counts (Dice; accuracy for a classifier), and ``per_image_mean``, the
    mean of :meth:`Task.image_scores` (images with an empty truth left out). Both in [0, 1],
    None where undefined."""

    pooled: float | None
    per_image_mean: float | None

    def record(self, metric: str) -> dict[str, float | None]:
        return {metric: self.pooled, "per_image_mean": self.per_image_mean}


def _finite(value: Any) -> float | None:
    value = None if value is None else float(value)
    return value if value is not None and np.isfinite(value) else None


def _mean(scores: np.ndarray) -> float | None:
    """Mean of per-image scores skipping NaN (empty truths), None when none is defined."""
    return _finite(nanmean(scores))


class Prober:
    """Runs probes on ``images`` (n, C, H, W) float in [0, 1] with their dataset ``labels``,
    on ``model`` where it already is, ``config.batch_size`` images per batch.

    ``forward_passes`` / ``gradient_passes`` count passes over all n images (an attack of s
    steps is s gradient passes), for the report's cost line.
    """

    def __init__(
        self,
        model: nn.Module,
        images: np.ndarray,
        labels: np.ndarray,
        task: Task,
        config: AuditConfig,
    ) -> None:
        self.model, self.images, self.labels = model, images, labels
        if getattr(task, "surface_metrics", False):  # the probes compare Dice only
            task = dataclasses.replace(task, surface_metrics=False)  # type: ignore[type-var]
        self.task, self.config = task, config
        self.device = module_device(model)
        self.forward_passes = 0
        self.gradient_passes = 0

    def _batches(self) -> Iterator[slice]:
        size = self.config.batch_size
        for i in range(0, len(self.images), size):
            yield slice(i, i + size)

    def _tensor(self, batch: np.ndarray) -> torch.Tensor:
        """A batch on the model's device, channels-last when the audit runs so (as crafting)."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    def score(self, images: np.ndarray) -> Measured:
        """The source's scores on ``images`` (n, C, H, W) (one forward pass)."""
        acc = self.task.accumulator()
        with torch.no_grad():
            for s in self._batches():
                out = self.model(self._tensor(images[s]))
                acc.update(out.detach().to("cpu", torch.float32).numpy(), self.labels[s])
        self.forward_passes += 1
        result, counts = acc.result(), acc.counts()
        scores = self.task.image_scores(per_image_record(result, counts))
        return Measured(_finite(getattr(result, self.task.primary)), _mean(scores))

    def attack(
        self,
        name: str,
        loss: str,
        eps: float,
        steps: int,
        *,
        alpha: float | None = None,
        random_start: bool = True,
        seeds: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Adversarial images (n, C, H, W) float32 of attack ``name`` with ``steps`` steps.

        An attack with a random start draws image j's start from its own CPU generator seeded
        ``seeds[j]`` (by default from the audit seed, the attack, loss, ε and j), so a run
        does not depend on the batch size, and two runs given the same seeds start alike.
        """
        names = set(ATTACKS[name].param_names())
        options: dict[str, Any] = {"steps": steps}
        if alpha is not None:
            options["alpha"] = alpha
        if "random_start" in names:
            options["random_start"] = random_start
        if seeds is None:
            seeds = [
                stable_seed("checks", name, loss, float(eps), self.config.seed, j)
                for j in range(len(self.images))
            ]
        out = []
        for s in self._batches():
            if "generator" in names:
                options["generator"] = [torch.Generator().manual_seed(k) for k in seeds[s]]
            attacker = get_attack(name, self.model, get_loss(loss), eps, **options)
            x = self._tensor(self.images[s])
            y = self.task.loss_targets(self.labels[s]).to(self.device)
            adv = attacker(x, y)
            out.append(np.ascontiguousarray(adv.detach().to("cpu", torch.float32).numpy()))
        self.gradient_passes += steps
        return np.concatenate(out)

    def noise(self, eps: float) -> np.ndarray:
        """``clip_[0,1](x + eps * s)`` with s = ±1 uniformly per pixel: a corner of the ε-ball,
        drawn at once for the n images from a generator seeded by the audit seed and ε."""
        gen = torch.Generator().manual_seed(stable_seed("checks", "noise", self.config.seed, eps))
        bits = torch.randint(0, 2, self.images.shape, generator=gen, dtype=torch.int64).numpy()
        signs = (2 * bits - 1).astype(np.float32)
        return np.clip(self.images + np.float32(eps) * signs, 0.0, 1.0).astype(np.float32)

    def gradient_norms(self, loss: str) -> np.ndarray:
        """(n,) float64 L2 norms of the input gradient of ``loss`` at the clean images (one
        gradient pass), taken in float64 so tiny gradients do not underflow in the squares."""
        fn = get_loss(loss)
        norms = []
        for s in self._batches():
            x = self._tensor(self.images[s]).requires_grad_(True)
            y = self.task.loss_targets(self.labels[s]).to(self.device)
            with torch.enable_grad():
                value = fn(self.model(x), y)
                # Input-only gradient: the model's parameters stay untouched.
                (grad,) = torch.autograd.grad(value.sum(), x)
            norms.append(grad.detach().to("cpu", torch.float64).reshape(len(grad), -1).norm(dim=1))
        self.gradient_passes += 1
        return torch.cat(norms).numpy()


def _guarded(name: str, probe: Callable[[], Any]) -> Any:
    """``probe()``, or ``{"error": message}`` when it raises (logged, never re-raised)."""
    try:
        return probe()
    except Exception as exc:  # one failing probe must not lose the others or the audit
        log.exception("the %s probe failed", name)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _unbounded(p: Prober, loss: str) -> dict:
    """PGD at ε = 1 from the clean images (no random start: a random point of the unit ball
    alone ruins any model, which would hide gradients that lead nowhere), ``steps`` steps
    of 2/steps so the walk can cross the pixel range twice."""
    steps = p.config.steps
    alpha = min(1.0, 2.0 / steps)
    adv = p.attack("pgd", loss, UNBOUNDED_EPS, steps, alpha=alpha, random_start=False)
    return {
        "attack": "pgd",
        "loss": loss,
        "epsilon": UNBOUNDED_EPS,
        "steps": steps,
        "alpha": alpha,
        **p.score(adv).record(p.task.primary),
    }


def _steps(p: Prober, attack: str, loss: str, eps: float, cell: np.ndarray | None) -> dict:
    """``attack`` at ``eps`` with the audit's steps and STEPS_FACTOR times as many, with the
    same step size and from the random starts the audit's cell drew for these images
    (:func:`~segshield.audits.plan.image_seed`), so the runs differ in their steps only.

    cell: that cell's per-image scores (n,) on the source, when it finished: then it is the
    shorter run (what the audit measured), and only the longer one runs here.
    """
    steps, metric = p.config.steps, p.task.primary
    seeds = [image_seed(cell_seed(attack, loss, eps, p.config), j) for j in range(len(p.images))]
    if cell is not None:
        short = {"steps": steps, "from": "cell", metric: None, "per_image_mean": _mean(cell)}
    else:
        adv = p.attack(attack, loss, eps, steps, alpha=p.config.alpha, seeds=seeds)
        short = {"steps": steps, "from": "probe", **p.score(adv).record(metric)}
    adv = p.attack(attack, loss, eps, STEPS_FACTOR * steps, alpha=p.config.alpha, seeds=seeds)
    long = {"steps": STEPS_FACTOR * steps, "from": "probe", **p.score(adv).record(metric)}
    return {"attack": attack, "loss": loss, "epsilon": eps, "runs": [short, long]}


def _flat(p: Prober, loss: str, flat_norm: float) -> dict:
    norms = p.gradient_norms(loss)
    flat = int(np.count_nonzero(norms <= flat_norm))
    return {
        "share": flat / len(norms),
        "flat_images": flat,
        "median_norm": float(np.median(norms)),
    }


def _steps_attack(config: AuditConfig) -> str | None:
    """The audit's strongest plain iterative L∞ attack: PGD if it ran, else BIM, else none."""
    return next((a for a in ("pgd", "bim") if a in config.attacks), None)


def _steps_cell(
    cells: Sequence[AuditCell], attack: str | None, config: AuditConfig, task: Task, n: int
) -> np.ndarray | None:
    """The per-image source scores (n,) of the steps probe's cell (``attack`` with the first
    loss at the largest ε), when it finished with per-image records: the shorter run."""
    want = (attack, config.losses[0], float(max(config.epsilons)))
    for cell in cells:
        ev = cell.engines.get(SOURCE_ENGINE)
        if (cell.attack, cell.loss, float(cell.epsilon)) != want or cell.status != Status.OK:
            continue
        if ev is None or not ev.ok:
            continue
        if ev.per_image is not None and len(ev.per_image.tp) >= n:
            return task.image_scores(ev.per_image)[:n]
    return None


def noise_comparable(cell: AuditCell, n: int) -> bool:
    """An untargeted gradient attack's cell at ε > 0 with the source's per-image records
    (targeted attacks aim at a target, not at a low score). L2 attacks count: ±ε sign noise
    lies on their ball (radius ε·sqrt(C·H·W)) before clipping."""
    cls = ATTACKS.get(cell.attack)
    ev = cell.engines.get(SOURCE_ENGINE)
    return (
        cls is not None
        and not cls.targeted
        and cell.status == Status.OK
        and cell.epsilon > 0
        and ev is not None
        and ev.ok
        and ev.per_image is not None
        and len(ev.per_image.tp) >= n
    )


def run_probes(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    task: Task,
    config: AuditConfig,
    cells: Sequence[AuditCell],
    *,
    flat_norm: float = 1e-12,
) -> dict[str, Any]:
    """Every probe on ``images`` (n >= 1, the probe images: the first n of the audit's
    dataset) -> JSON-ready measurements. cells: the audit's finished cells.

    ``{"images": n, "metric", "clean", "unbounded", "steps" (None without PGD or BIM in the
    audit), "noise": [{"epsilon", <metric>, "per_image_mean"}] per ε of the cells of
    :func:`noise_comparable` attacks, "flat_loss": {loss: {"share", "flat_images",
    "median_norm"}}, "cost": {"forward_passes", "gradient_passes"}}``, scores as
    :meth:`Measured.record`. The steps probe runs at the largest ε of the audit with its first
    loss, as does the unbounded one (at ε = 1).
    """
    p = Prober(model, images, labels, task, config)
    n, metric, loss = len(images), task.primary, config.losses[0]
    probes: dict[str, Any] = {"images": n, "metric": metric}
    probes["clean"] = _guarded("clean", lambda: p.score(images).record(metric))
    probes["unbounded"] = _guarded("unbounded", lambda: _unbounded(p, loss))
    probes["steps"] = None
    attack, largest = _steps_attack(config), float(max(config.epsilons))
    if attack is not None and largest > 0.0:
        cell = _steps_cell(cells, attack, config, task, n)
        probes["steps"] = _guarded("steps", lambda: _steps(p, attack, loss, largest, cell))
    probes["noise"] = [
        {"epsilon": e, **_guarded("noise", lambda e=e: p.score(p.noise(e)).record(metric))}
        for e in sorted({float(c.epsilon) for c in cells if noise_comparable(c, n)})
    ]
    probes["flat_loss"] = {
        name: _guarded("flat loss", lambda name=name: _flat(p, name, flat_norm))
        for name in config.losses
    }
    probes["cost"] = {"forward_passes": p.forward_passes, "gradient_passes": p.gradient_passes}
    return probes
