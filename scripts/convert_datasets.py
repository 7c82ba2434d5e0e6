#!/usr/bin/env python3
"""Convert the real sample data in ../shared/datasets into the small dataset segshield ships.

- nuclei (DSB2018 via stardist, BSD-3): the 512x512 uint16 image is scaled to [0, 1] by its
  maximum, the instance mask is binarised (label > 0), and both are cut into 16 non-overlapping
  128x128 tiles. Fixed split: the bottom row of tiles (4) is the test split, the rest (12) train.
- lesions (pyradiomics test data, BSD-3): every axial slice that contains lesion pixels, the
  image scaled to [0, 1] between the volume's 1st and 99th percentile, resized to 128x128
  (bilinear, anti-aliased) and the mask resized by area (a pixel is lesion when >= 50% of it is).
  Split by patient: brain2 and lung1 are the test split.

- volumes (the same pyradiomics volumes, BSD-3): each case cropped in voxel space to its
  lesion's bounding box plus a margin (12 voxels in-plane, 3 slices), keeping the original
  dtype and values (HU for the lung CTs), spacing and orientation; written as NIfTI
  (`images/X.nii.gz` + `masks/X.nii.gz`, what `segshield.data.volume_pairs` reads) and, for
  breast1, also as NRRD (`nrrd/breast1_image.nrrd` + `nrrd/breast1_label.nrrd`).

The 2D output is the `images/` + `masks/` folder layout that
`segshield.data.dataset_from_folder` reads (8-bit PNG), plus a manifest with the SHA-256 of
every source file. Needs the [convert] extra (tifffile, pynrrd) and nibabel ([medical]).
Usage:

    python scripts/convert_datasets.py --source ../shared/datasets \
        --dest src/segshield/data/resources
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.transform import resize

TILE = 128
LESION_TEST_PATIENTS = ("brain2", "lung1")
LESION_PATIENTS = ("brain1", "brain2", "breast1", "lung1", "lung2")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save_pair(dest: Path, split: str, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    """image: (H, W) float in [0, 1]; mask: (H, W) bool. Written as 8-bit PNGs (mask 0/255)."""
    for sub in ("images", "masks"):
        (dest / split / sub).mkdir(parents=True, exist_ok=True)
    img8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(img8).save(dest / split / "images" / f"{name}.png", optimize=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(
        dest / split / "masks" / f"{name}.png", optimize=True
    )


def convert_nuclei(source: Path, dest: Path) -> dict:
    import tifffile

    img_path, mask_path = source / "img2d.tif", source / "mask2d.tif"
    image = tifffile.imread(img_path).astype(np.float64)
    labels = tifffile.imread(mask_path)
    if image.shape != labels.shape:
        raise ValueError(f"nuclei image {image.shape} and mask {labels.shape} differ")
    image = image / max(float(image.max()), 1.0)
    mask = labels > 0
    rows, cols = image.shape[0] // TILE, image.shape[1] // TILE
    splits: dict[str, list[str]] = {"train": [], "test": []}
    for r in range(rows):
        for c in range(cols):
            name = f"nuclei_r{r}c{c}"
            split = "test" if r == rows - 1 else "train"
            sl = (slice(r * TILE, (r + 1) * TILE), slice(c * TILE, (c + 1) * TILE))
            _save_pair(dest, split, name, image[sl], mask[sl])
            splits[split].append(name)
    shutil.copy(source / "LICENSE-stardist.txt", dest / "LICENSE-stardist.txt")
    return {
        "sources": {p.name: _sha256(p) for p in (img_path, mask_path)},
        "n_instances": int(len(np.unique(labels)) - 1),
        "splits": splits,
    }


def convert_lesions(source: Path, dest: Path) -> dict:
    import nrrd

    splits: dict[str, list[str]] = {"train": [], "test": []}
    sources: dict[str, str] = {}
    for patient in LESION_PATIENTS:
        img_path = source / f"{patient}_image.nrrd"
        lab_path = source / f"{patient}_label.nrrd"
        volume, _ = nrrd.read(str(img_path))
        label, _ = nrrd.read(str(lab_path))
        sources[img_path.name], sources[lab_path.name] = _sha256(img_path), _sha256(lab_path)
        lo, hi = np.percentile(volume, [1.0, 99.0])
        volume = np.clip((volume.astype(np.float64) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
        split = "test" if patient in LESION_TEST_PATIENTS else "train"
        # nrrd arrays are (x, y, z): an axial slice is [:, :, z], transposed to (rows=y, cols=x).
        for z in range(volume.shape[2]):
            lab = label[:, :, z].T > 0
            if not lab.any():
                continue
            img = resize(volume[:, :, z].T, (TILE, TILE), order=1, anti_aliasing=True)
            # Resize the mask by area so thin lesions neither vanish nor grow.
            lab_small = resize(lab.astype(np.float64), (TILE, TILE), order=1, anti_aliasing=True)
            small = lab_small >= 0.5
            if not small.any():
                continue
            name = f"{patient}_z{z:03d}"
            _save_pair(dest, split, name, img, small)
            splits[split].append(name)
    shutil.copy(source / "LICENSE-pyradiomics.txt", dest / "LICENSE-pyradiomics.txt")
    return {"sources": sources, "splits": splits, "test_patients": list(LESION_TEST_PATIENTS)}


VOLUME_MARGIN = (12, 12, 3)  # voxels around the lesion's bounding box, per (x, y, z) axis
VOLUME_NRRD_CASES = ("breast1",)


def _crop_box(label: np.ndarray) -> tuple[slice, ...]:
    """The label's bounding box plus VOLUME_MARGIN, clipped to the volume."""
    fg = np.argwhere(label > 0)
    lo, hi = fg.min(axis=0), fg.max(axis=0) + 1
    return tuple(
        slice(max(int(a) - m, 0), min(int(b) + m, n))
        for a, b, m, n in zip(lo, hi, VOLUME_MARGIN, label.shape, strict=True)
    )


