"""Loading users' models: safetensors, state dicts, TorchScript, the bundled model, and the
refusal of pickled whole-model files unless the user opts in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from segshield.errors import ModelLoadError
from segshield.models import (
    ModelSpec,
    bundled_model,
    load_model,
    model_from_factory,
    model_from_file,
    unet,
)

FACTORY = "segshield.models.unet:unet"
KW = {"base_width": 4, "depth": 2}


@pytest.fixture
def small() -> torch.nn.Module:
    torch.manual_seed(0)
    return unet(**KW).eval()


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_bundled_model_matches_its_card() -> None:
    loaded = bundled_model()
    card = loaded.description["card"]
    assert card["architecture"]["base_width"] == 16
    assert card["test_metrics"]["dice"] > 0.85, "the shipped model must segment nuclei well"
    assert loaded.module(torch.rand(1, 1, 128, 128)).shape == (1, 1, 128, 128)
    assert not loaded.module.training


def test_factory_with_safetensors(tmp_path: Path, small: torch.nn.Module) -> None:
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(path))
    loaded = model_from_factory(FACTORY, path, **KW)
    _same(loaded.module, small)
    assert load_model(ModelSpec(FACTORY, path, KW)).description["weights"] == str(path)


@pytest.mark.parametrize("wrap", [None, "state_dict", "model_state_dict"])
def test_factory_with_state_dict(tmp_path: Path, small: torch.nn.Module, wrap: str | None) -> None:
    path = tmp_path / "w.pt"
    sd = small.state_dict()
    torch.save(sd if wrap is None else {wrap: sd, "epoch": 3}, path)
    _same(model_from_factory(FACTORY, path, **KW).module, small)


def test_weights_that_do_not_fit(tmp_path: Path, small: torch.nn.Module) -> None:
    path = tmp_path / "w.pt"
    torch.save(small.state_dict(), path)
    with pytest.raises(ModelLoadError, match="do not fit the model"):
        model_from_factory(FACTORY, path, base_width=8, depth=2)


def test_torchscript(tmp_path: Path, small: torch.nn.Module) -> None:
    path = tmp_path / "m.ts"
    torch.jit.trace(small, torch.rand(1, 1, 16, 16)).save(str(path))
    loaded = model_from_file(path)
    assert loaded.description["source"] == "torchscript"
    _same(loaded.module, small)


class _Evil:
    """Stands for any pickled object: unpickling it would run __reduce__ code."""

    def __reduce__(self):  # pragma: no cover - never executed when refused
        return (print, ("pwned",))


def test_pickled_whole_model_is_refused(tmp_path: Path, small: torch.nn.Module) -> None:
    path = tmp_path / "whole.pt"
    torch.save(small, path)
    with pytest.raises(ModelLoadError, match=r"refusing to load .* arbitrary code.*--trust-pickle"):
        model_from_file(path)
    with pytest.raises(ModelLoadError, match="refusing"):
        load_model(ModelSpec(weights=path))
    loaded = model_from_file(path, allow_pickle=True)
    _same(loaded.module, small)


def test_pickled_objects_in_a_state_dict_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "payload": _Evil()}, path)
    with pytest.raises(ModelLoadError, match="refusing to load"):
        model_from_factory(FACTORY, path, **KW)


def test_bad_factory_strings() -> None:
    with pytest.raises(ModelLoadError, match=r"package\.module:factory"):
        model_from_factory("segshield.models.unet")
    with pytest.raises(ModelLoadError, match="cannot import"):
        model_from_factory("no_such_pkg.mod:fn")
    with pytest.raises(ModelLoadError, match="has no attribute"):
        model_from_factory("segshield.models.unet:nope")


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        model_from_factory(FACTORY, tmp_path / "missing.safetensors", **KW)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(ModelLoadError, match="cannot read safetensors"):
        model_from_factory(FACTORY, bad, **KW)
    with pytest.raises(ModelLoadError, match="weights only"):
        model_from_file(bad)


def test_card_roundtrip(tmp_path: Path, small: torch.nn.Module) -> None:
    save_file(
        {k: v.contiguous() for k, v in small.state_dict().items()}, str(tmp_path / "m.safetensors")
    )
    card = {
        "name": "m",
        "architecture": {"architecture": "unet", "in_channels": 1, "out_channels": 1, **KW},
        "weights_file": "m.safetensors",
        "weights_sha256": "",
    }
    (tmp_path / "m.json").write_text(json.dumps(card))
    _same(load_model(ModelSpec(weights=tmp_path / "m.json")).module, small)


def _raises_runtime(**kwargs):
    raise RuntimeError("CUDA out of memory\nsecond line of the user's error")


def _raises_value(width: int = 1):
    raise ValueError(f"width {width} is not supported")


@pytest.mark.parametrize(
    ("name", "kwargs", "needle"),
    [
        ("_raises_runtime", {}, "_raises_runtime(): RuntimeError: CUDA out of memory"),
        ("_raises_value", {"width": 3}, "_raises_value(width=3): ValueError: width 3 is not"),
        ("_raises_value", {"nope": 1}, "TypeError"),
    ],
)
def test_a_factory_that_raises_is_a_model_error_naming_it(
    name: str, kwargs: dict, needle: str
) -> None:
    factory = f"{__name__}:{name}"
    with pytest.raises(ModelLoadError) as info:
        model_from_factory(factory, **kwargs)
    msg = str(info.value)
    assert f"model factory {factory!r} failed" in msg and needle in msg
    assert "second line" not in msg  # one line


def test_a_factory_module_that_raises_on_import(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "broken_factory_mod.py").write_text("raise RuntimeError('no GPU at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        ModelLoadError, match=r"importing 'broken_factory_mod'.*RuntimeError: no GPU"
    ):
        model_from_factory("broken_factory_mod:make")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "is not JSON (not UTF-8 text"),
        (b'{"name": 1', "is not JSON: Expecting"),
        (b"[1, 2]", "must hold a JSON object, not list"),
        (b'{"name": "m"}', "is not a segshield model card"),
        (
            b'{"name": "m", "architecture": [1], "weights_file": "w", "weights_sha256": ""}',
            "'architecture' must be a table",
        ),
    ],
)
def test_a_card_that_is_not_a_card(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "card.json"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match="card") as info:
        load_model(ModelSpec(weights=path))
    assert needle in str(info.value)


def test_trusted_pickle_that_fails_to_unpickle_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "half.pt"
    path.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ModelLoadError, match="cannot unpickle"):
        model_from_file(path, allow_pickle=True)


def test_refused_pickle_names_the_unsupported_global_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "objs.pt"
    torch.save({"weight": torch.zeros(1), "where": Path("p")}, path)
    with pytest.raises(ModelLoadError) as info:
        model_from_factory(FACTORY, path, **KW)
    msg = str(info.value)
    assert "refusing to load" in msg and "Unsupported global: GLOBAL pathlib" in msg
    assert "\n" not in msg and "\x1b[" not in msg


def test_a_file_that_is_no_model_format_is_not_called_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_bytes(b"hello, not a checkpoint")
    with pytest.raises(ModelLoadError, match=r"neither safetensors nor a torch\.save file"):
        model_from_factory(FACTORY, path, **KW)
    with pytest.raises(ModelLoadError, match=r"is not TorchScript, a torch\.save file"):
        model_from_file(path)
