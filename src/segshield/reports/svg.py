"""Hand-written inline SVG line charts for the HTML report (no plotting library).

A chart draws stored values as they are: one ``<polyline>`` per series through its points in
x order, a marker per point with a hover title, axes with ticks, and a legend. Choosing the
axis range and tick positions is the only arithmetic done here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
# Stroke dash patterns and marker shapes tell series of the same colour apart (e.g. engines).
DASHES = ("", "7 4", "2 3", "10 3 2 3")
MARKERS = ("circle", "square", "triangle", "diamond")

_WIDTH = 560
_PLOT_HEIGHT = 260
_MARGIN_LEFT = 64
_MARGIN_RIGHT = 18
_MARGIN_TOP = 16
_AXIS_SPACE = 46  # below the plot: x tick labels and x axis title
_LEGEND_ROW = 18
_LEGEND_COLUMNS = 2
_LEGEND_CHARS = 42
_MIN_LABEL_GAP = 34  # px between x tick labels; closer ticks keep their mark but lose the label


@dataclass
class Series:
    """One line: its legend label and (x, y) points; points with y None are not drawn.
    `intervals` are optional (x, low, high) error bars, e.g. stored confidence intervals."""

    label: str
    points: list[tuple[float, float | None]] = field(default_factory=list)
    intervals: list[tuple[float, float, float]] = field(default_factory=list)
    color: str = PALETTE[0]
    dash: str = ""
    marker: str = "circle"

    def drawable_intervals(self) -> list[tuple[float, float, float]]:
        return [(x, lo, hi) for x, lo, hi in self.intervals if all(map(_finite, (x, lo, hi)))]

    def drawable(self) -> list[tuple[float, float]]:
        pts = [(x, y) for x, y in self.points if y is not None and _finite(x) and _finite(y)]
        return sorted(pts, key=lambda p: p[0])


def _finite(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def nice_ticks(low: float, high: float, target: int = 5) -> list[float]:
    """About `target` evenly spaced round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.05 or 0.01
        low, high = low - pad, high + pad
    raw = (high - low) / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step + 1e-9) * step
    stop = math.ceil(high / step - 1e-9) * step
    count = round((stop - start) / step)
    return [round(start + i * step, 12) for i in range(count + 1)]


def tick_decimals(ticks: Sequence[float], scale: float = 1.0) -> int:
    """Decimals that tell neighbouring ticks apart once multiplied by `scale`."""
    if len(ticks) < 2:
        return 2
    step = abs(ticks[1] - ticks[0]) * scale
    if step <= 0:
        return 2
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    # a 2.5 step needs one more decimal than its magnitude says (82.5, not 82)
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * step:
        decimals += 1
    return min(decimals, 6)


def _marker(shape: str, x: float, y: float, color: str, title: str) -> str:
    tip = f"<title>{escape(title)}</title>"
    outline = f'fill="white" stroke="{color}" stroke-width="1.6"'
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" {outline}>{tip}</rect>'
    if shape == "triangle":
        pts = f"{x:.1f},{y - 5:.1f} {x + 4.5:.1f},{y + 3.5:.1f} {x - 4.5:.1f},{y + 3.5:.1f}"
        return f'<polygon points="{pts}" {outline}>{tip}</polygon>'
    if shape == "diamond":
        pts = f"{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} {x:.1f},{y + 5:.1f} {x - 5:.1f},{y:.1f}"
        return f'<polygon points="{pts}" {outline}>{tip}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.6" fill="{color}">{tip}</circle>'


def _legend_sample(series: Series, x: float, y: float) -> str:
    dash = f' stroke-dasharray="{series.dash}"' if series.dash else ""
    line = (
        f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 28:.1f}" y2="{y:.1f}" '
        f'stroke="{series.color}" stroke-width="2"{dash}/>'
    )
    return line + _marker(series.marker, x + 14, y, series.color, series.label)


@dataclass(frozen=True)
class _Frame:
    """The plot box in pixels and the data range it shows; maps data to pixel coordinates."""

    left: float
    right: float
    top: float
    bottom: float
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float

    def px(self, x: float) -> float:
        return self.left + (x - self.x_lo) / (self.x_hi - self.x_lo) * (self.right - self.left)

    def py(self, y: float) -> float:
        return self.bottom - (y - self.y_lo) / (self.y_hi - self.y_lo) * (self.bottom - self.top)


