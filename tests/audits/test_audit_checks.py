"""The gradient-masking / weak-evaluation checks (audits/checks.py, audits/probes.py): cell
checks on hand-built cells with exact messages, probe checks on tiny seeded models (a smooth
one the attacks genuinely beat, and one that masks its gradients by quantising its input)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from segshield.audits.checks import (
    CheckTolerances,
    eps_monotonicity,
    evaluation_checks,
    one_step_vs_iterative,
    probe_warnings,
)
from segshield.audits.config import AuditConfig
from segshield.audits.craft import craft_group
from segshield.audits.plan import plan_groups
from segshield.enums import Status
from segshield.results import AuditCell, EngineEval, Metrics, PerImage
from segshield.tasks import Task, make_task, metrics_record, per_image_record

E1, E2, E4, E8 = 1 / 255, 2 / 255, 4 / 255, 8 / 255


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


# ------------------------------------------------------------------------- hand-built cells


def _cell(
    attack: str,
    eps: float,
    values: dict[str, float],
    *,
    loss: str = "bce",
    metric: str = "dice",
    status: Status = Status.OK,
) -> AuditCell:
    engines = {
        name: EngineEval(name, metrics=Metrics(**{metric: v}), per_image=PerImage(dice=[v]))
        for name, v in values.items()
    }
    cell = AuditCell(AuditCell.make_id(attack, loss, eps), attack, loss, eps, engines=engines)
    cell.status = status
    return cell


def test_non_monotone_eps_warns_per_cell_with_the_evidence() -> None:
    cells = [
        _cell("pgd", E1, {"pytorch": 0.60, "onnxruntime": 0.60}),
        _cell("pgd", E2, {"pytorch": 0.50, "onnxruntime": 0.55}),
        _cell("pgd", E4, {"pytorch": 0.55, "onnxruntime": 0.50}),
        _cell("pgd", E8, {"pytorch": 0.40, "onnxruntime": 0.45}),
        # a failed cell is never evidence, whatever it holds
        _cell("pgd", 16 / 255, {"pytorch": 0.90}, status=Status.ERROR),
        # within the tolerance
        _cell("bim", E1, {"pytorch": 0.500}),
        _cell("bim", E2, {"pytorch": 0.505}),
        # a targeted attack aims at its target: its Dice to the truth may rise with ε
        _cell("asma", E1, {"pytorch": 0.30}),
        _cell("asma", E8, {"pytorch": 0.70}),
    ]
    warnings = eps_monotonicity(cells, "dice")
    assert len(warnings) == 1
    w = warnings[0]
    assert w["message"] == (
        "pgd/bce at ε=4/255 on pytorch: Dice 0.550 is higher than 0.500 at ε=2/255 "
        "(+0.050, tolerance 0.01): a larger budget made the attack weaker."
    )
    assert {k: w[k] for k in ("check", "attack", "loss", "epsilon", "engine")} == {
        "check": "non_monotone_eps", "attack": "pgd", "loss": "bce", "epsilon": E4,
        "engine": "pytorch",
    }  # fmt: skip
    assert w["evidence"] == {
        "metric": "dice", "value": 0.55, "epsilon_low": E2, "value_low": 0.5,
        "rise": pytest.approx(0.05), "tolerance": 0.01,
    }  # fmt: skip
    # a looser tolerance silences it
    assert eps_monotonicity(cells, "dice", CheckTolerances(eps_rise=0.06)) == []


def test_non_monotone_eps_on_a_classifier_reads_accuracy() -> None:
    cells = [
        _cell("fgsm", 0.0, {"pytorch": 0.9}, metric="accuracy"),
        _cell("fgsm", 0.1, {"pytorch": 0.2}, metric="accuracy"),
        _cell("fgsm", 0.3, {"pytorch": 0.5}, metric="accuracy"),
    ]
    (w,) = eps_monotonicity(cells, "accuracy")
    assert w["message"] == (
        "fgsm/bce at ε=0.3 on pytorch: accuracy 0.500 is higher than 0.200 at ε=0.1 "
        "(+0.300, tolerance 0.01): a larger budget made the attack weaker."
    )


def test_iterative_weaker_than_one_step_warns_on_the_source_only() -> None:
    cells = [
        _cell("fgsm", E4, {"pytorch": 0.30, "onnxruntime": 0.30}),
        _cell("fgsm", E8, {"pytorch": 0.20}),
        _cell("bim", E4, {"pytorch": 0.35}),  # weaker than FGSM by 0.05: warns
        _cell("bim", E8, {"pytorch": 0.205}),  # within the tolerance
        _cell("pgd", E4, {"pytorch": 0.25, "onnxruntime": 0.60}),  # transfer is not checked
        _cell("dag", E4, {"pytorch": 0.90}),  # its own objective and step: not comparable
        _cell("pgd", E4, {"pytorch": 0.90}, loss="dice"),  # no FGSM with this loss
        _cell("bim", E4, {"pytorch": 0.90}, status=Status.ERROR),
    ]
    warnings = one_step_vs_iterative(cells, "dice")
    assert len(warnings) == 1
    w = warnings[0]
    assert w["message"] == (
        "bim/bce at ε=4/255 on pytorch: Dice 0.350 vs 0.300 after one-step fgsm (+0.050, "
        "tolerance 0.01): the iterative attack is weaker than a single step."
    )
    assert (w["check"], w["attack"], w["loss"], w["epsilon"], w["engine"]) == (
        "more_steps_weaker", "bim", "bce", E4, "pytorch",
    )  # fmt: skip
    assert w["evidence"] == {
        "metric": "dice", "value": 0.35, "one_step_attack": "fgsm", "one_step_value": 0.3,
        "gap": pytest.approx(0.05), "tolerance": 0.01,
    }  # fmt: skip


def test_probe_warnings_from_measurements() -> None:
    """The probe rules on a hand-written probes record: exact messages and evidence."""
    probes = {
        "images": 4,
        "metric": "dice",
        "clean": {"dice": 0.9, "per_image_mean": 0.9},
        "unbounded": {"attack": "pgd", "loss": "bce", "epsilon": 1.0, "steps": 10,
                      "alpha": 0.2, "dice": 0.5, "per_image_mean": 0.5},
        "steps": {"attack": "pgd", "loss": "bce", "epsilon": E8, "runs": [
            {"steps": 10, "from": "cell", "dice": None, "per_image_mean": 0.5},
            {"steps": 40, "from": "probe", "dice": 0.6, "per_image_mean": 0.6},
        ]},
        "noise": [{"epsilon": E8, "error": "RuntimeError: boom"}],
        "flat_loss": {"bce": {"share": 0.5, "flat_images": 2, "median_norm": 0.0},
                      "dice": {"share": 0.25, "flat_images": 1, "median_norm": 0.1}},
    }  # fmt: skip
    task = make_task("binary")
    warnings = probe_warnings(probes, [], task)
    assert [w["check"] for w in warnings] == [
        "probe_failed", "more_steps_weaker", "unbounded_fails", "flat_loss",
    ]  # fmt: skip
    failed, steps, unbounded, flat = warnings
    assert failed["message"] == (
        "the noise probe could not run (RuntimeError: boom): its check is unverified."
    )
    assert failed["epsilon"] == E8
    assert steps["message"] == (
        "pgd/bce at ε=8/255 on the first 4 images: mean per-image Dice 0.600 with 40 steps vs "
        "0.500 with 10 (+0.100, tolerance 0.01): more steps made the attack weaker."
    )
    assert steps["evidence"]["steps"] == [10, 40]
    assert unbounded["message"] == (
        "pgd/bce at ε=1 (unbounded, 10 steps) on the first 4 images leaves the source's Dice at "
        "0.500 (clean 0.900, limit 0.1): an unbounded attack must reach ~0, so its gradients "
        "lead nowhere (gradient masking, or a broken attack)."
    )
    assert (unbounded["epsilon"], unbounded["engine"]) == (1.0, "pytorch")
    assert flat["message"] == (
        "loss bce: the input gradient at the clean image is zero (L2 norm <= 1e-12) on 2 of 4 "
        "probe images (50% > 25%): attacks ascending this loss cannot move those images."
    )
    assert (flat["attack"], flat["loss"], flat["epsilon"]) == (None, "bce", None)
    # the classifier's limit is its own
    probes["metric"] = "accuracy"
    probes["unbounded"]["accuracy"] = 0.04
    assert "unbounded_fails" not in {w["check"] for w in probe_warnings(probes, [], task)}


# ------------------------------------------------------------------------- tiny models


class Tiny(nn.Module):
    """conv 3x3 (1 -> 4) - tanh - conv 1x1 (4 -> C), seeded weights: each output pixel is
    on where its input pixel is above ~0.5, gently smoothed by its neighbours. ``quantise``:
    the input is first rounded to eighths, so the input gradient is zero almost everywhere
    (gradient masking by a shattered gradient). ``classify``: logits (N, C) by mean pooling."""

    def __init__(self, out: int = 1, *, quantise: bool = False, classify: bool = False) -> None:
        super().__init__()
        self.quantise, self.classify = quantise, classify
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, out, 1)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            w = 0.05 * torch.randn(4, 1, 3, 3, generator=gen)
            w[:, 0, 1, 1] += 2.0
            self.conv1.weight.copy_(w)
            self.conv1.bias.fill_(-1.0)
            sign = torch.tensor([0.5, -0.5]) if out > 1 else torch.tensor([1.0])
            self.conv2.weight.copy_(sign.view(out, 1, 1, 1).expand(out, 4, 1, 1))
            self.conv2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantise:
            x = (x * 8).round() / 8
        y = self.conv2(torch.tanh(self.conv1(x)))
        return y.mean(dim=(2, 3)) * 4 if self.classify else y


CHANNELS = {"binary": 1, "multiclass": 2, "multilabel": 2, "classification": 2}


def _images() -> np.ndarray:
    return torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1)).numpy()


def _labels(model: nn.Module, images: np.ndarray, kind: str) -> np.ndarray:
    """The model's own clean predictions as the truth: a clean score of 1."""
    with torch.no_grad():
        out = model(torch.from_numpy(images))
    if kind in ("binary", "multilabel"):
        return (out > 0).numpy().astype(np.uint8)
    if kind == "multiclass":
        return out.argmax(1, keepdim=True).numpy().astype(np.uint8)
    return out.argmax(1).numpy().astype(np.int64)


