"""MONAI networks as segshield model factories (the optional ``segshield[monai]`` extra).

Use one as ``segshield audit --model segshield.models.zoo:NAME [--model-kwargs JSON]
[--weights w.safetensors]``. Every factory builds a randomly initialised network (seed with
``torch.manual_seed`` first for reproducible weights) that maps float32 images in [0, 1],
``(N, C, H, W)`` or ``(N, C, D, H, W)``, to raw logits of the same spatial size with
``out_channels`` channels (sigmoid for 1 channel, softmax for more). Nothing is ever
downloaded: MONAI's pretrained weights are refused (train your own, or pass ``--weights``).

The state-dict keys are MONAI's own, so weights saved from the plain MONAI network
(``torch.save(net.state_dict())`` or safetensors) load into the factory's model unchanged.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from segshield.errors import ModelLoadError

__all__ = [
    "INSTALL_HINT",
    "ZeroPadShortcut",
    "monai_flexible_unet",
    "monai_unet",
    "monai_unet3d",
    "monai_unetpp",
]

INSTALL_HINT = "pip install 'segshield[monai]'"
FLEXIBLE_BACKBONES = ("resnet10", "resnet18", "resnet34", "efficientnet-b0", "efficientnet-b1")


def _monai_nets() -> ModuleType:
    """``monai.networks.nets``, or ModelLoadError with the install hint."""
    try:
        # import the top package first: with monai blocked (sys.modules["monai"] = None) a
        # cached ``monai.networks.nets`` would otherwise still import
        importlib.import_module("monai")
        return importlib.import_module("monai.networks.nets")
    except ImportError as exc:
        raise ModelLoadError(
            f"the MONAI model zoo needs monai, which is not installed: {INSTALL_HINT} ({exc})"
        ) from exc


def _ints(name: str, values: Sequence[int], length: int | None = None) -> tuple[int, ...]:
    """`values` as a tuple of positive ints (JSON gives lists); ValueError naming `name`."""
    out = tuple(values)
    if not out or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in out):
        raise ValueError(f"{name} must be a list of positive integers, got {values!r}")
    if length is not None and len(out) != length:
        raise ValueError(f"{name} must have {length} values, got {len(out)}")
    return out


def monai_unet(
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 1,
    channels: Sequence[int] = (16, 32, 64, 128),
    strides: Sequence[int] = (2, 2, 2),
    num_res_units: int = 2,
) -> nn.Module:
    """MONAI ``UNet`` (residual units, instance norm): ``(N, in_channels, H, W)`` (or
    ``(N, in_channels, D, H, W)`` with ``spatial_dims=3``) -> logits ``(N, out_channels, H,
    W)``. Each spatial size must be divisible by the product of ``strides`` (8 by default)
    and at least twice it (instance norm needs more than one pixel at the bottom).
    ``channels`` has one more entry than ``strides``."""
    nets = _monai_nets()
    chans = _ints("channels", channels)
    steps = _ints("strides", strides, len(chans) - 1)
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return nets.UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=chans,
        strides=steps,
        num_res_units=num_res_units,
    )


def monai_unet3d(
    in_channels: int = 1,
    out_channels: int = 1,
    channels: Sequence[int] = (8, 16, 32, 64),
    strides: Sequence[int] = (2, 2, 2),
    num_res_units: int = 1,
) -> nn.Module:
    """MONAI ``UNet`` in 3D, small enough for 32x64x64 volumes on a CPU (150 k parameters):
    ``(N, in_channels, D, H, W)`` -> logits ``(N, out_channels, D, H, W)``; D, H and W must
    be divisible by the product of ``strides`` (8 by default)."""
    return monai_unet(3, in_channels, out_channels, channels, strides, num_res_units)


@functools.cache
def _unetpp_class() -> type[nn.Module]:
    """A ``BasicUNetPlusPlus`` subclass whose forward returns the final head's tensor (built
    once, on first use, so that importing this module does not import MONAI)."""
    base = _monai_nets().BasicUNetPlusPlus

    class MonaiUNetPlusPlus(base):  # type: ignore[misc, valid-type]
        """MONAI's U-Net++ returning one tensor, the prediction of its last node (x_0_4)."""

        def forward(self, x: Tensor) -> Tensor:
            # MONAI returns a list: [x_0_4's logits] without deep supervision, or the heads of
            # x_0_1 .. x_0_4 with it; the last one is the full-depth prediction either way
            return super().forward(x)[-1]

    MonaiUNetPlusPlus.__qualname__ = "MonaiUNetPlusPlus"
    MonaiUNetPlusPlus.__module__ = __name__
    return MonaiUNetPlusPlus


