"""`run_audit`: craft adversarial images on the PyTorch source model for every
attack x loss x epsilon, replay them on every engine, and measure what changed.

The adversarial batch is crafted once per cell and replayed on every engine. A failing cell
(or engine) is recorded with its error; it never loses the others.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import segshield
from segshield.attacks import (
    ATTACKS,
    asma_report,
    empty_target,
    get_attack,
    get_loss,
    other_image_target,
    scaled_target,
    shifted_target,
)
from segshield.data import SegDataset, bundled_dataset, dataset_from_path, target_mask_from_file
from segshield.engines import (
    ENGINE_SPECS,
    BuildOptions,
    BuiltEngine,
    Runner,
    TorchRunner,
    build_engines,
    infer_batched,
    resolve_engine_names,
    runners_from_manifest,
    write_manifest,
)
from segshield.errors import ModelOutputError, SegShieldError
from segshield.hashing import sha256_file
from segshield.metrics import (
    ConfusionCounts,
    MultiClassAccumulator,
    SegmentationAccumulator,
    attack_success,
    bootstrap_attack_success_ci,
    bootstrap_ci,
    bootstrap_indices,
    confusion_counts,
    dice,
    disagreement,
    fooled_shares,
    iou,
    label_disagreement,
    perturbation_norms,
    pixel_accuracy,
    ssim,
)
from segshield.models import LoadedModel, load_model

from .config import AuditConfig
from .panels import compose_panel, slug, write_panel
from .results import (
    SOURCE_ENGINE,
    AuditCell,
    AuditReport,
    EngineEval,
    EngineRecord,
)

log = logging.getLogger(__name__)

# progress(stage, done, total): "cells" while attacking; the CLI draws it, the library never.
ProgressFn = Callable[[str, int, int], None]


@dataclass
class _Engine:
    record: EngineRecord
    runner: Runner | None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_audit_data(config: AuditConfig) -> SegDataset:
    size = (config.size, config.size)
    if config.data is not None:
        ds = dataset_from_path(config.data, size=size, num_classes=config.num_classes)
    else:
        if config.num_classes > 1:
            raise SegShieldError(
                "the bundled datasets are binary; a multi-class audit needs --data with "
                "images/ and masks/ label maps"
            )
        ds = bundled_dataset(config.dataset, config.split, size=size)
    return ds.subset(config.limit)


def _check_source(model: torch.nn.Module, data: SegDataset, num_classes: int = 1) -> None:
    """The source model must map (N, C, H, W) to finite logits (N, K, H, W): K = 1 for a
    binary task (sigmoid), K = num_classes for a multi-class one (softmax)."""
    x = torch.from_numpy(data.images[:1])
    try:
        with torch.inference_mode():
            out = model(x)
    except Exception as exc:  # the user's model: any failure is an input error
        raise SegShieldError(
            f"the model failed on an input of shape {tuple(x.shape)}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor):
        raise ModelOutputError(f"the model returned {type(out).__name__}, expected a tensor")
    if out.ndim != 4 or out.shape[0] != 1 or out.shape[2:] != x.shape[2:]:
        raise ModelOutputError(
            f"the model maps {tuple(x.shape)} to {tuple(out.shape)}; expected logits "
            f"(1, 1, {x.shape[2]}, {x.shape[3]})"
        )
    if out.shape[1] != num_classes:
        raise ModelOutputError(
            f"the model returns {out.shape[1]} logit channels but the audit expects "
            f"{num_classes} (--num-classes; 1 means binary with one sigmoid channel)"
        )
    if not torch.isfinite(out).all():
        raise ModelOutputError("the model returns NaN/Inf logits on a clean image")


def _calibration_images(config: AuditConfig, engines: list[str]) -> tuple[np.ndarray | None, str]:
    """INT8 calibration images: the bundled training split, or --calibration-data; never the
    audited images themselves (that would calibrate on the test set)."""
    if not any(ENGINE_SPECS[e].precision == "int8" for e in engines):
        return None, ""
    size = (config.size, config.size)
    if config.calibration_data is not None:
        ds = dataset_from_path(config.calibration_data, size=size)
    elif config.data is None:
        ds = bundled_dataset(config.dataset, "train", size=size)
    else:
        return None, ""
    return ds.images, ds.source


def _relative(path: str | None, base: Path) -> str | None:
    """Artifact paths relative to the report's folder when inside it (reports are moved)."""
    if path is None:
        return None
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path


