"""INT8 recipe search (issue 13): a seeded model whose logits span [-1450, 8] collapses under
the default static INT8 recipe, the search finds a healthy one on the calibration images, a
healthy model triggers no search, and `int8_search="off"` disables it. Real ONNX Runtime,
nothing mocked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segshield.engines.build import BuildOptions, build_engines
from segshield.engines.health import HealthThresholds
from segshield.engines.parity import parity_stats
from segshield.exporters.calibration import images_digest
from segshield.exporters.int8_search import Recipe, Trial, _powers_of_two, search_int8

LOW, HIGH = -1450.0, 8.0  # the logit span of the model in the issue


class PushedNet(nn.Module):
    """A tiny conv net whose last layers map its logit z to HIGH·z⁺/max − LOW·z⁻/min: the
    masks are those of z (the sign is kept) but the background is pushed to about -1450, as
    in an over-confident real model. The push is two 1x1 convs (split z into ReLU(z) and
    ReLU(-z), merge them scaled), so static INT8 quantizes it like the rest of the net."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 1, 1),
        )
        self.split = nn.Conv2d(1, 2, 1)
        self.merge = nn.Conv2d(2, 1, 1)
        with torch.no_grad():
            self.split.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.split.bias.zero_()
            self.merge.weight.copy_(torch.tensor([1.0, -1.0]).view(1, 2, 1, 1))
            self.merge.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.relu(self.split(self.body(x))))


def _images(n: int, seed: int) -> np.ndarray:
    """Smooth seeded float32 (n,3,32,32) images in [0,1] (upsampled 6x6 noise)."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 6, 6, generator=gen)
    return F.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False).numpy()


def _model(calibration: np.ndarray, *, pushed: bool) -> PushedNet:
    """Seeded net, its logit z centred so that 30% of the pixels are foreground and scaled to
    unit spread; `pushed`: logits span [LOW, HIGH] on `calibration`, else z itself."""
    torch.manual_seed(0)
    model = PushedNet().eval()
    x = torch.from_numpy(calibration)
    with torch.no_grad():
        z = model.body(x)
        head = model.body[-1]
        centre, spread = z.quantile(0.7), z.std()
        head.weight.div_(spread)
        head.bias.sub_(centre).div_(spread)
        z = model.body(x)
        if pushed:
            scale = torch.tensor([HIGH / z.max(), LOW / -z.min()])
            model.merge.weight.copy_(scale.view(1, 2, 1, 1))
    return model


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    return _images(16, seed=1)


@pytest.fixture(scope="module")
def audited() -> np.ndarray:
    """The 'audited' images: only ever the parity sample, never a recipe's score."""
    return _images(4, seed=2)


@pytest.fixture(scope="module")
def pushed(calibration) -> PushedNet:
    return _model(calibration, pushed=True)


@pytest.fixture(scope="module")
def searched(tmp_path_factory, pushed, calibration, audited):
    out = tmp_path_factory.mktemp("int8-search")
    [built] = build_engines(["ort-int8"], pushed, calibration, out, sample=audited)
    return built


def _source(model: nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(images)).numpy()


def test_the_model_has_the_issue_logit_range(pushed, calibration):
    logits = _source(pushed, calibration)
    assert logits.min() == pytest.approx(LOW, rel=1e-4)
    assert logits.max() == pytest.approx(HIGH, rel=1e-4)
    assert 0.2 < (logits > 0).mean() < 0.4