def _x_range(
    xs: Sequence[float], x_ticks: Sequence[float] | None
) -> tuple[list[float], float, float]:
    """x axis: the given ticks (epsilons) when they fit, else round values; (ticks, lo, hi)."""
    ticks = sorted(set(x_ticks)) if x_ticks else nice_ticks(min(xs), max(xs))
    lo = min([*ticks, *xs])
    hi = max([*ticks, *xs])
    if hi == lo:
        hi = lo + 1.0
    return ticks, lo, hi


def _y_range(
    ys: Sequence[float], y_bounds: tuple[float, float] | None
) -> tuple[list[float], float, float]:
    """y axis: round ticks around the values, clamped to y_bounds; (ticks, lo, hi)."""
    ticks = nice_ticks(min(ys), max(ys))
    if y_bounds is not None:
        ticks = [t for t in ticks if y_bounds[0] - 1e-12 <= t <= y_bounds[1] + 1e-12]
        if len(ticks) < 2:
            ticks = nice_ticks(*y_bounds)
    lo, hi = min([*ticks, *ys]), max([*ticks, *ys])
    if hi == lo:
        hi = lo + 1.0
    return ticks, lo, hi


def _y_ticks(frame: _Frame, ticks: Sequence[float], y_scale: float, y_unit: str) -> list[str]:
    """Grid lines, tick marks and labels (``value * y_scale`` + unit) of the y axis."""
    out = []
    left, right = frame.left, frame.right
    decimals = tick_decimals(ticks, y_scale)
    for t in ticks:
        y = frame.py(t)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" class="grid" '
            'stroke="#e3e6ea"/>'
        )
        out.append(
            f'<line x1="{left - 5}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="#555"/>'
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(f'{t * y_scale:.{decimals}f}{y_unit}')}</text>"
        )
    return out


def _x_ticks(frame: _Frame, ticks: Sequence[float], format_x: Callable[[float], str]) -> list[str]:
    """Tick marks of the x axis; a label only where it keeps its distance from the last one."""
    out = []
    bottom = frame.bottom
    last_label = -math.inf
    for t in ticks:
        x = frame.px(t)
        out.append(
            f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 5}" stroke="#555"/>'
        )
        if x - last_label >= _MIN_LABEL_GAP:
            out.append(
                f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle" class="tick">'
                f"{escape(format_x(t))}</text>"
            )
            last_label = x
    return out


def _axes(frame: _Frame, x_label: str, y_label: str) -> list[str]:
    """The two axis lines and their titles."""
    left, right, top, bottom = frame.left, frame.right, frame.top, frame.bottom
    return [
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#333"/>',
        f'<text x="{(left + right) / 2:.1f}" y="{bottom + 36}" text-anchor="middle" '
        f'class="axis-title">{escape(x_label)}</text>',
        f'<text transform="translate(16 {(top + bottom) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle" class="axis-title">{escape(y_label)}</text>',
    ]


def _interval_bars(frame: _Frame, series: Sequence[Series]) -> list[str]:
    """Error bars, nudged sideways per series so that overlapping ones stay visible."""
    out = []
    for j, s in enumerate(series):
        shift = (j % 4 - 1.5) * 2.0
        for x, lo, hi in s.drawable_intervals():
            cx, y1, y2 = frame.px(x) + shift, frame.py(lo), frame.py(hi)
            out.append(
                f'<path class="interval" d="M{cx - 3:.1f},{y1:.1f}H{cx + 3:.1f}M{cx:.1f},'
                f'{y1:.1f}V{y2:.1f}M{cx - 3:.1f},{y2:.1f}H{cx + 3:.1f}" stroke="{s.color}" '
                f'stroke-width="1.2" stroke-opacity="0.55" fill="none"/>'
            )
    return out


def _series_lines(
    frame: _Frame, drawn: Sequence[tuple[Series, list[tuple[float, float]]]]
) -> list[str]:
    """One ``<polyline>`` per series with points."""
    out = []
    for s, pts in drawn:
        if not pts:
            continue
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        coords = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in pts)
        out.append(
            f'<polyline class="series" data-series="{escape(s.label)}" points="{coords}" '
            f'fill="none" stroke="{s.color}" stroke-width="2"{dash}/>'
        )
    return out


