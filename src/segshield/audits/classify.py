"""Classifier audit, after seed mammography (FGSM against a CNN mammogram classifier): accuracy
vs ε and SSIM (clean vs adversarial) vs ε, for each attack.

:func:`run_classifier_audit` crafts adversarial images on a classifier (logits ``(N, K)``) for
every attack x ε, and measures accuracy (with a bootstrap CI over images), per-class accuracy,
the share of predictions flipped, and how large / visible the perturbation is (L∞, L2, SSIM).
A failing cell records its error and loses no other cell. The report is strict JSON
(:meth:`ClassifierAuditReport.to_dict`) and reads back with
:meth:`ClassifierAuditReport.from_dict`.
"""

from __future__ import annotations

import logging
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch
from torch import nn

import segshield
from segshield.attacks import ATTACKS, get_attack, get_loss
from segshield.data.classification import ClassificationDataset
from segshield.errors import ModelOutputError, ReportError
from segshield.metrics import bootstrap_indices, perturbation_norms, ssim
from segshield.models.loading import LoadedModel

log = logging.getLogger(__name__)

__all__ = [
    "CLASSIFIER_REPORT_KIND",
    "CLASSIFIER_SCHEMA_VERSION",
    "DEFAULT_CLASSIFIER_ATTACKS",
    "SEED_CLASSIFIER_EPSILONS",
    "ClassifierAuditConfig",
    "ClassifierAuditReport",
    "ClassifierCell",
    "model_info_from_loaded",
    "run_classifier_audit",
]

CLASSIFIER_SCHEMA_VERSION = 1
CLASSIFIER_REPORT_KIND = "segshield.classifier_audit"
DEFAULT_CLASSIFIER_ATTACKS = ("fgsm", "bim", "pgd")
# The seed sweeps small budgets (imperceptible) and large ones (maximum damage); 0 is clean.
SEED_CLASSIFIER_EPSILONS = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 0.05, 0.1, 0.15, 0.3)
CI_LEVEL = 0.95

# progress(cell_id, done, total): the CLI draws it, the library never.
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ClassifierAuditConfig:
    """What a classifier audit measures.

    attacks: names in :data:`segshield.attacks.ATTACKS` (an unknown name gives error cells);
    epsilons: L∞ budgets in [0, 1] pixel units (L2 attacks get the L∞ ball's corner radius
    ``eps * sqrt(C*h*w)``); loss: attack loss ("bce" is cross-entropy for ``(N, K)`` logits);
    steps: iterations of iterative attacks; batch_size: images per attack batch (PGD's random
    start is drawn per batch); seed: PGD random starts and the bootstrap; n_boot: bootstrap
    resamples over images for the accuracy CI (0: none).
    """

    attacks: tuple[str, ...] = DEFAULT_CLASSIFIER_ATTACKS
    epsilons: tuple[float, ...] = SEED_CLASSIFIER_EPSILONS
    loss: str = "bce"
    steps: int = 10
    batch_size: int = 64
    seed: int = 0
    n_boot: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "attacks", tuple(str(a).strip().lower() for a in self.attacks))
        object.__setattr__(self, "epsilons", tuple(float(e) for e in self.epsilons))
        problems = []
        if not self.attacks:
            problems.append("at least one attack is needed")
        if len(set(self.attacks)) != len(self.attacks):
            problems.append(f"attacks repeat: {list(self.attacks)}")
        if not self.epsilons or any(not (0.0 <= e <= 1.0) for e in self.epsilons):
            problems.append(f"epsilons must be in [0, 1], got {list(self.epsilons)}")
        for what in ("steps", "batch_size"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{what} must be an integer >= 1, got {value!r}")
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot < 0:
            problems.append(f"n_boot must be an integer >= 0, got {self.n_boot!r}")
        try:
            get_loss(self.loss)
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        raw = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in raw.items()}


@dataclass
class ClassifierCell:
    """One attack x ε on every image. Fractions in [0, 1]; None where undefined or failed.

    accuracy_ci: ``{"low", "high", "level", "n_boot"}`` percentile bootstrap over images;
    per_class_accuracy: ``{class name: accuracy}`` (None for a class with no image);
    flip_rate: share of images whose predicted class differs from the clean prediction;
    success_rate: share of the clean-correct images now misclassified;
    ssim_mean/ssim_min: SSIM of adversarial vs clean image; linf_max, l2_mean, l2_max: norms
    of the perturbation in pixel units; per_image: ``{"pred", "ssim", "linf", "l2"}`` lists in
    dataset order.
    """

    id: str
    attack: str
    epsilon: float
    params: dict = field(default_factory=dict)
    status: str = "ok"  # ok | error
    error: str | None = None
    seconds: float = 0.0
    accuracy: float | None = None
    accuracy_ci: dict | None = None
    per_class_accuracy: dict | None = None
    flip_rate: float | None = None
    success_rate: float | None = None
    ssim_mean: float | None = None
    ssim_min: float | None = None
    linf_max: float | None = None
    l2_mean: float | None = None
    l2_max: float | None = None
    per_image: dict | None = None

    @staticmethod
    def make_id(attack: str, epsilon: float) -> str:
        return f"{attack}/{epsilon:.6g}"


