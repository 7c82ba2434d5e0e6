"""The one audit on medical data: 2-D models on slices of the bundled lesion volumes, 3-D
models on whole volumes, multi-label masks from a label map, and the model/data mismatches
that must stop before anything runs (2-D vs 3-D, channels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

from segshield.audits import AuditConfig, run_audit
from segshield.audits.inputs import load_audit_data, model_input_layout, multi_hot
from segshield.enums import Status, TaskKind
from segshield.errors import DataError
from segshield.models import LoadedModel

FAST = {
    "attacks": ("fgsm",),
    "epsilons": (8 / 255,),
    "engines": ("pytorch",),
    "bench": False,
    "checks": False,
    "n_boot": 0,
    "resume": False,
}


def test_the_model_s_first_convolution_gives_channels_and_dims(conv_net) -> None:
    assert model_input_layout(conv_net(3)) == (1, 3)
    assert model_input_layout(conv_net(2)) == (1, 2)
    assert model_input_layout(nn.Sequential(nn.Identity())) is None


def test_multi_hot_of_overlapping_groups() -> None:
    labels = np.array([[[0, 1, 2, 3]]], dtype=np.uint8)[:, None]  # (1, 1, 1, 4)
    got = multi_hot(labels, [("core", (1, 3)), ("whole", (1, 2, 3)), ("enh", (3,))])
    assert got.shape == (1, 3, 1, 4)
    assert got[0, :, 0].tolist() == [[0, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1]]


@pytest.mark.slow
def test_a_3d_model_is_audited_on_whole_volumes(tmp_path: Path, conv_net) -> None:
    config = AuditConfig(
        out_dir=tmp_path, dataset="volumes", volume_mode="volumes", panels=1, **FAST
    )
    report = run_audit(config, model=LoadedModel(conv_net(3), {"source": "test"}))
    assert report is not None
    assert report.dataset["image_shape"] == [1, 32, 64, 64]
    assert report.dataset["n_images"] == 2  # the bundled test patients: brain2, lung1
    (cell,) = report.cells
    assert cell.status == Status.OK, cell.error
    metrics = cell.engines["pytorch"].metrics
    assert metrics.dice is not None and metrics.surface_unit == "mm"
    assert cell.perturbation.linf_max <= 8 / 255 + 1e-6
    assert cell.panels and "slice" in cell.panels[0].columns[0]
    assert (tmp_path / cell.panels[0].file).is_file()


@pytest.mark.slow
def test_a_2d_model_is_audited_on_slices_with_distances_in_mm(tmp_path: Path, conv_net) -> None:
    config = AuditConfig(out_dir=tmp_path, dataset="volumes", size=64, limit=3, panels=0, **FAST)
    report = run_audit(config, model=LoadedModel(conv_net(2), {"source": "test"}))
    assert report is not None
    assert report.dataset["image_shape"] == [1, 64, 64]
    assert all(":" in name for name in report.dataset["names"])  # volume:slice
    assert report.clean["pytorch"].metrics.surface_unit == "mm"


def test_volumes_for_a_2d_model_are_refused_naming_the_fix(tmp_path: Path, conv_net) -> None:
    config = AuditConfig(out_dir=tmp_path, dataset="volumes", volume_mode="volumes", **FAST)
    with pytest.raises(DataError, match=r"3D volumes .* 2D model.*--volume-mode slices"):
        load_audit_data(config, conv_net(2))


def test_slices_for_a_3d_model_are_refused_naming_the_fix(tmp_path: Path, conv_net) -> None:
    config = AuditConfig(out_dir=tmp_path, dataset="volumes", **FAST)
    with pytest.raises(DataError, match=r"2D images .* 3D model.*--volume-mode volumes"):
        load_audit_data(config, conv_net(3))


def _rgb_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(2):
        rgb = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / "images" / f"c{i}.png")
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 8:20] = 255
        Image.fromarray(mask).save(root / "masks" / f"c{i}.png")
    return root


def test_colour_data_for_a_grey_model_names_both_channel_counts(tmp_path: Path, conv_net) -> None:
    config = AuditConfig(out_dir=tmp_path / "o", data=_rgb_folder(tmp_path / "d"), size=32, **FAST)
    with pytest.raises(DataError, match=r"3 channels \(RGB\).*takes 1.*--channels 1"):
        load_audit_data(config, conv_net(2))
    # --channels 1 converts to grey, and then the data fit
    data = load_audit_data(
        AuditConfig(out_dir=tmp_path / "o", data=tmp_path / "d", size=32, channels=1, **FAST),
        conv_net(2),
    )
    assert data.images.shape == (2, 1, 32, 32)


def test_label_groups_make_a_multi_label_audit_data(tmp_path: Path, conv_net) -> None:
    config = AuditConfig(
        out_dir=tmp_path, dataset="volumes", size=64, label_groups=("lesion=1",), **FAST
    )
    assert config.task_kind == TaskKind.MULTILABEL
    data = load_audit_data(config, conv_net(2))
    assert data.labels.shape[1] == 1 and data.class_names == ("lesion",)
    assert data.description["label_groups"] == {"lesion": (1,)}


def test_a_bad_label_group_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="name=1,2,3"):
        AuditConfig(out_dir=tmp_path, label_groups=("core:1,3",))


@pytest.mark.slow
def test_slices_are_also_scored_per_volume_from_summed_counts(tmp_path: Path, conv_net) -> None:
    """A volume's Dice is the Dice of its slices' summed counts (not a mean of slice Dice)."""
    config = AuditConfig(out_dir=tmp_path, dataset="volumes", size=64, panels=0, **FAST)
    report = run_audit(config, model=LoadedModel(conv_net(2), {"source": "test"}))
    assert report is not None
    volumes = report.dataset["volume"]
    for ev in (report.clean["pytorch"], report.cells[0].engines["pytorch"]):
        per_volume, per_image = ev.per_volume, ev.per_image
        assert per_volume.names == ["brain2", "lung1"]
        assert sum(per_volume.n_slices) == len(volumes)
        for name, dice in zip(per_volume.names, per_volume.dice, strict=True):
            rows = [i for i, v in enumerate(volumes) if v == name]
            tp, fp, fn = (sum(getattr(per_image, k)[i] for i in rows) for k in ("tp", "fp", "fn"))
            assert dice == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert ev.metrics.dice_per_volume_mean == pytest.approx(np.mean(per_volume.dice))


def _cli(*args: str):
    from typer.testing import CliRunner

    from segshield.cli.main import app

    return CliRunner().invoke(app, ["audit", "--engines", "pytorch", "--no-bench", *args])


def test_cli_volumes_for_the_2d_bundled_model_exit_2_in_one_line(tmp_path: Path) -> None:
    res = _cli("--dataset", "volumes", "--volume-mode", "volumes", "--out", str(tmp_path))
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert "3D volumes" in res.output and "--volume-mode slices" in res.output


def test_cli_12_bit_ct_divided_by_65535_exits_2_naming_the_file(tmp_path: Path) -> None:
    """The silent Dice 0.00 of 16-bit data scaled by the dtype's range is refused."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    for i in range(2):
        ct = rng.integers(0, 4096, size=(32, 32)).astype(np.uint16)  # 12-bit values
        Image.fromarray(ct).save(tmp_path / "d" / "images" / f"ct{i}.png")
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 8:20] = 255
        Image.fromarray(mask).save(tmp_path / "d" / "masks" / f"ct{i}.png")
    res = _cli("--data", str(tmp_path / "d"), "--size", "32", "--intensity", "dtype",
               "--out", str(tmp_path / "o"))  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "ct0.png" in res.output and "--intensity percentile" in res.output
