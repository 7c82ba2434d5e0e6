"""Stage 2 — models: the seed U-Net and safe loaders for users' models."""

from segshield.models.card import ModelCard
from segshield.models.classifier import SmallCNN
from segshield.models.fingerprint import module_fingerprint
from segshield.models.loading import (
    BUNDLED_MODEL,
    LoadedModel,
    ModelSpec,
    build_from_factory,
    bundled_model,
    bundled_model_dir,
    load_model,
    model_from_card,
    model_from_factory,
    model_from_file,
    state_dict_from_file,
)
from segshield.models.unet import UNet, UNetConfig, unet

__all__ = [
    "BUNDLED_MODEL",
    "LoadedModel",
    "ModelCard",
    "ModelSpec",
    "SmallCNN",
    "UNet",
    "UNetConfig",
    "build_from_factory",
    "bundled_model",
    "bundled_model_dir",
    "load_model",
    "model_from_card",
    "model_from_factory",
    "model_from_file",
    "module_fingerprint",
    "state_dict_from_file",
    "unet",
]
