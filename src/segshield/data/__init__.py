"""Stage 1 — data: real images and masks (2D files or medical volumes), preprocessed to [0, 1]
at a fixed size; intensity scaling that a radiologist would accept, recorded for the report."""

from segshield.data.classification import (
    PATCH_CLASSES,
    ClassificationDataset,
    patch_classification_from_segmentation,
)
from segshield.data.dataset import SegDataset
from segshield.data.intensity import (
    WINDOW_PRESETS,
    Intensity,
    IntensityMode,
    check_intensities,
    intensity_from_options,
    parse_window,
    resolve_intensity,
    scale_intensity,
)
from segshield.data.layout import (
    LAYOUTS,
    VOLUME_MODES,
    bundled_volumes_dataset,
    check_model_input,
    dataset_from_path,
    detect_channels,
    detect_layout,
)
from segshield.data.loaders import (
    BUNDLED,
    DEFAULT_SIZE,
    bundled_dataset,
    bundled_dataset_path,
    dataset_from_busi,
    dataset_from_folder,
    target_mask_from_file,
)
from segshield.data.medical import INSTALL_HINT, Volume, read_volume
from segshield.data.volume_layouts import (
    BUNDLED_VOLUMES_TEST,
    VolumePair,
    bundled_volumes_path,
    volume_pairs,
)
from segshield.data.volumes import (
    DEFAULT_VOLUME_SIZE,
    check_channels,
    slices_from_volumes,
    split_by_volume,
    volumes_dataset,
)

__all__ = [
    "BUNDLED",
    "BUNDLED_VOLUMES_TEST",
    "DEFAULT_SIZE",
    "DEFAULT_VOLUME_SIZE",
    "INSTALL_HINT",
    "LAYOUTS",
    "PATCH_CLASSES",
    "VOLUME_MODES",
    "WINDOW_PRESETS",
    "ClassificationDataset",
    "Intensity",
    "IntensityMode",
    "SegDataset",
    "Volume",
    "VolumePair",
    "bundled_dataset",
    "bundled_dataset_path",
    "bundled_volumes_dataset",
    "bundled_volumes_path",
    "check_channels",
    "check_intensities",
    "check_model_input",
    "dataset_from_busi",
    "dataset_from_folder",
    "dataset_from_path",
    "detect_channels",
    "detect_layout",
    "intensity_from_options",
    "parse_window",
    "patch_classification_from_segmentation",
    "read_volume",
    "resolve_intensity",
    "scale_intensity",
    "slices_from_volumes",
    "split_by_volume",
    "target_mask_from_file",
    "volume_pairs",
    "volumes_dataset",
]