def _record(built: BuiltEngine, base: Path) -> EngineRecord:
    r = built.record
    primary = r.primary
    artifacts = [{**asdict(a), "path": _relative(a.path, base)} for a in r.artifacts]
    return EngineRecord(
        name=r.name,
        kind=r.kind,
        precision=r.precision,
        providers=list(r.providers),
        status=r.status,
        reason=r.reason,
        artifact=_relative(primary.path, base) if primary else None,
        sha256=primary.sha256 if primary else None,
        parity=r.parity,
        build_seconds=r.build_seconds,
        device=r.device,
        notes=list(r.notes),
        artifacts=artifacts,
    )


def _build_engines(
    config: AuditConfig, loaded: LoadedModel, data: SegDataset
) -> tuple[list[_Engine], dict]:
    """Build (or load from config.engines_dir) every requested engine. An engine that cannot
    be built or run here is recorded with its reason; it never stops the audit."""
    names = resolve_engine_names(config.engines)
    if config.engines_dir is not None:
        source = TorchRunner(loaded.module)
        others = [n for n in names if n != SOURCE_ENGINE]
        try:
            built = runners_from_manifest(config.engines_dir, loaded.module, names=others)
        except ValueError as exc:
            raise SegShieldError(f"--engines-dir {config.engines_dir}: {exc}") from exc
        engines = [_Engine(EngineRecord(SOURCE_ENGINE, "pytorch", "fp32", ["cpu"]), source)]
        engines += [_Engine(_record(b, config.out_dir), b.runner if b.ok else None) for b in built]
        info = built[0].info.to_dict() if built and built[0].info else {}
        return engines, {"engines_dir": str(config.engines_dir), **info}
    calib, calib_source = _calibration_images(config, names)
    skipped: dict[str, str] = {}
    if calib is None:
        for n in names:
            if ENGINE_SPECS[n].precision == "int8":
                skipped[n] = (
                    "static INT8 needs calibration images from the training data: pass "
                    "--calibration-data (the audited images are never used for calibration)"
                )
    options = BuildOptions(
        opset=config.opset,
        export_atol=config.parity_atol,
        threshold=config.threshold,
        calibration_method=config.calibration_method,
        calibration_source=calib_source or None,
    )
    to_build = [n for n in names if n not in skipped]
    built = build_engines(
        to_build,
        loaded.module,
        calib,
        config.out_dir / "engines",
        sample=data.images[: max(2, min(len(data), config.batch_size))],
        options=options,
    )
    by_name = {b.name: b for b in built}
    engines = []
    for n in names:
        if n in skipped:
            rec = EngineRecord(n, ENGINE_SPECS[n].kind, ENGINE_SPECS[n].precision)
            rec.status, rec.reason = "unavailable", skipped[n]
            engines.append(_Engine(rec, None))
        else:
            b = by_name[n]
            engines.append(_Engine(_record(b, config.out_dir), b.runner if b.ok else None))
    info = built[0].info.to_dict() if built and built[0].info else {}
    if built:
        write_manifest(built, config.out_dir / "engines")
    return engines, info


@dataclass
class _Outputs:
    """What an evaluation keeps in memory beyond the report: predictions and counts."""

    preds: dict[str, np.ndarray]
    counts: dict[str, ConfusionCounts]


