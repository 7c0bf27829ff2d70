"""Small server-rendered SVG charts (no JavaScript, no chart library).

Each function returns SVG markup ready to put in a page: bars (optionally
stacked), lines with gaps where there is no value, and horizontal stacked bars.
Every mark carries a ``<title>`` with its exact value (shown on hover by every
browser), and the chart as a whole has an accessible label. Labels are escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

Fmt = Callable[[float], str]

WIDTH, HEIGHT = 960, 240
LEFT, RIGHT, TOP, BOTTOM = 70, 12, 14, 40
FONT = 'font-family="system-ui, sans-serif" font-size="13" fill="#444"'


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value`` (1 for nothing)."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= value - 1e-12:
            return m * exp
    return 10 * exp


def axis_top(max_value: float, *, integer: bool = False, ticks: int = 4) -> float:
    """The top of an axis with ``ticks`` equal, round steps covering ``max_value``; with
    ``integer`` the steps are whole numbers (for counts)."""
    step = nice_ceiling(max_value / ticks) if max_value > 0 else 1.0
    if integer:
        step = float(max(1, math.ceil(step)))
    return step * ticks


def duration_unit(max_seconds: float) -> tuple[float, str]:
    """Divisor and unit for an axis of durations up to ``max_seconds``."""
    if max_seconds >= 3 * 86400:
        return 86400.0, "d"
    if max_seconds >= 3 * 3600:
        return 3600.0, "h"
    if max_seconds >= 180:
        return 60.0, "min"
    return 1.0, "s"


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.2g}" if abs(v) < 1 else f"{v:.1f}"


def _frame(title: str, body: list[str], height: int = HEIGHT) -> Markup:
    t = escape(title)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="{t}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{t}</title>' + "".join(body) + "</svg>")


def _y_axis(top_value: float, fmt: Fmt, plot_h: float) -> list[str]:  # 5 grid lines, 4 steps
    out = []
    for i in range(5):
        v = top_value * i / 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{escape(fmt(v))}</text>')
    return out


def _x_labels(labels: Sequence[str], centers: list[float], height: int) -> list[str]:
    step = max(1, math.ceil(len(labels) / 12))
    out = []
    for i, (label, x) in enumerate(zip(labels, centers, strict=True)):
        if i % step == 0:
            out.append(f'<text x="{x:.1f}" y="{height - BOTTOM + 16}" text-anchor="middle" {FONT}>'
                       f'{escape(label)}</text>')
    return out


def legend(series: Sequence[tuple[str, str]]) -> Markup:
    """An HTML legend: coloured squares with names."""
    items = "".join(f'<span class="legend-item"><span class="swatch" style="background:{escape(color)}"></span>'
                    f"{escape(name)}</span>" for name, color in series)
    return Markup(f'<div class="legend">{items}</div>')


def bar_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None], str]], *,
              title: str, fmt: Fmt = _num, axis_fmt: Fmt | None = None, integer: bool = False,
              height: int = HEIGHT) -> Markup:
    """Stacked vertical bars: one bar per label, one segment per series (name, values, colour).
    ``fmt`` writes exact values (hover titles), ``axis_fmt`` the axis ticks."""
    n = len(labels)
    plot_h = height - TOP - BOTTOM
    totals = [sum((vals[i] or 0) for _, vals, _ in series) for i in range(n)]
    top_value = axis_top(max(totals, default=0), integer=integer)
    body = _y_axis(top_value, axis_fmt or fmt, plot_h)
    if n == 0:
        body.append(f'<text x="{WIDTH / 2}" y="{height / 2}" text-anchor="middle" {FONT}>no data</text>')
        return _frame(title, body, height)
    slot = (WIDTH - LEFT - RIGHT) / n
    bar_w = max(1.0, slot * 0.72)
    centers = []
    for i, label in enumerate(labels):
        x = LEFT + slot * i + (slot - bar_w) / 2
        centers.append(x + bar_w / 2)
        base = TOP + plot_h
        parts = []
        for name, vals, color in series:
            v = vals[i] or 0
            if v <= 0:
                continue
            h = plot_h * v / top_value
            base -= h
            parts.append(f"{name}: {fmt(v)}")
            body.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                        f'fill="{escape(color)}"><title>{escape(label)} — {escape(name)}: {escape(fmt(v))}'
                        f"</title></rect>")
        if not parts:
            body.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - 1:.1f}" width="{bar_w:.1f}" height="1" '
                        f'fill="#ccc"><title>{escape(label)}: none</title></rect>')
    body += _x_labels(labels, centers, height)
    return _frame(title, body, height)


def line_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None], str]], *,
               title: str, fmt: Fmt = _num, axis_fmt: Fmt | None = None, height: int = HEIGHT) -> Markup:
    """Lines over labels; a missing value (None) breaks the line instead of drawing zero."""
    n = len(labels)
    plot_h = height - TOP - BOTTOM
    values = [v for _, vals, _ in series for v in vals if v is not None]
    top_value = axis_top(max(values, default=0))
    body = _y_axis(top_value, axis_fmt or fmt, plot_h)
    if n == 0 or not values:
        body.append(f'<text x="{WIDTH / 2}" y="{height / 2}" text-anchor="middle" {FONT}>no data</text>')
        return _frame(title, body, height)
    slot = (WIDTH - LEFT - RIGHT) / n
    centers = [LEFT + slot * i + slot / 2 for i in range(n)]
    for name, vals, color in series:
        segment: list[str] = []
        for i, v in enumerate(vals):
            if v is None:
                if len(segment) > 1:
                    body.append(_polyline(segment, color))
                segment = []
                continue
            y = TOP + plot_h - plot_h * v / top_value
            segment.append(f"{centers[i]:.1f},{y:.1f}")
            body.append(f'<circle cx="{centers[i]:.1f}" cy="{y:.1f}" r="3" fill="{escape(color)}">'
                        f"<title>{escape(labels[i])} — {escape(name)}: {escape(fmt(v))}</title></circle>")
        if len(segment) > 1:
            body.append(_polyline(segment, color))
    body += _x_labels(labels, centers, height)
    return _frame(title, body, height)


def _polyline(points: list[str], color: str) -> str:
    return f'<polyline points="{" ".join(points)}" fill="none" stroke="{escape(color)}" stroke-width="2"/>'


def hbar_chart(rows: Sequence[tuple[str, Sequence[tuple[str, float, str]]]], *, title: str,
               fmt: Fmt = _num, integer: bool = False) -> Markup:
    """Horizontal stacked bars: (row label, [(segment name, value, colour)])."""
    row_h, label_w = 28, 240
    height = TOP + row_h * max(1, len(rows)) + 28
    top_value = axis_top(max((sum(v for _, v, _ in segs) for _, segs in rows), default=0), integer=integer)
    plot_w = WIDTH - label_w - RIGHT
    body: list[str] = []
    if not rows:
        body.append(f'<text x="{WIDTH / 2}" y="{height / 2}" text-anchor="middle" {FONT}>no data</text>')
    for i, (label, segs) in enumerate(rows):
        y = TOP + i * row_h
        shown = label if len(label) <= 30 else label[:29] + "…"
        body.append(f'<text x="{label_w - 8}" y="{y + 18}" text-anchor="end" {FONT}>{escape(shown)}'
                    f"<title>{escape(label)}</title></text>")
        x = float(label_w)
        for name, v, color in segs:
            if v <= 0:
                continue
            w = plot_w * v / top_value
            body.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{escape(color)}">'
                        f"<title>{escape(label)} — {escape(name)}: {escape(fmt(v))}</title></rect>")
            x += w
    axis_y = TOP + row_h * max(1, len(rows)) + 18
    for i in range(5):
        v = top_value * i / 4
        x = label_w + plot_w * i / 4
        anchor = "end" if i == 4 else "middle"
        body.append(f'<text x="{x:.1f}" y="{axis_y}" text-anchor="{anchor}" {FONT}>{escape(fmt(v))}</text>')
    return _frame(title, body, height)
