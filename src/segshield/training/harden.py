"""Adversarial fine-tuning ("hardening") of a segmentation model.

Methods (L-infinity, budget ``epsilon`` in [0, 1] pixel units):

* ``"pgd"``: Madry et al., 2018, "Towards Deep Learning Models Resistant to Adversarial
  Attacks": train on PGD examples (``attack_steps`` steps of ε/4 from a uniform random start).
* ``"fgsm-rs"``: Wong, Rice & Kolter, 2020, "Fast is better than free": one FGSM step of 1.25ε
  from a uniform random start, with their early stopping against catastrophic overfitting
  (after each epoch the PGD-10 robust Dice on the validation images is measured; when it falls
  more than ``collapse_drop`` below the best epoch's, training stops and the best epoch's
  weights are restored).
* ``"trades"``: Zhang et al., 2019, "Theoretically Principled Trade-off between Robustness and
  Accuracy": clean loss + β·KL(f(x) ‖ f(x′)), x′ maximising the KL by PGD (uniform start);
  the KL is per pixel: Bernoulli for sigmoid outputs, categorical for softmax outputs.

``clean_fraction`` w mixes clean and adversarial terms: loss = (1 − w)·adv + w·clean (pgd,
fgsm-rs). Examples are crafted with the model in eval mode (BatchNorm statistics frozen) and
the update runs in train mode. Layouts follow :mod:`segshield.attacks.layout`: binary and
multi-label targets ``(N, C, H, W)`` in {0, 1}, multi-class targets ``(N, H, W)`` indices.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segshield.attacks import get_attack, get_loss, predict_like
from segshield.data import SegDataset
from segshield.devices import module_device
from segshield.errors import SegShieldError
from segshield.models import UNet
from segshield.training.train import augment, write_weights_and_card

log = logging.getLogger(__name__)

METHODS = ("pgd", "fgsm-rs", "trades")
ProgressFn = Callable[[int, int, float], None]
Data = SegDataset | tuple[Tensor, Tensor]


@dataclass(frozen=True)
class HardenConfig:
    """Hyper-parameters of one hardening run (all recorded in the model card's recipe)."""

    method: str = "pgd"
    epsilon: float = 8 / 255
    attack_steps: int = 7  # pgd and trades (fgsm-rs takes one step)
    attack_loss: str = "bce"  # the loss the training attack ascends (segshield.attacks.LOSSES)
    loss: str = "bce"  # the training loss
    beta: float = 6.0  # trades: weight of the KL term
    clean_fraction: float = 0.0  # w in (1 - w)·adv + w·clean (pgd, fgsm-rs)
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 4
    seed: int = 0
    augment: bool = True  # flips / rot90 / zoom of train.augment (binary masks only)
    zoom: float = 0.25
    val_images: int = 8  # validation images when no validation data is given
    val_steps: int = 10  # PGD steps of the per-epoch robust Dice
    collapse_drop: float = 0.2  # fgsm-rs: stop when robust Dice falls this far below the best

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SegShieldError(f"unknown method {self.method!r}; choose {', '.join(METHODS)}")
        if not 0.0 < self.epsilon <= 1.0:
            raise SegShieldError(f"epsilon must be in (0, 1], got {self.epsilon}")
        if not 0.0 <= self.clean_fraction <= 1.0:
            raise SegShieldError(f"clean_fraction must be in [0, 1], got {self.clean_fraction}")
        if min(self.epochs, self.batch_size, self.attack_steps, self.val_steps) < 1:
            raise SegShieldError("epochs, batch_size, attack_steps and val_steps must be >= 1")
        if self.lr <= 0 or self.beta < 0:
            raise SegShieldError("lr must be > 0 and beta >= 0")


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    clean_loss: float
    adv_loss: float
    val_dice: float
    val_robust_dice: float


@dataclass
class HardenResult:
    """The hardened module (eval mode, on its original device), per-epoch history, run time,
    the recipe (for the model card) and which epoch's weights were kept."""

    module: nn.Module
    history: list[EpochRecord]
    seconds: float
    recipe: dict
    best_epoch: int
    stopped_early: bool = False
    notes: list[str] = field(default_factory=list)


def _tensors(data: Data, device: torch.device) -> tuple[Tensor, Tensor]:
    if isinstance(data, SegDataset):
        return (
            torch.from_numpy(data.images).to(device),
            torch.from_numpy(data.masks.astype(np.float32)).to(device),
        )
    images, targets = data
    return images.to(device), targets.to(device)


def dice_score(logits: Tensor, targets: Tensor) -> float:
    """Dice of the hard prediction aggregated over the batch (foreground classes only for
    multi-class targets; every channel for sigmoid layouts); 1.0 when both are empty."""
    pred = predict_like(logits, targets)
    if targets.shape == logits.shape:
        p, t = pred.bool(), targets.bool()
    else:
        classes = torch.arange(1, logits.shape[1], device=targets.device).view(1, -1, 1, 1)
        p, t = pred.unsqueeze(1) == classes, targets.unsqueeze(1) == classes
    inter, total = float((p & t).sum()), float(p.sum() + t.sum())
    return 1.0 if total == 0 else 2.0 * inter / total


def _kl_loss(sigmoid: bool) -> Callable[..., Tensor]:
    """``kl(logits_adv, logits_clean) -> (N,)``: mean per-pixel KL(f(x) ‖ f(x′)), Bernoulli
    per pixel and channel for sigmoid outputs, categorical over channels for softmax."""

    def kl(logits: Tensor, clean: Tensor, *, weight: Tensor | None = None) -> Tensor:
        del weight
        if sigmoid:
            p = torch.sigmoid(clean)
            logp, log1mp = F.logsigmoid(clean), F.logsigmoid(-clean)
            logq, log1mq = F.logsigmoid(logits), F.logsigmoid(-logits)
            per = p * (logp - logq) + (1 - p) * (log1mp - log1mq)
        else:
            logp, logq = F.log_softmax(clean, dim=1), F.log_softmax(logits, dim=1)
            per = (logp.exp() * (logp - logq)).sum(dim=1)
        return per.flatten(1).mean(dim=1)

    return kl


def _validate(
    model: nn.Module, images: Tensor, targets: Tensor, config: HardenConfig
) -> tuple[float, float]:
    """(clean Dice, PGD-``val_steps`` robust Dice) at ``epsilon`` on the validation images;
    the PGD start is seeded from ``config.seed`` so every epoch sees the same start."""
    model.eval()
    gen = torch.Generator().manual_seed(config.seed + 1)
    attack = get_attack(
        "pgd", model, config.attack_loss, config.epsilon, steps=config.val_steps, generator=gen
    )
    clean, robust = [], []
    for s in range(0, len(images), config.batch_size):
        x, y = images[s : s + config.batch_size], targets[s : s + config.batch_size]
        adv = attack(x, y)
        with torch.no_grad():
            clean.append(model(x))
            robust.append(model(adv))
    return dice_score(torch.cat(clean), targets), dice_score(torch.cat(robust), targets)


class _Stepper:
    """Crafts the adversarial batch and computes one step's (clean, adv, total) losses."""

    def __init__(self, model: nn.Module, config: HardenConfig, gen: torch.Generator) -> None:
        self.model, self.config = model, config
        self.loss = get_loss(config.loss)
        eps = config.epsilon
        if config.method == "fgsm-rs":
            opts = {"steps": 1, "alpha": 1.25 * eps}
        else:
            opts = {"steps": config.attack_steps, "alpha": eps / 4}
        self.attack = get_attack("pgd", model, config.attack_loss, eps, generator=gen, **opts)
        self.gen = gen

    def losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cfg, model = self.config, self.model
        model.eval()  # craft with frozen BatchNorm statistics
        if cfg.method == "trades":
            with torch.no_grad():
                clean_logits = model(x)
            attack = copy.copy(self.attack)
            attack.loss = _kl_loss(y.shape == clean_logits.shape)
            adv = attack(x, clean_logits)
        else:
            adv = self.attack(x, y)
        model.train()
        logits = model(x)
        clean = self.loss(logits, y).mean()
        if cfg.method == "trades":
            kl = _kl_loss(y.shape == logits.shape)(model(adv), logits).mean()
            return clean, kl, clean + cfg.beta * kl
        adv_loss = self.loss(model(adv), y).mean()
        w = cfg.clean_fraction
        return clean, adv_loss, (1 - w) * adv_loss + w * clean


def _epoch(
    stepper: _Stepper,
    opt: torch.optim.Optimizer,
    images: Tensor,
    targets: Tensor,
    epoch: int,
    progress: ProgressFn | None,
) -> tuple[float, float]:
    cfg, gen = stepper.config, stepper.gen
    n = len(images)
    order = torch.randperm(n, generator=gen).to(images.device)
    sums = [0.0, 0.0]
    use_aug = cfg.augment and targets.shape[1:2] == (1,) and targets.ndim == 4
    for step, s in enumerate(range(0, n, cfg.batch_size), start=1):
        b = order[s : s + cfg.batch_size]
        x, y = images[b], targets[b]
        if use_aug:
            x, y = augment(x.cpu(), y.cpu(), gen, cfg.zoom)
            x, y = x.to(images.device), y.to(images.device)
        clean, adv, total = stepper.losses(x, y)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sums[0] += float(clean.detach()) * len(b)
        sums[1] += float(adv.detach()) * len(b)
        if progress is not None:
            progress(epoch, step, float(total.detach()))
    return sums[0] / n, sums[1] / n


def harden(
    model: nn.Module,
    train_data: Data,
    config: HardenConfig,
    progress: ProgressFn | None = None,
    val_data: Data | None = None,
) -> HardenResult:
    """Adversarially fine-tune a copy of ``model`` (Adam) on ``train_data``; see the module
    docstring for the methods. ``val_data`` (default: the first ``val_images`` training images)
    gives the per-epoch clean and PGD robust Dice. Seeded by ``config.seed`` through one CPU
    ``torch.Generator`` (shuffling, augmentation, attack starts); the caller's model is left
    untouched. ``progress(epoch, step, loss)`` is called after every update."""
    t0 = time.perf_counter()
    module = copy.deepcopy(model)
    device = module_device(module)
    images, targets = _tensors(train_data, device)
    if val_data is None:
        val_x, val_y = images[: config.val_images], targets[: config.val_images]
    else:
        val_x, val_y = _tensors(val_data, device)
    gen = torch.Generator().manual_seed(config.seed)  # CPU: the same draws on every device
    stepper = _Stepper(module, config, gen)
    opt = torch.optim.Adam(module.parameters(), lr=config.lr)
    history: list[EpochRecord] = []
    best = (-1.0, 0, copy.deepcopy(module.state_dict()))
    stopped = False
    for epoch in range(1, config.epochs + 1):
        clean_loss, adv_loss = _epoch(stepper, opt, images, targets, epoch, progress)
        val_dice, val_robust = _validate(module, val_x, val_y, config)
        history.append(EpochRecord(epoch, clean_loss, adv_loss, val_dice, val_robust))
        log.info(
            "epoch %d/%d clean %.4f adv %.4f val Dice %.4f robust %.4f",
            epoch, config.epochs, clean_loss, adv_loss, val_dice, val_robust,
        )  # fmt: skip
        if val_robust > best[0]:
            best = (val_robust, epoch, copy.deepcopy(module.state_dict()))
        elif config.method == "fgsm-rs" and val_robust < best[0] - config.collapse_drop:
            log.warning(
                "robust Dice collapsed (%.4f < best %.4f at epoch %d): stopping and restoring "
                "epoch %d (catastrophic overfitting, Wong et al. 2020)",
                val_robust, best[0], best[1], best[1],
            )  # fmt: skip
            stopped = True
            break
    best_epoch = len(history)
    if config.method == "fgsm-rs":
        module.load_state_dict(best[2])
        best_epoch = best[1]
    module.eval()
    return HardenResult(
        module=module,
        history=history,
        seconds=time.perf_counter() - t0,
        recipe=recipe(config, best_epoch, stopped, history),
        best_epoch=best_epoch,
        stopped_early=stopped,
    )


def recipe(
    config: HardenConfig, best_epoch: int, stopped: bool, history: list[EpochRecord]
) -> dict:
    """The card's ``hardening`` section: the config, the paper, the kept epoch, the history."""
    papers = {
        "pgd": "Madry et al. 2018, Towards Deep Learning Models Resistant to Adversarial Attacks",
        "fgsm-rs": "Wong, Rice & Kolter 2020, Fast is better than free",
        "trades": "Zhang et al. 2019, Theoretically Principled Trade-off between Robustness "
        "and Accuracy",
    }
    step = 1.25 * config.epsilon if config.method == "fgsm-rs" else config.epsilon / 4
    return {
        **asdict(config),
        "paper": papers[config.method],
        "attack_step": step,
        "optimizer": "Adam",
        "kept_epoch": best_epoch,
        "stopped_early": stopped,
        "history": [asdict(h) for h in history],
    }


def architecture_of(module: nn.Module, base_card: dict | None = None) -> dict:
    """The card's ``architecture``: the base card's, a U-Net's config, else the class name
    (then the weights load only through the model's factory)."""
    if base_card and isinstance(base_card.get("architecture"), dict):
        return dict(base_card["architecture"])
    if isinstance(module, UNet):
        return module.config.to_dict()
    return {"architecture": type(module).__name__}


def save_hardened(
    result: HardenResult,
    out_dir: Path,
    name: str,
    *,
    architecture: dict,
    data: dict | None = None,
    base: dict | None = None,
    command: str = "",
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.safetensors`` (CPU tensors) and ``<name>.json``, a model card
    whose ``training`` section holds the ``hardening`` recipe (and ``base``: what was hardened).
    """
    training = {
        "base_model": base or {},
        "hardening": result.recipe,
        "seconds": round(result.seconds, 1),
    }
    weights, card_path = write_weights_and_card(
        result.module, out_dir, name, architecture, data or {}, training, {}, command
    )
    log.info("wrote %s and %s", weights, card_path)
    return weights, card_path
