"""Model card: the JSON written beside trained weights (architecture, data, training, metrics)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from segshield.errors import ModelLoadError

CARD_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ModelCard:
    """What a set of weights is: architecture config, data it saw, how it was trained, how well
    it segments its test split. `weights_sha256` ties the card to one weights file."""

    name: str
    architecture: dict
    weights_file: str
    weights_sha256: str
    data: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    test_metrics: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    command: str = ""
    created_at: str = ""
    schema_version: int = CARD_SCHEMA_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelLoadError(f"model card {path} does not exist") from exc
        except UnicodeDecodeError as exc:
            raise ModelLoadError(
                f"model card {path} is not JSON (not UTF-8 text: {exc.reason} at byte "
                f"{exc.start}); pass the weights file itself with --weights, or a segshield "
                "model card .json"
            ) from exc
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"model card {path} is not JSON: {exc}") from exc
        except OSError as exc:
            raise ModelLoadError(f"cannot read model card {path}: {exc.strerror or exc}") from exc
        if not isinstance(raw, dict):
            raise ModelLoadError(
                f"model card {path} must hold a JSON object, not {type(raw).__name__}"
            )
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ModelLoadError(f"model card {path} is not a segshield model card: {exc}") from exc
