"""craft_group runs several epsilons of an iterative attack as one stacked batch: the result
per (cell, seed, image) is what that ε alone gives, whatever the batch size, the shard or the
other epsilons; a failing ε loses only itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from segshield.attacks import get_attack, get_loss
from segshield.attacks.pgd import PGD
from segshield.audits import AuditConfig
from segshield.audits.craft import craft_group
from segshield.audits.plan import image_seed, plan_groups
from segshield.tasks import make_task

EPSILONS = (0.0, 2 / 255, 4 / 255, 8 / 255)


def _model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 3, padding=1))
    return net.eval()


def _data(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.random((n, 1, 16, 16), dtype=np.float32)
    masks = (rng.random((n, 1, 16, 16)) > 0.5).astype(np.uint8)
    return images, masks


def _craft(tmp_path: Path, attack: str, batch_size: int, epsilons=EPSILONS, **kw):  # type: ignore[no-untyped-def]
    config = AuditConfig(
        tmp_path, attacks=(attack,), losses=("bce",), epsilons=epsilons, steps=3,
        batch_size=batch_size,
    )  # fmt: skip
    (group,) = plan_groups(config, [attack])
    images, masks = kw.pop("data", _data())
    return group, craft_group(_model(), group, images, masks, make_task("binary"), config, **kw)


@pytest.mark.parametrize("attack", ["pgd", "bim", "pgdl2"])
def test_stacked_equals_each_epsilon_alone(tmp_path: Path, attack: str) -> None:
    group, advs = _craft(tmp_path, attack, batch_size=16)
    images, masks = _data()
    model, y = _model(), torch.from_numpy(masks.astype(np.float32))
    x = torch.from_numpy(images)
    for k, adv in enumerate(advs):
        assert isinstance(adv, np.ndarray) and adv.dtype == np.float32
        budget = group.epsilons[k] * (16 if attack == "pgdl2" else 1)  # sqrt(C*H*W) for L2
        opts: dict = {"steps": 3}
        if attack != "bim":
            seeds = [image_seed(group.seeds[k], j) for j in range(len(x))]
            opts["generator"] = [torch.Generator().manual_seed(s) for s in seeds]
        alone = get_attack(attack, model, get_loss("bce"), budget, **opts)(x, y).numpy()
        np.testing.assert_allclose(adv, alone, rtol=0, atol=1e-6)
    assert np.array_equal(advs[0], images)  # ε = 0 is the clean images


@pytest.mark.parametrize("attack", ["pgd", "bim"])
def test_batch_size_shard_and_epsilon_list_do_not_matter(tmp_path: Path, attack: str) -> None:
    _, full = _craft(tmp_path, attack, batch_size=16)
    _, small = _craft(tmp_path, attack, batch_size=5)
    for a, b in zip(full, small, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    images, masks = _data()
    _, shard = _craft(tmp_path, attack, batch_size=3, data=(images[2:5], masks[2:5]), first_index=2)
    for a, b in zip(full, shard, strict=True):
        np.testing.assert_allclose(a[2:5], b, rtol=0, atol=1e-6)
    _, one = _craft(tmp_path, attack, batch_size=16, epsilons=(4 / 255,))
    np.testing.assert_allclose(full[2], one[0], rtol=0, atol=1e-6)


def test_a_failing_epsilon_loses_only_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = PGD._perturb_at

    def perturb_at(self, images, targets, eps):  # type: ignore[no-untyped-def]
        if max(eps if isinstance(eps, tuple) else (eps,)) > 5 / 255:
            raise RuntimeError("too large")
        return real(self, images, targets, eps)

    _, good = _craft(tmp_path, "pgd", batch_size=16)
    monkeypatch.setattr(PGD, "_perturb_at", perturb_at)
    _, advs = _craft(tmp_path, "pgd", batch_size=8)
    assert isinstance(advs[3], RuntimeError) and "too large" in str(advs[3])
    for k in range(3):
        np.testing.assert_allclose(advs[k], good[k], rtol=0, atol=1e-6)


def test_channels_last_gives_the_same_images(tmp_path: Path) -> None:
    config = AuditConfig(
        tmp_path, attacks=("pgd",), losses=("bce",), epsilons=EPSILONS, steps=3,
        batch_size=16, channels_last=True,
    )  # fmt: skip
    (group,) = plan_groups(config, ["pgd"])
    images, masks = _data()
    model = _model().to(memory_format=torch.channels_last)
    advs = craft_group(model, group, images, masks, make_task("binary"), config)
    _, plain = _craft(tmp_path, "pgd", batch_size=16)
    for a, b in zip(advs, plain, strict=True):
        assert isinstance(a, np.ndarray) and a.flags.c_contiguous
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