@dataclass
class ClassifierAuditReport:
    """Everything one classifier audit measured.

    clean: ``{"accuracy", "accuracy_ci", "per_class_accuracy", "n_images", "per_image":
    {"pred", "label"}}``; cells: one per attack x ε (attack-major, ε in config order);
    skipped: ``[{"attack", "reason"}]`` attacks that do not apply to this audit.
    """

    provenance: dict
    config: dict
    model: dict
    dataset: dict
    clean: dict
    cells: list[ClassifierCell] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    schema_version: int = CLASSIFIER_SCHEMA_VERSION
    kind: str = CLASSIFIER_REPORT_KIND

    def to_dict(self) -> dict:
        """Strict JSON-serialisable dict: NaN/Inf -> None, tuples -> lists."""
        return _clean_json(asdict(self))

    @classmethod
    def from_dict(cls, raw: dict) -> ClassifierAuditReport:
        if not isinstance(raw, dict) or raw.get("kind") != CLASSIFIER_REPORT_KIND:
            raise ReportError(
                f"not a segshield classifier audit (kind != {CLASSIFIER_REPORT_KIND})"
            )
        version = raw.get("schema_version")
        if version != CLASSIFIER_SCHEMA_VERSION:
            raise ReportError(
                f"classifier audit schema_version {version!r} is not supported (this segshield "
                f"reads {CLASSIFIER_SCHEMA_VERSION})"
            )
        names = {f.name for f in fields(ClassifierCell)}
        try:
            return cls(
                provenance=raw["provenance"],
                config=raw["config"],
                model=raw["model"],
                dataset=raw["dataset"],
                clean=raw["clean"],
                cells=[
                    ClassifierCell(**{k: v for k, v in c.items() if k in names})
                    for c in raw.get("cells", [])
                ],
                skipped=list(raw.get("skipped", [])),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ReportError(f"malformed classifier audit report: {exc!r}") from exc

    @property
    def attacks(self) -> list[str]:
        """Attack names in cell order (each once)."""
        return list(dict.fromkeys(c.attack for c in self.cells))

    def cells_of(self, attack: str) -> list[ClassifierCell]:
        return [c for c in self.cells if c.attack == attack]

    def ok_cells(self) -> list[ClassifierCell]:
        return [c for c in self.cells if c.status == "ok"]


# ----------------------------------------------------------------------------------- helpers


def _clean_json(value: Any) -> Any:
    """NaN/Inf -> None recursively, tuples -> lists, NumPy scalars -> Python: strict JSON."""
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _interval(samples: np.ndarray, n_boot: int) -> dict:
    alpha = (1.0 - CI_LEVEL) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return {"low": float(low), "high": float(high), "level": CI_LEVEL, "n_boot": n_boot}


def _accuracy_stats(
    pred: np.ndarray, labels: np.ndarray, classes: Sequence[str], boot: np.ndarray | None
) -> dict:
    """pred, labels: ``(N,)`` int -> accuracy, its bootstrap CI, per-class accuracy."""
    correct = pred == labels
    per_class = {
        name: (float(correct[labels == k].mean()) if (labels == k).any() else None)
        for k, name in enumerate(classes)
    }
    ci = None if boot is None else _interval(correct[boot].mean(axis=1), boot.shape[0])
    return {
        "accuracy": float(correct.mean()),
        "accuracy_ci": ci,
        "per_class_accuracy": per_class,
    }


def _predict(model: nn.Module, images: np.ndarray, batch_size: int, n_classes: int) -> np.ndarray:
    """Arg-max class ``(N,)`` int64 of ``model`` on ``images`` ``(N, C, h, w)``; checks that the
    logits are ``(n, n_classes)`` and finite."""
    preds = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size]))
            logits = model(x)
            if not isinstance(logits, torch.Tensor) or logits.shape != (len(x), n_classes):
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
                raise ModelOutputError(
                    f"classifier must return logits of shape (N, {n_classes}), got {shape}"
                )
            if not bool(torch.isfinite(logits).all()):
                raise ModelOutputError("classifier logits contain NaN or Inf")
            preds.append(logits.argmax(dim=1).cpu().numpy())
    return np.concatenate(preds).astype(np.int64)


