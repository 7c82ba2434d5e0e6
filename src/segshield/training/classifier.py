"""Train the seed's small CNN classifier (seed mammography: FGSM against a CNN classifier) on a
:class:`~segshield.data.classification.ClassificationDataset`: Adam, cross-entropy (class
weighted against imbalance), random flips and 90-degree rotations. Seeded: the same config
gives the same weights on the same machine. Writes safetensors weights and a JSON model card,
and reads them back (:func:`classifier_from_card`, :func:`bundled_patch_classifier`).
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import segshield
from segshield.data.classification import ClassificationDataset
from segshield.errors import ModelLoadError, SegShieldError
from segshield.hashing import sha256_file
from segshield.models.card import ModelCard
from segshield.models.classifier import SmallCNN
from segshield.models.loading import LoadedModel, state_dict_from_file
from segshield.training.fit import BatchProgress, EpochSummary

log = logging.getLogger(__name__)

__all__ = [
    "BUNDLED_CLASSIFIER",
    "ClassifierTrainConfig",
    "ClassifierTrainResult",
    "augment_images",
    "bundled_patch_classifier",
    "classifier_degenerate",
    "classifier_from_card",
    "evaluate_classifier",
    "train_nuclei_patch_classifier",
    "train_patch_classifier",
]

BUNDLED_CLASSIFIER = "cnn_nuclei_patches"


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Hyper-parameters of one classifier training run (all recorded in the model card)."""

    name: str = BUNDLED_CLASSIFIER
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    width: int = 16
    hidden: int = 50
    class_weighted: bool = True  # cross-entropy weights inversely proportional to class counts


@dataclass(frozen=True)
class ClassifierTrainResult:
    weights: Path
    card: Path
    test_metrics: dict
    seconds: float
    degenerate: str | None = None


