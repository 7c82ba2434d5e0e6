"""The notebook front door: ``segshield.audit(model=..., data=...)``.

It takes what a notebook already holds — an ``nn.Module`` (or a factory), NumPy arrays or
tensors, a PyTorch/MONAI ``Dataset``, or a folder — turns it into the same frozen
:class:`~segshield.audits.AuditConfig` and in-memory inputs the CLI's audit uses, runs that one
audit (:func:`segshield.api.audit`), and returns an :class:`AuditResult` that displays itself
in Jupyter. Nothing here measures anything: it only adapts inputs.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segshield.errors import DataError, ModelLoadError

if TYPE_CHECKING:
    from torch import nn

    from segshield.api import ProgressFn
    from segshield.audits import AuditData
    from segshield.gate import GateResult, Policy
    from segshield.models import LoadedModel
    from segshield.results import AuditReport

LossFn = Callable[..., Any]  # (logits (N, C, ...), target) -> per-image loss (N,)


@dataclass
class AuditResult:
    """A finished audit: the typed report, the gate verdict (with a policy), the files.

    Attribute access falls through to the :class:`~segshield.results.AuditReport`, so
    ``result.cells`` and ``result.engines`` work; ``summary()``, ``to_html()``,
    ``to_markdown()`` and ``to_json()`` render it (nothing is recomputed).
    """

    report: AuditReport
    gate: GateResult | None
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy/pickle probe dunders: never the report's
            raise AttributeError(name)
        return getattr(self.report, name)

    def summary(self) -> str:
        """The compact Markdown summary (verdict, health, primary metric per cell)."""
        from segshield.api import render

        return render(self.report, "summary")

    def to_markdown(self) -> str:
        from segshield.api import render

        return render(self.report, "md")

    def to_html(self) -> str:
        """The full HTML report (images embedded from the audit folder)."""
        from segshield.api import render

        return render(self.report, "html", base_dir=self.out_dir)

    def to_json(self) -> str:
        import json

        return json.dumps(self.report.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    def _repr_markdown_(self) -> str:  # Jupyter's rich display
        return self.summary()

    def _repr_html_(self) -> str:
        # The summary, not the whole report: a notebook cell stays short; to_html() has all.
        text = html.escape(self.summary())
        return f"<pre style='white-space:pre-wrap'>{text}</pre>"

    def __repr__(self) -> str:
        verdict = (self.report.verdict or {}).get("passed") if self.report.verdict else None
        gate = "" if verdict is None else f", gate {'passed' if verdict else 'failed'}"
        return (
            f"AuditResult({len(self.report.cells)} cells on {len(self.report.engines)} "
            f"engines{gate}; reports in {self.out_dir})"
        )


def audit(
    model: nn.Module | Callable[[], nn.Module] | str | Path | None = None,
    data: Any = None,
    *,
    masks: Any = None,
    names: Sequence[str] | None = None,
    out_dir: str | Path = "segshield-out",
    policy: Policy | str | Path | None = None,
    losses: Sequence[str | LossFn] | None = None,
    progress: ProgressFn | None = None,
    **options: Any,
) -> AuditResult:
    """Audit a model on data from a notebook; returns an :class:`AuditResult`.

    model: an ``nn.Module`` (audited as it is; its mode and flags are restored), a
        zero-argument factory, a ``"pkg.module:factory"`` string, a weights / TorchScript /
        card path, or None for the bundled U-Net.
    data: images as an array or tensor (N, C, H, W) or (N, H, W) — floats in [0, 1] or uint8
        — with ``masks`` (N, 1, H, W) or (N, H, W); a ``(images, masks)`` pair; a PyTorch or
        MONAI ``Dataset`` of ``(image, mask)`` pairs or ``{"image", "label"}`` dicts; a folder
        (as ``--data``); or None for the bundled sample.
    losses: attack loss names and/or callables ``(logits, target) -> per-image loss (N,)``.
    policy: a :class:`~segshield.gate.Policy` or a policy TOML path; the verdict is in
        ``result.gate``.
    options: any :class:`~segshield.audits.AuditConfig` field, validated as the settings
        file's values are (``attacks="fgsm,pgd"``, ``epsilons="2/255,8/255"``, ``limit=4``).
    """
    from segshield import api

    overrides = {**options, "out_dir": Path(out_dir)}
    loaded, overrides = _model(model, overrides)
    audit_data, overrides = _data(data, masks, names, overrides)
    loss_names, loss_fns = _losses(losses)
    if loss_names:
        overrides["losses"] = tuple(loss_names)
    config = _config(overrides)
    gate_policy = _policy(policy)
    outcome = api.audit(
        config,
        gate_policy,
        progress=progress,
        command="segshield.audit (notebook)",
        inputs=api.Inputs(loaded, audit_data, loss_fns),
    )
    assert outcome.report is not None  # a notebook is rank 0
    return AuditResult(outcome.report, outcome.gate, config.out_dir, outcome.files)


def _config(overrides: Mapping[str, Any]):
    from segshield.audits.settings import resolve_audit_config

    config, _ = resolve_audit_config(overrides)
    return config


def _policy(policy: Policy | str | Path | None) -> Policy | None:
    if policy is None or not isinstance(policy, (str, Path)):
        return policy
    from segshield.gate.policy import policy_from_toml

    return policy_from_toml(Path(policy))


def _model(model: Any, overrides: dict[str, Any]) -> tuple[LoadedModel | None, dict[str, Any]]:
    """An in-memory model as the audit's LoadedModel; names and paths go into the config."""
    from torch import nn

    from segshield.models import LoadedModel, ModelSpec

    if model is None:
        return None, overrides
    if isinstance(model, (str, Path)):
        text = str(model)
        is_factory = ":" in text and not Path(text).exists()
        spec = ModelSpec(factory=text) if is_factory else ModelSpec(weights=Path(text))
        return None, {**overrides, "model": spec}
    if not isinstance(model, nn.Module) and callable(model):
        made = model()
        if not isinstance(made, nn.Module):
            raise ModelLoadError(
                f"the model factory {getattr(model, '__qualname__', model)!r} returned "
                f"{type(made).__name__}, expected a torch.nn.Module"
            )
        model = made
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"model must be an nn.Module, a factory, a 'pkg.module:factory' string or a file, "
            f"got {type(model).__name__}"
        )
    kind = type(model)
    description = {"source": "in-memory", "name": kind.__name__, "class": kind.__qualname__}
    return LoadedModel(model, description), overrides


