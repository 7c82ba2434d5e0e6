"""Surface distances (HD95, average surface distance): golden cases counted by hand (2D,
anisotropic spacing, 3D), MONAI's empty-mask values, the accumulator's report conventions
(empty ground truth, missed prediction, per-class means, merging), and the cross-check the
issue asks for: Dice, HD95 and ASD agree with MONAI on the same predictions."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from segshield.enums import Activation
from segshield.metrics import (
    PER_IMAGE_KEYS,
    SURFACE_KEYS,
    Accumulator,
    average_surface_distance,
    class_scores,
    hd95,
    mask_surface,
    surface_distances,
    surface_scores,
    surface_scores_batch,
)

pytestmark = pytest.mark.filterwarnings("error")


def _square(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[rows, cols] = True
    return m


# A: 5x5 square at rows/cols 2..6; its surface is the 16-pixel ring (the cross erosion leaves
# the inner 3x3). B: A shifted 2 columns right. From A's ring to B's: the left column is 2
# away (5 px), the right column 0,1,2,1,0, the top and bottom interiors 1,0,0 each: six 0s,
# four 1s, six 2s, the same from B to A. HD95 = 2 (positions 14.25 of 0..15 are 2s);
# ASD = (4*1 + 6*2) / 16 = 1.
A = _square((12, 12), slice(2, 7), slice(2, 7))
B_COLS = _square((12, 12), slice(2, 7), slice(4, 9))
B_ROWS = _square((12, 12), slice(4, 9), slice(2, 7))


def test_two_squares_offset_by_two_pixels() -> None:
    to_b, to_a = surface_distances(A, B_COLS)
    assert sorted(to_b.tolist()) == [0.0] * 6 + [1.0] * 4 + [2.0] * 6
    assert sorted(to_a.tolist()) == sorted(to_b.tolist())
    assert hd95(A, B_COLS) == 2.0
    assert average_surface_distance(A, B_COLS) == 1.0
    assert hd95(A, A) == 0.0 and average_surface_distance(A, A) == 0.0


def test_anisotropic_spacing_scales_the_offset_axis() -> None:
    # rows 2 mm, columns 1 mm. The 2-row offset becomes 4 mm: the far edge 4 (5 px), the near
    # edge 0,1,2,1,0, the side interiors 2,0,0 each -> HD95 4, ASD (2*1 + 3*2 + 5*4)/16.
    assert hd95(A, B_ROWS, spacing=(2.0, 1.0)) == 4.0
    assert average_surface_distance(A, B_ROWS, spacing=(2.0, 1.0)) == 28 / 16
    # the 2-column offset keeps its length; only the diagonal-ish distances grow to 2
    assert hd95(A, B_COLS, spacing=(2.0, 1.0)) == 2.0
    assert average_surface_distance(A, B_COLS, spacing=(2.0, 1.0)) == 18 / 16
    # isotropic spacing scales everything
    assert hd95(A, B_COLS, spacing=0.5) == 1.0
    assert average_surface_distance(A, B_COLS, spacing=0.5) == 0.5


def test_3d_cubes_golden() -> None:
    # two 3x3x3 cubes overlapping in one plane (depth 2): each has 26 surface voxels (only the
    # centre survives the erosion); from one to the other: 9 at 0 (shared plane), 8 at 1,
    # 9 at 2. HD95 = 2 (positions 23.75 of 0..25 are 2s), ASD = (16 + 36) / 52 = 1.
    a, b = np.zeros((7, 5, 5), bool), np.zeros((7, 5, 5), bool)
    a[0:3, 1:4, 1:4] = True
    b[2:5, 1:4, 1:4] = True
    assert mask_surface(a).sum() == 26
    assert hd95(a, b) == 2.0 and average_surface_distance(a, b) == 1.0
    # half a millimetre between slices halves the depth offset; in-plane spacing is unused
    assert hd95(a, b, spacing=(0.5, 3.0, 3.0)) == 1.0
    assert average_surface_distance(a, b, spacing=(0.5, 3.0, 3.0)) == 0.5


def test_surface_is_the_mask_minus_its_cross_erosion_with_a_background_border() -> None:
    rng = np.random.default_rng(3)
    for shape in ((9, 11), (5, 6, 7)):
        m = rng.random(shape) < 0.6  # touches every border
        expected = m & ~ndimage.binary_erosion(m)  # scipy default: cross, border_value 0
        np.testing.assert_array_equal(mask_surface(m), expected)
    full = np.ones((4, 4), bool)
    assert mask_surface(full).sum() == 12  # the border ring: outside is background


def test_empty_masks_follow_monai_values() -> None:
    empty = np.zeros((12, 12), bool)
    assert all(math.isnan(v) for v in surface_scores(empty, empty))
    assert surface_scores(empty, A) == (math.inf, math.inf)
    assert surface_scores(A, empty) == (math.inf, math.inf)
    to_truth, to_pred = surface_distances(A, empty)
    assert to_truth.size == 16 and np.isinf(to_truth).all() and to_pred.size == 0


def test_bad_inputs_raise_naming_the_problem() -> None:
    with pytest.raises(ValueError, match="same shape"):
        hd95(A, A[:5])
    with pytest.raises(ValueError, match="2 spatial axes"):
        hd95(A, A, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        hd95(A, A, spacing=(0.0, 1.0))
    with pytest.raises(ValueError, match="percentile"):
        hd95(A, A, percentile=101)


# --- the accumulator's conventions ------------------------------------------------------------


def _pm(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, 3.0, -3.0).astype(np.float32)


def _binary(preds: list[np.ndarray], truths: list[np.ndarray], **kw) -> Accumulator:
    acc = Accumulator(Activation.SIGMOID, 1, surface=True, **kw)
    acc.update(_pm(np.stack(preds)[:, None]), np.stack(truths)[:, None].astype(np.uint8))
    return acc


def test_binary_empty_truth_and_missed_prediction_are_undefined_and_counted() -> None:
    empty = np.zeros_like(A)
    # 0: golden pair; 1: empty truth, blob predicted; 2: empty/empty; 3: lesion missed
    m = _binary([A, B_COLS, empty, empty], [B_COLS, empty, empty, A]).result()
    assert m.per_image["hd95"][0] == 2.0 and m.per_image["asd"][0] == 1.0
    assert all(math.isnan(v) for v in m.per_image["hd95"][1:])
    assert m.n_empty_truth == 2 and m.n_surface_undefined == 1
    # the mean over the one defined image, in pixels
    assert (m.hd95, m.asd, m.surface_unit, m.spacing) == (2.0, 1.0, "pixel", None)
    assert m.per_class[0].hd95 == 2.0 and m.per_class[0].asd == 1.0
    d = m.to_dict()
    assert d["per_image"]["hd95"] == [2.0, None, None, None] and d["n_surface_undefined"] == 1


def test_spacing_is_recorded_in_mm_and_must_fit_the_images() -> None:
    m = _binary([A], [B_ROWS], spacing=(2.0, 1.0)).result()
    assert (m.hd95, m.asd, m.surface_unit) == (4.0, 28 / 16, "mm")
    assert m.to_dict()["spacing"] == [2.0, 1.0]
    acc = Accumulator(Activation.SIGMOID, 1, surface=True, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="2 spatial axes"):
        acc.update(_pm(A[None, None]), A[None, None].astype(np.uint8))
    assert acc.n_images == 0  # nothing half-added


def test_per_image_spacing_per_batch() -> None:
    """Slices of different volumes have different spacings: one row per image in update."""
    acc = Accumulator(Activation.SIGMOID, 1, surface=True)
    truth = np.stack([B_ROWS, B_ROWS])[:, None].astype(np.uint8)
    acc.update(_pm(np.stack([A, A])[:, None]), truth, spacing=[[2.0, 1.0], [1.0, 1.0]])
    m = acc.result()
    assert m.per_image["hd95"] == [4.0, 2.0] and m.per_image["asd"] == [1.75, 1.0]
    assert m.surface_unit == "mm" and m.spacing is None  # no one spacing for every image
    with pytest.raises(ValueError, match="some batches only"):
        acc.update(_pm(A[None, None]), truth[:1])  # mm, then pixels: refused, nothing added
    with pytest.raises(ValueError, match="2 rows for 1 images"):
        acc.update(_pm(A[None, None]), truth[:1], spacing=[[1.0, 1.0], [1.0, 1.0]])
    assert acc.n_images == 2
    with pytest.raises(ValueError, match="pixels with ones in mm"):
        acc.merge(_binary([A], [B_ROWS]))


def test_surface_off_by_default_keeps_the_old_result() -> None:
    acc = Accumulator(Activation.SIGMOID, 1)
    acc.update(_pm(A[None, None]), B_COLS[None, None].astype(np.uint8))
    m = acc.result()
    assert set(m.per_image) == set(PER_IMAGE_KEYS)
    assert m.hd95 is None and m.asd is None and m.per_class[0].hd95 is None


def test_multiclass_image_value_is_the_mean_over_its_truth_classes() -> None:
    # class 1: the golden squares (HD95 2, ASD 1); class 2: a 2x2 block predicted in place
    truth = np.where(B_COLS, 1, 0)
    truth[9:11, 9:11] = 2
    pred = np.where(A, 1, 0)
    pred[9:11, 9:11] = 2
    missed = np.where(B_COLS, 1, 0)  # image 1: class 2 is in the truth, never predicted
    missed_truth = truth.copy()
    logits = np.stack([np.eye(3, dtype=np.float32)[p].transpose(2, 0, 1) for p in (pred, missed)])
    acc = Accumulator(Activation.SOFTMAX, 3, surface=True)
    acc.update(logits * 4.0, np.stack([truth, missed_truth])[:, None])
    m = acc.result()
    assert m.per_image["hd95"][0] == 1.0 and m.per_image["asd"][0] == 0.5
    assert math.isnan(m.per_image["hd95"][1]) and m.n_surface_undefined == 1
    assert m.hd95 == 1.0  # the mean over the defined image only
    # per class, over the images where the class is in both: class 1 in image 0 (2, 1) and
    # image 1 (predicted exactly: 0, 0); class 2 in image 0 only; the background is not measured
    assert (m.per_class[1].hd95, m.per_class[1].asd) == (1.0, 0.5)
    assert (m.per_class[2].hd95, m.per_class[2].asd) == (0.0, 0.0)
    assert math.isnan(m.per_class[0].hd95) and m.to_dict()["per_class"][0]["hd95"] is None


def test_merge_and_batching_give_the_same_surface_values() -> None:
    rng = np.random.default_rng(0)
    preds = [_blob(rng, (32, 32)) for _ in range(6)]
    truths = [_blob(rng, (32, 32)) for _ in range(6)]
    whole = _binary(preds, truths, spacing=(1.5, 1.0))
    first, second = (
        _binary(preds[:4], truths[:4], spacing=(1.5, 1.0)),
        _binary(preds[4:], truths[4:], spacing=(1.5, 1.0)),
    )
    first.merge(second)
    a, b = whole.result(), first.result()
    for k in SURFACE_KEYS:
        np.testing.assert_array_equal(a.per_image[k], b.per_image[k])
    assert (a.hd95, a.asd) == (b.hd95, b.asd)
    with pytest.raises(ValueError, match="different settings"):
        first.merge(_binary(preds[:1], truths[:1]))  # other spacing


# --- cross-check against MONAI ----------------------------------------------------------------


def _blob(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Seeded random blobs covering 10-40 % of the image (smoothed noise over its quantile),
    often touching the border; never empty."""
    x = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    return x > np.quantile(x, rng.uniform(0.6, 0.9))