def test_default_recipe_collapses_and_the_search_finds_a_healthy_one(searched, calibration):
    record = searched.record
    assert searched.ok, record.reason
    search = record.details["int8_search"]
    trials = search["trials"]
    default, chosen = trials[0], search["chosen"]
    # The default recipe really is broken on this model (the premise of the search) ...
    assert default["stage"] == "default" and default["recipe"]["excluded"] == []
    assert default["health"] == "failed" and default["mask_dice"] < 0.5
    # ... and the search kept a healthy recipe, recorded as chosen.
    assert search["searched"] and search["healthy"]
    assert chosen["health"] == "ok" and chosen["mask_dice"] >= 0.97
    assert [t["chosen"] for t in trials].count(True) == 1
    assert next(t for t in trials if t["chosen"]) == chosen
    # Every trial is recorded with its recipe, agreement, health, latency and size.
    assert 2 <= len(trials) <= 10
    for trial in trials:
        assert trial["error"] is None
        assert set(trial["recipe"]) >= {"per_channel", "method", "excluded", "label"}
        assert 0.0 <= trial["mask_dice"] <= 1.0
        assert trial["health"] in {"ok", "degraded", "failed"}
        assert trial["latency_ms"] > 0 and trial["bytes"] > 0
    # The mitigations come in order: no FP32 node first, then a growing FP32 fallback.
    stages = [t["stage"] for t in trials]
    assert stages[:5] == ["default", *["settings"] * 4]
    assert [t["recipe"]["excluded"] for t in trials[:5]] == [[]] * 5
    fallback = [t for t in trials if t["stage"] == "fallback"]
    assert fallback and chosen["stage"] == "fallback"
    assert fallback[0]["recipe"]["excluded"] == search["ranking"][0]["nodes"]
    # The kept recipe has the fewest FP32 nodes among the healthy ones.
    healthy = [t for t in trials if t["health"] == "ok"]
    assert len(chosen["recipe"]["excluded"]) == min(len(t["recipe"]["excluded"]) for t in healthy)
    # The logits' own int8 step breaks the masks, so the output conv ranks first.
    assert search["ranking"][0]["output_agreement"] < 0.97


def test_the_engine_is_the_chosen_recipe(searched):
    record = searched.record
    chosen = record.details["int8_search"]["chosen"]["recipe"]
    assert record.details["int8"]["nodes_excluded"] == sorted(chosen["excluded"])
    assert record.details["int8"]["per_channel"] == chosen["per_channel"]
    assert record.details["int8"]["calibration"]["method"] == chosen["method"]
    model = onnx.load(record.artifacts[0].path)
    names = {n.name for n in model.graph.node}
    assert set(chosen["excluded"]) <= names
    # Only the kept model stays beside the engine.
    folder = {p.name for p in Path(record.artifacts[0].path).parent.iterdir()}
    assert folder == {"model.int8.qdq.onnx"}
    note = record.notes[0]
    assert note.startswith("INT8: the default recipe (per-channel + minmax) agreed 0.")
    assert "16 calibration images" in note and f"kept {chosen['label']}" in note
    assert "ms for the FP32 model" in note
    assert record.details["int8_search"]["fp32_latency_ms"] > 0


def test_recipes_are_scored_on_the_calibration_images_only(searched, calibration, audited):
    record = searched.record
    scored = record.details["int8_search"]["scored_on"]
    assert scored == {"images": "calibration", "n_images": 16, "sha256": images_digest(calibration)}
    assert scored["sha256"] != images_digest(audited)
    assert record.details["parity_images_in_calibration"] == 0
    # The audited images are only the parity sample (measured after the build).
    assert record.parity["n_images"] == len(audited)


def test_search_off_keeps_the_default_recipe(tmp_path, pushed, calibration, audited):
    options = BuildOptions(int8_search="off")
    [built] = build_engines(["ort-int8"], pushed, calibration, tmp_path, sample=audited,
                            options=options)  # fmt: skip
    assert built.ok
    assert "int8_search" not in built.record.details
    assert built.record.details["int8"]["nodes_excluded"] == []
    assert not any(n.startswith("INT8") for n in built.record.notes)
    assert built.record.parity["mask_dice"] < 0.5  # the collapse the search would have fixed


def _colour_model(calibration: np.ndarray) -> nn.Module:
    """A one-conv model, logits 4r - g + 2b minus their 70th percentile: INT8 keeps it.
    (Not all weights at the int8 maximum: on CPUs without VNNI, onnxruntime's u8s8 kernels
    saturate 16-bit pair sums when inputs and weights are all near their maxima.)"""
    model = nn.Sequential(nn.Conv2d(3, 1, 1)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([4.0, -1.0, 2.0]).view(1, 3, 1, 1))
        model[0].bias.zero_()
        model[0].bias.sub_(model(torch.from_numpy(calibration)).quantile(0.7))
    return model


