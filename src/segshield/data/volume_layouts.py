"""Where the volumes of a dataset are: image/label pairs found by layout.

- Medical Segmentation Decathlon: ``dataset.json`` with a ``training`` list of
  ``{"image", "label"}`` under ``imagesTr/`` and ``labelsTr/``, ``modality`` and ``labels``
  maps; nnU-Net v2's variant (``channel_names``, no list, one file per channel named
  ``case_0000.nii.gz``) too;
- ``images/`` + ``masks/`` folders of volumes (NIfTI, NRRD, DICOM series sub-folders) paired by
  stem (the name without .nii.gz / .nrrd ...);
- flat folders of ``X_image.nrrd`` + ``X_label.nrrd`` (``_mask``, ``_seg`` too), as the
  pyradiomics test data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from segshield.data.loaders import matched_stems
from segshield.data.medical import is_volume_path, volume_stem
from segshield.errors import DataError

__all__ = [
    "BUNDLED_VOLUMES_TEST",
    "VolumePair",
    "bundled_volumes_path",
    "has_volumes",
    "volume_pairs",
]

# The bundled volumes' test cases (split by patient, as the bundled 2D lesion slices).
BUNDLED_VOLUMES_TEST = ("brain2", "lung1")
_FLAT = re.compile(r"^(?P<case>.+)_(?P<kind>image|img|label|labels|mask|seg)$", re.IGNORECASE)
_NNUNET_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")


@dataclass(frozen=True)
class VolumePair:
    """One case: its image file(s) (several = one per channel, nnU-Net style), its label,
    and what the dataset says about it (modality "CT"/"MR"..., channel and label names)."""

    name: str
    images: tuple[Path, ...]
    mask: Path
    modality: str | None = None
    channel_names: tuple[str, ...] = ()
    label_names: tuple[str, ...] = ()


def _entries(folder: Path) -> dict[str, Path]:
    """Volume files and DICOM series folders of ``folder`` by stem (hidden files skipped:
    the Decathlon archives carry macOS ``._x.nii.gz`` companions)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not is_volume_path(p):
            continue
        stem = volume_stem(p)
        if stem in out:
            raise DataError(f"{out[stem]} and {p} have the same case name {stem!r}")
        out[stem] = p
    return out


def has_volumes(folder: Path) -> bool:
    """Whether ``folder`` holds any volume file or DICOM series folder."""
    return folder.is_dir() and any(
        not p.name.startswith(".") and is_volume_path(p) for p in folder.iterdir()
    )


def _by_stem(root: Path, img_dir: Path, mask_dir: Path) -> list[VolumePair]:
    images, masks = _entries(img_dir), _entries(mask_dir)
    if not images:
        raise DataError(f"no volumes in {img_dir} (.nii, .nii.gz, .nrrd or DICOM series folders)")
    stems = matched_stems(images, masks, img_dir, mask_dir, ("volume", "label"))
    return [VolumePair(s, (images[s],), masks[s]) for s in stems]


def _flat_pairs(root: Path) -> list[VolumePair]:
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    for stem, p in _entries(root).items():
        m = _FLAT.match(stem)
        if m is None:
            continue
        target = images if m.group("kind").lower() in ("image", "img") else masks
        target[m.group("case")] = p
    if not images:
        return []
    missing = sorted(set(images) - set(masks))
    if missing:
        raise DataError(f"volume {images[missing[0]]} has no X_label / X_mask file beside it")
    return [VolumePair(c, (images[c],), masks[c]) for c in sorted(images)]


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object")
    return data


def _names(mapping: object, by_value: bool = False) -> tuple[str, ...]:
    """``{"0": "CT"}`` (MSD) or ``{"background": 0}`` (nnU-Net v2 labels) -> names by index."""
    if not isinstance(mapping, dict):
        return ()
    try:
        pairs = (
            [(int(v), str(k)) for k, v in mapping.items()]
            if by_value
            else [(int(k), str(v)) for k, v in mapping.items()]
        )
    except (TypeError, ValueError):
        return ()
    return tuple(name for _, name in sorted(pairs))