def _write_nifti(path: Path, arr: np.ndarray, ras_affine: np.ndarray) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(arr, ras_affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(ras_affine, code=1)  # scanner coordinates
    img.set_sform(ras_affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))  # nibabel's gzip writer sets no time stamp: reproducible bytes


def _write_nrrd(path: Path, arr: np.ndarray, header: dict) -> None:
    import nrrd

    buf = io.BytesIO()
    nrrd.write(buf, arr, header)
    # pynrrd writes the time of writing as a comment: drop it so that `make data` is reproducible
    path.write_bytes(re.sub(rb"# on [^\n]*\(GMT\)\.\n", b"", buf.getvalue(), count=1))


def convert_volumes(source: Path, dest: Path) -> dict:
    import nrrd

    splits: dict[str, list[str]] = {"train": [], "test": []}
    sources: dict[str, str] = {}
    cases: dict[str, dict] = {}
    for patient in LESION_PATIENTS:
        img_path = source / f"{patient}_image.nrrd"
        lab_path = source / f"{patient}_label.nrrd"
        volume, header = nrrd.read(str(img_path))
        label, _ = nrrd.read(str(lab_path))
        sources[img_path.name], sources[lab_path.name] = _sha256(img_path), _sha256(lab_path)
        if header.get("space") != "left-posterior-superior":
            raise ValueError(f"{img_path}: expected an LPS space, got {header.get('space')}")
        box = _crop_box(label)
        start = np.array([b.start for b in box], dtype=np.float64)
        directions = np.asarray(header["space directions"], dtype=np.float64)  # row k: axis k
        origin = np.asarray(header["space origin"], dtype=np.float64) + start @ directions
        image = np.ascontiguousarray(volume[box])  # the original dtype and values (HU for CT)
        mask = np.ascontiguousarray((label[box] > 0).astype(np.uint8))
        lps = np.eye(4)
        lps[:3, :3], lps[:3, 3] = directions.T, origin
        ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
        _write_nifti(dest / "images" / f"{patient}.nii.gz", image, ras)
        _write_nifti(dest / "masks" / f"{patient}.nii.gz", mask, ras)
        if patient in VOLUME_NRRD_CASES:
            (dest / "nrrd").mkdir(parents=True, exist_ok=True)
            geometry = {
                "space": "left-posterior-superior",
                "space directions": directions,
                "space origin": origin,
                "kinds": ["domain"] * 3,
                "encoding": "gzip",
            }
            for arr, suffix in ((image, "image"), (mask, "label")):
                _write_nrrd(dest / "nrrd" / f"{patient}_{suffix}.nrrd", arr, dict(geometry))
        split = "test" if patient in LESION_TEST_PATIENTS else "train"
        splits[split].append(patient)
        cases[patient] = {
            "crop_start": [int(b.start) for b in box],
            "shape": list(image.shape),
            "original_shape": list(volume.shape),
            "spacing": [float(v) for v in np.linalg.norm(directions, axis=1)],
            "dtype": str(image.dtype),
            "lesion_voxels": int(mask.sum()),
        }
    shutil.copy(source / "LICENSE-pyradiomics.txt", dest / "LICENSE-pyradiomics.txt")
    return {
        "sources": sources,
        "splits": splits,
        "test_patients": list(LESION_TEST_PATIENTS),
        "cases": cases,
        "margin": list(VOLUME_MARGIN),
        "nrrd_cases": list(VOLUME_NRRD_CASES),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="the shared/datasets folder")
    parser.add_argument("--dest", type=Path, required=True, help="the package's resources folder")
    args = parser.parse_args()
    manifest = {}
    for name, fn, sub in (
        ("nuclei", convert_nuclei, "nuclei-dsb2018"),
        ("lesions", convert_lesions, "lesions-pyradiomics"),
        ("volumes", convert_volumes, "lesions-pyradiomics"),
    ):
        out = args.dest / name
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        manifest[name] = fn(args.source / sub, out)
        counts = {k: len(v) for k, v in manifest[name]["splits"].items()}
        print(f"{name}: {counts} -> {out}")
    (args.dest / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
