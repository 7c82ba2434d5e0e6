"""A model's fingerprint: what it computes, as far as its class and tensors tell."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def module_fingerprint(module: nn.Module) -> str:
    """Hex SHA-256 of the module's class, and every parameter's and buffer's name, dtype,
    shape and bytes (state_dict order). Equal for the same weights in any process; device
    independent (tensors are hashed from CPU copies)."""
    digest = hashlib.sha256()
    cls = type(module)
    digest.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    for name, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # bytes of the raw storage: a uint8 view works for every dtype (bf16 included)
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
