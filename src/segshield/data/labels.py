"""Multi-label masks from a label map: named groups of label values (which may overlap, as
BraTS's nested tumour regions do) -> one {0, 1} channel per group."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segshield.errors import DataError

LabelGroups = list[tuple[str, tuple[int, ...]]]


def parse_label_groups(texts: Sequence[str]) -> LabelGroups:
    """``["core=1,3", "whole=1,2,3"]`` -> [("core", (1, 3)), ("whole", (1, 2, 3))]."""
    groups = []
    for text in texts:
        name, _, values = str(text).partition("=")
        try:
            labels = tuple(int(v) for v in values.split(","))
        except ValueError:
            labels = ()
        if not name.strip() or not labels or min(labels) < 0:
            raise DataError(f"label group {text!r} must look like name=1,2,3")
        groups.append((name.strip(), labels))
    return groups


def label_map_classes(groups: LabelGroups) -> int:
    """The label-map class count that holds every value the groups name."""
    return max(v for _, values in groups for v in values) + 1


def multi_hot(masks: np.ndarray, groups: LabelGroups) -> np.ndarray:
    """Label maps (N, 1, *spatial) -> multi-label masks (N, K, *spatial) in {0, 1}: channel k
    is 1 where the label is one of group k's values (groups may overlap)."""
    channels = [np.isin(masks[:, :1], values) for _, values in groups]
    return np.concatenate(channels, axis=1).astype(np.uint8)
