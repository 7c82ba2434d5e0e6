"""Enumerations shared by every stage (no imports beyond the standard library).

String-valued (``StrEnum``) so that they compare equal to, and serialise as, their plain
strings: ``Status.OK == "ok"`` and ``json.dumps(Status.OK)`` gives ``"ok"``.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):
        """``enum.StrEnum`` for Python 3.10: members are their string values."""

        def __str__(self) -> str:
            return str(self.value)


__all__ = ["Activation", "Health", "Status", "StrEnum", "TaskKind"]


class Status(StrEnum):
    """Outcome of an engine, an evaluation or a cell."""

    OK = "ok"
    UNAVAILABLE = "unavailable"  # this machine cannot run it (no GPU, no TensorRT, ...)
    ERROR = "error"  # it was tried and failed; the record carries the message


class Activation(StrEnum):
    """What turns a model's logits into predictions (as MONAI's ``DiceHelper`` makes explicit).

    SIGMOID: every channel is an independent probability, on where ``sigmoid > threshold``
    (binary segmentation with one channel, multi-label with C channels).
    SOFTMAX: channels are mutually exclusive classes, the prediction is the arg-max
    (multi-class segmentation, classification).
    """

    SIGMOID = "sigmoid"
    SOFTMAX = "softmax"


class TaskKind(StrEnum):
    """What an audited model does; decides loss targets, evaluation and the metric set."""

    BINARY = "binary"  # (N, 1, H, W) logits, one sigmoid channel, binary masks
    MULTICLASS = "multiclass"  # (N, C, H, W) softmax logits, label-map masks
    MULTILABEL = "multilabel"  # (N, C, H, W) independent sigmoids, (N, C, H, W) masks
    CLASSIFICATION = "classification"  # (N, K) softmax logits, one label per image


class Health(StrEnum):
    """How well an engine that runs agrees with the source on clean images (its clean mask
    agreement against the source's thresholds, see :mod:`segshield.engines.health`)."""

    OK = "ok"
    DEGRADED = "degraded"  # runs, but its clean masks drift from the source's
    FAILED = "failed"  # runs, but its clean masks are not the source's (or it cannot run)
