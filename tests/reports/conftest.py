"""Real small medical audits for the report tests (each about a second on a CPU): slices of
the bundled lesion volumes (NIfTI, mm spacing) through tiny conv nets, read back from JSON
as a renderer reads report.json.

- ``slices_audit``: a 2-D net whose weights are set by hand to segment the bright pixels
  (intensity > 0.6 after scaling); every slice is kept, so some have an empty ground truth
  (no HD95 there) and the others an HD95 / ASD; per-volume Dice.
- ``multilabel_audit``: a seeded random 2-D net with two output channels for two label
  groups of the label map; its masks miss the classes, so HD95 / ASD are undefined.
- ``volumes_audit``: the same hand-set net in 3-D on whole volumes (C, D, H, W).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from segshield.audits import AuditConfig, run_audit
from segshield.models import LoadedModel
from segshield.results import AuditReport

EPS = 8 / 255
# A finished audit: its report (read back from JSON) and its output folder (panels).
Audit = tuple[AuditReport, Path]


def bright_net(conv: type[nn.Conv2d] | type[nn.Conv3d]) -> nn.Sequential:
    """conv(1, 4, 3) -> ReLU -> conv(4, 1, 1) with a logit of 4 * 5 * x - 12: foreground
    where the scaled intensity x > 0.6 (a fixed, readable segmenter)."""
    net = nn.Sequential(conv(1, 4, 3, padding=1), nn.ReLU(), conv(4, 1, 1))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.zero_()
        centre = (slice(None), 0, *([1] * (net[0].weight.dim() - 2)))
        net[0].weight[centre] = 1.0  # each channel copies the pixel
        net[2].weight.fill_(5.0)
        net[2].bias.fill_(-12.0)
    return net


def audit(folder: Path, net: nn.Module, **options: Any) -> Audit:
    config = AuditConfig(
        out_dir=folder, dataset="volumes", size=64, attacks=("fgsm",), epsilons=(EPS,),
        engines=("pytorch",), bench=False, checks=False, n_boot=0, resume=False, **options,
    )  # fmt: skip
    report = run_audit(config, model=LoadedModel(net, {"source": "test"}))
    return AuditReport.from_dict(json.loads(json.dumps(report.to_dict()))), folder


@pytest.fixture(scope="session")
def slices_audit(tmp_path_factory: pytest.TempPathFactory) -> Audit:
    # every slice, also those without lesion: empty ground truths, undefined HD95 there
    return audit(tmp_path_factory.mktemp("slices"), bright_net(nn.Conv2d), keep_empty_slices=True)


@pytest.fixture(scope="session")
def multilabel_audit(tmp_path_factory: pytest.TempPathFactory) -> Audit:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    groups = ("lesion=1", "tissue=0")
    return audit(tmp_path_factory.mktemp("multilabel"), net, label_groups=groups)


@pytest.fixture(scope="session")
def volumes_audit(tmp_path_factory: pytest.TempPathFactory) -> Audit:
    net = bright_net(nn.Conv3d)
    folder = tmp_path_factory.mktemp("volumes")
    return audit(folder, net, volume_mode="volumes", volume_size=(8, 32, 32))
