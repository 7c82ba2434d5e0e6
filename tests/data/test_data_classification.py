"""Patch classification data derived from segmentation tiles: labelling rules on a hand-made
case, validation, hashing, and the class balance of the real bundled nuclei splits."""

from __future__ import annotations

import numpy as np
import pytest

from segshield.data import SegDataset, bundled_dataset
from segshield.data.classification import (
    PATCH_CLASSES,
    ClassificationDataset,
    patch_classification_from_segmentation,
)
from segshield.errors import DataError


def tiny_seg() -> SegDataset:
    """One 8x8 image cut into four 4x4 patches whose masks cover 0, 4, 1 and 16 of 16 pixels."""
    images = np.arange(64, dtype=np.float32).reshape(1, 1, 8, 8) / 64.0
    masks = np.zeros((1, 1, 8, 8), dtype=np.uint8)
    masks[0, 0, 0:2, 4:6] = 1  # top-right patch: 4/16 = 0.25
    masks[0, 0, 5, 1] = 1  # bottom-left patch: 1/16 = 0.0625
    masks[0, 0, 4:8, 4:8] = 1  # bottom-right patch: 16/16
    return SegDataset(images, masks, ("tile",), "hand-made", {"licence": "CC0"})


def test_patch_labels_golden_case() -> None:
    seg = tiny_seg()
    ds = patch_classification_from_segmentation(seg, patch=4, stride=4, positive_min=0.25)
    # top-left: pure background -> 0; top-right: exactly positive_min -> 1 (inclusive);
    # bottom-left: 1/16 is ambiguous -> dropped; bottom-right: full -> 1.
    assert ds.names == ("tile@y000x000", "tile@y000x004", "tile@y004x004")
    assert ds.labels.tolist() == [0, 1, 1]
    assert ds.labels.dtype == np.int64 and ds.images.dtype == np.float32
    assert ds.images.shape == (3, 1, 4, 4)
    np.testing.assert_array_equal(ds.images[0], seg.images[0, :, 0:4, 0:4])
    np.testing.assert_array_equal(ds.images[1], seg.images[0, :, 0:4, 4:8])
    np.testing.assert_array_equal(ds.images[2], seg.images[0, :, 4:8, 4:8])
    assert ds.classes == PATCH_CLASSES == ("background", "nucleus")
    assert ds.meta["dropped_ambiguous"] == 1
    assert ds.meta["licence"] == "CC0"
    assert ds.meta["parent_sha256"] == seg.sha256()
    assert ds.source == "hand-made:patches4/4"
    assert ds.class_counts() == {"background": 1, "nucleus": 2}


def test_negative_max_and_stride() -> None:
    seg = tiny_seg()
    # 1/16 coverage is background once negative_max allows it.
    ds = patch_classification_from_segmentation(
        seg, patch=4, stride=4, positive_min=0.25, negative_max=0.0625
    )
    assert ds.labels.tolist() == [0, 1, 0, 1]
    # Stride 2: a 3x3 grid of overlapping positions (y, x in 0, 2, 4).
    ds2 = patch_classification_from_segmentation(
        seg, patch=4, stride=2, positive_min=0.01, negative_max=0.0
    )
    assert len(ds2) + ds2.meta["dropped_ambiguous"] == 9
    assert ds2.meta["dropped_ambiguous"] == 0  # every patch is 0 or >= 1 pixel


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patch": 16}, "does not fit"),
        ({"patch": 0}, "patch"),
        ({"stride": 0}, "stride"),
        ({"positive_min": 0.1, "negative_max": 0.1}, "below"),
        ({"positive_min": 1.5}, r"\[0, 1\]"),
    ],
)
def test_bad_parameters(kwargs: dict, match: str) -> None:
    params = {"patch": 4, "stride": 4, **kwargs}
    with pytest.raises(DataError, match=match):
        patch_classification_from_segmentation(tiny_seg(), **params)


def test_no_patch_kept_is_an_error() -> None:
    seg = tiny_seg()
    masks = np.zeros_like(seg.masks)
    masks[0, 0, ::4, ::4] = 1  # one pixel in every 4x4 patch: all ambiguous
    with pytest.raises(DataError, match="ambiguous"):
        patch_classification_from_segmentation(
            SegDataset(seg.images, masks, seg.names, "dots"), patch=4, stride=4, positive_min=0.5
        )


def test_dataset_validation_hash_and_describe() -> None:
    images = np.zeros((3, 1, 4, 4), dtype=np.float32)
    labels = np.array([0, 1, 1], dtype=np.int64)
    ds = ClassificationDataset(images, labels, ("a", "b", "c"), "mem")
    assert len(ds) == 3 and ds.image_shape == (1, 4, 4)
    with pytest.raises(DataError, match="labels must lie"):
        ClassificationDataset(images, np.array([0, 1, 2]), ("a", "b", "c"), "mem")
    with pytest.raises(DataError, match="int64"):
        ClassificationDataset(images, labels.astype(np.int32), ("a", "b", "c"), "mem")
    with pytest.raises(DataError, match="float32"):
        ClassificationDataset(images.astype(np.float64), labels, ("a", "b", "c"), "mem")
    with pytest.raises(DataError, match="differ"):
        ClassificationDataset(images, labels, ("a", "b"), "mem")
    other = ClassificationDataset(images, labels[::-1].copy(), ("a", "b", "c"), "mem")
    assert ds.sha256() == ClassificationDataset(images, labels, ("a", "b", "c"), "x").sha256()
    assert ds.sha256() != other.sha256()
    desc = ds.describe()
    assert desc["class_counts"] == {"background": 1, "nucleus": 2}
    assert desc["class_fractions"]["nucleus"] == pytest.approx(2 / 3)
    assert desc["sha256"] == ds.sha256() and desc["n_images"] == 3
    assert len(ds.subset(2)) == 2 and ds.subset(None) is ds


@pytest.mark.parametrize(
    ("split", "background", "nucleus", "dropped"),
    [("train", 33, 113, 46), ("test", 13, 38, 13)],
)
def test_bundled_nuclei_class_balance(
    split: str, background: int, nucleus: int, dropped: int
) -> None:
    ds = patch_classification_from_segmentation(bundled_dataset("nuclei", split))
    counts = ds.class_counts()
    assert counts["background"] > 0 and counts["nucleus"] > 0
    # Golden counts of the shipped tiles at the defaults (32x32, stride 32, >= 10% / 0%).
    assert counts == {"background": background, "nucleus": nucleus}
    assert ds.meta["dropped_ambiguous"] == dropped
    assert ds.image_shape == (1, 32, 32)
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
