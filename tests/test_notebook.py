"""The notebook API, ``segshield.audit(model=..., data=...)``: in-memory models, arrays,
tensors and Datasets go through the same audit as the CLI's; the README's example runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import segshield
from segshield.audits.settings import SettingsError
from segshield.errors import DataError, ModelLoadError, SegShieldError
from segshield.notebook import AuditResult

README = Path(__file__).resolve().parents[1] / "README.md"

# The smallest audit that still crafts, replays on ONNX Runtime and evaluates.
QUICK = {
    "attacks": "fgsm",
    "epsilons": "8/255",
    "engines": "pytorch,ort-fp32",
    "bench": False,
    "checks": False,
    "n_boot": 0,
    "panels": 0,
    "batch_size": 4,
}


def _arrays(n: int = 3, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    masks[:, 8:20, 10:24] = 1
    return images, masks


@pytest.mark.slow
def test_an_in_memory_module_and_arrays_are_audited(tmp_path: Path, conv_net) -> None:
    images, masks = _arrays()
    result = segshield.audit(conv_net(2), images, masks=masks, out_dir=tmp_path, **QUICK)
    assert isinstance(result, AuditResult)
    assert result.dataset["source"] == "in-memory"
    assert result.dataset["n_images"] == 3
    assert result.model["source"] == "in-memory"
    assert result.model["name"] == "Sequential"
    # attribute access falls through to the typed report
    assert [c.attack for c in result.cells] == ["fgsm"]
    engines = {e.name: e.status for e in result.engines}
    assert set(engines) == {"pytorch", "ort-fp32"}
    assert (tmp_path / "report.json").is_file() and (tmp_path / "report.html").is_file()
    assert "<html" in result.to_html().lower()
    assert result.to_markdown().startswith("#")
    summary = result.summary()
    assert "fgsm" in summary.lower()
    assert result._repr_markdown_() == summary
    assert "<pre" in result._repr_html_()
    assert "1 cells on 2 engines" in repr(result)


@pytest.mark.slow
def test_a_dataset_of_dicts_and_tensors_gives_the_same_numbers(tmp_path: Path, conv_net) -> None:
    """A MONAI-style Dataset of {"image", "label"} tensors is the arrays it holds."""
    images, masks = _arrays()
    as_float = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    dataset = [{"image": as_float[i], "label": torch.from_numpy(masks[i][None])} for i in range(3)]
    a = segshield.audit(conv_net(2), dataset, out_dir=tmp_path / "a", **QUICK)
    b = segshield.audit(conv_net(2), (images, masks), out_dir=tmp_path / "b", **QUICK)
    assert a.dataset["sha256"] == b.dataset["sha256"]
    dice_a = {k: e.metrics.dice for k, e in a.cells[0].engines.items()}
    dice_b = {k: e.metrics.dice for k, e in b.cells[0].engines.items()}
    assert dice_a == dice_b


@pytest.mark.slow
def test_a_custom_loss_callable_is_attacked_with_and_recorded(tmp_path: Path, conv_net) -> None:
    calls = []

    def mean_logit(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(logits.shape))
        return logits.flatten(1).mean(1)

    images, masks = _arrays()
    result = segshield.audit(
        conv_net(2), images, masks=masks, out_dir=tmp_path, losses=[mean_logit], **QUICK
    )
    (cell,) = result.cells
    assert cell.loss.endswith(
        ":test_a_custom_loss_callable_is_attacked_with_and_recorded.<locals>.mean_logit"
    )
    assert calls, "the attack never called the user's loss"


def test_images_outside_the_unit_range_are_refused(tmp_path: Path, conv_net) -> None:
    images, masks = _arrays()
    with pytest.raises(DataError, match=r"in \[0, 1\].*scale them first"):
        segshield.audit(conv_net(2), images * 2.0, masks=masks, out_dir=tmp_path)


def test_images_and_masks_of_different_sizes_name_both_shapes(tmp_path: Path, conv_net) -> None:
    images, masks = _arrays()
    with pytest.raises(DataError, match=r"\(3, 1, 32, 32\).*\(3, 1, 16, 16\)"):
        segshield.audit(conv_net(2), images, masks=masks[:, :16, :16], out_dir=tmp_path)


def test_a_factory_that_returns_no_module_is_refused(tmp_path: Path) -> None:
    images, masks = _arrays()
    with pytest.raises(ModelLoadError, match=r"expected a torch\.nn\.Module"):
        segshield.audit(lambda: "not a model", images, masks=masks, out_dir=tmp_path)


def test_options_are_validated_as_settings_are(tmp_path: Path, conv_net) -> None:
    images, masks = _arrays()
    with pytest.raises(SettingsError, match="steps"):
        segshield.audit(conv_net(2), images, masks=masks, out_dir=tmp_path, steps=0)
    with pytest.raises(SegShieldError, match="unknown attack"):
        segshield.audit(conv_net(2), images, masks=masks, out_dir=tmp_path, attacks="nope")


def test_a_dataset_item_without_a_label_is_refused(tmp_path: Path, conv_net) -> None:
    with pytest.raises(DataError, match="need image, label"):
        segshield.audit(conv_net(2), [{"image": np.zeros((1, 8, 8))}], out_dir=tmp_path)


def _readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- notebook-example -->\s*```python\n(.*?)```", text, re.S)
    assert found, "README.md lost its notebook example (marked <!-- notebook-example -->)"
    return found.group(1)


@pytest.mark.slow
def test_the_readme_notebook_example_runs(tmp_path: Path, monkeypatch) -> None:
    """Executed, not parsed: the example a reader copies into a notebook must work."""
    code = _readme_example()
    assert len(code.strip().splitlines()) <= 14
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md:notebook-example", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, AuditResult)
    assert result.cells and all(c.status == "ok" for c in result.cells)
    assert Path(namespace["out"]).joinpath("report.html").is_file()
