"""report.json on disk: strict, pretty, sorted JSON written atomically; read back typed."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from segshield.errors import ReportError
from segshield.results import AuditReport
from segshield.results.integrity import content_hash


def _reject_constant(name: str) -> None:
    # report.json is strict JSON: NaN/Infinity are written as null, so one here is corruption.
    raise ValueError(f"non-standard JSON constant {name}")


def write_json(report: AuditReport, path: str | Path) -> Path:
    """Write ``report.to_dict()`` as indented JSON with sorted keys; NaN becomes null.

    Sets ``report.integrity`` (and the file's ``integrity``) to the content hash of what is
    written (:func:`segshield.results.integrity.content_hash`: every section but ``verdict``
    and ``integrity``). The file is replaced atomically so a crash never leaves a
    half-written report.
    """
    path = Path(path)
    raw = report.to_dict()
    raw["integrity"] = report.integrity = content_hash(raw)
    text = json.dumps(raw, indent=2, sort_keys=True, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_report(path: str | Path) -> AuditReport:
    """Read a report.json; every failure is a ReportError naming the path."""
    return report_from_json(read_report_json(path), path)


def report_from_json(raw: Any, path: str | Path) -> AuditReport:
    """The typed report of a report.json's parsed JSON; a ReportError names ``path``."""
    try:
        return AuditReport.from_dict(raw)
    except ReportError as exc:
        raise ReportError(f"{path}: {exc}") from exc


def read_report_json(path: str | Path) -> Any:
    """The parsed JSON of a report.json, as written (strict JSON: NaN/Infinity refused);
    every failure is a ReportError naming the path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: report file not found") from exc
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: report is not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise ReportError(f"{path}: cannot read report ({exc.strerror or exc})") from exc
    try:
        raw = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except ValueError as exc:
        raise ReportError(f"{path}: not strict JSON ({exc})") from exc
    return raw