def _evaluate(
    runner: Runner,
    images: np.ndarray,
    masks: np.ndarray,
    config: AuditConfig,
) -> tuple[dict, dict, np.ndarray, ConfusionCounts]:
    """Run one engine over all images: (metrics, per_image, predictions (N,1,H,W), counts)."""
    logits = infer_batched(runner, images, config.batch_size)
    if config.num_classes > 1:
        return _evaluate_multiclass(logits, masks, config)
    acc = SegmentationAccumulator(keep_predictions=True)
    acc.update(logits, masks, threshold=config.threshold)
    result = acc.result().to_dict()
    per_image = result.pop("per_image")
    counts = acc.counts()
    for key in ("tp", "fp", "fn", "tn"):
        per_image[key] = getattr(counts, key).tolist()
    return result, per_image, acc.predictions(), counts


def _evaluate_multiclass(
    logits: np.ndarray, masks: np.ndarray, config: AuditConfig
) -> tuple[dict, dict, np.ndarray, ConfusionCounts | None]:
    """Softmax models: metrics under the same keys as the binary path, where dice, iou and
    precision/recall are means over the foreground classes (class 0 is background), plus
    `per_class`. Predictions are label maps (N, 1, H, W); no count-based CI (returns None)."""
    acc = MultiClassAccumulator(config.num_classes, mode="softmax", keep_predictions=True)
    acc.update(logits, masks)
    res = acc.result()
    raw = res.to_dict()
    fg = list(res.foreground)
    pred = acc.predictions().reshape(masks.shape)
    wrong = np.count_nonzero(pred != masks, axis=(1, 2, 3)).astype(np.float64)
    n_pixels = float(np.prod(masks.shape[1:]))
    counts = acc.counts()
    tp, fp, fn, tn = (getattr(counts, k)[:, fg].sum(axis=1) for k in ("tp", "fp", "fn", "tn"))

    def fg_mean(values: tuple[float, ...]) -> float | None:
        chosen = [values[c] for c in fg if values[c] == values[c]]  # skip NaN
        return float(np.mean(chosen)) if chosen else None

    metrics = {
        "accuracy": raw["accuracy"],
        "loss": raw["loss"],
        "dice": raw["mean_dice"],
        "iou": raw["mean_iou"],
        "mean_iou": raw["mean_iou"],
        "precision": fg_mean(res.precision),
        "recall": fg_mean(res.recall),
        "pixel_error_l2": float(np.sqrt(wrong).mean()),
        "pixel_error_rms": float(np.sqrt(wrong.sum() / (n_pixels * len(wrong)))),
        "dice_per_image_mean": raw["dice_per_image_mean"],
        "n_images": raw["n_images"],
        "tp": int(tp.sum()),
        "fp": int(fp.sum()),
        "fn": int(fn.sum()),
        "tn": int(tn.sum()),
        "threshold": None,
        "num_classes": config.num_classes,
        "per_class": raw["per_class"],
    }
    per_image = {
        "dice": raw["per_image"]["mean_dice"],
        "iou": raw["per_image"]["mean_iou"],
        "loss": raw["per_image"]["loss"],
        "pixel_error_l2": np.sqrt(wrong).tolist(),
        "tp": tp.tolist(),
        "fp": fp.tolist(),
        "fn": fn.tolist(),
        "tn": tn.tolist(),
    }
    return metrics, per_image, pred, None


