"""Import a user's object named on the command line: ``package.module:name`` or
``path/to/file.py:name`` (a model factory, an attack loss).

This runs the user's code, which is what naming a factory or a loss asks for; nothing here
unpickles anything. ``package.module`` is looked up with the current folder on the import
path, as ``python -m`` does, so a module beside the user needs no ``PYTHONPATH``. A file is
imported by path under a unique module name, with its folder on the import path so that it
can ``import`` its sibling modules (as ``python file.py`` allows); a package-relative
``from .sibling import x`` needs the ``package.module:name`` form instead. Every failure is
one line naming the spec, and the file and line of a syntax error.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from segshield.errors import SegShieldError

__all__ = ["import_object", "is_file_spec", "split_spec"]


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0][:600] if lines else "(no message)"


def is_file_spec(module: str) -> bool:
    """Whether the module part of a spec names a file (``x.py`` or a path) or a module."""
    return module.endswith(".py") or "/" in module or os.sep in module


def split_spec(spec: str, *, what: str, example: str, error: type[Exception]) -> tuple[str, str]:
    """``"mod:attr"`` -> ``("mod", "attr")``; the last colon splits (a Windows drive keeps
    its own). Raises ``error`` when either side is empty."""
    module, sep, attr = spec.rpartition(":")
    if not sep or not module.strip() or not attr.strip():
        raise error(
            f"{what} must look like {example} or path/to/file.py:{example.split(':')[-1]}, "
            f"got {spec!r}"
        )
    return module.strip(), attr.strip()


def _syntax_message(exc: SyntaxError, spec: str, what: str) -> str:
    where = f"{exc.filename or '?'} line {exc.lineno or '?'}"
    return f"{what} {spec!r}: syntax error in {where}: {exc.msg}"


def _cwd_on_path() -> None:
    """The current folder first on sys.path, as ``python -m`` has it (a console script
    has its own bin folder there instead)."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def _module_by_name(name: str, spec: str, what: str, error: type[Exception]) -> ModuleType:
    _cwd_on_path()
    try:
        return importlib.import_module(name)
    except SyntaxError as exc:
        raise error(_syntax_message(exc, spec, what)) from exc
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise error(
                f"cannot import {name!r} for {what} {spec!r}: no module {exc.name!r} in the "
                f"current folder {os.getcwd()} or on the Python path (for a file, give "
                "path/to/file.py:NAME)"
            ) from exc
        raise error(
            f"importing {name!r} for {what} {spec!r} raised ModuleNotFoundError: {_first_line(exc)}"
        ) from exc
    except Exception as exc:  # the user's module raised while being imported
        raise error(
            f"importing {name!r} for {what} {spec!r} raised {type(exc).__name__}: "
            f"{_first_line(exc)}"
        ) from exc


def _module_from_file(path_text: str, spec: str, what: str, error: type[Exception]) -> ModuleType:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise error(f"{what} {spec!r}: file {path} does not exist")
    path = path.resolve()
    # One module per file and process: the same file named twice is executed once.
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"segshield_user_{digest}_{''.join(c if c.isalnum() else '_' for c in path.stem)}"
    if name in sys.modules:
        return sys.modules[name]
    folder = str(path.parent)
    if folder not in sys.path:  # siblings stay importable for imports inside functions
        sys.path.insert(0, folder)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise error(f"{what} {spec!r}: {path} cannot be imported as Python source")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise error(_syntax_message(exc, spec, what)) from exc
    except Exception as exc:  # the user's file raised while being executed
        del sys.modules[name]
        raise error(
            f"importing {path} for {what} {spec!r} raised {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    return module


def import_object(
    spec: str,
    *,
    what: str = "object",
    example: str = "package.module:name",
    error: type[Exception] = SegShieldError,
) -> Any:
    """The object ``spec`` names: ``package.module:attr`` or ``path/to/file.py:attr``
    (``attr`` may be dotted, e.g. ``Class.method``).

    what: how messages name it ("model factory"); example: the form shown when the spec is
    malformed; error: the exception type raised, with one line naming the spec.
    """
    module_name, attr = split_spec(spec, what=what, example=example, error=error)
    if is_file_spec(module_name):
        module = _module_from_file(module_name, spec, what, error)
    else:
        module = _module_by_name(module_name, spec, what, error)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(module) if not n.startswith("_"))
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise error(
                f"{module_name!r} has no attribute {attr!r} for {what} {spec!r} "
                f"(it defines: {shown or 'nothing public'})"
            )
        obj = getattr(obj, part)
    return obj
