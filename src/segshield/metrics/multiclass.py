"""Multi-class (softmax) and multi-label (sigmoid) segmentation metrics in pure NumPy.

Same design as the binary metrics: per-image, per-class confusion counts (one-vs-rest) are the
only thing accumulated, every score is a pure function of those counts summed over images, so
results do not depend on the batch size, and edge cases are explicit parameters.

Two kinds of model output are supported:

* ``mode="softmax"``: logits (N,C,H,W) of mutually exclusive classes; the prediction is the
  argmax over C (ties go to the lowest class index) and the target is an integer label map
  (N,H,W) or (N,1,H,W) with labels in [0, C). One class (``background``, 0 by default) is left
  out of the foreground means.
* ``mode="sigmoid"``: logits (N,C,H,W) of independent channels (e.g. the three GI organs of the
  UW-Madison task in seed unet-family); channel c is on where sigmoid(logit) > threshold and
  the target is a binary (N,C,H,W) mask. Every channel is foreground by default.

Counts are held in :class:`ClassConfusion`, arrays of shape (N, C) rather than a list of C
:class:`~segshield.metrics.confusion.ConfusionCounts`: one vectorised object that sums, slices
and concatenates like the binary one; :meth:`ClassConfusion.per_class` gives the per-class
``ConfusionCounts`` view so every binary metric function applies to a single class unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from segshield.errors import ModelOutputError
from segshield.metrics.confusion import ConfusionCounts, binarize_logits, check_binary_mask
from segshield.metrics.losses import bce_logits_per_pixel
from segshield.metrics.segmentation import dice, iou, precision, recall

__all__ = [
    "MULTICLASS_PER_IMAGE_KEYS",
    "ClassConfusion",
    "MultiClassAccumulator",
    "MultiClassMetrics",
    "check_label_map",
    "label_disagreement",
    "multiclass_confusion_counts",
    "multilabel_confusion_counts",
]

MULTICLASS_PER_IMAGE_KEYS: tuple[str, ...] = ("mean_dice", "mean_iou", "loss")

_COUNT_NAMES = ("tp", "fp", "fn", "tn")


# --------------------------------------------------------------------------------------------
# Confusion counts
# --------------------------------------------------------------------------------------------


def _as_class_count_array(name: str, value: object) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 2:
        raise ValueError(
            f"ClassConfusion.{name} must be 2-D of shape (N, C), got shape {arr.shape}"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ClassConfusion.{name} must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=True)
    if arr.size and arr.min() < 0:
        raise ValueError(f"ClassConfusion.{name} must be non-negative, got min {arr.min()}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class ClassConfusion:
    """Per-image, per-class (one-vs-rest) true/false positive/negative pixel counts.

    For class c of image i, ``tp[i, c]`` counts pixels predicted c and labelled c, ``fp[i, c]``
    predicted c but labelled otherwise, ``fn[i, c]`` labelled c but predicted otherwise and
    ``tn[i, c]`` the rest. In softmax mode every pixel is a tp or fp of exactly one class.

    Attributes:
        tp, fp, fn, tn: read-only int64 arrays of shape (N, C).
    """

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    def __post_init__(self) -> None:
        shapes = {}
        for name in _COUNT_NAMES:
            arr = _as_class_count_array(name, getattr(self, name))
            object.__setattr__(self, name, arr)
            shapes[name] = arr.shape
        if len(set(shapes.values())) != 1:
            raise ValueError(f"ClassConfusion arrays must share one shape (N, C), got {shapes}")

    def __len__(self) -> int:
        return int(self.tp.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassConfusion):
            return NotImplemented
        return all(np.array_equal(getattr(self, k), getattr(other, k)) for k in _COUNT_NAMES)

    __hash__ = None  # type: ignore[assignment]  # equality is by value over mutable-typed arrays

    @property
    def num_classes(self) -> int:
        """C, the number of classes (channels)."""
        return int(self.tp.shape[1])

    @property
    def n_pixels(self) -> np.ndarray:
        """Pixels per image and class, int64 of shape (N, C) (equal across C for one image)."""
        return self.tp + self.fp + self.fn + self.tn

    def total(self) -> ClassConfusion:
        """Counts summed over images, as a ClassConfusion of shape (1, C)."""
        return ClassConfusion(
            **{k: getattr(self, k).sum(axis=0, keepdims=True) for k in _COUNT_NAMES}
        )

    def for_class(self, index: int) -> ConfusionCounts:
        """The binary (one-vs-rest) counts of one class, a ConfusionCounts of shape (N,)."""
        c = self.num_classes
        if not -c <= index < c:
            raise IndexError(f"class index {index} out of range for {c} classes")
        return ConfusionCounts(**{k: getattr(self, k)[:, index] for k in _COUNT_NAMES})

    def per_class(self) -> list[ConfusionCounts]:
        """One binary ConfusionCounts of shape (N,) per class, in class order."""
        return [self.for_class(c) for c in range(self.num_classes)]

    @staticmethod
    def concat(parts: Iterable[ClassConfusion], num_classes: int = 0) -> ClassConfusion:
        """Concatenate along the image axis, in order.

        An empty iterable gives shape (0, ``num_classes``).

        Raises:
            ValueError: the parts have different numbers of classes (all named).
        """
        items = list(parts)
        if not items:
            empty = np.zeros((0, num_classes), dtype=np.int64)
            return ClassConfusion(tp=empty, fp=empty, fn=empty, tn=empty)
        classes = [p.num_classes for p in items]
        if len(set(classes)) != 1:
            raise ValueError(f"cannot concatenate counts with different class counts: {classes}")
        return ClassConfusion(
            **{k: np.concatenate([getattr(p, k) for p in items]) for k in _COUNT_NAMES}
        )


def _check_num_classes(num_classes: object, minimum: int = 1) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"num_classes must be an int, got {num_classes!r}")
    if num_classes < minimum:
        raise ValueError(f"num_classes must be at least {minimum}, got {num_classes}")
    return int(num_classes)


def check_label_map(name: str, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Return ``labels`` as an int64 array; raise ValueError unless all lie in [0, num_classes).

    Accepts integer or bool dtypes, and floats that hold only whole numbers (masks read from
    image files); the shape is not checked here.
    """
    arr = np.asarray(labels)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    elif np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            examples = np.unique(arr[bad])[:5].tolist()
            raise ValueError(
                f"{name} of shape {arr.shape} must hold integer class labels, but {n_bad} "
                f"values are not whole numbers, e.g. {examples}"
            )
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= num_classes:
            n_bad = int(np.count_nonzero((arr < 0) | (arr >= num_classes)))
            raise ValueError(
                f"{name} of shape {arr.shape} has {n_bad} labels outside [0, {num_classes}): "
                f"max label found {_num(hi)}, min label found {_num(lo)}"
            )
    return arr.astype(np.int64, copy=False)