def _budget(attack: str, eps: float, image_shape: tuple[int, int, int]) -> float:
    """The budget handed to the attack for an audit ε (L2 attacks: the L∞ ball's corner)."""
    if ATTACKS[attack].norm == "L2":
        return float(eps * math.sqrt(math.prod(image_shape)))
    return float(eps)


def _options(attack: str, config: ClassifierAuditConfig, gen: torch.Generator | None) -> dict:
    names = set(ATTACKS[attack].param_names())
    opts: dict = {}
    if "steps" in names:
        opts["steps"] = config.steps
    if "generator" in names:
        opts["generator"] = gen
    return opts


def _params(
    attack: str, eps: float, budget: float, model: nn.Module, config: ClassifierAuditConfig
) -> dict:
    instance = get_attack(attack, model, config.loss, budget, **_options(attack, config, None))
    params = {k: v for k, v in instance.attack_params().items() if k != "generator"}
    params.update(norm=ATTACKS[attack].norm, loss=config.loss)
    if ATTACKS[attack].norm == "L2":
        params["eps_linf_equivalent"] = eps
    return _clean_json(params)


def _craft(
    model: nn.Module,
    attack: str,
    budgets: list[float],
    data: ClassificationDataset,
    config: ClassifierAuditConfig,
    seed: int,
) -> list[np.ndarray | Exception]:
    """Adversarial images ``(N, C, h, w)`` per budget, batch by batch. One ``sweep`` per batch
    (FGSM: one gradient for all ε); if a sweep fails, each ε is retried alone so that only the
    failing budgets are lost (their slot holds the exception)."""
    gen = torch.Generator().manual_seed(seed)
    opts = _options(attack, config, gen)
    attacker = get_attack(attack, model, config.loss, budgets[0], **opts)
    per_eps: list[list[np.ndarray] | Exception] = [[] for _ in budgets]
    for i in range(0, len(data), config.batch_size):
        x = torch.from_numpy(np.ascontiguousarray(data.images[i : i + config.batch_size]))
        y = torch.from_numpy(np.ascontiguousarray(data.labels[i : i + config.batch_size]))
        try:
            advs: list[torch.Tensor | Exception] = list(attacker.sweep(x, y, budgets))
        except Exception as exc:
            log.warning("%s sweep failed (%s); retrying each epsilon alone", attack, exc)
            advs = []
            for b in budgets:
                try:
                    advs.append(attacker.with_eps(b)(x, y))
                except Exception as exc_b:
                    advs.append(exc_b)
        for k, adv in enumerate(advs):
            slot = per_eps[k]
            if isinstance(slot, Exception):
                continue
            if isinstance(adv, Exception):
                per_eps[k] = adv
            else:
                slot.append(adv.detach().cpu().numpy().astype(np.float32))
    return [s if isinstance(s, Exception) else np.concatenate(s) for s in per_eps]


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _measure(
    cell: ClassifierCell,
    model: nn.Module,
    data: ClassificationDataset,
    adv: np.ndarray,
    clean_pred: np.ndarray,
    config: ClassifierAuditConfig,
    boot: np.ndarray | None,
) -> None:
    """Fill the metrics of `cell` from its adversarial images ``adv`` ``(N, C, h, w)``."""
    pred = _predict(model, adv, config.batch_size, len(data.classes))
    stats = _accuracy_stats(pred, data.labels, data.classes, boot)
    l2, linf = perturbation_norms(data.images, adv)
    s = ssim(data.images, adv, data_range=1.0)
    clean_correct = clean_pred == data.labels
    cell.accuracy = stats["accuracy"]
    cell.accuracy_ci = stats["accuracy_ci"]
    cell.per_class_accuracy = stats["per_class_accuracy"]
    cell.flip_rate = float((pred != clean_pred).mean())
    cell.success_rate = (
        float((pred[clean_correct] != data.labels[clean_correct]).mean())
        if clean_correct.any()
        else None
    )
    cell.ssim_mean, cell.ssim_min = float(s.mean()), float(s.min())
    cell.linf_max, cell.l2_mean, cell.l2_max = float(linf.max()), float(l2.mean()), float(l2.max())
    cell.per_image = {
        "pred": pred.tolist(),
        "ssim": s.tolist(),
        "linf": linf.tolist(),
        "l2": l2.tolist(),
    }


def _skip_reason(attack: str) -> str | None:
    cls = ATTACKS.get(attack)
    if cls is not None and cls.targeted:
        return (
            "targeted attack: it needs labels to reach, and this audit attacks the true labels "
            "(untargeted)"
        )
    return None


# ------------------------------------------------------------------------------------- run


