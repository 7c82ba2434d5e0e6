"""Recipe search for static INT8: when the default QDQ recipe does not reproduce the source's
masks, try the standard mitigations and keep the cheapest recipe that does.

This is the accuracy-aware tuning a deployment engineer (or Intel Neural Compressor) does by
hand, bounded and recorded:

1. the default recipe (the caller's per-channel setting and calibration method) is built and
   scored on the calibration images; healthy -> nothing else is tried;
2. the same graph with the other settings: per-channel flipped, 7-bit weights
   (`reduce_range`: the u8s8 kernels of CPUs without VNNI, AVX2 only, can saturate their
   16-bit intermediate sums on 8-bit weights), then the other calibration methods
   (minmax / entropy / percentile) -- no node in FP32;
3. FP32 fallback on top of the best of those: the quantized activation tensors ranked by
   their quantization error, measured with onnxruntime's `qdq_loss_debug` (activations of
   the FP32 and the QDQ model on the same images, `create_activation_matching` +
   `compute_activation_error`), and the compute nodes (Conv, ConvTranspose, Gemm, MatMul)
   around the worst 1, 2, 4, 8, ... tensors kept in FP32 until a recipe is healthy; then the
   smallest healthy count between the last two tried is bisected while trials remain.

Every recipe is scored by the caller's *mask agreement* (engine masks vs source masks, e.g.
`segshield.engines.parity`'s task-aware `mask_dice`) on the **calibration images** it was
calibrated on -- never on the audited images -- and classified by the caller's health
thresholds. The kept recipe is the healthy one with the fewest FP32 nodes, then the lowest
latency (median of a few runs on one calibration batch); when none is healthy, the one with
the highest agreement, and the result says so. At most `max_trials` recipes are built.

The ranking (`rank_fp32_fallback`): an output tensor (the logits) whose own Q/DQ rounding
already breaks the mask agreement ranks first -- a logit range of [-1450, 8] has an int8
step of 5.7, which erases every logit in (0, 2.9), yet its SQNR looks excellent because SQNR
is dominated by the large background logits. The other tensors follow by their SQNR after
their own Q/DQ, per channel and averaged (an outlier channel that flattens the others to
zero also hides behind a whole-tensor SQNR). Keeping a tensor in float takes its producer
*and* its compute consumers out of quantization (the consumers would re-quantize it). The
ranking is measured on the first batch of calibration images (at most
`calibration_batch_size`) to bound memory.

onnx and onnxruntime are imported when a search runs, not when this module is imported.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from segshield.errors import ExportError, SegShieldError
from segshield.exporters.calibration import (
    CALIBRATION_METHODS,
    check_calibration_images,
    equal_batch_size,
    images_digest,
)
from segshield.exporters.int8_ranking import (
    Agreement,
    _new_nodes_only,
    fallback_sets,
    rank_fp32_fallback,
)
from segshield.exporters.int8_recipes import HealthRule, Recipe, SearchResult, Trial
from segshield.exporters.onnx_graph import OnnxVariant
from segshield.exporters.onnx_int8 import onnx_int8_from_onnx
from segshield.exporters.ort_quantize import preprocessed_copy

DEFAULT_MAX_TRIALS = 10
_LATENCY_RUNS = 5


# ----------------------------------------------------------------------------- the search


def search_int8(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    calibration_images: np.ndarray,
    source_logits: np.ndarray,
    *,
    agreement: Agreement,
    thresholds: HealthRule,
    base: Recipe | None = None,
    first: OnnxVariant | None = None,
    preprocess: bool = True,
    calibration_batch_size: int = 8,
    max_trials: int = DEFAULT_MAX_TRIALS,
    intra_op_threads: int | None = None,
) -> SearchResult:
    """Build the `base` recipe and, when it is not healthy on the calibration images, search
    the mitigations (see the module docstring); the kept recipe's model ends up at `dst`.

    Args:
        src: the FP32 ONNX file.
        dst: where the kept QDQ model is written (the other trials' files are deleted).
        calibration_images: float32 (N,C,H,W) in [0,1] -- every recipe is calibrated on all
            of them and scored on the same images (never on audited images).
        source_logits: the FP32 source's logits on `calibration_images`, in order.
        agreement: mask agreement of engine logits with source logits, in [0, 1].
        thresholds: health thresholds (`classify`, `ok_min`).
        base: the default recipe (its per-channel and method also seed the search).
        first: the base recipe already built at `dst` (not rebuilt).
        preprocess, calibration_batch_size: as in `onnx_int8_from_onnx`.
        max_trials: most recipes built, the default included (>= 1).
        intra_op_threads: ONNX Runtime threads for scoring and latency (None: its default).

    Raises:
        DataError: bad calibration images. ExportError: the default recipe cannot be built
        (later recipes failing are recorded in their trial, not raised).
    """
    if max_trials < 1:
        raise ValueError(f"max_trials must be >= 1, got {max_trials}")
    base = base or Recipe()
    src, dst = Path(src), Path(dst)
    images = check_calibration_images(calibration_images)
    if len(source_logits) != len(images):
        raise ValueError(
            f"source_logits has {len(source_logits)} images, the calibration images {len(images)}"
        )
    search = _Search(
        src, dst, images, np.asarray(source_logits), agreement, thresholds,
        preprocess=preprocess, batch=calibration_batch_size, max_trials=max_trials,
        threads=intra_op_threads,
    )  # fmt: skip
    try:
        return search.run(base, first)
    finally:
        search.cleanup()


class _Search:
    """The state of one `search_int8` call (trial files live in a temp folder next to dst)."""

    def __init__(
        self,
        src: Path,
        dst: Path,
        images: np.ndarray,
        source_logits: np.ndarray,
        agreement: Agreement,
        thresholds: HealthRule,
        *,
        preprocess: bool,
        batch: int,
        max_trials: int,
        threads: int | None,
    ) -> None:
        self.src, self.dst, self.images, self.source_logits = src, dst, images, source_logits
        self.agreement, self.thresholds = agreement, thresholds
        self.preprocess, self.batch, self.max_trials, self.threads = (
            preprocess, batch, max_trials, threads,
        )  # fmt: skip
        self.trials: list[Trial] = []
        self.ranking: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []  # ranking rows that add FP32 nodes
        self.fp32_latency_ms: float | None = None
        dst.parent.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix=".segshield-int8-search-", dir=dst.parent))

    def cleanup(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    # -- steps

    def run(self, base: Recipe, first: OnnxVariant | None) -> SearchResult:
        default = self._trial(base, "default", variant=first, measure_latency=False)
        if default.error is not None:
            raise ExportError(default.error)
        if default.healthy:
            return self._finish(default, searched=False)
        default.latency_ms = self._latency(default.path)
        self.fp32_latency_ms = self._latency(self.src)  # what the search's winner competes with
        settings = [
            replace(base, per_channel=not base.per_channel),
            replace(base, reduce_range=not base.reduce_range),
            *(replace(base, method=m) for m in CALIBRATION_METHODS if m != base.method),
        ]
        for recipe in settings:
            if len(self.trials) >= self.max_trials:
                break
            self._trial(recipe, "settings")
        healthy = [t for t in self.trials if t.healthy]
        if healthy:  # no FP32 node needed: the fastest healthy one
            return self._finish(min(healthy, key=_latency_key), searched=True)
        self._fallback()
        return self._finish(self._pick(), searched=True)

    def _fallback(self) -> None:
        """FP32 fallback on the best no-fallback recipe, growing the excluded set."""
        scored = [t for t in self.trials if t.mask_dice is not None]
        if len(self.trials) >= self.max_trials or not scored:
            return
        seed = max(scored, key=lambda t: t.mask_dice or 0.0)
        try:
            self.ranking = self._rank(seed)
        except Exception as exc:  # the ranking is a debugging aid: record, do not fail
            self.ranking = [{"error": f"{type(exc).__name__}: {exc}"}]
            return
        self.steps = _new_nodes_only(self.ranking)
        below = 0  # largest number of ranked tensors known not to be enough
        for k in _powers_of_two(len(self.steps)):
            if len(self.trials) >= self.max_trials:
                return
            trial = self._trial(self._fallback_recipe(seed.recipe, k), "fallback")
            if trial.healthy:
                self._bisect(seed.recipe, below, k)
                return
            below = k

    def _fallback_recipe(self, seed: Recipe, tensors: int) -> Recipe:
        return replace(seed, excluded=fallback_sets(self.steps, tensors))

    def _bisect(self, seed: Recipe, below: int, healthy_at: int) -> None:
        """Fewest FP32 nodes: bisect (below, healthy_at) while trials remain."""
        while healthy_at - below > 1 and len(self.trials) < self.max_trials:
            mid = (below + healthy_at) // 2
            trial = self._trial(self._fallback_recipe(seed, mid), "fallback")
            if trial.healthy:
                healthy_at = mid
            else:
                below = mid

    def _pick(self) -> Trial:
        healthy = [t for t in self.trials if t.healthy]
        if healthy:
            return min(healthy, key=lambda t: (t.recipe.fp32_nodes, *_latency_key(t)))
        scored = [t for t in self.trials if t.mask_dice is not None]
        return max(scored, key=lambda t: (t.mask_dice or 0.0, -t.recipe.fp32_nodes))

    def _finish(self, chosen: Trial, *, searched: bool) -> SearchResult:
        chosen.chosen = True
        assert chosen.path is not None and chosen.variant is not None
        if chosen.path != self.dst:
            os.replace(chosen.path, self.dst)
        variant = replace(chosen.variant, path=self.dst)
        for trial in self.trials:  # only the kept model stays on disk
            trial.variant = None
            trial.path = self.dst if trial is chosen else None
        return SearchResult(
            chosen=chosen,
            variant=variant,
            trials=self.trials,
            healthy=chosen.healthy,
            searched=searched,
            ok_min=self.thresholds.ok_min,
            n_images=len(self.images),
            images_sha256=images_digest(self.images),
            ranking=self.ranking,
            latency_batch=min(self.batch, len(self.images)),
            fp32_latency_ms=self.fp32_latency_ms,
        )

    # -- one trial

    def _trial(
        self,
        recipe: Recipe,
        stage: str,
        *,
        variant: OnnxVariant | None = None,
        measure_latency: bool = True,
    ) -> Trial:
        trial = Trial(recipe, stage)
        self.trials.append(trial)
        try:
            if variant is None:
                out = self.work / f"trial-{len(self.trials)}.onnx"
                out = self.dst if stage == "default" else out
                variant = onnx_int8_from_onnx(
                    self.src, out, self.images,
                    method=recipe.method, per_channel=recipe.per_channel,
                    preprocess=self.preprocess,
                    symmetric_activations=recipe.symmetric_activations,
                    calibration_batch_size=self.batch, nodes_to_exclude=recipe.excluded,
                    reduce_range=recipe.reduce_range,
                )  # fmt: skip
            trial.variant, trial.path = variant, Path(variant.path)
            trial.build_seconds = round(variant.seconds, 3)
            trial.bytes = trial.path.stat().st_size
            logits = self._infer(trial.path)
            trial.mask_dice = float(self.agreement(self.source_logits, logits))
            trial.health = str(self.thresholds.classify(trial.mask_dice))
            if measure_latency:
                trial.latency_ms = self._latency(trial.path)
        except Exception as exc:  # a recipe that fails is recorded, the search goes on
            trial.error = str(exc) if isinstance(exc, SegShieldError) else (
                f"{type(exc).__name__}: {exc}"
            )  # fmt: skip
            trial.mask_dice = trial.health = None
        return trial

    def _session(self, path: Path) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if self.threads:
            so.intra_op_num_threads = self.threads
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def _infer(self, path: Path) -> np.ndarray:
        session = self._session(path)
        name = session.get_inputs()[0].name
        return np.concatenate(
            [
                session.run(None, {name: self.images[i : i + self.batch]})[0]
                for i in range(0, len(self.images), self.batch)
            ]
        )

    def _latency(self, path: Path | None) -> float | None:
        """Median ms of a few runs on the first calibration batch, after one warm-up."""
        if path is None:
            return None
        session = self._session(path)
        feed = {session.get_inputs()[0].name: self.images[: self.batch]}
        session.run(None, feed)
        times = []
        for _ in range(_LATENCY_RUNS):
            start = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - start) * 1e3)
        return round(statistics.median(times), 3)

    # -- the FP32 fallback ranking

    def _rank(self, seed: Trial) -> list[dict[str, Any]]:
        assert seed.path is not None
        n = equal_batch_size(len(self.images), self.batch)
        images, source = self.images[:n], self.source_logits[:n]
        tmp = self.work / "ranking"
        tmp.mkdir(exist_ok=True)
        float_model = preprocessed_copy(self.src, tmp) if self.preprocess else self.src
        return rank_fp32_fallback(
            float_model, seed.path, images, source, self.agreement, self.thresholds.ok_min, tmp
        )


def _latency_key(trial: Trial) -> tuple[float]:
    return (trial.latency_ms if trial.latency_ms is not None else float("inf"),)


def _powers_of_two(n: int) -> list[int]:
    """1, 2, 4, ... below n, then n: the excluded-set sizes tried."""
    out, k = [], 1
    while k < n:
        out.append(k)
        k *= 2
    return [*out, n] if n else []


__all__ = [
    "DEFAULT_MAX_TRIALS",
    "Agreement",
    "HealthRule",
    "Recipe",
    "SearchResult",
    "Trial",
    "search_int8",
]