def _config(tmp: Path, kind: str, **kw) -> AuditConfig:
    base = dict(
        out_dir=tmp, engines=("pytorch",), task=kind, num_classes=CHANNELS[kind],
        attacks=("fgsm", "bim", "pgd"), epsilons=(0.05, 0.1), steps=10, probe_images=8,
        batch_size=4,
    )  # fmt: skip
    return AuditConfig(**{**base, **kw})


def _mini_audit(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, task: Task, config: AuditConfig
) -> list[AuditCell]:
    """The audit's own crafting, scored on the source as the audit scores its cells."""
    cells = []
    for group in plan_groups(config, list(config.attacks)):
        for cell, adv in zip(group.cells(), craft_group(model, group, images, labels, task, config),
                             strict=True):  # fmt: skip
            acc = task.accumulator()
            with torch.no_grad():
                acc.update(model(torch.from_numpy(adv)).numpy(), labels)
            result, counts = acc.result(), acc.counts()
            cell.engines["pytorch"] = EngineEval(
                "pytorch",
                metrics=metrics_record(result),
                per_image=per_image_record(result, counts),
            )
            cells.append(cell)
    return cells


def _setup(tmp: Path, kind: str, quantise: bool, **kw):
    out = CHANNELS[kind]
    model = Tiny(out, quantise=quantise, classify=kind == "classification").eval()
    images = _images()
    labels = _labels(model, images, kind)
    task = make_task(kind, out if kind != "binary" else 1)
    config = _config(tmp, kind, **kw)
    return model, images, labels, task, config, _mini_audit(model, images, labels, task, config)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel", "classification"])