def _monai():
    return pytest.importorskip("monai.metrics", reason="MONAI is the reference implementation")


def _quiet(fn, *args, **kwargs):
    """MONAI warns about every empty mask: the values are what is compared here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(fn(*args, **kwargs), dtype=np.float64)


SPACINGS = {2: [None, (2.0, 1.0), (0.7, 1.3)], 3: [None, (2.5, 1.0, 0.8), (1.0, 0.5, 0.5)]}
CASES = [(d, s) for d in (2, 3) for s in SPACINGS[d]]


@pytest.mark.parametrize(("ndim", "spacing"), CASES)
def test_hd95_and_asd_agree_with_monai_on_random_blobs(ndim: int, spacing) -> None:
    monai = _monai()
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(ndim * 10 + len(str(spacing)))
    shape = (40, 36) if ndim == 2 else (14, 16, 18)
    pred = np.stack([np.stack([_blob(rng, shape) for _ in range(2)]) for _ in range(4)])
    truth = np.stack([np.stack([_blob(rng, shape) for _ in range(2)]) for _ in range(4)])
    hd, asd = surface_scores_batch(pred, truth, spacing)
    p, t = (torch.from_numpy(x.astype(np.float32)) for x in (pred, truth))
    want_hd = _quiet(
        monai.compute_hausdorff_distance, p, t, include_background=True, percentile=95,
        spacing=spacing,
    )  # fmt: skip
    want_asd = _quiet(
        monai.compute_average_surface_distance, p, t, include_background=True, symmetric=True,
        spacing=spacing,
    )  # fmt: skip
    assert np.isfinite(hd).all()  # every blob pair is non-empty: all compared
    np.testing.assert_allclose(hd, want_hd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(asd, want_asd, rtol=1e-5, atol=1e-5)


def test_empty_masks_against_monai() -> None:
    """Both empty: NaN, as MONAI. One empty: ASD +inf as MONAI; HD95 +inf where MONAI 1.6
    gives NaN (torch.quantile interpolates inf - inf) while its plain HD is +inf."""
    monai = _monai()
    torch = pytest.importorskip("torch")
    empty = np.zeros_like(A)
    pred = np.stack([empty, empty, A])[:, None]
    truth = np.stack([empty, A, empty])[:, None]
    hd, asd = surface_scores_batch(pred, truth)
    p, t = (torch.from_numpy(x.astype(np.float32)) for x in (pred, truth))
    kw = {"include_background": True}
    m_hd95 = _quiet(monai.compute_hausdorff_distance, p, t, percentile=95, **kw)[:, 0]
    m_hd = _quiet(monai.compute_hausdorff_distance, p, t, **kw)[:, 0]
    m_asd = _quiet(monai.compute_average_surface_distance, p, t, symmetric=True, **kw)[:, 0]
    assert np.isnan(hd[0, 0]) and np.isnan(m_hd95[0]) and np.isnan(asd[0, 0])
    assert np.isnan(m_asd[0])
    assert np.isinf(hd[1:, 0]).all() and np.isinf(m_hd[1:]).all() and np.isnan(m_hd95[1:]).all()
    assert np.isinf(asd[1:, 0]).all() and np.isinf(m_asd[1:]).all()


def _onehot(labels: np.ndarray, c: int) -> np.ndarray:
    """(N, *spatial) labels -> (N, C, *spatial) float32 one-hot."""
    return np.moveaxis(np.eye(c, dtype=np.float32)[labels], -1, 1)


@pytest.mark.parametrize("ndim", [2, 3])
def test_accumulator_dice_hd95_asd_agree_with_monai_multiclass(ndim: int) -> None:
    """The issue's acceptance test: on the same (arg-max) predictions, segshield's per-image
    per-class Dice, HD95 and ASD equal MONAI's, and each image's HD95/ASD is the mean over
    the classes of its ground truth."""
    monai = _monai()
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7 + ndim)
    shape, c, spacing = (
        ((32, 30), 3, (1.2, 0.8)) if ndim == 2 else ((10, 12, 14), 3, (2.0, 1.0, 1.0))
    )
    logits = np.stack(
        [
            ndimage.gaussian_filter(rng.standard_normal((c, *shape)), (0, *[2] * ndim))
            for _ in range(5)
        ]
    ).astype(np.float32)
    labels = np.argmax(
        np.stack(
            [
                ndimage.gaussian_filter(rng.standard_normal((c, *shape)), (0, *[2] * ndim))
                for _ in range(5)
            ]
        ),
        axis=1,
    )
    labels[4] = 0  # one image without foreground
    acc = Accumulator(Activation.SOFTMAX, c, surface=True, spacing=spacing)
    acc.update(logits, labels[:, None])
    m = acc.result()

    p = torch.from_numpy(_onehot(np.argmax(logits, axis=1), c))
    t = torch.from_numpy(_onehot(labels, c))
    kw = {"include_background": False}
    want_dice = _quiet(monai.compute_dice, p, t, ignore_empty=False, **kw)
    want_hd = _quiet(monai.compute_hausdorff_distance, p, t, percentile=95, spacing=spacing, **kw)
    want_asd = _quiet(
        monai.compute_average_surface_distance, p, t, symmetric=True, spacing=spacing, **kw
    )
    ours_dice = np.stack([m.per_class[k].dice_per_image for k in (1, 2)], axis=1)
    np.testing.assert_allclose(ours_dice, want_dice, rtol=1e-6)  # empty_value 1 = ignore_empty off
    counts = acc.counts()
    present = (counts.tp + counts.fn)[:, 1:] > 0
    defined = present & np.isfinite(want_hd)
    assert defined.sum() >= 6
    expected_hd = [
        np.mean(want_hd[i][defined[i]]) if defined[i].any() else np.nan for i in range(5)
    ]
    expected_asd = [
        np.mean(want_asd[i][defined[i]]) if defined[i].any() else np.nan for i in range(5)
    ]
    missed = (present & ~np.isfinite(want_asd)).any(axis=1)
    expected_hd = np.where(missed, np.nan, expected_hd)
    expected_asd = np.where(missed, np.nan, expected_asd)
    np.testing.assert_allclose(m.per_image["hd95"], expected_hd, rtol=1e-5)
    np.testing.assert_allclose(m.per_image["asd"], expected_asd, rtol=1e-5)
    assert m.n_surface_undefined == int(missed.sum()) and m.n_empty_truth == 1
    assert math.isclose(m.hd95, float(np.nanmean(expected_hd)), rel_tol=1e-5)


def test_accumulator_dice_hd95_asd_agree_with_monai_binary_and_multilabel() -> None:
    monai = _monai()
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    for c in (1, 2):  # binary, then two independent sigmoid channels
        logits = np.stack(
            [ndimage.gaussian_filter(rng.standard_normal((c, 36, 36)), (0, 2, 2)) for _ in range(6)]
        ).astype(np.float32)
        truth = np.stack([[_blob(rng, (36, 36)) for _ in range(c)] for _ in range(6)])
        acc = Accumulator(Activation.SIGMOID, c, surface=True, spacing=(0.5, 0.5))
        acc.update(logits * 5.0, truth.astype(np.uint8))
        m = acc.result()
        p = torch.from_numpy((logits > 0).astype(np.float32))
        t = torch.from_numpy(truth.astype(np.float32))
        kw = {"include_background": True, "spacing": (0.5, 0.5)}
        want_hd = _quiet(monai.compute_hausdorff_distance, p, t, percentile=95, **kw)
        want_asd = _quiet(monai.compute_average_surface_distance, p, t, symmetric=True, **kw)
        assert np.isfinite(want_hd).all()
        np.testing.assert_allclose(m.per_image["hd95"], want_hd.mean(axis=1), rtol=1e-5)
        np.testing.assert_allclose(m.per_image["asd"], want_asd.mean(axis=1), rtol=1e-5)
        # Dice: per image and channel from the confusion counts, and MONAI's DiceMetric mean
        ours = class_scores(acc.counts(), float("nan"))["dice"]
        want = _quiet(monai.compute_dice, p, t, include_background=True)
        np.testing.assert_allclose(ours, want, rtol=1e-6)
        if c == 1:
            metric = monai.DiceMetric(include_background=True, reduction="mean")
            metric(p, t)
            assert math.isclose(m.dice_per_image_mean, float(metric.aggregate()), rel_tol=1e-6)