def _eval_engines(
    engines: list[_Engine],
    images: np.ndarray,
    masks: np.ndarray,
    config: AuditConfig,
    clean: dict[str, EngineEval] | None,
    clean_out: _Outputs | None = None,
    boot: np.ndarray | None = None,
) -> tuple[dict[str, EngineEval], _Outputs]:
    """Evaluate every available engine on the same inputs; compare each to the source.

    boot: shared bootstrap indices (n_boot, N) for confidence intervals over images.
    """
    out: dict[str, EngineEval] = {}
    preds: dict[str, np.ndarray] = {}
    all_counts: dict[str, ConfusionCounts] = {}
    for eng in engines:
        name = eng.record.name
        if eng.runner is None:
            out[name] = EngineEval(name, "error", f"engine unavailable: {eng.record.reason}")
            continue
        try:
            metrics, per_image, pred, counts = _evaluate(eng.runner, images, masks, config)
        except Exception as exc:  # one engine failing must not lose the others
            log.exception("engine %s failed", name)
            out[name] = EngineEval(name, "error", f"{type(exc).__name__}: {exc}")
            continue
        preds[name] = pred
        if counts is not None:
            all_counts[name] = counts
        ev = EngineEval(name, metrics=metrics, per_image=per_image)
        if boot is not None and counts is not None:
            ev.ci = {
                "dice": bootstrap_ci(counts, dice, indices=boot),
                "iou": bootstrap_ci(counts, iou, indices=boot),
            }
        if clean is not None and clean.get(name) and clean[name].metrics:
            ev.attack_success = float(attack_success(clean[name].metrics["dice"], metrics["dice"]))
            if ev.ci is not None and clean_out is not None and name in clean_out.counts:
                ev.ci["attack_success"] = bootstrap_attack_success_ci(
                    clean_out.counts[name], counts, indices=boot
                )
        out[name] = ev
    src = out.get(SOURCE_ENGINE)
    for name, ev in out.items():
        if name in preds and SOURCE_ENGINE in preds and src and src.metrics and ev.metrics:
            ev.disagreement = float(
                label_disagreement(preds[name], preds[SOURCE_ENGINE]).mean()
                if config.num_classes > 1
                else disagreement(preds[name], preds[SOURCE_ENGINE]).mean()
            )
            ev.dice_gap = float(ev.metrics["dice"] - src.metrics["dice"])
            src_clean = clean.get(SOURCE_ENGINE) if clean else None
            eng_clean = clean.get(name) if clean else None
            if name != SOURCE_ENGINE and src_clean and eng_clean and eng_clean.per_image:
                if src.attack_success and ev.attack_success is not None:
                    ev.transfer_ratio = float(ev.attack_success / src.attack_success)
                ev.fooled_source_only, ev.fooled_engine_only = fooled_shares(
                    src_clean.per_image["dice"],
                    src.per_image["dice"],
                    eng_clean.per_image["dice"],
                    ev.per_image["dice"],
                    config.fooled_threshold,
                )
    return out, _Outputs(preds, all_counts)


def _panels(
    cell: AuditCell,
    data: SegDataset,
    adv: np.ndarray,
    outputs: _Outputs,
    clean: dict[str, EngineEval],
    config: AuditConfig,
) -> list[dict]:
    """Write PNG panels of the `config.panels` images the source model lost most Dice on."""
    src_clean, src_adv = clean.get(SOURCE_ENGINE), cell.engines.get(SOURCE_ENGINE)
    if config.panels < 1 or not (src_clean and src_adv and src_adv.per_image):
        return []
    d0 = np.asarray(src_clean.per_image["dice"], dtype=np.float64)
    d1 = np.asarray(src_adv.per_image["dice"], dtype=np.float64)
    worst = np.argsort(-(d0 - d1), kind="stable")[: config.panels]
    panels = []
    for i in worst:
        preds = {name: p[i] for name, p in outputs.preds.items()}
        tile, titles = compose_panel(
            data.images[i], adv[i], data.masks[i], preds, cell.epsilon, config.num_classes
        )
        rel = Path("panels") / f"{slug(cell.id)}__{slug(data.names[i])}.png"
        write_panel(config.out_dir / rel, tile)
        panels.append(
            {
                "image": data.names[i],
                "index": int(i),
                "file": rel.as_posix(),
                "dice_clean": float(d0[i]),
                "dice_adv": float(d1[i]),
                "columns": titles,
            }
        )
    return panels


