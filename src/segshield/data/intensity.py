"""Intensity scaling to the [0, 1] a model takes, as a radiologist would display the data.

One frozen spec, :class:`Intensity`, says how raw values become [0, 1]:

- ``dtype``: by the integer type's range (8-bit: /255; 16-bit: /65535, which turns 12-bit CT
  or MR stored in uint16 into a nearly black image);
- ``window``: CT windowing, clip to [center - width/2, center + width/2] HU and scale (on the
  values the file holds: HU for CT DICOM after its rescale and for CT NIfTI/NRRD);
- ``percentile``: clip to the image's (or volume's) low/high percentiles and scale (MR);
- ``minmax``: the image's own minimum and maximum;
- ``none``: floats already in [0, 1] (clipped);
- ``auto``: chosen from the dtype and the modality (see :func:`resolve_intensity`).

:func:`check_intensities` refuses a scaling that destroyed the contrast the file had.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from segshield.enums import StrEnum
from segshield.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "WINDOW_PRESETS",
    "Intensity",
    "IntensityMode",
    "check_intensities",
    "intensity_from_options",
    "parse_window",
    "resolve_intensity",
    "scale_intensity",
]


class IntensityMode(StrEnum):
    """How raw intensities become [0, 1]."""

    AUTO = "auto"
    DTYPE = "dtype"
    WINDOW = "window"
    PERCENTILE = "percentile"
    MINMAX = "minmax"
    NONE = "none"


# (center, width) in HU: the default CT presets of the OHIF viewer
# (extensions/cornerstone/src/components/WindowLevelActionMenu/defaultWindowLevelPresets.ts).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "ct-soft-tissue": (40.0, 400.0),
    "ct-lung": (-600.0, 1500.0),
    "ct-liver": (90.0, 150.0),
    "ct-bone": (480.0, 2500.0),
    "ct-brain": (40.0, 80.0),
}
CT_DEFAULT_PRESET = "ct-soft-tissue"

# A scaling is degenerate when the result is nearly constant ...
_MIN_STD = 1e-3
_MAX_ONE_VALUE = 0.99
# ... or spans less than 1/15 of [0, 1]: what 12-bit data divided by 65535 gives (<= 0.0625).
_MIN_SPAN = 1.0 / 15.0
# At most this many values are looked at for the share at one value (a fixed stride, not random).
_SAMPLE = 1_000_000


@dataclass(frozen=True)
class Intensity:
    """How to scale intensities to [0, 1] (frozen; ``describe()`` goes into reports).

    center, width: the CT window in HU (mode ``window``); low, high: percentiles in [0, 100]
    (mode ``percentile``); preset: the window preset's name, when one was used.
    """

    mode: IntensityMode = IntensityMode.AUTO
    center: float | None = None
    width: float | None = None
    low: float = 0.5
    high: float = 99.5
    preset: str | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", IntensityMode(self.mode))
        except ValueError as exc:
            modes = ", ".join(m.value for m in IntensityMode)
            raise DataError(f"unknown intensity mode {self.mode!r}; choose one of {modes}") from exc
        if self.mode == IntensityMode.WINDOW:
            if self.center is None or self.width is None:
                raise DataError("intensity mode 'window' needs a center and a width (HU)")
            if not (np.isfinite(self.center) and np.isfinite(self.width) and self.width > 0):
                raise DataError(
                    f"window width must be > 0 and both finite, got center {self.center}, "
                    f"width {self.width}"
                )
        if not 0.0 <= self.low < self.high <= 100.0:
            raise DataError(
                f"percentiles must satisfy 0 <= low < high <= 100, got {self.low}, {self.high}"
            )

    @classmethod
    def window(cls, center: float, width: float, preset: str | None = None) -> Intensity:
        """A CT window (HU)."""
        return cls(IntensityMode.WINDOW, float(center), float(width), preset=preset)

    def describe(self) -> dict:
        """JSON-serialisable summary: only the fields that matter for this mode."""
        out: dict = {"mode": str(self.mode)}
        if self.mode == IntensityMode.WINDOW:
            out.update(center=self.center, width=self.width)
            if self.preset:
                out["preset"] = self.preset
        elif self.mode == IntensityMode.PERCENTILE:
            out.update(low=self.low, high=self.high)
        return out

    def label(self) -> str:
        """One short line for logs and messages, e.g. ``window 40,400 HU``."""
        if self.mode == IntensityMode.WINDOW:
            name = f" ({self.preset})" if self.preset else ""
            return f"window {self.center:g},{self.width:g} HU{name}"
        if self.mode == IntensityMode.PERCENTILE:
            return f"percentile {self.low:g}-{self.high:g}"
        return str(self.mode)


def parse_window(text: str) -> Intensity:
    """``"40,400"`` (center, width in HU) or a preset name (``ct-lung``) -> a window spec."""
    key = text.strip().lower()
    if key in WINDOW_PRESETS:
        return Intensity.window(*WINDOW_PRESETS[key], preset=key)
    parts = [p.strip() for p in key.split(",")]
    try:
        center, width = (float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        center = width = None
    if center is None or width is None:
        presets = ", ".join(WINDOW_PRESETS)
        raise DataError(
            f"--window must be CENTER,WIDTH in HU (e.g. 40,400) or a preset ({presets}); "
            f"got {text!r}"
        )
    return Intensity.window(center, width)


def intensity_from_options(
    mode: str | None = None, window: str | None = None, percentiles: str | None = None
) -> Intensity:
    """The spec from CLI options: ``--intensity MODE``, ``--window C,W|PRESET``,
    ``--percentiles LOW,HIGH``. A window implies mode ``window``."""
    if window is not None:
        if mode not in (None, "auto", "window"):
            raise DataError(f"--window sets the window intensity mode; it conflicts with {mode!r}")
        return parse_window(window)
    if mode == "window":
        raise DataError("--intensity window needs --window CENTER,WIDTH (e.g. 40,400)")
    spec = Intensity(IntensityMode(mode) if mode else IntensityMode.AUTO)
    if percentiles is not None:
        try:
            low, high = (float(p) for p in percentiles.split(","))
        except ValueError as exc:
            raise DataError(
                f"--percentiles must be LOW,HIGH (e.g. 0.5,99.5), got {percentiles!r}"
            ) from exc
        spec = replace(spec, low=low, high=high)
    return spec


def resolve_intensity(
    spec: Intensity, raw: np.ndarray, modality: str | None = None, name: str = "image"
) -> Intensity:
    """The concrete spec ``auto`` stands for (other modes are returned unchanged).

    bool, 8-bit -> ``dtype``; CT (the modality is known: DICOM tag, Decathlon dataset.json)
    -> the soft-tissue window; floats already in [0, 1] -> ``none``; anything else
    (16-bit PNG/TIFF, MR or unlabelled volumes, other floats) -> ``percentile``.
    """
    if spec.mode != IntensityMode.AUTO:
        return spec
    dt = raw.dtype
    if dt == np.bool_ or (np.issubdtype(dt, np.integer) and dt.itemsize == 1):
        return replace(spec, mode=IntensityMode.DTYPE)
    if modality is not None and modality.strip().upper() == "CT":
        chosen = Intensity.window(*WINDOW_PRESETS[CT_DEFAULT_PRESET], preset=CT_DEFAULT_PRESET)
    elif np.issubdtype(dt, np.floating) and _within01(raw):
        return replace(spec, mode=IntensityMode.NONE)
    else:
        chosen = replace(spec, mode=IntensityMode.PERCENTILE)
    log.debug("%s (%s, modality %s): intensity auto -> %s", name, dt, modality, chosen.label())
    return chosen


def _within01(raw: np.ndarray) -> bool:
    finite = np.isfinite(raw).all()
    return bool(finite and raw.size and raw.min() >= 0.0 and raw.max() <= 1.0)


def scale_intensity(arr: np.ndarray, spec: Intensity) -> np.ndarray:
    """Raw values (any shape) -> float32 in [0, 1], same shape. Pure; ``auto`` is resolved
    from the dtype alone (no modality). A degenerate range (high == low) gives zeros, which
    :func:`check_intensities` then refuses."""
    spec = resolve_intensity(spec, arr)
    x = arr.astype(np.float64) if arr.dtype != np.float64 else arr
    if spec.mode == IntensityMode.DTYPE:
        if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.floating):
            lo, hi = 0.0, 1.0
        else:
            info = np.iinfo(arr.dtype)
            lo, hi = float(info.min), float(info.max)
    elif spec.mode == IntensityMode.WINDOW:
        lo = float(spec.center) - float(spec.width) / 2.0  # type: ignore[arg-type]
        hi = lo + float(spec.width)  # type: ignore[arg-type]
    elif spec.mode == IntensityMode.PERCENTILE:
        lo, hi = (float(v) for v in np.percentile(x, [spec.low, spec.high]))
    elif spec.mode == IntensityMode.MINMAX:
        lo, hi = float(np.min(x)), float(np.max(x))
    else:  # NONE
        lo, hi = 0.0, 1.0
    if not hi > lo:
        return np.zeros(arr.shape, dtype=np.float32)
    out = (np.clip(x, lo, hi) - lo) / (hi - lo)
    return out.astype(np.float32)


def _share_at_one_value(arr: np.ndarray) -> float:
    flat = arr.ravel()
    if flat.size > _SAMPLE:
        flat = flat[:: flat.size // _SAMPLE + 1]
    _, counts = np.unique(flat, return_counts=True)
    return float(counts.max()) / flat.size


def _hint(spec: Intensity) -> str:
    if spec.mode == IntensityMode.PERCENTILE:
        return "try --intensity minmax, or --window C,W for CT in HU"
    return "try --intensity percentile (MR, 16-bit images), or --window C,W for CT in HU"


def check_intensities(scaled: np.ndarray, raw: np.ndarray, name: str, spec: Intensity) -> None:
    """Refuse a scaling that made an image or volume unusable; DataError naming ``name``.

    Refused: non-finite values; for ``none``, raw values mostly outside [0, 1]; and a result
    that is nearly constant (std < 1e-3, or > 99% of values at one value where the raw data
    were not) or spans less than 1/15 of [0, 1] while the raw data had contrast. Raw data
    that are constant themselves are what the file holds, not a scaling mistake, and 8-bit
    data scaled by their dtype are shown as stored, so neither is refused.
    """
    where = f"{name} ({raw.dtype}, raw range {_range(raw)}, intensity {spec.label()})"
    if not np.isfinite(scaled).all() or not np.isfinite(raw).all():
        raise DataError(f"{where} holds NaN or Inf values")
    if spec.mode == IntensityMode.NONE:
        outside = float(np.mean((raw < 0.0) | (raw > 1.0)))
        if outside > 0.5:
            raise DataError(
                f"{where}: {outside:.0%} of the values lie outside [0, 1], which intensity "
                f"'none' expects; {_hint(spec)}"
            )
        return
    if spec.mode == IntensityMode.DTYPE and raw.dtype.itemsize == 1:
        return
    raw_constant = raw.size == 0 or float(np.ptp(raw)) == 0.0
    if raw_constant:
        return
    std = float(scaled.std())
    span = float(scaled.max() - scaled.min())
    share = _share_at_one_value(scaled)
    # a file mostly at one value (a sparse image, a masked background) stays so when scaled
    collapsed = share > _MAX_ONE_VALUE and _share_at_one_value(raw) <= _MAX_ONE_VALUE
    if std < _MIN_STD or collapsed:
        raise DataError(
            f"{where} is nearly constant after scaling (std {std:.2g}, {share:.1%} of the "
            f"values at one level); {_hint(spec)}"
        )
    if span < _MIN_SPAN:
        raise DataError(
            f"{where} uses only {span:.1%} of [0, 1] after scaling (12-bit data stored in "
            f"16 bits and divided by the 16-bit range look like this); {_hint(spec)}"
        )


def _range(raw: np.ndarray) -> str:
    if raw.size == 0:
        return "empty"
    lo, hi = np.nanmin(raw), np.nanmax(raw)
    return f"{lo:g}..{hi:g}"
