"""Randomized-smoothing certification of engines: real torch modules as runners, tiny images,
few samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from segshield.audits.certify import certify_engines
from segshield.engines import TorchRunner
from segshield.metrics import confusion_counts, mean_dice_of, multiclass_confusion_counts
from segshield.results import CERTIFIED_METRICS, certified_rows

SIGMA, N0, N, ALPHA = 0.25, 5, 50, 0.001


class Constant(nn.Module):
    """Ignores its input: the same (K, H, W) logits for every image."""

    def __init__(self, logits: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("logits", torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[None].expand(x.shape[0], -1, -1, -1).clone()


class Steep(nn.Module):
    """logits = gain * (x - 0.5): on a 0.5-grey image the noise alone decides every pixel."""

    def __init__(self, gain: float = 1000.0, channels: int = 1) -> None:
        super().__init__()
        self.gain, self.channels = gain, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = self.gain * (x[:, :1] - 0.5)
        return fg if self.channels == 1 else torch.cat([torch.zeros_like(fg), fg], dim=1)


class Broken(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("this engine is broken")


def _data(n: int = 2, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (n, 1, size, size)).astype(np.float32)
    return images, rng.integers(0, 2, (n, 1, size, size)).astype(np.uint8)


def _certify(runners: dict, images: np.ndarray, labels: np.ndarray, **kw) -> dict:
    args = {"sigma": SIGMA, "n0": N0, "n": N, "alpha": ALPHA, "batch_size": 16, "seed": 0}
    return certify_engines(runners, images, labels, **{**args, **kw})


def _without_time(section: dict) -> dict:
    return {k: {kk: vv for kk, vv in v.items() if kk != "seconds"} for k, v in section.items()}


def test_constant_model_is_certified_everywhere_up_to_its_radius() -> None:
    images, labels = _data()
    logits = np.random.default_rng(3).normal(0, 1, (1, 8, 8))
    # The one radius all-wins can reach: Bonferroni over the 64 pixels of an image.
    r_max = SIGMA * norm.ppf((ALPHA / 64) ** (1 / N))
    radii = (0.0, 0.1, round(r_max - 1e-3, 6), round(r_max + 1e-3, 6))
    out = _certify({"const": TorchRunner(Constant(logits))}, images, labels, radii=radii)
    rec = out["engines"]["const"]
    pred = np.broadcast_to(logits > 0, labels.shape).astype(np.uint8)
    clean = float(mean_dice_of(confusion_counts(pred, labels).total())[0])
    np.testing.assert_allclose(rec["certified_dice"], [clean, clean, clean, 0.0], atol=1e-6)
    assert rec["certified_any_share"] == [1.0, 1.0, 1.0, 0.0]
    assert rec["certified_share"][0] == pytest.approx(np.mean(pred == labels), abs=1e-6)
    assert rec["abstain_share"] == [0.0] * 4
    assert rec["mean_radius"] == pytest.approx(r_max, abs=1e-6)
    assert rec["smoothed_dice"] == pytest.approx(clean, abs=1e-6)
    assert rec["samples"] == 2 * (N0 + N)


def test_constant_multiclass_model_scores_its_clean_mean_dice() -> None:
    rng = np.random.default_rng(4)
    images, labels = _data()
    labels = rng.integers(0, 3, labels.shape).astype(np.uint8)
    logits = rng.normal(0, 1, (3, 8, 8))
    out = _certify({"const": TorchRunner(Constant(logits))}, images, labels,
                   kind="multiclass", radii=(0.0,))  # fmt: skip
    pred = np.broadcast_to(logits.argmax(0), labels[:, 0].shape)
    clean = mean_dice_of(multiclass_confusion_counts(pred, labels[:, 0], 3).total(), (1, 2))[0]
    assert out["engines"]["const"]["certified_dice"][0] == pytest.approx(clean, abs=1e-6)


@pytest.mark.parametrize(("kind", "channels"), [("binary", 1), ("multiclass", 2)])
def test_noise_dominated_model_abstains_nearly_everywhere(kind: str, channels: int) -> None:
    images = np.full((1, 1, 16, 16), 0.5, dtype=np.float32)
    labels = np.zeros((1, 1, 16, 16), dtype=np.uint8)
    labels[..., 4:12, 4:12] = 1
    out = _certify({"steep": TorchRunner(Steep(channels=channels))}, images, labels, kind=kind)
    rec = out["engines"]["steep"]
    assert rec["abstain_share"][0] > 0.95
    assert rec["certified_any_share"][0] < 0.05
    assert rec["certified_dice"][0] < 0.1


def test_section_layout_and_a_failing_engine_is_isolated() -> None:
    images, labels = _data()
    runners = {
        "a": TorchRunner(Constant(np.ones((1, 8, 8)))),
        "broken": TorchRunner(Broken(), name="broken"),
        "b": TorchRunner(Steep(gain=4.0)),
    }
    radii = (0.0, 0.1, 0.25)
    out = _certify(runners, images, labels, radii=radii, correction="holm")
    assert out["settings"] == {
        "sigma": SIGMA, "n0": N0, "n": N, "alpha": ALPHA, "confidence": 1 - ALPHA,
        "correction": "holm", "images": 2, "radii": list(radii), "seed": 0, "batch_size": 16,
        "threshold": 0.5, "clipped": True, "guarantee": out["settings"]["guarantee"],
    }  # fmt: skip
    assert list(out["engines"]) == ["a", "broken", "b"]
    assert out["engines"]["broken"]["error"] == "ValueError: this engine is broken"
    for name in ("a", "b"):
        rec = out["engines"][name]
        assert rec["radii"] == list(radii) and rec["seconds"] >= 0
        for metric in CERTIFIED_METRICS:
            assert len(rec[metric]) == len(radii), metric
        assert len(rec["per_image"]["certified_dice"]) == 2
    rows = certified_rows(out)
    assert [(name, r) for name, r, _ in rows] == [(n, r) for n in ("a", "b") for r in radii]
    assert set(rows[0][2]) == set(CERTIFIED_METRICS)


def test_runner_that_raises_anything_is_recorded() -> None:
    class Raising:
        name, kind, precision, providers = "raising", "pytorch", "fp32", ["cpu"]

        def infer(self, batch: np.ndarray) -> np.ndarray:
            raise RuntimeError("out of memory")

        def describe(self) -> dict:
            return {}

    images, labels = _data(n=1)
    out = _certify({"raising": Raising()}, images, labels)
    assert out["engines"]["raising"]["error"] == "RuntimeError: out of memory"


def test_same_seed_same_result_whatever_the_batch_size() -> None:
    images, labels = _data(n=2, seed=5)
    runner = TorchRunner(Steep(gain=4.0))
    first = _certify({"m": runner}, images, labels)
    again = _certify({"m": runner}, images, labels, batch_size=7)
    assert _without_time(first["engines"]) == _without_time(again["engines"])
    other = _certify({"m": runner}, images, labels, seed=1)
    assert _without_time(first["engines"]) != _without_time(other["engines"])


def test_every_engine_sees_the_same_noise() -> None:
    images, labels = _data(n=1, seed=6)
    out = _certify({"x": TorchRunner(Steep(gain=4.0)), "y": TorchRunner(Steep(gain=4.0))},
                   images, labels)  # fmt: skip
    engines = _without_time(out["engines"])
    assert engines["x"] == engines["y"]


def test_bad_settings_raise_before_any_engine_runs() -> None:
    images, labels = _data(n=1)
    runners = {"b": TorchRunner(Broken())}
    for bad in ({"alpha": 1.5}, {"correction": "sidak"}, {"n": 0}, {"radii": ()},
                {"kind": "classification"}):  # fmt: skip
        with pytest.raises(ValueError):
            _certify(runners, images, labels, **bad)
    with pytest.raises(ValueError, match="labels"):
        _certify(runners, images, labels[:, :, :4])


def test_holm_radii_are_the_largest_listed_radius_certified() -> None:
    images, labels = _data()
    r_max = SIGMA * norm.ppf((ALPHA / 64) ** (1 / N))
    radii = (0.0, 0.1, round(r_max - 1e-3, 6), round(r_max + 1e-3, 6))
    runner = TorchRunner(Constant(np.ones((1, 8, 8))))
    rec = _certify({"c": runner}, images, labels, radii=radii, correction="holm")["engines"]["c"]
    # equal p-values everywhere: Holm's first step is Bonferroni's, so the same radii pass
    assert rec["certified_any_share"] == [1.0, 1.0, 1.0, 0.0]
    assert rec["mean_radius"] == pytest.approx(radii[2])


def test_holm_certifies_at_least_what_bonferroni_does() -> None:
    images, labels = _data(n=2, seed=7)
    runner = {"m": TorchRunner(Steep(gain=6.0))}
    bonf = _certify(runner, images, labels)["engines"]["m"]
    holm = _certify(runner, images, labels, correction="holm")["engines"]["m"]
    assert holm["certified_any_share"][0] >= bonf["certified_any_share"][0]
    assert 0.0 < bonf["certified_any_share"][0] < 1.0


def test_multilabel_constant_model() -> None:
    rng = np.random.default_rng(8)
    images, _ = _data()
    labels = rng.integers(0, 2, (2, 2, 8, 8)).astype(np.uint8)
    logits = rng.normal(0, 1, (2, 8, 8))
    out = _certify({"c": TorchRunner(Constant(logits))}, images, labels, kind="multilabel",
                   radii=(0.0,))  # fmt: skip
    pred = np.broadcast_to(logits > 0, labels.shape)
    per_channel = [
        mean_dice_of(confusion_counts(pred[:, c : c + 1], labels[:, c : c + 1]).total())[0]
        for c in range(2)
    ]
    assert out["engines"]["c"]["certified_dice"][0] == pytest.approx(np.mean(per_channel), abs=1e-6)