def _perturbation(clean: np.ndarray, adv: np.ndarray) -> dict:
    l2, linf = perturbation_norms(clean, adv)
    s = ssim(clean, adv)
    return {
        "l2_mean": float(l2.mean()),
        "l2_max": float(l2.max()),
        "linf_max": float(linf.max()),
        "ssim_mean": float(s.mean()),
        "ssim_min": float(s.min()),
        "per_image": {"l2": l2.tolist(), "linf": linf.tolist(), "ssim": s.tolist()},
    }


def build_targets(spec: str, masks: np.ndarray, size: int) -> np.ndarray:
    """Target masks (N, 1, H, W) for targeted attacks (ASMA), built over the whole dataset so
    they do not depend on the batch size. spec: "empty" (hide the lesion), "other" (another
    image's mask), "shift:DY,DX", "scale:F", or "file:PATH" (one mask for every image)."""
    y = torch.from_numpy(masks.astype(np.float32))
    kind, _, arg = spec.partition(":")
    try:
        if kind == "empty":
            out = empty_target(y)
        elif kind == "other":
            out = other_image_target(y)
        elif kind == "shift":
            dy, dx = (int(v) for v in arg.split(","))
            out = shifted_target(y, dy, dx)
        elif kind == "scale":
            out = scaled_target(y, float(arg))
        elif kind == "file":
            mask = target_mask_from_file(Path(arg), (size, size))
            out = torch.from_numpy(np.repeat(mask[None].astype(np.float32), len(masks), axis=0))
        else:
            raise ValueError("unknown kind")
    except ValueError as exc:
        raise SegShieldError(
            f"target {spec!r}: {exc}; use empty, other, shift:DY,DX, scale:F or file:PATH"
        ) from exc
    return out.numpy().astype(np.uint8)


def _attack_options(attack: str, config: AuditConfig, gen: torch.Generator) -> dict:
    """The attack-specific constructor options the audit sets, by what the attack accepts."""
    names = set(ATTACKS[attack].param_names())
    opts: dict = {}
    if "steps" in names:
        opts["steps"] = config.steps
    if "alpha" in names and config.alpha is not None:
        opts["alpha"] = config.alpha
    if "generator" in names:
        opts["generator"] = gen
    if "max_steps" in names:  # ASMA
        opts.update(max_steps=config.asma_steps, tau=config.asma_tau, beta=config.asma_beta)
    return opts


def attack_budget(attack: str, eps: float, image_shape: tuple[int, int, int]) -> float:
    """The budget handed to the attack for an audit epsilon (an L-infinity budget in [0, 1]).

    L2 attacks get the L2 radius of the L-infinity ball's corner, eps * sqrt(C*H*W): the
    largest L2 norm an L-infinity attack of the same epsilon can reach.
    """
    if ATTACKS[attack].norm == "L2":
        return float(eps * np.sqrt(np.prod(image_shape)))
    return float(eps)


def _loss_targets(masks: np.ndarray, num_classes: int) -> torch.Tensor:
    """What the attack losses take: float (N, 1, H, W) {0, 1} for a binary model, class
    indices (N, H, W) int64 for a softmax model."""
    if num_classes > 1:
        return torch.from_numpy(masks[:, 0].astype(np.int64))
    return torch.from_numpy(masks.astype(np.float32))


def _craft(
    model: torch.nn.Module,
    attack: str,
    loss: str,
    epsilons: tuple[float, ...],
    data: SegDataset,
    config: AuditConfig,
    seed: int,
    targets: np.ndarray | None,
) -> list[np.ndarray]:
    """Adversarial images for every epsilon, crafted batch by batch on the source model.

    targets: target masks for targeted attacks (else the true masks are used)."""
    loss_fn = get_loss(loss)
    per_eps: list[list[np.ndarray]] = [[] for _ in epsilons]
    gen = torch.Generator().manual_seed(seed)
    opts = _attack_options(attack, config, gen)
    budgets = [attack_budget(attack, e, data.image_shape) for e in epsilons]
    labels = data.masks if targets is None else targets
    for i in range(0, len(data), config.batch_size):
        x = torch.from_numpy(data.images[i : i + config.batch_size])
        y = _loss_targets(labels[i : i + config.batch_size], config.num_classes)
        advs = get_attack(attack, model, loss_fn, budgets[0], **opts).sweep(x, y, budgets)
        for k, adv in enumerate(advs):
            per_eps[k].append(adv.detach().cpu().numpy().astype(np.float32))
    return [np.concatenate(chunks) for chunks in per_eps]