def test_a_smooth_model_the_attacks_beat_raises_no_warning(tmp_path: Path, kind: str) -> None:
    model, images, labels, task, config, cells = _setup(tmp_path, kind, quantise=False)
    warnings, probes = evaluation_checks(cells, model, images, labels, task, config)
    assert warnings == []
    metric = task.primary
    assert probes["images"] == 8 and probes["metric"] == metric
    assert probes["clean"][metric] == 1.0
    assert probes["unbounded"][metric] <= 0.05  # the unbounded attack genuinely wins
    assert probes["flat_loss"]["bce"]["share"] == 0.0
    assert [r["epsilon"] for r in probes["noise"]] == [0.05, 0.1]
    short, long = probes["steps"]["runs"]
    assert (short["from"], short["steps"], long["steps"]) == ("cell", 10, 40)
    assert long["per_image_mean"] <= short["per_image_mean"] + 0.01
    # 10 (unbounded) + 40 (the longer PGD; the shorter is the audit's cell) + 1 (flat loss)
    assert probes["cost"] == {"forward_passes": 5, "gradient_passes": 51}
    assert probes["tolerances"] == dataclasses.asdict(CheckTolerances())


@pytest.mark.parametrize("kind", ["binary", "classification"])
def test_a_gradient_masking_model_is_caught(tmp_path: Path, kind: str) -> None:
    model, images, labels, task, config, cells = _setup(tmp_path, kind, quantise=True)
    warnings, probes = evaluation_checks(cells, model, images, labels, task, config)
    checks = [w["check"] for w in warnings]
    assert {"flat_loss", "unbounded_fails", "noise_as_strong"} <= set(checks)
    assert probes["flat_loss"]["bce"] == {"share": 1.0, "flat_images": 8, "median_norm": 0.0}
    assert probes["unbounded"][task.primary] == 1.0  # the gradient never moves the images
    noise = [w for w in warnings if w["check"] == "noise_as_strong"]
    # every gradient attack at every ε is no stronger than noise here
    assert sorted((w["attack"], w["epsilon"]) for w in noise) == [
        (a, e) for a in ("bim", "fgsm", "pgd") for e in (0.05, 0.1)
    ]
    for w in warnings:
        assert set(w) == {"check", "message", "attack", "loss", "epsilon", "engine", "evidence"}
        assert w["engine"] == "pytorch" and w["message"].endswith(".")