def test_a_healthy_model_triggers_no_search(tmp_path, calibration, audited):
    model = _colour_model(calibration)
    [built] = build_engines(["ort-int8"], model, calibration, tmp_path, sample=audited)
    assert built.ok
    search = built.record.details["int8_search"]
    assert not search["searched"] and search["healthy"]
    [trial] = search["trials"]
    assert trial["stage"] == "default" and trial["chosen"] and trial["health"] == "ok"
    assert trial["latency_ms"] is None  # nothing to compare: no latency runs
    assert search["ranking"] == []
    assert built.record.notes[0].startswith("INT8 recipe check: the default recipe")


# ------------------------------------------------------------------- search_int8 directly


def _agreement(source: np.ndarray, engine: np.ndarray) -> float:
    return float(parity_stats(source, engine)["mask_dice"])


def test_max_trials_bounds_the_search_and_keeps_the_best(tmp_path, pushed, calibration):
    from segshield.exporters import onnx_from_torch

    src = onnx_from_torch(pushed, torch.from_numpy(calibration[:2]), tmp_path / "m.onnx").path
    result = search_int8(
        src, tmp_path / "q.onnx", calibration, _source(pushed, calibration),
        agreement=_agreement, thresholds=HealthThresholds(), max_trials=2,
    )  # fmt: skip
    assert len(result.trials) == 2 and result.searched and not result.healthy
    best = max(t.mask_dice for t in result.trials)
    assert result.chosen.mask_dice == best and result.chosen.chosen
    assert "none reached 0.97: kept the best" in result.note()
    assert result.variant.path == tmp_path / "q.onnx" and result.variant.path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "q.onnx"]


def test_recipe_labels_and_fallback_sizes():
    assert Recipe().label() == "per-channel + minmax"
    three = Recipe(False, "entropy", ("a", "b", "c"))
    assert three.label() == "per-tensor + entropy + 3 FP32 nodes" and three.fp32_nodes == 3
    assert Recipe(excluded=("a",)).label().endswith("+ 1 FP32 node")
    with pytest.raises(ValueError, match="calibration method"):
        Recipe(method="kl")  # type: ignore[arg-type]
    assert _powers_of_two(0) == [] and _powers_of_two(1) == [1]
    assert _powers_of_two(5) == [1, 2, 4, 5] and _powers_of_two(8) == [1, 2, 4, 8]
    assert not Trial(Recipe(), "default", health="degraded").healthy


def test_exporter_keeps_excluded_nodes_in_fp32_and_reduces_range(tmp_path, pushed, calibration):
    from onnx import numpy_helper

    from segshield.exporters import onnx_from_torch, onnx_int8_from_onnx

    src = onnx_from_torch(pushed, torch.from_numpy(calibration[:2]), tmp_path / "m.onnx").path
    convs = [n.name for n in onnx.load(str(src)).graph.node if n.op_type == "Conv"]
    variant = onnx_int8_from_onnx(
        src, tmp_path / "q.onnx", calibration, nodes_to_exclude=[convs[-1]], reduce_range=True
    )
    assert variant.details["nodes_excluded"] == [convs[-1]]
    assert variant.details["reduce_range"] is True
    assert any("kept in FP32" in n and convs[-1] in n for n in variant.notes)
    model = onnx.load(str(variant.path))
    last = next(n for n in model.graph.node if n.name == convs[-1])
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    inits = {t.name for t in model.graph.initializer}
    assert last.input[1] in inits and last.input[1] not in dq_outputs  # float weights
    assert not any(n.op_type == "QuantizeLinear" and last.output[0] in n.input
                   for n in model.graph.node)  # fmt: skip  # float output
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer
               if t.name.endswith("weight_quantized")]  # fmt: skip
    assert weights and all(np.abs(w.astype(int)).max() <= 64 for w in weights)  # 7-bit