def _attack_params(attack: str, eps: float, config: AuditConfig, model: torch.nn.Module) -> dict:
    gen = torch.Generator()
    budget = attack_budget(attack, eps, (1, config.size, config.size))
    instance = get_attack(attack, model, "bce", budget, **_attack_options(attack, config, gen))
    params = {k: v for k, v in instance.attack_params().items() if k != "generator"}
    params.update(norm=ATTACKS[attack].norm, targeted=ATTACKS[attack].targeted)
    if ATTACKS[attack].norm == "L2":
        params["eps_linf_equivalent"] = eps
    if ATTACKS[attack].targeted:
        params["target"] = config.target
    return _json_safe(params)


def _json_safe(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def _targeted(spec: str, targets: np.ndarray, outputs: _Outputs, report: dict) -> dict:
    """How close each engine's prediction on the adversarial images came to the target
    (seed asma's columns), plus the source-model report of ASMA itself."""
    engines = {}
    for name, pred in outputs.preds.items():
        # foreground vs background (for a softmax model: any class but 0)
        counts = confusion_counts(pred > 0, targets > 0)
        per_iou = iou(counts.tp, counts.fp, counts.fn, empty_value=1.0)
        per_acc = pixel_accuracy(counts.tp, counts.fp, counts.fn, counts.tn)
        engines[name] = {
            "iou_to_target": float(np.mean(per_iou)),
            "pixel_accuracy_to_target": float(np.mean(per_acc)),
            "iou_to_target_per_image": [float(v) for v in np.atleast_1d(per_iou)],
        }
    return {"target": spec, "source": report, "engines": engines}


def run_audit(
    config: AuditConfig, progress: ProgressFn | None = None, command: str = ""
) -> AuditReport:
    """Audit one model on one dataset. Writes model.onnx into config.out_dir (when an ONNX
    engine is requested) and returns the report; writing report files is the caller's job."""
    started = _now()
    t_start = time.perf_counter()
    unknown = [a for a in config.attacks if a not in ATTACKS]
    if unknown:
        raise SegShieldError(f"unknown attack(s) {unknown}; choose from {sorted(ATTACKS)}")
    for loss in config.losses:
        try:
            get_loss(loss)
        except ValueError as exc:
            raise SegShieldError(str(exc)) from exc
    config.out_dir.mkdir(parents=True, exist_ok=True)
    data = load_audit_data(config)
    loaded = load_model(config.model)
    model = loaded.module.eval()
    for p in model.parameters():
        p.requires_grad_(False)  # attacks need input gradients only
    _check_source(model, data, config.num_classes)
    engines, build_info = _build_engines(config, loaded, data)
    boot = bootstrap_indices(len(data), config.n_boot, seed=config.seed) if config.n_boot else None
    clean, clean_out = _eval_engines(engines, data.images, data.masks, config, None, boot=boot)
    if clean[SOURCE_ENGINE].status != "ok":
        raise ModelOutputError(
            f"the source model failed on clean images: {clean[SOURCE_ENGINE].error}"
        )

    targets = None
    if any(ATTACKS[a].targeted for a in config.attacks):
        targets = build_targets(config.target, data.masks, config.size)
    cells: list[AuditCell] = []
    total = len(config.attacks) * len(config.losses) * len(config.epsilons)
    done = 0
    for a_idx, attack in enumerate(config.attacks):
        for l_idx, loss in enumerate(config.losses):
            t0 = time.perf_counter()
            group = [
                AuditCell(AuditCell.make_id(attack, loss, eps), attack, loss, float(eps))
                for eps in config.epsilons
            ]
            targeted = ATTACKS[attack].targeted
            try:
                for cell in group:
                    cell.params = _attack_params(attack, cell.epsilon, config, model)
                advs = _craft(
                    model,
                    attack,
                    loss,
                    config.epsilons,
                    data,
                    config,
                    seed=config.seed * 1000 + a_idx * 10 + l_idx,
                    targets=targets if targeted else None,
                )
            except Exception as exc:  # record and go on: one failing cell loses nothing else
                log.exception("crafting %s/%s failed", attack, loss)
                for cell in group:
                    cell.status, cell.error = "error", f"{type(exc).__name__}: {exc}"
                advs = None
            craft_seconds = (time.perf_counter() - t0) / len(group)
            for k, cell in enumerate(group):
                t1 = time.perf_counter()
                if advs is not None:
                    try:
                        cell.perturbation = _perturbation(data.images, advs[k])
                        cell.engines, adv_out = _eval_engines(
                            engines, advs[k], data.masks, config, clean, clean_out, boot
                        )
                        cell.panels = _panels(cell, data, advs[k], adv_out, clean, config)
                        if targeted and targets is not None:
                            source = asma_report(
                                model,
                                torch.from_numpy(advs[k]),
                                torch.from_numpy(data.images),
                                _loss_targets(targets, config.num_classes),
                            )
                            cell.targeted = _targeted(config.target, targets, adv_out, source)
                    except Exception as exc:
                        log.exception("cell %s failed", cell.id)
                        cell.status, cell.error = "error", f"{type(exc).__name__}: {exc}"
                cell.seconds = round(craft_seconds + time.perf_counter() - t1, 4)
                cells.append(cell)
                done += 1
                if progress is not None:
                    progress(cell.id, done, total)

    latency = None
    if config.bench:
        from segshield.bench import bench_engines

        runners = [e.runner for e in engines if e.runner is not None]
        # Short settings: the audit reports latency alongside robustness; `segshield bench`
        # measures with trtexec-like minimums when latency itself is the question.
        latency = bench_engines(
            runners,
            data.images,
            config.bench_batch_sizes,
            warmup_s=0.3,
            min_iters=20,
            min_duration_s=1.0,
        )
    onnx_export = (build_info or {}).get("onnx_export") or {}
    weights = loaded.description.get("weights")
    provenance = {
        "segshield": segshield.__version__,
        "torch": torch.__version__,
        "onnxruntime": _ort_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "command": command,
        "seed": config.seed,
        "started_at": started,
        "finished_at": _now(),
        "seconds": round(time.perf_counter() - t_start, 2),
        "weights_sha256": sha256_file(weights) if weights and Path(weights).is_file() else None,
        "onnx_sha256": onnx_export.get("sha256"),
        "data_sha256": data.sha256(),
    }
    model_desc = {k: v for k, v in loaded.description.items() if k != "card"}
    card = loaded.description.get("card")
    if card:
        model_desc["name"] = card["name"]
        model_desc["architecture"] = card["architecture"]
        model_desc["card_test_metrics"] = card["test_metrics"]
    model_desc["parameters"] = int(sum(p.numel() for p in model.parameters()))
    return AuditReport(
        provenance=provenance,
        config=config.to_dict(),
        model=model_desc,
        dataset={k: v for k, v in data.describe().items()},
        engines=[e.record for e in engines],
        clean=clean,
        cells=cells,
        latency=latency,
        build=build_info or None,
    )


def _ort_version() -> str | None:
    try:
        import onnxruntime

        return str(onnxruntime.__version__)
    except ImportError:
        return None
