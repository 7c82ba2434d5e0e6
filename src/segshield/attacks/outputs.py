"""Picking the logits out of models that return more than a tensor.

Deep-supervision U-Nets return a tuple or list of maps (the full-resolution one first),
torchvision's segmentation models a dict ``{"out": ..., "aux": ...}``, Hugging Face models an
output object that is a dict with ``"logits"``. Attacks, the audit and the exporters need one
logits tensor: wrap such a model in :class:`SelectOutput`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from segshield.errors import ModelOutputError

__all__ = ["DEFAULT_KEYS", "SelectOutput", "select_output"]

DEFAULT_KEYS = ("out", "logits")
"""Dict keys tried in order when no key is given."""

_MAX_DEPTH = 8


def select_output(output: Any, key: str | int | None = None) -> Tensor:
    """The logits tensor inside a model's ``output``.

    * a tensor is returned as is (``key`` must then be ``None``);
    * a tuple or list: element ``key`` (an index; default 0, the first - for deep supervision
      the final, full-resolution output);
    * a dict (any mapping): entry ``key`` (default: ``"out"``, else ``"logits"``).

    When the selected element is itself a tuple/list/dict, the default is applied again
    (``{"out": (main, aux)}`` gives ``main``). Raises :class:`~segshield.errors.ModelOutputError`
    naming what was there when nothing fits.
    """
    if isinstance(output, Tensor):
        if key is not None:
            raise ModelOutputError(f"model output is a tensor; cannot select {key!r} from it")
        return output
    value = _select_once(output, key)
    for _ in range(_MAX_DEPTH):
        if isinstance(value, Tensor):
            return value
        value = _select_once(value, None)
    raise ModelOutputError(f"no tensor found within {_MAX_DEPTH} levels of the model output")


def _select_once(output: Any, key: str | int | None) -> Any:
    if isinstance(output, Mapping):
        if key is None:
            for candidate in DEFAULT_KEYS:
                if candidate in output:
                    return output[candidate]
            raise ModelOutputError(
                f"model output is a dict with keys {sorted(map(str, output))}; none of the "
                f"default keys {list(DEFAULT_KEYS)} is there: pass key=..."
            )
        if key not in output:
            raise ModelOutputError(
                f"model output has no key {key!r}; keys: {sorted(map(str, output))}"
            )
        return output[key]
    if isinstance(output, Sequence) and not isinstance(output, (str, bytes)):
        index = 0 if key is None else key
        if isinstance(index, bool) or not isinstance(index, int):
            raise ModelOutputError(
                f"model output is a {type(output).__name__}; select with an integer index, "
                f"got {key!r}"
            )
        if not -len(output) <= index < len(output):
            raise ModelOutputError(
                f"model output is a {type(output).__name__} of {len(output)} element(s); "
                f"index {index} is out of range"
            )
        return output[index]
    raise ModelOutputError(
        f"model output must be a tensor, a tuple/list or a dict, got {type(output).__name__}"
    )


class SelectOutput(nn.Module):
    """``SelectOutput(model, key)(x) == select_output(model(x), key)``: a model returning one
    logits tensor, for attacks, the audit and export (indexing traces into ONNX as a no-op).

    The wrapped model is the submodule ``model`` (state-dict keys get a ``model.`` prefix);
    train/eval mode and parameters are the wrapped model's.
    """

    def __init__(self, model: nn.Module, key: str | int | None = None) -> None:
        super().__init__()
        if not callable(model):
            raise TypeError(f"model must be callable (an nn.Module), got {type(model).__name__}")
        self.model = model
        self.key = key

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return select_output(self.model(*args, **kwargs), self.key)

    def extra_repr(self) -> str:
        return f"key={self.key!r}"