def _decathlon(root: Path) -> list[VolumePair]:
    meta_path = root / "dataset.json"
    meta = _json(meta_path)
    channels = _names(meta.get("channel_names") or meta.get("modality"))
    labels_raw = meta.get("labels")
    by_value = isinstance(labels_raw, dict) and all(isinstance(v, int) for v in labels_raw.values())
    labels = _names(labels_raw, by_value=by_value)
    modality = channels[0] if channels and len(set(channels)) == 1 else None
    info = {"modality": modality, "channel_names": channels, "label_names": labels}
    training = meta.get("training")
    if isinstance(training, list) and training:
        pairs = []
        for k, entry in enumerate(training):
            if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
                raise DataError(f"{meta_path}: training[{k}] needs an 'image' and a 'label'")
            image, label = root / entry["image"], root / entry["label"]
            for p in (image, label):
                if not p.exists():
                    raise DataError(f"{meta_path}: training[{k}] names {p}, which does not exist")
            pairs.append(VolumePair(volume_stem(image), (image,), label, **info))
        return pairs
    return _nnunet_pairs(root, info)


def _nnunet_pairs(root: Path, info: dict) -> list[VolumePair]:
    """nnU-Net v2: ``imagesTr/case_0000.nii.gz`` (one file per channel) and
    ``labelsTr/case.nii.gz``."""
    img_dir, lab_dir = root / "imagesTr", root / "labelsTr"
    for d in (img_dir, lab_dir):
        if not d.is_dir():
            raise DataError(f"{root} has a dataset.json without a training list, and no {d}")
    labels = _entries(lab_dir)
    cases: dict[str, list[Path]] = {}
    for stem, p in _entries(img_dir).items():
        m = _NNUNET_CHANNEL.match(stem)
        case = m.group("case") if m and stem not in labels else stem
        cases.setdefault(case, []).append(p)
    if not cases:
        raise DataError(f"no volumes in {img_dir}")
    pairs = []
    for case in sorted(cases):
        if case not in labels:
            raise DataError(f"volume {cases[case][0]} has no label {case} in {lab_dir}")
        pairs.append(VolumePair(case, tuple(sorted(cases[case])), labels[case], **info))
    return pairs


def volume_pairs(root: str | Path) -> list[VolumePair]:
    """The image/label pairs under ``root``: Decathlon (``dataset.json``), ``images/`` +
    ``masks/`` (or ``imagesTr/`` + ``labelsTr/``) of volumes, or flat ``X_image`` +
    ``X_label`` files. Raises DataError when none is found or a pair is incomplete."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    if (root / "dataset.json").is_file():
        return _decathlon(root)
    for img, lab in (("images", "masks"), ("imagesTr", "labelsTr"), ("images", "labels")):
        if (root / img).is_dir() and (root / lab).is_dir() and has_volumes(root / img):
            return _by_stem(root, root / img, root / lab)
    pairs = _flat_pairs(root)
    if pairs:
        return pairs
    raise DataError(
        f"no volumes found in {root}: looked for a Decathlon dataset.json, images/ + masks/ "
        "folders of .nii.gz/.nrrd/DICOM series, and X_image.nrrd + X_label.nrrd pairs"
    )


def bundled_volumes_path(fmt: str = "nifti") -> Path:
    """The bundled lesion volumes (see resources/README.md): ``nifti`` -> ``images/`` +
    ``masks/`` of .nii.gz (5 cases); ``nrrd`` -> flat ``X_image.nrrd`` + ``X_label.nrrd``."""
    base = Path(str(resources.files("segshield.data") / "resources" / "volumes"))
    if fmt == "nifti":
        return base
    if fmt == "nrrd":
        return base / "nrrd"
    raise DataError(f"unknown bundled volume format {fmt!r}; choose nifti or nrrd")
