"""The "pytorch" backend: the FP32 source model itself, eager on CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from segshield.engines.backends import BuildResult
from segshield.engines.torch_runner import TorchRunner
from segshield.errors import EngineUnavailableError

if TYPE_CHECKING:
    from torch import nn

    from segshield.engines.base import Runner
    from segshield.engines.build import BuildContext, BuildOptions
    from segshield.engines.records import EngineRecord
    from segshield.engines.registry import EngineSpec


class TorchBackend:
    """Nothing to build: the runner wraps the model the attacks are crafted on."""

    name = "pytorch"

    def available(self, spec: EngineSpec) -> str | None:
        return None

    def build(self, ctx: BuildContext, spec: EngineSpec) -> BuildResult:
        return BuildResult(
            notes=["the FP32 PyTorch source model (the model the attacks are crafted on)"]
        )

    def load(
        self,
        spec: EngineSpec,
        record: EngineRecord,
        model: nn.Module | None,
        options: BuildOptions,
    ) -> Runner:
        if model is None:
            raise EngineUnavailableError(
                f"the {spec.name} engine is the source model itself; pass model= to load it"
            )
        return TorchRunner(model, name=spec.name)  # where the model is (the audit places it)


BACKEND = TorchBackend()

__all__ = ["BACKEND", "TorchBackend"]
