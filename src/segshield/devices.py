"""Device selection for the source model and the attacks: ``cpu``, ``cuda``, ``cuda:N`` or
``auto`` (the first CUDA device when there is one, else the CPU). Engines choose their own
device through their spec (ORT providers, TensorRT); this is the PyTorch side only."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch
from torch import nn

from segshield.errors import SegShieldError

_SPEC = re.compile(r"cpu|auto|cuda(:[0-9]+)?")


def resolve_device(spec: str) -> torch.device:
    """The torch device ``spec`` names, checked against this machine.

    Raises:
        SegShieldError: an unknown spec, CUDA asked for on a machine without it, or a CUDA
            index beyond the devices there (the message says what there is).
    """
    text = str(spec).strip().lower()
    if not _SPEC.fullmatch(text):
        raise SegShieldError(f"--device must be cpu, cuda, cuda:N or auto, got {spec!r}")
    if text == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if text == "auto":
        return torch.device("cuda:0" if available else "cpu")
    if not available:
        raise SegShieldError(
            f"--device {spec}: CUDA is not available here (torch {torch.__version__}, "
            f"built {'with' if torch.backends.cuda.is_built() else 'without'} CUDA); "
            "use --device cpu or auto"
        )
    index = int(text.split(":")[1]) if ":" in text else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise SegShieldError(
            f"--device {spec}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
        )
    return torch.device("cuda", index)


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for one with neither)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def placed(
    module: nn.Module, device: torch.device, channels_last: bool = False
) -> Iterator[nn.Module]:
    """Move ``module`` to ``device`` (and channels-last memory format) for the block, then
    back where it was: a notebook's model is left as it was given."""
    home = module_device(module)
    module.to(device)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    try:
        yield module
    finally:
        module.to(home)
        if channels_last:
            module.to(memory_format=torch.contiguous_format)
