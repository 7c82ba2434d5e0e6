"""Classification (seed mammography): logits (N, K), one label per image.

Scored by the same accumulator as segmentation, as a softmax "segmentation" of one pixel per
image with every class in the foreground: accuracy is the share of images classified right,
a class's recall is the accuracy on that class's images, Dice is the macro F1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from segshield.enums import Activation, TaskKind
from segshield.errors import ModelOutputError
from segshield.metrics import Accumulator, Statistic, accuracy_of
from segshield.results import PerImage

__all__ = ["ClassificationTask"]


@dataclass(frozen=True)
class ClassificationTask:
    """Logits (N, K) over K >= 2 classes; labels int64 (N,) in [0, K)."""

    num_classes: int = 2
    class_names: tuple[str, ...] | None = None
    kind: TaskKind = TaskKind.CLASSIFICATION
    activation: Activation = Activation.SOFTMAX
    primary: str = "accuracy"
    ci_metrics: tuple[str, ...] = ("accuracy",)
    has_panels: bool = False

    def check_output(self, out: object, x: torch.Tensor) -> None:
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (x.shape[0], self.num_classes):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelOutputError(
                f"classifier must return logits of shape (N, {self.num_classes}), got {shape}"
            )

    def loss_targets(self, labels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))

    def accumulator(self) -> Accumulator:
        return Accumulator(
            Activation.SOFTMAX,
            self.num_classes,
            background=None,  # every class counts: a classifier has no background
            # A class with no image (and no prediction) is undefined, not perfect: NaN is
            # skipped by the means and shown as missing.
            empty_value=float("nan"),
            keep_predictions=True,
            class_names=self.class_names,
        )

    def statistics(self) -> dict[str, Statistic]:
        return {"accuracy": lambda c: accuracy_of(c, Activation.SOFTMAX)}

    def image_scores(self, per_image: PerImage) -> np.ndarray:
        # One pixel per image and every class foreground: the summed tp is 1 iff correct.
        return np.asarray(per_image.tp, dtype=np.float64)

    def image_predictions(self, preds: np.ndarray) -> list[int] | None:
        return np.asarray(preds).reshape(len(preds)).astype(int).tolist()
