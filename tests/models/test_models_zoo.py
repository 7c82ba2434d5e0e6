"""segshield.models.zoo: MONAI factories build, give logits of the input's size (one tensor,
also for U-Net++), load plain MONAI weights, never download, say how to install MONAI, and
export to ONNX Runtime FP32 with parity against PyTorch."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from segshield.data import bundled_dataset
from segshield.errors import ModelLoadError
from segshield.models import model_from_factory, zoo

MONAI_SKIP = "monai is not installed (pip install 'segshield[monai]')"


@pytest.fixture
def nets():
    """monai.networks.nets, or skip."""
    pytest.importorskip("monai", reason=MONAI_SKIP)
    from monai.networks import nets

    return nets


def _logits(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        return model.eval()(torch.rand(*shape, generator=gen))


@pytest.mark.parametrize(
    ("factory", "kwargs", "shape", "out_shape"),
    [
        (zoo.monai_unet, {}, (1, 1, 64, 64), (1, 1, 64, 64)),
        (zoo.monai_unet, {"out_channels": 3, "channels": [8, 16], "strides": [2]},
         (2, 1, 32, 48), (2, 3, 32, 48)),
        (zoo.monai_unet3d, {}, (1, 1, 16, 32, 32), (1, 1, 16, 32, 32)),
        (zoo.monai_unetpp, {}, (1, 1, 64, 64), (1, 1, 64, 64)),
        (zoo.monai_unetpp, {"in_channels": 3, "out_channels": 2, "features": [8, 8, 8, 8, 8, 8]},
         (1, 3, 32, 32), (1, 2, 32, 32)),
    ],
)  # fmt: skip
def test_factory_maps_images_to_logits_of_their_size(nets, factory, kwargs, shape, out_shape):
    torch.manual_seed(0)
    out = _logits(factory(**kwargs), shape)
    assert type(out) is torch.Tensor  # not MONAI's list (U-Net++) nor a MetaTensor
    assert tuple(out.shape) == out_shape
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet-b0"])
def test_flexible_unet_encoders(nets, backbone):
    torch.manual_seed(0)
    model = zoo.monai_flexible_unet(backbone)
    out = _logits(model, (1, 1, 64, 64))
    assert type(out) is torch.Tensor and tuple(out.shape) == (1, 1, 64, 64)
    # efficientnet's custom-autograd Swish (untraceable by the ONNX exporter) is swapped out
    kinds = {type(m).__name__ for m in model.modules()}
    assert "MemoryEfficientSwish" not in kinds


def test_zero_pad_shortcut_values_and_gradient():
    """Hand-computed: stride-2 sub-sampling of a 1x2x4x4 ramp, zero channels up to 3; the
    gradient of the sum is 1 on the sampled pixels and 0 elsewhere (MONAI's is all zero)."""
    x = torch.arange(32, dtype=torch.float32).reshape(1, 2, 4, 4).requires_grad_(True)
    out = zoo.ZeroPadShortcut(planes=3, stride=2, spatial_dims=2)(x)
    expected = torch.tensor([[[0.0, 2.0], [8.0, 10.0]], [[16.0, 18.0], [24.0, 26.0]]])
    assert tuple(out.shape) == (1, 3, 2, 2)
    torch.testing.assert_close(out[0, :2], expected, rtol=0, atol=0)
    assert out[0, 2].abs().sum() == 0
    out.sum().backward()
    sampled = torch.zeros(4, 4)
    sampled[::2, ::2] = 1.0
    torch.testing.assert_close(x.grad[0], sampled.expand(2, 4, 4), rtol=0, atol=0)


def test_resnet_flexible_unet_computes_monais_function(nets):
    """The replaced shortcuts change no value: MONAI's own FlexibleUNet with the same weights
    gives bit-identical logits, while its input gradient misses the shortcut paths."""
    torch.manual_seed(0)
    ours = zoo.monai_flexible_unet("resnet18").eval()
    assert sum(isinstance(m, zoo.ZeroPadShortcut) for m in ours.modules()) == 3
    theirs = nets.FlexibleUNet(1, 1, "resnet18", pretrained=False).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    grads = []
    for model in (ours, theirs):
        xi = x.clone().requires_grad_(True)
        logits = model(xi)
        logits.sum().backward()
        grads.append((logits.detach(), xi.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=0)
    assert not torch.allclose(grads[0][1], grads[1][1])


def test_unetpp_is_monais_final_head_with_monais_keys(nets, tmp_path: Path):
    """Weights of a plain MONAI BasicUNetPlusPlus load unchanged into the factory's model
    (the CLI's --weights path), and the model returns the last deep-supervision output."""
    torch.manual_seed(3)
    features = (8, 8, 16, 16, 32, 8)
    plain = nets.BasicUNetPlusPlus(
        spatial_dims=2, in_channels=1, out_channels=1, features=features, deep_supervision=True
    ).eval()
    weights = tmp_path / "unetpp.safetensors"
    save_file({k: v.contiguous() for k, v in plain.state_dict().items()}, str(weights))

    loaded = model_from_factory(
        "segshield.models.zoo:monai_unetpp", weights, features=list(features)
    ).module
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        heads = plain(x)
        got = loaded(x)
    assert len(heads) == 4
    torch.testing.assert_close(got, heads[-1], rtol=0, atol=0)


def test_flexible_unet_refuses_pretrained(nets):
    with pytest.raises(ValueError, match="never"):
        zoo.monai_flexible_unet("resnet18", pretrained=True)


def test_bad_sizes_are_named(nets):
    with pytest.raises(ValueError, match="features must have 6 values"):
        zoo.monai_unetpp(features=[8, 8])
    with pytest.raises(ValueError, match="strides must have 3 values"):
        zoo.monai_unet(strides=[2, 2])


@pytest.mark.parametrize(
    "name", ["monai_unet", "monai_unet3d", "monai_unetpp", "monai_flexible_unet"]
)
def test_missing_monai_gives_install_hint(monkeypatch, name):
    monkeypatch.setitem(sys.modules, "monai", None)  # import monai -> ImportError
    with pytest.raises(ModelLoadError, match=r"pip install 'segshield\[monai\]'"):
        getattr(zoo, name)()
    # through the loader the CLI uses: still one line with the hint
    with pytest.raises(ModelLoadError, match=r"pip install 'segshield\[monai\]'") as info:
        model_from_factory(f"segshield.models.zoo:{name}")
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_unetpp_exports_to_ort_fp32_with_parity(nets, tmp_path: Path):
    """The list-returning U-Net++ goes through segshield's engine builder: FP32 ONNX export
    (dynamo), ONNX Runtime load, clean parity on real bundled lesion slices."""
    from segshield.engines.build import build_engines

    torch.manual_seed(0)
    model = zoo.monai_unetpp(features=(8, 8, 16, 16, 32, 8)).eval()
    sample = bundled_dataset("lesions", "test", size=(64, 64)).images[:2]
    (built,) = build_engines(["ort-fp32"], model, None, tmp_path, sample=sample)
    assert built.ok, built.record.reason
    parity = built.record.parity
    assert parity["logit_max_abs_err"] < 1e-4 + 1e-5 * parity["logit_scale"]
    assert parity["flipped_pixels"] == 0 and parity["mask_dice"] == 1.0

    # and the runner computes the model's logits on an image it was not checked on
    image = bundled_dataset("lesions", "test", size=(64, 64)).images[2:3]
    with torch.no_grad():
        expected = model(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(built.runner.infer(image), expected, atol=1e-4, rtol=0)


def test_unetpp_class_is_findable_by_name(nets):
    """pickle / torch.save of the whole model look the class up by module and name."""
    import pickle

    model = zoo.monai_unetpp(features=(4, 4, 4, 4, 4, 4))
    assert zoo.MonaiUNetPlusPlus is type(model)
    clone = pickle.loads(pickle.dumps(model))
    torch.testing.assert_close(_logits(clone, (1, 1, 32, 32)), _logits(model, (1, 1, 32, 32)))