def _data(
    data: Any, masks: Any, names: Sequence[str] | None, overrides: dict[str, Any]
) -> tuple[AuditData | None, dict[str, Any]]:
    """In-memory data as the audit's AuditData (validated as a folder's would be)."""
    if data is None:
        if masks is not None:
            raise DataError("masks were given without images (data=None)")
        return None, overrides
    if isinstance(data, (str, Path)):
        return None, {**overrides, "data": Path(data)}
    if isinstance(data, tuple) and len(data) == 2 and masks is None:
        data, masks = data
    if masks is None:
        images, masks = _from_dataset(data)
    else:
        images = data
    from segshield.audits.inputs import segmentation_audit_data
    from segshield.data import SegDataset

    images_np, masks_np = _images(images), _masks(masks)
    labels = tuple(names) if names is not None else _default_names(len(images_np))
    ds = SegDataset(images_np, masks_np, labels, "in-memory")
    limit = overrides.get("limit")
    return segmentation_audit_data(ds.subset(limit)), overrides


def _default_names(n: int) -> tuple[str, ...]:
    width = len(str(max(n - 1, 0)))
    return tuple(f"image_{i:0{width}d}" for i in range(n))


def _as_numpy(value: Any, what: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (or MONAI MetaTensor)
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:
        raise DataError(f"{what} must be an array or tensor, got {type(value).__name__}") from exc


def _images(value: Any) -> np.ndarray:
    """(N, C, H, W) or (N, H, W), float in [0, 1] or uint8 -> float32 (N, C, H, W)."""
    arr = _as_numpy(value, "images")
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise DataError(f"images must be (N, C, H, W) or (N, H, W), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(
            f"images of dtype {arr.dtype} need scaling to [0, 1] first (uint8 is divided by 255)"
        )
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
        raise DataError(
            f"float images must be finite and in [0, 1], got values in "
            f"[{np.nanmin(arr):.4g}, {np.nanmax(arr):.4g}]: scale them first"
        )
    return arr


def _masks(value: Any) -> np.ndarray:
    """(N, 1, H, W) or (N, H, W) integer/bool labels -> uint8 (N, 1, H, W)."""
    arr = _as_numpy(value, "masks")
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise DataError(f"masks must be (N, 1, H, W) or (N, H, W), got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isin(arr, (0.0, 1.0)).all():
        raise DataError("float masks must hold only 0 and 1")
    if arr.min() < 0 or arr.max() > 255:
        raise DataError(f"mask labels must be in 0..255, got {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8)


def _from_dataset(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """A map-style Dataset of (image, mask) pairs or {"image", "label"} dicts -> stacked."""
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise DataError(
            "data must be a folder, arrays with masks=, an (images, masks) pair or a "
            f"map-style Dataset; got {type(dataset).__name__}"
        )
    images, masks = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        if isinstance(item, Mapping):
            if "image" not in item or "label" not in item:
                raise DataError(f"dataset item {i} has keys {sorted(item)}; need image, label")
            image, mask = item["image"], item["label"]
        elif isinstance(item, (tuple, list)) and len(item) >= 2:
            image, mask = item[0], item[1]
        else:
            raise DataError(f"dataset item {i} is {type(item).__name__}; need (image, mask)")
        images.append(_as_numpy(image, f"dataset item {i}'s image"))
        masks.append(_as_numpy(mask, f"dataset item {i}'s mask"))
    if not images:
        raise DataError("the dataset is empty")
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise DataError(f"dataset images differ in shape: {sorted(shapes)[:3]}; resize them")
    return np.stack(images), np.stack(masks)


def _losses(losses: Sequence[str | LossFn] | None) -> tuple[list[str], dict[str, LossFn]]:
    """Loss names for the config, and the callables by the name each is recorded under."""
    if losses is None:
        return [], {}
    if isinstance(losses, str) or callable(losses):
        losses = [losses]  # type: ignore[list-item]
    names, fns = [], {}
    for loss in losses:
        if isinstance(loss, str):
            names.append(loss)
            continue
        if not callable(loss):
            raise DataError(f"a loss must be a name or a callable, got {type(loss).__name__}")
        name = f"{getattr(loss, '__module__', 'notebook')}:{getattr(loss, '__qualname__', 'loss')}"
        names.append(name)
        fns[name] = loss
    return names, fns
