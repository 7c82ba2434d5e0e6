"""`--model path/to/file.py:fn` and `--model module:fn` from the current folder: the file is
imported by path (its siblings importable), the module without PYTHONPATH, and every failure
is one line naming the spec (a syntax error: its file and line)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from segshield.errors import ModelLoadError
from segshield.imports import import_object
from segshield.models import ModelSpec, load_model, model_from_factory

NET = """
from torch import nn
from {helper} import width

def make(out_channels=1):
    return nn.Conv2d(1, out_channels, width(), padding=1)
"""


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader puts folders on sys.path; each test gets its own copy back."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_file_factory_imports_its_sibling(tmp_path: Path) -> None:
    _write(tmp_path / "proj", "netwidth_sib.py", "def width():\n    return 3\n")
    net = _write(tmp_path / "proj", "net.py", NET.format(helper="netwidth_sib"))
    loaded = model_from_factory(f"{net}:make", out_channels=2)
    assert isinstance(loaded.module, torch.nn.Conv2d)
    assert loaded.module.out_channels == 2 and loaded.module.kernel_size == (3, 3)
    assert loaded.description["factory"] == f"{net}:make"


def test_a_relative_file_and_the_same_name_in_two_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(
        tmp_path / "a",
        "model.py",
        "def make():\n    import torch\n    return torch.nn.Identity()\n",
    )
    _write(
        tmp_path / "b", "model.py", "def make():\n    import torch\n    return torch.nn.ReLU()\n"
    )
    monkeypatch.chdir(tmp_path)
    a = load_model(ModelSpec(factory="a/model.py:make")).module
    b = load_model(ModelSpec(factory=str(tmp_path / "b" / "model.py") + ":make")).module
    assert isinstance(a, torch.nn.Identity) and isinstance(b, torch.nn.ReLU)
    # the same file named twice is one module (executed once)
    assert import_object("a/model.py:make") is import_object(f"{tmp_path / 'a' / 'model.py'}:make")


def test_a_module_in_the_current_folder_needs_no_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "cwd_factory_g7.py", "import torch\ndef make():\n    return torch.nn.Tanh()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert isinstance(model_from_factory("cwd_factory_g7:make").module, torch.nn.Tanh)


def test_a_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    bad = _write(tmp_path, "broken_syntax.py", "import torch\n\ndef make(:\n    pass\n")
    with pytest.raises(ModelLoadError) as info:
        model_from_factory(f"{bad}:make")
    msg = str(info.value)
    assert "syntax error" in msg and str(bad) in msg and "line 3" in msg
    assert len(msg.splitlines()) == 1


def test_a_syntax_error_in_a_sibling_names_the_sibling(tmp_path: Path) -> None:
    sib = _write(tmp_path, "sib_broken_g7.py", "def width(:\n")
    net = _write(tmp_path, "net_with_broken_sib.py", NET.format(helper="sib_broken_g7"))
    with pytest.raises(ModelLoadError, match=r"syntax error in .*sib_broken_g7\.py line 1"):
        model_from_factory(f"{net}:make")
    assert sib.is_file()


def test_missing_file_and_missing_attribute(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"file .*nope\.py does not exist"):
        model_from_factory(f"{tmp_path / 'nope.py'}:make")
    net = _write(tmp_path, "has_two.py", "def alpha():\n    pass\ndef beta():\n    pass\n")
    with pytest.raises(ModelLoadError, match=r"has no attribute 'gamma'.*it defines: alpha, beta"):
        model_from_factory(f"{net}:gamma")
    with pytest.raises(ModelLoadError, match=r"package\.module:factory"):
        model_from_factory(f"{net}")


def test_a_file_that_raises_while_imported(tmp_path: Path) -> None:
    bad = _write(tmp_path, "raises_g7.py", "raise RuntimeError('needs a GPU')\n")
    with pytest.raises(
        ModelLoadError, match=r"importing .*raises_g7\.py.*RuntimeError: needs a GPU"
    ):
        model_from_factory(f"{bad}:make")
    # a failed import leaves no half module behind: fixed, it imports
    bad.write_text("import torch\ndef make():\n    return torch.nn.Identity()\n")
    assert isinstance(model_from_factory(f"{bad}:make").module, torch.nn.Identity)