def model_info_from_loaded(loaded: LoadedModel) -> dict:
    """The report's model description from a loaded model (and its card, when it has one):
    source, name, weights path, weights_sha256 and the card's test metrics."""
    desc = loaded.description
    info = {k: desc[k] for k in ("source", "name", "weights") if k in desc}
    card = desc.get("card")
    if isinstance(card, dict):
        info["name"] = card.get("name", info.get("name"))
        info["weights_sha256"] = card.get("weights_sha256")
        info["card_test_metrics"] = card.get("test_metrics")
    return info


def run_classifier_audit(
    model: nn.Module,
    data: ClassificationDataset,
    config: ClassifierAuditConfig | None = None,
    *,
    model_info: dict | None = None,
    command: str = "",
    progress: ProgressFn | None = None,
) -> ClassifierAuditReport:
    """Attack `model` on `data` for every attack x ε in `config` and measure what changed.

    model: ``(N, C, h, w)`` images in [0, 1] -> logits ``(N, K)``, ``K == len(data.classes)``;
    put in eval mode for the audit (its mode is restored afterwards); parameters untouched.
    model_info: extra model description for the report (name, weights_sha256, card metrics).
    Raises ModelOutputError when the model fails on the clean images; attack failures are
    recorded in their cells. Targeted attacks are skipped with a recorded reason.
    """
    config = config or ClassifierAuditConfig()
    started, t_start = _now(), time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        clean_pred = _predict(model, data.images, config.batch_size, len(data.classes))
        boot = (
            bootstrap_indices(len(data), config.n_boot, seed=config.seed) if config.n_boot else None
        )
        clean = {
            **_accuracy_stats(clean_pred, data.labels, data.classes, boot),
            "n_images": len(data),
            "class_counts": data.class_counts(),
            "per_image": {"pred": clean_pred.tolist(), "label": data.labels.tolist()},
        }
        cells: list[ClassifierCell] = []
        skipped: list[dict] = []
        attacks = []
        for attack in config.attacks:
            reason = _skip_reason(attack)
            if reason is None:
                attacks.append(attack)
            else:
                log.info("skipping %s: %s", attack, reason)
                skipped.append({"attack": attack, "reason": reason})
        total, done = len(attacks) * len(config.epsilons), 0
        for a_idx, attack in enumerate(attacks):
            t0 = time.perf_counter()
            group = [
                ClassifierCell(ClassifierCell.make_id(attack, eps), attack, eps)
                for eps in config.epsilons
            ]
            try:
                if attack not in ATTACKS:
                    raise ValueError(
                        f"unknown attack {attack!r}; valid names: {', '.join(sorted(ATTACKS))}"
                    )
                budgets = [_budget(attack, eps, data.image_shape) for eps in config.epsilons]
                for cell, budget in zip(group, budgets, strict=True):
                    cell.params = _params(attack, cell.epsilon, budget, model, config)
                advs = _craft(model, attack, budgets, data, config, seed=config.seed * 1000 + a_idx)
            except Exception as exc:  # record and go on: one failing attack loses nothing else
                log.exception("crafting %s failed", attack)
                advs = [exc] * len(group)
            craft_seconds = (time.perf_counter() - t0) / len(group)
            for cell, adv in zip(group, advs, strict=True):
                t1 = time.perf_counter()
                if isinstance(adv, Exception):
                    cell.status, cell.error = "error", _error(adv)
                else:
                    try:
                        _measure(cell, model, data, adv, clean_pred, config, boot)
                    except Exception as exc:
                        log.exception("cell %s failed", cell.id)
                        cell.status, cell.error = "error", _error(exc)
                cell.seconds = round(craft_seconds + time.perf_counter() - t1, 4)
                cells.append(cell)
                done += 1
                if progress is not None:
                    progress(cell.id, done, total)
    finally:
        model.train(was_training)

    provenance = {
        "segshield": segshield.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "command": command,
        "seed": config.seed,
        "data_sha256": data.sha256(),
        "weights_sha256": (model_info or {}).get("weights_sha256"),
        "started_at": started,
        "finished_at": _now(),
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    model_desc: dict = {"class": type(model).__name__}
    to_dict = getattr(model, "to_dict", None)
    if callable(to_dict):
        model_desc["architecture"] = to_dict()
    model_desc["parameters"] = int(sum(p.numel() for p in model.parameters()))
    model_desc.update(model_info or {})
    return ClassifierAuditReport(
        provenance=_clean_json(provenance),
        config=config.to_dict(),
        model=_clean_json(model_desc),
        dataset=_clean_json(data.describe()),
        clean=_clean_json(clean),
        cells=cells,
        skipped=skipped,
    )
