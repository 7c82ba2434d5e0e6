"""NaN/Inf checks of an attack call kept on the device: flags updated step by step without a
device-to-host sync, read once when the call ends."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from segshield.errors import ModelOutputError

__all__ = ["FiniteFlags"]


class FiniteFlags:
    """Where the logits and input gradients of one attack call first stopped being finite,
    kept on the device (0-d int64 tensors: the number of the first non-finite check, updated
    step by step with no device-to-host sync) and read once, by :meth:`check`, at the end."""

    _WHAT: ClassVar[dict[str, str]] = {
        "logits": "model output contains NaN or Inf (logits shape {})",
        "grad": "input gradient contains NaN or Inf (input shape {})",
    }
    _NEVER: ClassVar[int] = 2**62

    def __init__(self) -> None:
        self.first: dict[str, Tensor] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.count = 0

    def note(self, what: str, values: Tensor) -> None:
        self.count += 1
        bad_here = torch.where(torch.isfinite(values).all(), self._NEVER, self.count)
        if what in self.first:
            self.first[what] = torch.minimum(self.first[what], bad_here.to(self.first[what]))
        else:
            self.first[what], self.shapes[what] = bad_here, tuple(values.shape)

    def check(self, name: str) -> None:
        """Raise :class:`ModelOutputError` for what went non-finite first (a NaN gradient
        makes the next logits NaN too), if anything did."""
        if not self.first:
            return
        names = list(self.first)
        device = self.first[names[0]].device
        first = torch.stack([self.first[n].to(device) for n in names]).tolist()  # the one sync
        at, what = min(zip(first, names, strict=True))
        if at < self._NEVER:
            raise ModelOutputError(f"{name}: " + self._WHAT[what].format(self.shapes[what]))
