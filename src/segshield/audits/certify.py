"""Randomized-smoothing certification of every engine of an audit (report section
``certified``): per image, n0 + n noisy copies go through the engine, only per-site class counts
are kept, and :mod:`segshield.metrics.certify` turns them into certified classes, radii and
certified Dice / shares at the requested radii.

What is certified is the smoothed version of ``engine o clip``: noisy images x + delta are
clipped to [0, 1], the range the engines were built and calibrated for. Clipping is a fixed
function applied to x + delta before the base model, so Cohen et al.'s guarantee holds for the
smoothed ``clip``-then-engine model unchanged.

The noise is drawn from NumPy generators seeded with (seed, image index, phase), phase 0 for
the n0 selection samples and 1 for the n estimation samples (separate draws): every engine sees
exactly the same noisy images, and the draws do not depend on batch_size or on which engines run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from segshield.engines import Runner
from segshield.enums import Activation, TaskKind
from segshield.metrics import mean_dice_of
from segshield.metrics.certify import (
    CORRECTIONS,
    certified_confusion,
    certified_scores,
    certify_pixels,
    decisions_from_logits,
    default_foreground,
    pixel_counts,
)

__all__ = ["certify_engines"]

logger = logging.getLogger(__name__)

_ACTIVATION = {
    TaskKind.BINARY: Activation.SIGMOID,
    TaskKind.MULTICLASS: Activation.SOFTMAX,
    TaskKind.MULTILABEL: Activation.SIGMOID,
}


def _settings(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    kind: TaskKind,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    radii: tuple[float, ...],
    correction: str,
    seed: int,
    batch_size: int,
    threshold: float,
) -> dict[str, Any]:
    """The validated ``settings`` of the section (ValueError naming every problem)."""
    problems = []
    if not sigma > 0:
        problems.append(f"sigma must be > 0, got {sigma}")
    if not (isinstance(n0, int) and isinstance(n, int) and n0 >= 1 and n >= 1):
        problems.append(f"n0 and n must be ints >= 1, got n0={n0!r}, n={n!r}")
    if not 0.0 < alpha < 1.0:
        problems.append(f"alpha must be in (0, 1), got {alpha}")
    if not radii or min(radii) < 0:
        problems.append(f"radii must be non-empty and >= 0, got {radii}")
    if correction not in CORRECTIONS:
        problems.append(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    if not isinstance(seed, int) or seed < 0:
        problems.append(f"seed must be an int >= 0, got {seed!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        problems.append(f"batch_size must be an int >= 1, got {batch_size!r}")
    if kind not in _ACTIVATION:
        problems.append(f"certification needs a segmentation task, got {kind}")
    if not isinstance(images, np.ndarray) or images.ndim not in (4, 5) or len(images) == 0:
        problems.append(
            f"images must be a non-empty (N, C, H, W) or (N, C, D, H, W) array, got "
            f"{np.shape(images)}"
        )
    elif np.ndim(labels) != images.ndim or np.shape(labels)[:1] + np.shape(labels)[2:] != (
        images.shape[:1] + images.shape[2:]
    ):
        problems.append(f"labels {np.shape(labels)} do not match images {images.shape}")
    if problems:
        raise ValueError("; ".join(problems))
    return dict(
        sigma=float(sigma),
        n0=n0,
        n=n,
        alpha=float(alpha),
        confidence=1.0 - float(alpha),
        correction=correction,
        images=len(images),
        radii=[float(r) for r in radii],
        seed=seed,
        batch_size=batch_size,
        threshold=float(threshold),
        clipped=True,
        guarantee=(
            "per image, with probability >= confidence over the noise, every certified site "
            "keeps its class under any L2 perturbation up to its radius"
            if correction == "bonferroni"
            else "per image and radius, with probability >= confidence over the noise, every "
            "site certified at that radius keeps its class under any L2 perturbation up to it"
        ),
    )


def _noisy_counts(
    runner: Runner,
    image: np.ndarray,
    samples: int,
    rng: np.random.Generator,
    settings: dict[str, Any],
    activation: Activation,
) -> np.ndarray:
    """Class counts (K', *sites) of `samples` noisy copies of one (C, H, W) image, drawn and
    run in chunks of batch_size (only the counts are kept)."""
    total: np.ndarray | None = None
    sigma, batch_size = np.float32(settings["sigma"]), settings["batch_size"]
    for start in range(0, samples, batch_size):
        size = min(batch_size, samples - start)
        noise = rng.standard_normal((size, *image.shape), dtype=np.float32)
        batch = np.clip(image[None] + sigma * noise, 0.0, 1.0)
        logits = runner.infer(batch)
        shape_ok = logits.shape[0] == size and logits.shape[2:] == image.shape[1:]
        if logits.ndim != batch.ndim or not shape_ok:
            raise ValueError(f"engine returned logits {logits.shape} for a batch {batch.shape}")
        decisions = decisions_from_logits(logits, activation, settings["threshold"])
        k = logits.shape[1] if activation == Activation.SOFTMAX else 2
        counts = pixel_counts(decisions, k)
        total = counts if total is None else total + counts
    assert total is not None
    return total


def _certify_engine(
    runner: Runner,
    images: np.ndarray,
    labels: np.ndarray,
    settings: dict[str, Any],
    activation: Activation,
    foreground: tuple[int, ...] | None,
) -> dict[str, Any]:
    """The certified record of one engine (raises on any failure)."""
    classes, radius, votes = [], [], []
    seed = settings["seed"]
    for i, image in enumerate(np.asarray(images, dtype=np.float32)):
        counts0 = _noisy_counts(
            runner, image, settings["n0"], np.random.default_rng([seed, i, 0]), settings, activation
        )
        counts = _noisy_counts(
            runner, image, settings["n"], np.random.default_rng([seed, i, 1]), settings, activation
        )
        c, r = certify_pixels(
            counts0,
            counts,
            settings["n"],
            settings["alpha"],
            settings["sigma"],
            settings["correction"],
            tuple(settings["radii"]),
        )
        classes.append(c)
        radius.append(r)
        votes.append(np.argmax(counts, axis=0).astype(np.int16))
    stacked = np.stack(classes)
    # Softmax sites are (H, W) and K the counted classes; sigmoid sites are (C, H, W).
    num_classes = counts.shape[0] if activation == Activation.SOFTMAX else stacked.shape[1]
    fg = default_foreground(activation, num_classes) if foreground is None else foreground
    scores = certified_scores(
        stacked, np.stack(radius), labels, settings["radii"], activation, num_classes, fg
    )
    # The smoothed model's majority vote, nothing abstaining: separates what the noise costs
    # from what abstaining costs (certified_dice at radius 0 <= this, up to sampling).
    vote = np.stack(votes)
    voted = certified_confusion(vote, np.zeros(vote.shape), labels, 0.0, activation, num_classes)
    return {
        **scores.to_dict(),
        "smoothed_dice": round(float(mean_dice_of(voted.total(), fg)[0]), 6),
    }


def certify_engines(
    runners: Mapping[str, Runner],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    kind: TaskKind | str = TaskKind.BINARY,
    sigma: float = 0.25,
    n0: int = 10,
    n: int = 100,
    alpha: float = 0.001,
    radii: Sequence[float] = (0.0, 0.1, 0.25, 0.5),
    correction: str = "bonferroni",
    batch_size: int = 16,
    seed: int = 0,
    threshold: float = 0.5,
    foreground: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Certify every engine on the same noisy samples; the report's ``certified`` section.

    Args:
        runners: engine name -> runner (float32 (N,C,H,W) in [0,1] -> (N,K,H,W) logits).
        images: float32 (N, C, H, W) in [0, 1], every image is certified.
        labels: binary / multi-class (N, 1, H, W) masks or label maps; multi-label
            (N, K, H, W) masks.
        kind: the task (binary, multiclass or multilabel) deciding the activation.
        sigma, n0, n, alpha: noise level (input units), selection and estimation samples per
            image, family-wise error level per image (confidence 1 - alpha).
        radii: L2 radii (input units) to score at; correction: "bonferroni" or "holm" (see
            :mod:`segshield.metrics.certify`).
        batch_size: noisy images per engine call; seed: the noise seed.
        threshold: sigmoid probability threshold (0.5: logit > 0).
        foreground: classes the Dice averages over (default: all but class 0 for multiclass).

    Returns:
        ``{"settings": {...}, "engines": {name: record}}``; a record holds "radii",
        "certified_dice", "certified_share", "certified_any_share", "abstain_share" (lists
        aligned with radii), "mean_radius", "smoothed_dice", "per_image", "seconds" and
        "samples", or only "error" ("Type: message") and "seconds" for an engine that failed.

    Raises:
        ValueError: invalid settings (before any engine runs); engine failures are recorded.
    """
    kind = TaskKind(kind)
    settings = _settings(
        images,
        labels,
        kind=kind,
        sigma=sigma,
        n0=n0,
        n=n,
        alpha=alpha,
        radii=tuple(float(r) for r in radii),
        correction=correction,
        seed=seed,
        batch_size=batch_size,
        threshold=threshold,
    )
    activation = _ACTIVATION[kind]
    engines: dict[str, dict[str, Any]] = {}
    for name, runner in runners.items():
        start = time.perf_counter()
        try:
            record = _certify_engine(runner, images, labels, settings, activation, foreground)
            record["samples"] = len(images) * (n0 + n)
        except Exception as exc:  # one failing engine must not lose the others
            record = {"error": f"{type(exc).__name__}: {exc}"}
            logger.warning("certification of engine %r failed: %s", name, record["error"])
        record["seconds"] = round(time.perf_counter() - start, 3)
        engines[name] = record
        logger.info("certified engine %r in %.1f s", name, record["seconds"])
    return {"settings": settings, "engines": engines}