def _num(x: Any) -> int | float:
    x = x.item() if isinstance(x, np.generic) else x
    return int(x) if float(x).is_integer() else float(x)


def _label_pair(
    pred: np.ndarray, target: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: pred {p.shape} vs target {t.shape}")
    if p.ndim not in (3, 4) or (p.ndim == 4 and p.shape[1] != 1):
        raise ValueError(
            f"pred and target must be (N,H,W) or (N,1,H,W) label maps, got pred {p.shape} and "
            f"target {t.shape}"
        )
    return check_label_map("pred", p, num_classes), check_label_map("target", t, num_classes)


def _confusion_from_labels(pred: np.ndarray, target: np.ndarray, c: int) -> ClassConfusion:
    """Counts of validated int64 label maps of equal shape (N, ...); no checks."""
    n = pred.shape[0]
    p = pred.reshape(n, -1)
    t = target.reshape(n, -1)
    n_pix = p.shape[1]
    # One bincount over (image, true, predicted) gives every image's C x C confusion matrix.
    idx = (np.arange(n, dtype=np.int64)[:, None] * (c * c) + t * c + p).ravel()
    cm = np.bincount(idx, minlength=n * c * c).reshape(n, c, c)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    fn = cm.sum(axis=2) - tp  # labelled c, predicted something else
    fp = cm.sum(axis=1) - tp  # predicted c, labelled something else
    tn = n_pix - tp - fp - fn
    return ClassConfusion(tp=tp, fp=fp, fn=fn, tn=tn)


def multiclass_confusion_counts(
    pred: np.ndarray, target: np.ndarray, num_classes: int
) -> ClassConfusion:
    """Per-image one-vs-rest counts of every class of two integer label maps.

    Args:
        pred, target: same shape, (N,H,W) or (N,1,H,W); integer labels in [0, num_classes)
            (bool, or floats holding whole numbers, are accepted too).
        num_classes: C >= 1.

    Returns:
        ClassConfusion with arrays of shape (N, C); use ``.per_class()`` for a list of C
        binary ConfusionCounts.

    Raises:
        ValueError: shapes differ (both named), wrong rank, non-integer labels, or a label
            outside [0, C) (the max and min labels found are named).
    """
    c = _check_num_classes(num_classes)
    p, t = _label_pair(pred, target, c)
    return _confusion_from_labels(p, t, c)


def multilabel_confusion_counts(pred: np.ndarray, target: np.ndarray) -> ClassConfusion:
    """Per-image, per-channel counts of independent binary masks (multi-label, sigmoid heads).

    Args:
        pred, target: same shape (N,C,H,W); bool or numeric with values in {0, 1}.

    Returns:
        ClassConfusion with arrays of shape (N, C).

    Raises:
        ValueError: shapes differ (both named), not 4-D, or non-binary values.
    """
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: pred {p.shape} vs target {t.shape}")
    if p.ndim != 4:
        raise ValueError(
            f"pred and target must be (N,C,H,W) multi-label masks, got pred {p.shape} and "
            f"target {t.shape}"
        )
    pb = check_binary_mask("pred", p)
    tb = check_binary_mask("target", t)
    n, c = p.shape[:2]
    pb = pb.reshape(n, c, -1)
    tb = tb.reshape(n, c, -1)
    tp = np.count_nonzero(pb & tb, axis=2)
    fp = np.count_nonzero(pb & ~tb, axis=2)
    fn = np.count_nonzero(~pb & tb, axis=2)
    tn = pb.shape[2] - tp - fp - fn
    return ClassConfusion(tp=tp, fp=fp, fn=fn, tn=np.asarray(tn))


def label_disagreement(pred_a: np.ndarray, pred_b: np.ndarray) -> np.ndarray:
    """Per-image share of pixels whose label differs between two predictions, in [0, 1].

    Works on both prediction kinds of :class:`MultiClassAccumulator`: label maps (N,H,W) are
    compared pixel by pixel; multi-label masks (N,C,H,W) count a pixel as differing when any
    channel differs (so a (N,1,H,W) binary mask gives the same as
    :func:`segshield.metrics.disagreement`). The binary ``disagreement`` rejects label maps
    with more than two classes and, on (N,C,H,W), divides by C*H*W channel-pixels instead.

    Args:
        pred_a, pred_b: identical shapes, (N,H,W) or (N,C,H,W); integer or bool.

    Returns:
        float64 array of shape (N,); NaN for images with no pixels.

    Raises:
        ValueError: shapes differ (both named), wrong rank, or a non-integer dtype.
    """
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    if a.shape != b.shape:
        raise ValueError(f"pred_a and pred_b shapes differ: pred_a {a.shape} vs pred_b {b.shape}")
    if a.ndim not in (3, 4):
        raise ValueError(
            f"pred_a and pred_b must be (N,H,W) label maps or (N,C,H,W) masks, got shape {a.shape}"
        )
    for name, arr in (("pred_a", a), ("pred_b", b)):
        if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must be integer labels or bool masks, got dtype {arr.dtype}")
    differs = a != b
    if differs.ndim == 4:
        differs = differs.any(axis=1)
    differs = differs.reshape(differs.shape[0], -1)
    if differs.shape[1] == 0:
        return np.full(differs.shape[0], np.nan)
    return np.count_nonzero(differs, axis=1) / differs.shape[1]


# --------------------------------------------------------------------------------------------
# Metrics and accumulator
# --------------------------------------------------------------------------------------------


def _json_float(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _nanmean(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Mean skipping NaN, NaN where nothing is defined, without RuntimeWarnings."""
    x = np.asarray(x, dtype=np.float64)
    ok = ~np.isnan(x)
    n = ok.sum(axis=axis)
    s = np.where(ok, x, 0.0).sum(axis=axis)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


@dataclass(frozen=True)
class MultiClassMetrics:
    """Scores of one multi-class or multi-label model on one dataset.

    Per-class ratios (tuples of length C, in class order) come from each class's one-vs-rest
    tp/fp/fn totals over all images; a class whose denominator is 0 (e.g. absent from both
    prediction and target everywhere) gets ``empty_value``. ``mean_dice`` and ``mean_iou``
    average those over the ``foreground`` classes, skipping NaN entries (possible only with
    ``empty_value=nan``; NaN if none is defined).

    ``accuracy``: softmax, share of pixels whose label is right; sigmoid, mean over channels of
    the per-channel pixel accuracy. ``loss``: softmax, mean cross-entropy (nats) per pixel;
    sigmoid, mean binary cross-entropy over all N*C*H*W channel-pixels. ``threshold`` is None
    in softmax mode.

    ``dice_per_image[c][i]`` is the Dice of class c on image i; ``per_image`` maps each of
    ``MULTICLASS_PER_IMAGE_KEYS`` to N floats in update order: the foreground mean Dice and
    IoU of each image (NaN-skipping), and its mean loss. ``dice_per_image_mean`` is the mean
    over images of ``per_image["mean_dice"]`` (NaN entries skipped).
    """

    mode: str
    num_classes: int
    background: int | None
    foreground: tuple[int, ...]
    class_names: tuple[str, ...] | None
    dice: tuple[float, ...]
    iou: tuple[float, ...]
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    mean_dice: float
    mean_iou: float
    accuracy: float
    loss: float
    dice_per_image_mean: float
    n_images: int
    tp: tuple[int, ...]
    fp: tuple[int, ...]
    fn: tuple[int, ...]
    tn: tuple[int, ...]
    threshold: float | None
    empty_value: float
    dice_per_image: tuple[tuple[float, ...], ...]
    per_image: dict[str, list[float]]

    def class_name(self, index: int) -> str:
        """Name of class ``index``: from ``class_names`` when given, else its index as str."""
        return self.class_names[index] if self.class_names is not None else str(index)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict for ``json.dumps(allow_nan=False)``; NaN/Inf become None.

        Per-class values are grouped under ``per_class``, keyed by the class index as str
        (JSON keys are strings), each with its ``name`` (None without ``class_names``),
        ``foreground`` flag, dice/iou/precision/recall, tp/fp/fn/tn and ``dice_per_image``.
        """
        per_class: dict[str, dict[str, Any]] = {}
        for c in range(self.num_classes):
            per_class[str(c)] = {
                "name": self.class_names[c] if self.class_names is not None else None,
                "foreground": c in self.foreground,
                "dice": _json_float(self.dice[c]),
                "iou": _json_float(self.iou[c]),
                "precision": _json_float(self.precision[c]),
                "recall": _json_float(self.recall[c]),
                "tp": int(self.tp[c]),
                "fp": int(self.fp[c]),
                "fn": int(self.fn[c]),
                "tn": int(self.tn[c]),
                "dice_per_image": [_json_float(v) for v in self.dice_per_image[c]],
            }
        per_class_fields = {"dice", "iou", "precision", "recall", "tp", "fp", "fn", "tn"}
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in per_class_fields or f.name == "dice_per_image":
                continue
            if f.name == "per_image":
                out[f.name] = {k: [_json_float(v) for v in vs] for k, vs in value.items()}
            elif f.name in ("foreground", "class_names"):
                out[f.name] = None if value is None else list(value)
            elif f.name == "mode":
                out[f.name] = str(value)
            elif value is None:
                out[f.name] = None
            elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                out[f.name] = int(value)
            else:
                out[f.name] = _json_float(value)
        out["per_class"] = per_class
        return out


_Mode = Literal["softmax", "sigmoid"]


class MultiClassAccumulator:
    """Collects per-image, per-class confusion counts, losses and (optionally) predictions.

    Args:
        num_classes: C, the number of logit channels (>= 2 in softmax mode, >= 1 in sigmoid).
        mode: ``"softmax"`` (mutually exclusive classes, argmax prediction, integer label
            target) or ``"sigmoid"`` (independent channels, thresholded, binary (N,C,H,W)
            target).
        background: class index left out of ``mean_dice``/``mean_iou`` (it still counts in
            accuracy and loss, and its per-class scores are reported). ``"auto"`` (default):
            0 in softmax mode, None (every channel is foreground) in sigmoid mode. Pass None
            to include every class, or an index to exclude another one (in either mode).
        threshold: sigmoid mode only (ignored in softmax mode): channel c is on where
            sigmoid(logit) > threshold, via :func:`binarize_logits`; strictly in (0, 1).
        empty_value: value of a class's Dice/IoU/precision/recall where the denominator is 0,
            e.g. the class is absent from both prediction and target; 1.0 = perfect by
            convention, or NaN to leave it undefined (skipped by the means).
        keep_predictions: also keep predictions for :meth:`predictions` (e.g. to compare
            engines with :func:`label_disagreement`).
        class_names: optional C names, reported by :meth:`MultiClassMetrics.to_dict`.

    Raises:
        ValueError: bad mode, num_classes, background, threshold or class_names.
    """

    def __init__(
        self,
        num_classes: int,
        mode: _Mode = "softmax",
        background: int | Literal["auto"] | None = "auto",
        threshold: float = 0.5,
        empty_value: float = 1.0,
        keep_predictions: bool = False,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if mode not in ("softmax", "sigmoid"):
            raise ValueError(f"mode must be 'softmax' or 'sigmoid', got {mode!r}")
        self.mode: _Mode = mode
        self.num_classes = _check_num_classes(num_classes, 2 if mode == "softmax" else 1)
        c = self.num_classes
        if isinstance(background, str):
            if background != "auto":
                raise ValueError(f"background must be an int, None or 'auto', got {background!r}")
            background = 0 if mode == "softmax" else None
        if background is not None:
            if isinstance(background, bool) or not isinstance(background, (int, np.integer)):
                raise ValueError(f"background must be an int, None or 'auto', got {background!r}")
            if not 0 <= background < c:
                raise ValueError(f"background {background} out of range for {c} classes")
            background = int(background)
            if c == 1:
                raise ValueError("background would exclude the only class: use background=None")
        self.background: int | None = background
        self.foreground: tuple[int, ...] = tuple(i for i in range(c) if i != background)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold}")
        self.threshold = float(threshold)
        self.empty_value = float(empty_value)
        self.keep_predictions = keep_predictions
        if class_names is not None:
            names = tuple(class_names)
            if len(names) != c or not all(isinstance(n, str) for n in names):
                raise ValueError(
                    f"class_names must be {c} strings (one per class), got {list(names)!r}"
                )
            self.class_names: tuple[str, ...] | None = names
        else:
            self.class_names = None
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._counts: list[ClassConfusion] = []
        self._loss_sums: list[np.ndarray] = []
        self._loss_elems: list[np.ndarray] = []
        self._preds: list[np.ndarray] = []

    @property
    def n_images(self) -> int:
        """Number of images accumulated so far."""
        return sum(len(c) for c in self._counts)

    def __len__(self) -> int:
        return self.n_images

    def _check_logits(self, logits: np.ndarray, target: np.ndarray) -> None:
        c = self.num_classes
        if logits.ndim != 4 or logits.shape[1] != c:
            raise ValueError(
                f"logits must be (N,{c},H,W) for num_classes={c}, got logits {logits.shape} "
                f"(target {target.shape})"
            )
        if self.mode == "softmax":
            n, _, h, w = logits.shape
            if target.shape not in ((n, h, w), (n, 1, h, w)):
                raise ValueError(
                    f"softmax target must be label maps ({n},{h},{w}) or ({n},1,{h},{w}) "
                    f"matching logits {logits.shape}, got target {target.shape}"
                )
        elif target.shape != logits.shape:
            raise ValueError(
                f"sigmoid target must have the shape of logits (N,C,H,W): logits "
                f"{logits.shape} vs target {target.shape}"
            )
        if not np.issubdtype(logits.dtype, np.floating):
            raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
        finite = np.isfinite(logits)
        if not finite.all():
            n_bad = logits.size - int(np.count_nonzero(finite))
            n_nan = int(np.count_nonzero(np.isnan(logits)))
            raise ModelOutputError(
                f"model output of shape {logits.shape} has {n_bad} non-finite values of "
                f"{logits.size} ({n_nan} NaN, {n_bad - n_nan} Inf)"
            )

    def update(self, logits: np.ndarray, target: np.ndarray) -> None:
        """Add one batch.

        Args:
            logits: float array (N,C,H,W) of raw model outputs (before softmax/sigmoid);
                finite.
            target: softmax mode, integer label maps (N,H,W) or (N,1,H,W) with labels in
                [0, C); sigmoid mode, binary masks (N,C,H,W), bool or {0, 1}.

        Raises:
            ModelOutputError: logits contain NaN or Inf (the message gives how many).
            ValueError: shapes do not fit (both named), non-float logits, a label outside
                [0, C) (the max label found is named) or a non-binary sigmoid target.
        """
        logits = np.asarray(logits)
        target = np.asarray(target)
        self._check_logits(logits, target)
        n = logits.shape[0]
        x = logits.astype(np.float64)
        if self.mode == "softmax":
            labels = check_label_map("target", target, self.num_classes).reshape(
                n, *logits.shape[2:]
            )
            pred = np.argmax(logits, axis=1)
            counts = _confusion_from_labels(pred, labels, self.num_classes)
            # Cross-entropy per pixel: logsumexp over classes minus the true class's logit.
            m = x.max(axis=1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
            picked = np.take_along_axis(x, labels[:, None], axis=1)[:, 0]
            per_pixel = lse - picked
            if self.keep_predictions:
                self._preds.append(pred.astype(np.min_scalar_type(self.num_classes - 1)))
        else:
            mask = check_binary_mask("target", target)
            pred = binarize_logits(logits, self.threshold)
            counts = multilabel_confusion_counts(pred, mask)
            per_pixel = bce_logits_per_pixel(x, mask.astype(np.float64))
            if self.keep_predictions:
                self._preds.append(pred.copy())
        self._counts.append(counts)
        # Per-image sums (not means) so the global mean is exact whatever the image sizes.
        flat = per_pixel.reshape(n, -1)
        self._loss_sums.append(flat.sum(axis=1))
        self._loss_elems.append(np.full(n, flat.shape[1], dtype=np.int64))

    def counts(self) -> ClassConfusion:
        """Per-image, per-class confusion counts of everything accumulated, shape (N, C)."""
        return ClassConfusion.concat(self._counts, self.num_classes)

    def predictions(self) -> np.ndarray:
        """Predictions of all accumulated images, in update order.

        Softmax mode: label maps (N,H,W) in the smallest unsigned integer dtype that holds
        C - 1 (uint8 up to 256 classes). Sigmoid mode: bool masks (N,C,H,W).

        Raises:
            RuntimeError: the accumulator was made without ``keep_predictions=True``.
            ValueError: updates had different image sizes (shapes named).
        """
        if not self.keep_predictions:
            raise RuntimeError("predictions were not kept: use keep_predictions=True")
        if not self._preds:
            if self.mode == "softmax":
                return np.zeros((0, 0, 0), dtype=np.min_scalar_type(self.num_classes - 1))
            return np.zeros((0, self.num_classes, 0, 0), dtype=bool)
        shapes = {p.shape[1:] for p in self._preds}
        if len(shapes) > 1:
            raise ValueError(f"cannot stack predictions of different sizes: {sorted(shapes)}")
        return np.concatenate(self._preds, axis=0)

    def result(self) -> MultiClassMetrics:
        """Aggregate everything accumulated so far.

        Raises:
            RuntimeError: nothing has been accumulated.
        """
        if self.n_images == 0:
            raise RuntimeError("no images accumulated: call update() before result()")
        c = self.counts()
        t = c.total()
        ev = self.empty_value
        fg = list(self.foreground)

        def per_class(fn: Any, *arrays: np.ndarray) -> np.ndarray:
            return np.asarray(fn(*arrays, empty_value=ev), dtype=np.float64)

        cls_dice = per_class(dice, t.tp, t.fp, t.fn)[0]
        cls_iou = per_class(iou, t.tp, t.fp, t.fn)[0]
        cls_prec = per_class(precision, t.tp, t.fp)[0]
        cls_rec = per_class(recall, t.tp, t.fn)[0]
        img_dice = per_class(dice, c.tp, c.fp, c.fn)  # (N, C)
        img_iou = per_class(iou, c.tp, c.fp, c.fn)
        img_mean_dice = _nanmean(img_dice[:, fg], axis=1)
        img_mean_iou = _nanmean(img_iou[:, fg], axis=1)

        n_pix = c.n_pixels[:, 0]  # pixels per image (the same for every class)
        total_pixels = int(n_pix.sum())
        if self.mode == "softmax":
            correct = int(t.tp.sum())  # every correctly labelled pixel is a tp of one class
        else:
            correct = int(t.tp.sum() + t.tn.sum())
            total_pixels *= self.num_classes  # mean over channels = pooled channel-pixels
        accuracy = correct / total_pixels if total_pixels else math.nan

        loss_sums = np.concatenate(self._loss_sums)
        loss_elems = np.concatenate(self._loss_elems)
        n_elems = int(loss_elems.sum())
        # fsum: exact, so the total loss does not depend on how images were batched.
        loss = math.fsum(loss_sums.tolist()) / n_elems if n_elems else math.nan
        per_loss = np.where(loss_elems > 0, loss_sums / np.maximum(loss_elems, 1), np.nan)

        return MultiClassMetrics(
            mode=self.mode,
            num_classes=self.num_classes,
            background=self.background,
            foreground=self.foreground,
            class_names=self.class_names,
            dice=tuple(cls_dice.tolist()),
            iou=tuple(cls_iou.tolist()),
            precision=tuple(cls_prec.tolist()),
            recall=tuple(cls_rec.tolist()),
            mean_dice=float(_nanmean(cls_dice[fg])),
            mean_iou=float(_nanmean(cls_iou[fg])),
            accuracy=float(accuracy),
            loss=float(loss),
            dice_per_image_mean=float(_nanmean(img_mean_dice)),
            n_images=len(c),
            tp=tuple(t.tp[0].tolist()),
            fp=tuple(t.fp[0].tolist()),
            fn=tuple(t.fn[0].tolist()),
            tn=tuple(t.tn[0].tolist()),
            threshold=self.threshold if self.mode == "sigmoid" else None,
            empty_value=ev,
            dice_per_image=tuple(tuple(col.tolist()) for col in img_dice.T),
            per_image={
                "mean_dice": img_mean_dice.tolist(),
                "mean_iou": img_mean_iou.tolist(),
                "loss": per_loss.tolist(),
            },
        )