def __getattr__(name: str) -> Any:
    # `zoo.MonaiUNetPlusPlus` resolves (MONAI imported on demand), so the class is findable
    # by its module and name, as pickle and torch.save of a whole model need
    if name == "MonaiUNetPlusPlus":
        return _unetpp_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def monai_unetpp(
    in_channels: int = 1,
    out_channels: int = 1,
    features: Sequence[int] = (16, 16, 32, 64, 128, 16),
    spatial_dims: int = 2,
) -> nn.Module:
    """MONAI ``BasicUNetPlusPlus`` (U-Net++, Zhou et al. 2018; instance norm, LeakyReLU),
    wrapped so that forward returns one tensor: ``(N, in_channels, H, W)`` -> logits
    ``(N, out_channels, H, W)`` of the final node (deep supervision off, as MONAI's
    inference default). H and W should be divisible by 16 (four 2x poolings; other sizes
    are padded inside the network) and at least 32 (instance norm needs 2x2 pixels at the
    bottom). ``features``: five encoder widths and the width after
    the last up-sampling. The three deep-supervision heads stay in the state dict (MONAI's
    keys) but are not used."""
    _monai_nets()  # the class below is cached: check monai is still importable on every call
    fea = _ints("features", features, 6)
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return _unetpp_class()(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        features=fea,
        deep_supervision=False,
    )


class ZeroPadShortcut(nn.Module):
    """The parameter-free "type A" shortcut of MONAI's ResNet-18/34 (stride-``stride``
    sub-sampling, then zero channels up to ``planes``), with the same values but written so
    that it keeps the input's gradient and a symbolic batch size.

    MONAI's ``ResNet._downsample_basic_block`` concatenates ``out.data`` (detached: no
    gradient flows through the shortcut, so attacks and training see a partial gradient) with
    ``torch.zeros(out.size(0), ...)`` (the tracing ONNX exporter bakes that batch size in).
    """

    def __init__(self, planes: int, stride: int, spatial_dims: int) -> None:
        super().__init__()
        self.planes, self.stride, self.spatial_dims = planes, stride, spatial_dims

    def forward(self, x: Tensor) -> Tensor:
        # a kernel-1 average pool, as MONAI's, is a strided sub-sampling
        pool = F.avg_pool2d if self.spatial_dims == 2 else F.avg_pool3d
        out = pool(x, kernel_size=1, stride=self.stride)
        # F.pad lists (before, after) from the last dim back: pad channels (dim 1) after
        return F.pad(out, (0, 0) * self.spatial_dims + (0, self.planes - out.shape[1]))

    def extra_repr(self) -> str:
        return f"planes={self.planes}, stride={self.stride}"


def _fix_resnet_shortcuts(model: nn.Module) -> int:
    """Replace every MONAI type-A shortcut (a ``functools.partial`` of
    ``_downsample_basic_block``) in `model` by :class:`ZeroPadShortcut`; returns how many."""
    count = 0
    for module in model.modules():
        down = getattr(module, "downsample", None)
        if getattr(getattr(down, "func", None), "__name__", "") == "_downsample_basic_block":
            kw = down.keywords
            module.downsample = ZeroPadShortcut(kw["planes"], kw["stride"], kw["spatial_dims"])
            count += 1
    return count


def monai_flexible_unet(
    backbone: str = "resnet18",
    in_channels: int = 1,
    out_channels: int = 1,
    pretrained: bool = False,
    decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
) -> nn.Module:
    """MONAI ``FlexibleUNet``: a U-Net decoder on a ResNet or EfficientNet encoder, 2D,
    ``(N, in_channels, H, W)`` -> logits ``(N, out_channels, H, W)``. H and W should be
    divisible by 32 (five 2x down-samplings; other sizes are padded inside the network).
    ``backbone``: one of FLEXIBLE_BACKBONES (any MONAI FlexibleUNet backbone is accepted).
    ``pretrained`` must stay False: segshield never downloads weights (ImageNet weights also
    need 3 input channels); train from scratch or load yours with ``--weights``.
    Two export fixes that keep MONAI's values and state-dict keys: EfficientNet's
    memory-efficient Swish (a custom autograd function) becomes the plain x * sigmoid(x), and
    ResNet-10/18/34's parameter-free shortcuts become :class:`ZeroPadShortcut` (MONAI's
    detach the shortcut from the gradient and fix the batch size of an ONNX export)."""
    if pretrained:
        raise ValueError(
            "pretrained=True would download weights, which segshield never does; build "
            "with pretrained=False and pass trained weights with --weights"
        )
    if not isinstance(backbone, str):
        raise ValueError(f"backbone must be a name such as resnet18, got {backbone!r}")
    nets = _monai_nets()
    model: Any = nets.FlexibleUNet(
        in_channels=in_channels,
        out_channels=out_channels,
        backbone=backbone,
        pretrained=False,
        decoder_channels=_ints("decoder_channels", decoder_channels, 5),
        spatial_dims=2,
    )
    if hasattr(model.encoder, "set_swish"):
        model.encoder.set_swish(memory_efficient=False)
    _fix_resnet_shortcuts(model.encoder)
    return model
