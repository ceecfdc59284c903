"""Small SVG charts drawn on the server: readable without JavaScript, no assets to load.

Each chart has a ``<title>``/``<desc>`` and ``role="img"``; the pages show the same
figures in a table next to it.
"""

from __future__ import annotations

import datetime as dt
from html import escape

# colour-blind-safe (Okabe-Ito), one per series in turn
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")


def stacked_bars(
    days: list[dt.date],
    series: dict[str, dict[dt.date, float]],
    *,
    title: str,
    unit: str,
    width: int = 760,
    height: int = 240,
) -> str:
    """Stacked bars per day, one colour per series, with a legend and a y axis."""
    left, bottom, top = 48, 28, 12
    names = sorted(series)
    totals = [sum(series[n].get(d, 0.0) for n in names) for d in days]
    peak = max(totals, default=0.0) or 1.0
    scale = (height - bottom - top) / peak
    slot = (width - left - 8) / max(len(days), 1)
    bar = max(slot * 0.8, 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} '
        f'{height + 20 * ((len(names) + 3) // 4)}" class="chart" aria-labelledby="t d">',
        f'<title id="t">{escape(title)}</title>',
        f'<desc id="d">{escape(_describe(days, totals, unit))}</desc>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = height - bottom - frac * peak * scale
        parts.append(f'<line x1="{left}" x2="{width - 4}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#ddd"/>')  # fmt: skip
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="11" '
                     f'text-anchor="end">{frac * peak:.3g}</text>')  # fmt: skip
    for i, day in enumerate(days):
        x, y = left + i * slot + (slot - bar) / 2, height - bottom
        for j, name in enumerate(names):
            value = series[name].get(day, 0.0)
            if value <= 0:
                continue
            h = value * scale
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(name)} {day}: '
                f"{value:.2f} {escape(unit)}</title></rect>"
            )
        if len(days) <= 16 or i % max(len(days) // 8, 1) == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 14}" font-size="10" '
                         f'text-anchor="middle">{day:%d %b}</text>')  # fmt: skip
    for j, name in enumerate(names):
        x, y = left + (j % 4) * 170, height + 4 + 20 * (j // 4)
        parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" '
                     f'fill="{PALETTE[j % len(PALETTE)]}"/>')  # fmt: skip
        parts.append(f'<text x="{x + 16}" y="{y + 11}" font-size="12">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _describe(days: list[dt.date], totals: list[float], unit: str) -> str:
    if not days:
        return "No days in the period."
    top = max(range(len(days)), key=lambda i: totals[i])
    return (
        f"{sum(totals):.2f} {unit} from {days[0]} to {days[-1]}; the most on {days[top]} "
        f"({totals[top]:.2f} {unit})."
    )


def meter(used: float, limit: float | None, *, label: str, width: int = 320) -> str:
    """A horizontal bar of ``used`` against ``limit`` (no limit: the bar shows the use only)."""
    frac = min(used / limit, 1.0) if limit else 0.0
    colour = "#b91c1c" if limit and used >= limit else "#0072B2"
    text = f"{used:.1f} of {limit:g}" if limit else f"{used:.1f} (no limit)"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} 18" '
        f'class="meter" width="{width}" height="18"><title>{escape(label)}: {text}</title>'
        f'<rect width="{width}" height="18" rx="3" fill="#e5e7eb"/>'
        f'<rect width="{frac * width:.1f}" height="18" rx="3" fill="{colour}"/></svg>'
    )


def sparkline(
    values: list[float], *, top: float, label: str, unit: str, width: int = 120, height: int = 24
) -> str:
    """A small line of ``values`` (oldest first) on a 0..top scale; empty: a dash."""
    if not values:
        return '<span class="muted">—</span>'
    step = width / max(len(values) - 1, 1)
    top = top or max(values) or 1.0
    points = " ".join(
        f"{i * step:.1f},{height - 2 - min(v / top, 1.0) * (height - 4):.1f}"
        for i, v in enumerate(values)
    )
    last = values[-1]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="spark" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>{escape(label)}: '
        f"{len(values)} readings, latest {last:.0f} {escape(unit)}, highest "
        f"{max(values):.0f} {escape(unit)}</title>"
        f'<polyline fill="none" stroke="#0072B2" stroke-width="1.5" points="{points}"/></svg>'
    )
