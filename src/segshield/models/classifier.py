"""A small CNN image classifier, after seed mammography (FGSM against a mammogram classifier).

Two 5x5 convolutions with ReLU, each followed by 2x2 max-pooling, then two fully connected
layers (hidden width 50, as the seed's 180x50 / 50x2 head). A global average pool between the
two parts makes it accept any input of at least 4x4 pixels. Output: logits ``(N, num_classes)``
(softmax / cross-entropy at training and inference); attacks and losses take them with class
index targets ``(N,)`` (see :mod:`segshield.attacks.layout`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """``(N, in_channels, H, W)`` images in [0, 1] -> logits ``(N, num_classes)``.

    Args:
        in_channels: image channels (1 for grey-level mammograms).
        num_classes: classes (2: normal / cancer).
        width: channels of the first convolution (the second has ``2 * width``).
        hidden: units of the hidden fully connected layer.

    ``H`` and ``W`` must be at least 4 (two 2x2 poolings). PyTorch's default initialisation;
    seed with ``torch.manual_seed`` before building for reproducible weights.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 2, width: int = 16, hidden: int = 50
    ) -> None:
        super().__init__()
        for what, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("width", width),
            ("hidden", hidden),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SmallCNN: {what} must be an integer >= 1, got {value!r}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.width, self.hidden = width, hidden
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * width, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def to_dict(self) -> dict[str, Any]:
        """The architecture, JSON-serialisable (for model cards and reports)."""
        return {
            "architecture": "small_cnn",
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "width": self.width,
            "hidden": self.hidden,
        }
