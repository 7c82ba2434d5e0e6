"""Stage 1 — data: real images and binary masks, preprocessed to [0, 1] at a fixed size."""

from segshield.data.classification import (
    PATCH_CLASSES,
    ClassificationDataset,
    patch_classification_from_segmentation,
)
from segshield.data.dataset import SegDataset
from segshield.data.loaders import (
    BUNDLED,
    DEFAULT_SIZE,
    bundled_dataset,
    bundled_dataset_path,
    dataset_from_busi,
    dataset_from_folder,
    dataset_from_path,
    target_mask_from_file,
)

__all__ = [
    "BUNDLED",
    "DEFAULT_SIZE",
    "PATCH_CLASSES",
    "ClassificationDataset",
    "SegDataset",
    "bundled_dataset",
    "bundled_dataset_path",
    "dataset_from_busi",
    "dataset_from_folder",
    "dataset_from_path",
    "patch_classification_from_segmentation",
    "target_mask_from_file",
]
