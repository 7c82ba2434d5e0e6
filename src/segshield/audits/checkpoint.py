"""What keeps an audit's finished work: each finished cell on disk as it completes, resumed
by the next run of the same audit; a lock so that two audits never share an output folder;
and the previous run's reports moved aside so that a failed re-run never leaves an older
report looking current.

Layout in the output folder::

    .segshield.lock          the running audit (pid, host, start, command)
    cells/0003-<hash>.json   one finished cell: {"key", "id", "cell"}
    previous/                the reports (and cells of another configuration) of the run before
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

from segshield.errors import SegShieldError
from segshield.hashing import canonical_json, sha256_bytes
from segshield.results import AuditCell
from segshield.results.types import clean_json

from .config import RUN_CONTROL, AuditConfig

log = logging.getLogger(__name__)

LOCK_NAME = ".segshield.lock"
CELLS_DIR = "cells"
PREVIOUS_DIR = "previous"
CHECKPOINT_VERSION = 2  # 2: the functions' code is part of the key
# A lock file still empty after this long was left by a process killed while writing it.
_EMPTY_LOCK_GRACE_S = 60.0
_held: set[Path] = set()  # output folders this process holds (the lock is re-entrant)


class OutputBusyError(SegShieldError):
    """Another audit holds the output folder."""


def audit_key(
    config: AuditConfig,
    *,
    model_fingerprint: str,
    data_sha256: str,
    functions: Sequence[Callable] = (),
) -> str:
    """What a finished cell depends on: every setting but the run-control ones, the model's
    weights, the data, the library versions and the functions passed in (the comparisons and
    users' attack losses, by qualified name and code: an edited loss is not the same loss);
    SHA-256 hex."""
    import onnxruntime
    import torch

    import segshield

    settings = {k: v for k, v in config.to_dict().items() if k not in RUN_CONTROL}
    return sha256_bytes(
        canonical_json(
            {
                "version": CHECKPOINT_VERSION,
                "settings": clean_json(settings),
                "model": model_fingerprint,
                "data": data_sha256,
                "functions": [_function_id(f) for f in functions],
                "libraries": [segshield.__version__, torch.__version__, onnxruntime.__version__],
            }
        )
    )


def _function_id(fn: Callable) -> str:
    """``module.qualname@<hash of its bytecode and constants>`` (a callable object without
    code, e.g. a functools.partial or an nn.Module loss, by its name and type only)."""
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
    code = getattr(fn, "__code__", None)
    if code is None:
        return name
    consts = repr([c for c in code.co_consts if not hasattr(c, "co_code")])
    return f"{name}@{sha256_bytes(code.co_code + consts.encode())[:16]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _holder(path: Path) -> dict | None:
    """The lock's content; None when it is stale (its process is gone, or it stayed empty)."""
    try:
        text = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except ValueError:  # being written right now, or left half-written by a killed process
        return None if age > _EMPTY_LOCK_GRACE_S else {"pid": "?", "host": "?", "started": "now"}
    same_host = info.get("host") == socket.gethostname()
    if same_host and isinstance(info.get("pid"), int) and not _alive(info["pid"]):
        return None
    return info


def _acquire(path: Path) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv),
    }
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is None:
                log.warning("removing the stale lock %s (its audit is gone)", path)
                path.unlink(missing_ok=True)
                continue
            raise OutputBusyError(
                f"--out {path.parent} is in use by another audit (pid {holder.get('pid')} on "
                f"{holder.get('host')}, since {holder.get('started')}); wait for it, choose "
                f"another --out, or delete {path.name} there if no audit runs"
            ) from None
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh)
        return
    raise OutputBusyError(f"--out {path.parent}: could not take the lock {path.name}")


@contextlib.contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir`` for this audit (re-entrant within a process). A lock left by a
    killed audit on this host is taken over; one held by a live audit raises
    OutputBusyError naming the holder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = out_dir.resolve()
    if key in _held:
        yield
        return
    path = out_dir / LOCK_NAME
    _acquire(path)
    _held.add(key)
    try:
        yield
    finally:
        _held.discard(key)
        path.unlink(missing_ok=True)


def retire(out_dir: Path, names: Sequence[str], into: Path = Path(PREVIOUS_DIR)) -> list[str]:
    """Move the files ``names`` of an earlier run into ``out_dir/into`` (``previous/``),
    replacing what is there; returns the names moved. Nothing is deleted."""
    moved = []
    for name in names:
        src = Path(out_dir) / name
        if src.exists():
            dest = Path(out_dir) / into / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(src, dest)
            moved.append(name)
    if moved:
        log.info("moved the previous run's %s to %s", ", ".join(moved), Path(out_dir) / into)
    return moved


class CellStore:
    """The finished cells of one audit configuration (``key``) in ``out_dir/cells``."""

    def __init__(self, out_dir: Path, key: str) -> None:
        self.dir = Path(out_dir) / CELLS_DIR
        self.key = key

    def _path(self, index: int, cell_id: str) -> Path:
        return self.dir / f"{index:04d}-{sha256_bytes(cell_id.encode())[:12]}.json"

    def save(self, index: int, cell: AuditCell) -> None:
        """Write one finished cell atomically (a killed write leaves no half file)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(index, cell.id)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        payload = {"key": self.key, "id": cell.id, "cell": clean_json(asdict(cell))}
        tmp.write_text(json.dumps(payload, allow_nan=False))
        os.replace(tmp, path)

    def load(self, resume: bool) -> dict[str, AuditCell]:
        """The finished OK cells of this configuration by id (none unless ``resume``).
        Cell files of another configuration (all of them, without ``resume``) move to
        ``previous/cells``; unreadable ones are left and recomputed."""
        if not self.dir.is_dir():
            return {}
        found: dict[str, AuditCell] = {}
        for path in sorted(self.dir.glob("*.json")):
            try:
                raw = json.loads(path.read_text())
                ours = resume and raw.get("key") == self.key
                cell = AuditCell.from_dict(raw["cell"]) if ours else None
            except (ValueError, KeyError, TypeError, OSError) as exc:
                log.warning("ignoring the unreadable cell file %s (%s)", path, exc)
                continue
            if cell is None:
                retire(self.dir, [path.name], into=Path("..") / PREVIOUS_DIR / CELLS_DIR)
            elif cell.status == "ok" and cell.id == raw.get("id"):
                found[cell.id] = cell
        return found
