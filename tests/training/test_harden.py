"""`segshield harden`: adversarial fine-tuning (PGD, FGSM-RS, TRADES) on tiny synthetic data,
its weights + card, and the CLI command through a throwaway typer app."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner, Result

from segshield.attacks import bce_loss, get_attack
from segshield.cli.main import app
from segshield.models import ModelCard, model_from_card
from segshield.training.harden import HardenConfig, dice_score, harden, save_hardened

EPS = 0.1
METHODS = ["pgd", "fgsm-rs", "trades"]


def _data(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocky binary masks; images 0.15 + 0.7·mask + small noise (margin 0.35 > EPS)."""
    gen = torch.Generator().manual_seed(seed)
    cells = (torch.rand(n, 1, 4, 4, generator=gen) < 0.5).float()
    masks = cells.repeat_interleave(4, -1).repeat_interleave(4, -2)
    noise = 0.05 * torch.randn(n, 1, 16, 16, generator=gen)
    return (0.15 + 0.7 * masks + noise).clamp(0, 1).repeat(1, 3, 1, 1), masks


def _net(seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Tanh(), nn.Conv2d(8, 1, 3, padding=1)
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return net.eval()


def _cfg(method: str, **kw: object) -> HardenConfig:
    opts: dict = dict(method=method, epsilon=EPS, attack_steps=3, epochs=4, lr=1e-2)
    return HardenConfig(**{**opts, "augment": False, **kw})


def _robust(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    gen = torch.Generator().manual_seed(5)
    adv = get_attack("pgd", model, "bce", EPS, steps=10, generator=gen)(x, y)
    with torch.no_grad():
        logits = model(adv)
    return float(bce_loss(logits, y).mean()), dice_score(logits, y)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_is_seeded_and_improves_robustness(method: str) -> None:
    x, y = _data()
    start = _net()
    before = {k: v.clone() for k, v in start.state_dict().items()}
    calls: list[tuple[int, int, float]] = []
    a = harden(start, (x, y), _cfg(method), progress=lambda *c: calls.append(c))
    b = harden(start, (x, y), _cfg(method))
    for k, v in a.module.state_dict().items():
        assert torch.equal(v, b.module.state_dict()[k])
        assert torch.equal(start.state_dict()[k], before[k])  # the caller's model is untouched
    assert len(a.history) == 4 and a.recipe["method"] == method and not a.module.training
    assert calls[0][:2] == (1, 1) and len(calls) == 4 * 4
    loss0, dice0 = _robust(start, x, y)
    loss1, dice1 = _robust(a.module, x, y)
    assert loss1 < 0.7 * loss0 and dice1 > dice0 + 0.2


@pytest.mark.parametrize("method", ["pgd", "fgsm-rs"])
def test_adversarial_beats_clean_training_under_attack(method: str) -> None:
    x, y = _data()
    clean = harden(_net(), (x, y), _cfg("pgd", clean_fraction=1.0)).module  # plain training
    hard = harden(_net(), (x, y), _cfg(method)).module
    assert _robust(hard, x, y)[0] < _robust(clean, x, y)[0]


def test_multiclass_targets_train() -> None:
    x, y = _data(n=8)
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1)).eval()
    for method in ("pgd", "trades"):
        result = harden(net, (x, y[:, 0].long()), _cfg(method, epochs=1))
        assert 0.0 <= result.history[0].val_robust_dice <= 1.0


def test_fgsm_rs_early_stopping_restores_best_epoch(monkeypatch) -> None:
    x, y = _data(n=8)
    robust = iter([0.5, 0.7, 0.1, 0.9])
    kept: dict[int, dict] = {}

    def fake_validate(model, images, targets, config):
        epoch = len(kept) + 1
        kept[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        return 0.9, next(robust)

    module = importlib.import_module("segshield.training.harden")
    monkeypatch.setattr(module, "_validate", fake_validate)
    result = harden(_net(), (x, y), _cfg("fgsm-rs", epochs=4))
    assert result.stopped_early and result.best_epoch == 2 and len(result.history) == 3
    for k, v in result.module.state_dict().items():
        assert torch.equal(v, kept[2][k])
    assert result.recipe["kept_epoch"] == 2 and result.recipe["stopped_early"]


def test_weights_and_card_are_written_and_load(tmp_path: Path) -> None:
    from segshield.models import UNet, UNetConfig

    x, y = _data(n=4)
    net = UNet(UNetConfig(3, 1, 4, 2)).eval()
    result = harden(net, (x, y), _cfg("fgsm-rs", epochs=1))
    arch = {"architecture": "unet", **net.config.to_dict()}
    weights, card = save_hardened(result, tmp_path, "h", architecture=arch, command="test")
    raw = json.loads(card.read_text())
    assert raw["training"]["hardening"]["method"] == "fgsm-rs"
    assert ModelCard.read(card).weights_file == weights.name
    loaded = model_from_card(card).module
    with torch.no_grad():
        assert torch.allclose(loaded(x), result.module(x), atol=1e-6)


def test_bad_config_is_refused() -> None:
    from segshield.errors import SegShieldError

    with pytest.raises(SegShieldError, match="unknown method"):
        HardenConfig(method="free")
    with pytest.raises(SegShieldError, match="clean_fraction"):
        HardenConfig(clean_fraction=2.0)


def _app() -> typer.Typer:
    """segshield's own app; `harden` is its subcommand."""
    return app


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(_app(), ["harden", *args])


def test_cli_no_audit(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--epochs", "1", "--attack-steps", "1", "--no-audit"]
    result = _invoke([*args, "--method", "fgsm-rs", "--size", "64"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "hardened.safetensors").is_file()
    card = json.loads((tmp_path / "hardened.json").read_text())
    assert card["training"]["hardening"]["epsilon"] == pytest.approx(8 / 255)
    assert card["architecture"]["architecture"] == "unet"


def test_cli_bad_epsilon_is_one_line(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--epsilon", "2", "--no-audit"]
    result = _invoke(args)
    assert result.exit_code == 2


@pytest.mark.slow
def test_cli_audit_before_after(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--epochs", "1", "--attack-steps", "2", "--size", "64"]
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    assert "PGD 8/255 Dice" in result.output and "clean Dice" in result.output
    for name in ("before_after.md", "before_after.html", "before_after.json"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "before" / "report.json").is_file()
    assert (tmp_path / "after" / "report.json").is_file()
