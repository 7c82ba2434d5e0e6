"""Where an audit's numbers came from: versions, seed, command line, hashes, timing; and the
model's description for the report."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import segshield
from segshield.hashing import sha256_file
from segshield.lazy import installed_version
from segshield.models import LoadedModel


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def provenance(
    *,
    command: str,
    seed: int,
    started: str,
    seconds: float,
    loaded: LoadedModel,
    data_sha256: str,
    onnx_sha256: str | None,
) -> dict:
    """The report's provenance section (versions, seed, command, hashes, times)."""
    weights = loaded.description.get("weights")
    card = loaded.description.get("card")
    weights_sha = sha256_file(weights) if weights and Path(weights).is_file() else None
    if weights_sha is None and isinstance(card, dict):
        weights_sha = card.get("weights_sha256")
    return {
        "segshield": segshield.__version__,
        "torch": torch.__version__,
        "onnxruntime": installed_version("onnxruntime"),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "command": command,
        "seed": seed,
        "started_at": started,
        "finished_at": now(),
        "seconds": round(seconds, 2),
        "weights_sha256": weights_sha,
        "onnx_sha256": onnx_sha256,
        "data_sha256": data_sha256,
    }


def model_description(loaded: LoadedModel) -> dict:
    """The report's model section: how it was loaded, its card's name and test metrics, its
    class and parameter count."""
    model = loaded.module
    desc = {k: v for k, v in loaded.description.items() if k != "card"}
    card = loaded.description.get("card")
    if isinstance(card, dict):
        desc["name"] = card.get("name", desc.get("name"))
        desc["architecture"] = card.get("architecture")
        desc["card_test_metrics"] = card.get("test_metrics")
        desc["weights_sha256"] = card.get("weights_sha256")
    desc.setdefault("class", type(model).__name__)
    desc["parameters"] = int(sum(p.numel() for p in model.parameters()))
    return desc
