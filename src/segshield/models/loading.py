"""Loaders for the source model: `model_from_factory`, `model_from_torchscript`,
`model_from_file`, `bundled_model`, and `load_model` (the one the audit calls).

Security: a pickled checkpoint can run arbitrary code when loaded. State dicts are loaded with
`torch.load(weights_only=True)`; a pickled whole-model file is refused unless the caller passes
`allow_pickle=True` (the CLI's `--trust-pickle`).
"""

from __future__ import annotations

import logging
import re
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segshield.errors import ModelLoadError
from segshield.imports import import_object
from segshield.models.card import ModelCard
from segshield.models.classifier import SmallCNN
from segshield.models.unet import UNet, UNetConfig

log = logging.getLogger(__name__)

BUNDLED_MODEL = "unet_nuclei"

_PICKLE_HELP = (
    "it is a pickled Python object, and unpickling an untrusted file can run arbitrary code. "
    "Save a state dict (torch.save(model.state_dict(), path)) or safetensors instead, or pass "
    "--trust-pickle (allow_pickle=True) if you trust where this file came from"
)


@dataclass(frozen=True)
class ModelSpec:
    """How to obtain the source model.

    factory: "package.module:callable" (the current folder is on the import path) or
    "path/to/file.py:callable", returning an nn.Module; or None.
    weights: safetensors / state-dict file for the factory's model, or a TorchScript file
    (with no factory), or None for the bundled model when factory is also None.
    """

    factory: str | None = None
    weights: Path | None = None
    factory_kwargs: dict[str, Any] = field(default_factory=dict)
    allow_pickle: bool = False


@dataclass
class LoadedModel:
    """A model in eval mode plus what the report needs to know about it."""

    module: nn.Module
    description: dict


def _import_factory(spec: str) -> Any:
    """The callable ``package.module:factory`` or ``path/to/file.py:factory`` names (the
    current folder is on the import path; see :mod:`segshield.imports`)."""
    obj = import_object(
        spec, what="model factory", example="package.module:factory", error=ModelLoadError
    )
    if not callable(obj):
        raise ModelLoadError(f"model factory {spec!r} is not callable")
    return obj


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0][:600] if lines else "(no message)"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _unpickler_reason(exc: BaseException) -> str:
    """The one informative sentence of torch's weights-only refusal ("Unsupported global:
    GLOBAL pathlib.PosixPath ..."), without its terminal colour codes."""
    text = _ANSI.sub("", str(exc))
    for line in text.splitlines():
        if "WeightsUnpickler error:" in line:
            reason = line.split("WeightsUnpickler error:", 1)[1].strip()
            return reason.split(". ", 1)[0].rstrip(".")
    return _first_line(_ANSI.sub("", str(exc)))