def _point_markers(
    frame: _Frame,
    drawn: Sequence[tuple[Series, list[tuple[float, float]]]],
    format_x: Callable[[float], str],
    format_y: Callable[[float], str],
) -> list[str]:
    """A marker per point, its hover title ``label: x → y``."""
    return [
        _marker(
            s.marker, frame.px(x), frame.py(y), s.color, f"{s.label}: {format_x(x)} → {format_y(y)}"
        )
        for s, pts in drawn
        for x, y in pts
    ]


def _legend(frame: _Frame, series: Sequence[Series], keys_only: bool = False) -> list[str]:
    """The legend below the axes, `_LEGEND_COLUMNS` entries a row; long labels are cut.
    keys_only: the entries are style keys (a colour, a line style), not drawn series."""
    out = []
    legend_top = frame.bottom + _AXIS_SPACE + 8
    col_width = (frame.right - frame.left + _MARGIN_LEFT - 10) / _LEGEND_COLUMNS
    for i, s in enumerate(series):
        row, col = divmod(i, _LEGEND_COLUMNS)
        x = 10 + col * col_width
        y = legend_top + row * _LEGEND_ROW + 6
        label = s.label if len(s.label) <= _LEGEND_CHARS else s.label[: _LEGEND_CHARS - 1] + "…"
        if not keys_only and not s.drawable():
            label += " (no data)"
        out.append(
            f'<g class="legend-item">{_legend_sample(s, x, y)}'
            f'<text x="{x + 36:.1f}" y="{y + 4:.1f}" class="legend">{escape(label)}'
            f"<title>{escape(s.label)}</title></text></g>"
        )
    return out


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    format_x: Callable[[float], str],
    format_y: Callable[[float], str],
    x_ticks: Sequence[float] | None = None,
    y_scale: float = 1.0,
    y_unit: str = "",
    y_bounds: tuple[float, float] | None = None,
    legend: Sequence[Series] | None = None,
) -> str:
    """An inline ``<svg>`` line chart of `series`.

    x_ticks: tick positions on the x axis (default: round values); format_x/format_y: hover
    titles of the points and x tick labels; y tick labels show ``value * y_scale`` with just
    enough decimals, followed by `y_unit`; y_bounds clamps the automatic y range (e.g. (0, 1)
    for fractions); legend: its entries when not one per series (a colour per attack and a
    line style per engine group keep it short however many lines there are).
    """
    drawn = [(s, s.drawable()) for s in series]
    xs = [x for _, pts in drawn for x, _ in pts]
    ys = [y for _, pts in drawn for _, y in pts]
    if ys:
        ys += [v for s in series for _, lo, hi in s.drawable_intervals() for v in (lo, hi)]
    keys = list(legend) if legend is not None else list(series)
    legend_rows = math.ceil(len(keys) / _LEGEND_COLUMNS) if keys else 0
    height = _MARGIN_TOP + _PLOT_HEIGHT + _AXIS_SPACE + 8 + legend_rows * _LEGEND_ROW + 6
    left, right = _MARGIN_LEFT, _WIDTH - _MARGIN_RIGHT
    top, bottom = _MARGIN_TOP, _MARGIN_TOP + _PLOT_HEIGHT
    out = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {height}" '
        f'width="{_WIDTH}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
        'fill="#fbfbfc" stroke="#c8ccd2"/>',
    ]
    if not ys:
        out.append(
            f'<text x="{(left + right) / 2:.1f}" y="{(top + bottom) / 2:.1f}" '
            'text-anchor="middle" class="nodata">no data</text>'
        )
        xs, ys = [0.0, 1.0], [0.0, 1.0]

    x_tick_values, x_lo, x_hi = _x_range(xs, x_ticks)
    y_tick_values, y_lo, y_hi = _y_range(ys, y_bounds)
    frame = _Frame(left, right, top, bottom, x_lo, x_hi, y_lo, y_hi)
    out += _y_ticks(frame, y_tick_values, y_scale, y_unit)
    out += _x_ticks(frame, x_tick_values, format_x)
    out += _axes(frame, x_label, y_label)
    out += _interval_bars(frame, series)
    out += _series_lines(frame, drawn)
    out += _point_markers(frame, drawn, format_x, format_y)
    out += _legend(frame, keys, keys_only=legend is not None)
    out.append("</svg>")
    return "\n".join(out)