def augment_images(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal/vertical flips and 90-degree rotations, drawn per image.

    images: ``(N, C, h, w)`` with ``h == w`` (rotations keep the shape); returns the same shape.
    """
    out = []
    for img in images:
        if torch.rand((), generator=gen) < 0.5:
            img = img.flip(-1)
        if torch.rand((), generator=gen) < 0.5:
            img = img.flip(-2)
        k = int(torch.randint(0, 4, (), generator=gen))
        out.append(torch.rot90(img, k, (-2, -1)))
    return torch.stack(out)


def evaluate_classifier(
    model: torch.nn.Module, data: ClassificationDataset, batch_size: int = 256
) -> dict:
    """Clean test metrics: accuracy, balanced accuracy, per-class accuracy, mean CE loss,
    the confusion matrix ``[true][pred]`` and ``n_images``."""
    model.eval()
    logits = []
    with torch.inference_mode():
        for i in range(0, len(data), batch_size):
            logits.append(model(torch.from_numpy(data.images[i : i + batch_size])))
    out = torch.cat(logits)
    labels = torch.from_numpy(data.labels)
    loss = float(F.cross_entropy(out, labels))
    pred = out.argmax(1).numpy()
    k = len(data.classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (data.labels, pred), 1)
    per_class = {
        name: (float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None)
        for c, name in enumerate(data.classes)
    }
    present = [v for v in per_class.values() if v is not None]
    return {
        "accuracy": float((pred == data.labels).mean()),
        "balanced_accuracy": float(np.mean(present)),
        "per_class_accuracy": per_class,
        "loss": loss,
        "confusion": confusion.tolist(),
        "n_images": len(data),
    }


def _versions() -> dict:
    return {
        "segshield": segshield.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def _class_weights(train: ClassificationDataset) -> torch.Tensor:
    """Cross-entropy weights inversely proportional to the class counts of `train`."""
    counts = np.bincount(train.labels, minlength=len(train.classes)).astype(np.float64)
    if (counts == 0).any():
        raise SegShieldError(f"class weighting needs every class in train: {counts}")
    return torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)


def _fit(
    model: SmallCNN,
    train: ClassificationDataset,
    config: ClassifierTrainConfig,
    weight: torch.Tensor | None,
    gen: torch.Generator,
    on_batch: Callable[[BatchProgress], None] | None = None,
    on_epoch: Callable[[EpochSummary], None] | None = None,
) -> None:
    """Adam on (weighted) cross-entropy over augmented, shuffled batches, in place; the
    callbacks hear of every batch and epoch (no validation here: the val fields are None)."""
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    images = torch.from_numpy(train.images)
    labels = torch.from_numpy(train.labels)
    n = len(train)
    batches = -(-n // config.batch_size)
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for k, s in enumerate(range(0, n, config.batch_size)):
            b = order[s : s + config.batch_size]
            loss = F.cross_entropy(model(augment_images(images[b], gen)), labels[b], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
            if on_batch is not None:
                on_batch(BatchProgress(epoch, config.epochs, k + 1, batches, total / (s + len(b))))
        log.info("epoch %d/%d ce %.4f", epoch, config.epochs, total / n)
        if on_epoch is not None:
            seconds = time.perf_counter() - t0
            on_epoch(EpochSummary(epoch, config.epochs, total / n, None, None, False, seconds))


def classifier_degenerate(metrics: dict, classes: tuple[str, ...]) -> str | None:
    """Why a classifier is degenerate: one class predicted for every test image while the
    test images hold several (from ``metrics["confusion"]``, ``[true][pred]``); or None."""
    confusion = np.asarray(metrics["confusion"])
    predicted = np.flatnonzero(confusion.sum(axis=0))
    present = np.flatnonzero(confusion.sum(axis=1))
    if len(predicted) == 1 and len(present) > 1:
        return f"it predicts {classes[predicted[0]]!r} for every image of the test data"
    return None


def train_patch_classifier(
    config: ClassifierTrainConfig,
    train: ClassificationDataset,
    test: ClassificationDataset,
    out_dir: Path,
    command: str = "",
    on_batch: Callable[[BatchProgress], None] | None = None,
    on_epoch: Callable[[EpochSummary], None] | None = None,
) -> ClassifierTrainResult:
    """Fit a :class:`SmallCNN` on `train`, evaluate on `test` (never used for selection);
    write ``<out_dir>/<name>.safetensors`` and ``<name>.json`` (a :class:`ModelCard`).

    train/test: images ``(N, C, h, w)`` with ``h == w`` (rotation augmentation), same classes.
    command: the exact call that produced the weights, recorded in the card. A degenerate
    classifier (:func:`classifier_degenerate`) is recorded in the result and card, not
    refused: the caller decides (the CLI exits 1 unless --allow-degenerate).
    """
    if train.classes != test.classes:
        raise SegShieldError(f"train classes {train.classes} differ from test {test.classes}")
    if train.image_shape[0] != test.image_shape[0]:
        raise SegShieldError("train and test images have different channel counts")
    if train.image_shape[1] != train.image_shape[2]:
        raise SegShieldError(f"rotation augmentation needs square images, got {train.image_shape}")
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = SmallCNN(train.image_shape[0], len(train.classes), config.width, config.hidden)
    weight = _class_weights(train) if config.class_weighted else None
    _fit(model, train, config, weight, gen, on_batch, on_epoch)
    metrics = evaluate_classifier(model, test)
    degenerate = classifier_degenerate(metrics, test.classes)
    train_metrics = evaluate_classifier(model, train)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{config.name}.safetensors"
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"format": "pt", "segshield": segshield.__version__})
    seconds = time.perf_counter() - t0
    card = ModelCard(
        name=config.name,
        architecture=model.to_dict(),
        weights_file=weights.name,
        weights_sha256=sha256_file(weights),
        data={
            "classes": list(train.classes),
            "train": {k: v for k, v in train.describe().items() if k != "names"},
            "test": {k: v for k, v in test.describe().items() if k != "names"},
        },
        training={
            **asdict(config),
            "optimizer": "Adam",
            "loss": "cross_entropy",
            "class_weights": None if weight is None else [float(w) for w in weight],
            "augmentation": ["hflip", "vflip", "rot90"],
            "train_accuracy": train_metrics["accuracy"],
            "degenerate": degenerate,
            "seconds": round(seconds, 1),
            "torch_threads": torch.get_num_threads(),
        },
        test_metrics=metrics,
        versions=_versions(),
        command=command,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    card_path = out_dir / f"{config.name}.json"
    card.write(card_path)
    log.info("wrote %s and %s: test accuracy %.4f", weights, card_path, metrics["accuracy"])
    return ClassifierTrainResult(weights, card_path, metrics, seconds, degenerate)


def train_nuclei_patch_classifier(
    out_dir: Path,
    config: ClassifierTrainConfig | None = None,
    train_stride: int = 16,
    test_stride: int = 32,
) -> ClassifierTrainResult:
    """The shipped classifier's recipe: 32x32 patches of the bundled nuclei tiles (train split
    with overlapping stride `train_stride`, test split non-overlapping), then
    :func:`train_patch_classifier`. The exact call is recorded as the card's ``command``."""
    from segshield.data.classification import patch_classification_from_segmentation
    from segshield.data.loaders import bundled_dataset

    config = config or ClassifierTrainConfig()
    train = patch_classification_from_segmentation(
        bundled_dataset("nuclei", "train"), stride=train_stride
    )
    test = patch_classification_from_segmentation(
        bundled_dataset("nuclei", "test"), stride=test_stride
    )
    command = (
        "from pathlib import Path; "
        "from segshield.training.classifier import ClassifierTrainConfig, "
        "train_nuclei_patch_classifier; "
        f"train_nuclei_patch_classifier(Path({str(out_dir)!r}), {config!r}, "
        f"train_stride={train_stride}, test_stride={test_stride})"
    )
    return train_patch_classifier(config, train, test, Path(out_dir), command=command)


def classifier_from_card(card_path: Path) -> LoadedModel:
    """A :class:`SmallCNN` from its model card and the safetensors file the card names
    (strict load; the file's SHA-256 must match the card's ``weights_sha256``)."""
    card = ModelCard.read(card_path)
    arch = dict(card.architecture)
    if arch.pop("architecture", None) != "small_cnn":
        raise ModelLoadError(f"{card_path}: not a small_cnn card ({card.architecture!r})")
    try:
        module = SmallCNN(**arch)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{card_path}: bad architecture {card.architecture!r}: {exc}") from exc
    weights = Path(card_path).parent / card.weights_file
    state = state_dict_from_file(weights)
    digest = sha256_file(weights)
    if card.weights_sha256 and digest != card.weights_sha256:
        raise ModelLoadError(
            f"{weights}: SHA-256 {digest} differs from the card's {card.weights_sha256}"
        )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"weights {weights} do not fit the model: {exc}") from exc
    return LoadedModel(
        module.eval(),
        {"source": "card", "name": card.name, "weights": str(weights), "card": card.to_dict()},
    )


def bundled_patch_classifier() -> LoadedModel:
    """The small CNN shipped with segshield, trained on 32x32 patches of the nuclei tiles
    (classes background / nucleus)."""
    card = Path(str(resources.files("segshield.models") / "resources")) / (
        f"{BUNDLED_CLASSIFIER}.json"
    )
    if not card.is_file():
        raise ModelLoadError(f"the bundled classifier card {card} is missing")
    loaded = classifier_from_card(card)
    loaded.description["source"] = "bundled"
    return loaded
