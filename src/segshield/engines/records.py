"""What was built for an engine: its files (`Artifact`) and its record (`EngineRecord`).

`EngineRecord` is the one engine record of segshield: engine builds fill it, the manifest
stores it, and the audit report can store it as is. `to_dict()` is JSON-ready and
`from_dict()` ignores keys it does not know, so files written by newer versions still load.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from segshield.enums import Status
from segshield.hashing import sha256_file

STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
# Role given to the single artifact of a record that only knew `artifact`/`sha256`.
_PRIMARY_ROLE = "artifact"


@dataclass
class Artifact:
    """A file an engine consists of.

    role: "onnx", "onnx-data" (an ONNX file's external weights), "ort-optimized", "pt2",
    "plan", "calibration-cache" or "engine-cache" (a folder: sha256 and bytes None).
    path: as written (absolute after a build, relative to the manifest/report folder once
    stored).
    """

    role: str
    path: str
    sha256: str | None
    bytes: int | None = None

    @classmethod
    def of(cls, role: str, path: str | os.PathLike[str]) -> Artifact:
        """Describe the file (hash and size) or folder at `path`."""
        p = Path(path)
        if p.is_dir():
            return cls(role, str(p), None, None)
        return cls(role, str(p), sha256_file(p), p.stat().st_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        """Rebuild from `to_dict()` output; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs.setdefault("sha256", None)
        return cls(**kwargs)


@dataclass
class EngineRecord:
    """One engine: what it is, what was built, and whether it can run here.

    name: engine name ("ort-int8"). kind: backend ("pytorch", "onnxruntime", "aoti",
    "tensorrt"). precision: "fp32" | "fp16" | "bf16" | "int8". device: "cpu" | "cuda".
    providers: what actually runs (torch device, or ORT execution providers in use).
    status/reason: OK, or UNAVAILABLE/ERROR with the reason. artifacts: files, the one the
    runner executes first. build_seconds: build plus load time. parity: clean parity against
    the PyTorch source (`parity_stats`). health: the engine's clean agreement with the source
    on the audited images (`segshield.engines.health.EngineHealth.to_dict()`; None until an
    audit measured it). notes: report-ready sentences (e.g. what FP16 on a
    CPU really computes). details: exporter facts the loader needs again (input size, batch
    limits, calibration digest).
    """

    name: str
    kind: str
    precision: str = "fp32"
    device: str | None = None
    providers: list[str] = field(default_factory=list)
    status: Status = Status.OK
    reason: str | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    build_seconds: float | None = None
    parity: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Accept plain strings ("ok") from callers and files; store the enum.
        self.status = Status(self.status)

    @property
    def primary(self) -> Artifact | None:
        """The artifact the runner executes (first one), or None (pytorch, unavailable)."""
        return self.artifacts[0] if self.artifacts else None

    @property
    def artifact(self) -> str | None:
        """Path of the primary artifact, or None."""
        primary = self.primary
        return primary.path if primary else None

    @property
    def sha256(self) -> str | None:
        """SHA-256 of the primary artifact, or None."""
        primary = self.primary
        return primary.sha256 if primary else None

    def relative_to(self, base: str | os.PathLike[str]) -> EngineRecord:
        """A copy whose artifact paths are relative to `base` where they lie inside it
        (POSIX separators), so the folder holding record and files can be moved."""
        root = Path(base).resolve()
        artifacts = [replace(a, path=relative_path(a.path, root)) for a in self.artifacts]
        return replace(
            self,
            providers=list(self.providers),
            artifacts=artifacts,
            notes=list(self.notes),
            details=dict(self.details),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: every field plus `artifact` and `sha256` of the primary file."""
        data = asdict(self)
        data["status"] = str(self.status)
        data["artifact"] = self.artifact
        data["sha256"] = self.sha256
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineRecord:
        """Rebuild from `to_dict()` output (or an older report's engine entry).

        Unknown keys are ignored. An entry with `artifact`/`sha256` but no `artifacts` list
        gets one artifact with role "artifact", so `primary` keeps pointing at the file.
        """
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        artifacts = [Artifact.from_dict(a) for a in data.get("artifacts") or []]
        if not artifacts and data.get("artifact"):
            artifacts = [Artifact(_PRIMARY_ROLE, str(data["artifact"]), data.get("sha256"))]
        kwargs["artifacts"] = artifacts
        for key in ("providers", "notes"):
            kwargs[key] = list(kwargs.get(key) or [])
        kwargs["details"] = dict(kwargs.get("details") or {})
        return cls(**kwargs)


# The name engine builds used before the record was shared with the audit report.
EngineBuildRecord = EngineRecord


def relative_path(path: str, base: str | os.PathLike[str]) -> str:
    """`path` relative to `base` (POSIX separators) when inside it, else unchanged."""
    try:
        return Path(path).resolve().relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return path


__all__ = ["STATUSES", "Artifact", "EngineBuildRecord", "EngineRecord", "relative_path"]
