"""Training workflow (beside the audit pipeline): fit the seed U-Net on a dataset, write
safetensors weights and a JSON model card."""

from segshield.training.train import TrainConfig, TrainResult, augment, train

__all__ = ["TrainConfig", "TrainResult", "augment", "train"]