def _looks_like_torch_save(path: Path) -> bool:
    """A torch.save file is a zip archive (the default since torch 1.6) or a raw pickle
    (protocol 2+ starts with 0x80)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def state_dict_from_file(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a torch.save file (weights_only unless allowed)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read safetensors file {path}: {exc}") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if not _looks_like_torch_save(path):
            raise ModelLoadError(
                f"cannot read weights {path}: it is neither safetensors nor a torch.save file "
                f"({type(exc).__name__}: {_first_line(exc)})"
            ) from exc
        if not allow_pickle:
            raise ModelLoadError(
                f"refusing to load {path}: {_PICKLE_HELP} ({_unpickler_reason(exc)})"
            ) from exc
        log.warning("loading %s with full unpickling (allow_pickle=True)", path)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc2:  # unpickling runs the file's code: anything can be raised
            raise ModelLoadError(
                f"cannot unpickle {path}: {type(exc2).__name__}: {_first_line(exc2)}"
            ) from exc2
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise ModelLoadError(f"{path} holds no state dict of tensors (found {type(obj).__name__})")


def _load_state(module: nn.Module, state: dict[str, torch.Tensor], origin: Path) -> None:
    try:
        result = module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:4]
        raise ModelLoadError(
            f"weights {origin} do not fit the model: {' '.join(first)[:600]}"
        ) from exc
    del result


def build_from_factory(factory: str, **kwargs: Any) -> nn.Module:
    """``factory(**kwargs)``: the user's freshly built (untrained) nn.Module, in the mode the
    factory left it. Raises ModelLoadError naming the call when it fails or returns no module."""
    fn = _import_factory(factory)
    try:
        module = fn(**kwargs)
    except Exception as exc:  # the user's code: any error it raises is a model error
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ModelLoadError(
            f"model factory {factory!r} failed when called as {factory.rpartition(':')[2]}"
            f"({shown}): {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"model factory {factory!r} returned {type(module).__name__}")
    return module


def model_from_factory(
    factory: str, weights: Path | None = None, allow_pickle: bool = False, **kwargs: Any
) -> LoadedModel:
    """Build `package.module:callable(**kwargs)` (or `path/to/file.py:callable`) and load
    `weights` into it (strict)."""
    module = build_from_factory(factory, **kwargs)
    desc: dict[str, Any] = {"source": "factory", "factory": factory, "factory_kwargs": kwargs}
    if weights is not None:
        _load_state(module, state_dict_from_file(Path(weights), allow_pickle), Path(weights))
        desc["weights"] = str(weights)
    else:
        log.warning("model %s built without weights: it is randomly initialised", factory)
    return LoadedModel(module.eval(), desc)


def model_from_file(path: Path, allow_pickle: bool = False) -> LoadedModel:
    """A TorchScript archive, or (only with allow_pickle) a pickled whole nn.Module."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    if _is_torchscript(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as exc:
            raise ModelLoadError(f"cannot load TorchScript file {path}: {exc}") from exc
        return LoadedModel(module.eval(), {"source": "torchscript", "weights": str(path)})
    if path.suffix == ".safetensors":
        raise ModelLoadError(
            f"{path} holds weights only: also pass --model package.module:factory to build the "
            "network they belong to"
        )
    if not _looks_like_torch_save(path):
        raise ModelLoadError(
            f"cannot read model {path}: it is not TorchScript, a torch.save file, safetensors "
            "(with --model) or a segshield model card (.json)"
        )
    if not allow_pickle:
        raise ModelLoadError(f"refusing to load {path} as a whole model: {_PICKLE_HELP}")
    log.warning("unpickling whole model %s (allow_pickle=True)", path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling runs the file's code: anything can be raised
        raise ModelLoadError(
            f"cannot unpickle {path}: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    if not isinstance(obj, nn.Module):
        raise ModelLoadError(f"{path} unpickled to {type(obj).__name__}, not a torch nn.Module")
    return LoadedModel(obj.eval(), {"source": "pickle", "weights": str(path)})


def bundled_model_dir() -> Path:
    return Path(str(resources.files("segshield.models") / "resources"))


def model_from_card(card_path: Path) -> LoadedModel:
    """A segshield model (U-Net or SmallCNN classifier) from its model card and the
    safetensors file the card names."""
    card = ModelCard.read(card_path)
    if not isinstance(card.architecture, dict) or not isinstance(card.weights_file, str):
        raise ModelLoadError(
            f"{card_path}: not a segshield model card ('architecture' must be a table and "
            "'weights_file' a file name)"
        )
    kind = card.architecture.get("architecture", "unet")
    arch = {k: v for k, v in card.architecture.items() if k != "architecture"}
    if kind == "factory":
        return _model_from_factory_card(card, Path(card_path), arch)
    try:
        if kind == "unet":
            module: nn.Module = UNet(UNetConfig(**arch))
        elif kind == "small_cnn":
            module = SmallCNN(**arch)
        else:
            raise ModelLoadError(f"{card_path}: unknown architecture {kind!r}")
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{card_path}: bad architecture {card.architecture!r}: {exc}") from exc
    weights = Path(card_path).parent / card.weights_file
    _load_state(module, state_dict_from_file(weights), weights)
    return LoadedModel(
        module.eval(),
        {"source": "card", "name": card.name, "weights": str(weights), "card": card.to_dict()},
    )


def _model_from_factory_card(card: ModelCard, card_path: Path, arch: dict) -> LoadedModel:
    """A card ``segshield train --model SPEC`` wrote: the factory rebuilt with its recorded
    keyword arguments, the card's weights loaded. A relative ``file.py:fn`` factory is found
    from the current folder or, failing that, from the card's folder."""
    spec, kwargs = arch.get("factory"), arch.get("factory_kwargs") or {}
    if not isinstance(spec, str) or not isinstance(kwargs, dict):
        raise ModelLoadError(f"{card_path}: a factory card needs 'factory' (a string)")
    module, _, attr = spec.rpartition(":")
    if module.endswith(".py") and not Path(module).is_absolute() and not Path(module).is_file():
        beside = card_path.parent / module
        if beside.is_file():
            spec = f"{beside}:{attr}"
    assert isinstance(card.weights_file, str)
    loaded = model_from_factory(spec, card_path.parent / card.weights_file, **kwargs)
    loaded.description.update(source="card", name=card.name, card=card.to_dict())
    return loaded


def bundled_model() -> LoadedModel:
    """The small U-Net shipped with segshield, trained on the bundled nuclei tiles."""
    card = bundled_model_dir() / f"{BUNDLED_MODEL}.json"
    if not card.is_file():
        raise ModelLoadError(f"the bundled model card {card} is missing from this installation")
    loaded = model_from_card(card)
    loaded.description["source"] = "bundled"
    return loaded


def load_model(spec: ModelSpec) -> LoadedModel:
    """Dispatch on the spec: bundled, factory (+ weights), or a model file."""
    if spec.factory is None and spec.weights is None:
        return bundled_model()
    if spec.factory is not None:
        return model_from_factory(
            spec.factory, spec.weights, spec.allow_pickle, **spec.factory_kwargs
        )
    assert spec.weights is not None
    if Path(spec.weights).suffix == ".json":
        return model_from_card(Path(spec.weights))
    return model_from_file(Path(spec.weights), spec.allow_pickle)