def _numbers(value: object) -> list[float]:
    """Every number in a JSON-like value, in order."""
    if isinstance(value, dict):
        return [x for k in sorted(value) for x in _numbers(value[k])]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return [float(value)] if isinstance(value, (int, float)) else []


def test_checks_are_deterministic_json_and_batch_size_free(tmp_path: Path) -> None:
    model, images, labels, task, config, cells = _setup(tmp_path, "binary", quantise=False)
    first = evaluation_checks(cells, model, images, labels, task, config)
    again = evaluation_checks(cells, model, images, labels, task, config)
    assert first == again
    text = json.dumps(first, allow_nan=False)  # strict JSON: no NaN, no NumPy types
    assert json.loads(text) == list(first)
    # per-image random starts and one noise draw for all images: the batch size changes nothing
    other = dataclasses.replace(config, batch_size=3)
    warnings, probes = evaluation_checks(cells, model, images, labels, task, other)
    assert warnings == first[0]
    assert _numbers(probes) == pytest.approx(_numbers(first[1]), abs=1e-6)


def test_without_cells_the_probes_run_alone(tmp_path: Path) -> None:
    """No finished cell (all failed): no cell check, no noise probe, both steps runs here;
    a loss no probe can use is a failed probe, not a lost audit; fewer images than asked."""
    model, images, labels, task, config, cells = _setup(tmp_path, "binary", quantise=False)
    failed = [dataclasses.replace(c, status=Status.ERROR) for c in cells]
    config = dataclasses.replace(config, losses=("bce", "no-such-loss"), probe_images=100)
    warnings, probes = evaluation_checks(failed, model, images, labels, task, config)
    assert probes["images"] == 8 and probes["noise"] == []
    assert [r["from"] for r in probes["steps"]["runs"]] == ["probe", "probe"]
    assert probes["cost"]["gradient_passes"] == 10 + 10 + 40 + 1
    assert "error" in probes["flat_loss"]["no-such-loss"]
    assert [w["check"] for w in warnings] == ["probe_failed"]
    assert warnings[0]["evidence"]["probe"] == "flat loss (no-such-loss)"


def test_tolerances_are_passed_in(tmp_path: Path) -> None:
    model, images, labels, task, config, cells = _setup(tmp_path, "binary", quantise=True)
    lenient = CheckTolerances(unbounded_dice=1.0, flat_share=1.0, noise_min_drop=1.0)
    warnings, probes = evaluation_checks(cells, model, images, labels, task, config, lenient)
    assert warnings == []
    assert probes["tolerances"]["flat_share"] == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        lenient.flat_share = 0.5  # type: ignore[misc]
