"""Inline SVG charts for the HTML report: a histogram of absolute errors per output and bars of
bytes / latency per pass. Written by hand (a few dozen lines of SVG) because the page must be one
self-contained file: a charting library would be a script to inline (hundreds of KB) or a CDN
(network), and the page must open from a CI artifact with neither. Stdlib only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from .views import Histogram, num

W, BAR_H, LABEL_W, VALUE_W = 440, 16, 140, 90


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    text: str            # the value as shown ("1.7 KiB", "0.42 ms")
    cls: str = "raw"     # CSS class: raw | gzip | latency


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def histogram(h: Histogram, name: str, atol: float | None = None) -> str:
    """Bars of counts per decade of |got - ref| (edges from parity.compare.HIST_EDGES); the
    tolerance's atol as a dashed line where it falls on the decade axis."""
    n = len(h.counts)
    if n == 0 or len(h.edges) != n + 1:
        return '<p class="muted">no error histogram in this report</p>'
    width, height, pad = 480, 120, 22
    bw = (width - 10) / n
    top = max(h.counts) or 1
    parts = [f'<svg class="hist" role="img" viewBox="0 0 {width} {height + 2 * pad}" width="{width}" '
             f'height="{height + 2 * pad}" aria-label="absolute error histogram of {_e(name)}">']
    for i, c in enumerate(h.counts):
        bh = 0 if c == 0 else max(1.5, height * c / top)
        x, lo, hi = 5 + i * bw, h.edges[i], h.edges[i + 1]
        parts.append(f'<rect class="bin" x="{x:.1f}" y="{pad + height - bh:.1f}" width="{bw - 2:.1f}" '
                     f'height="{bh:.1f}"><title>{_e(f"[{lo:g}, {hi:g}): {c} element(s)")}</title></rect>')
        if c:
            parts.append(f'<text class="count" x="{x + bw / 2 - 1:.1f}" y="{pad + height - bh - 3:.1f}">{c}</text>')
        if i % 2 == 0:
            parts.append(f'<text class="tick" x="{x:.1f}" y="{height + 2 * pad - 6}">{_e(f"{lo:g}")}</text>')
    pos = _position(h.edges, atol) if atol else None
    if pos is not None:
        x = 5 + pos * bw
        parts.append(f'<line class="atol" x1="{x:.1f}" x2="{x:.1f}" y1="{pad - 8}" y2="{pad + height}"/>'
                     f'<text class="atol-label" x="{x + 3:.1f}" y="{pad - 10}">atol {atol:g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _position(edges: list[float], v: float) -> float | None:
    """Where ``v`` falls on the histogram's axis, in bins (log scale inside a decade bin)."""
    for i in range(1, len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        if lo <= v <= hi:
            return i + (math.log10(v) - math.log10(lo)) / ((math.log10(hi) - math.log10(lo)) or 1.0)
    return None


def bars(title: str, items: list[Bar]) -> str:
    """Horizontal bars on one linear scale; an item without a value says "not measured"."""
    if not items:
        return ""
    top = max((b.value for b in items if b.value), default=0.0) or 1.0
    height = len(items) * (BAR_H + 6) + 8
    parts = [f'<svg class="bars" role="img" viewBox="0 0 {W} {height}" width="{W}" height="{height}" '
             f'aria-label="{_e(title)}">']
    for i, b in enumerate(items):
        y = 4 + i * (BAR_H + 6)
        parts.append(f'<text class="label" x="0" y="{y + BAR_H - 4}">{_e(_clip(b.label, 24))}<title>{_e(b.label)}'
                     "</title></text>")
        if b.value is None:
            parts.append(f'<text class="muted" x="{LABEL_W}" y="{y + BAR_H - 4}">not measured</text>')
            continue
        bw = max(1.0, (W - LABEL_W - VALUE_W) * b.value / top)
        parts.append(f'<rect class="{_e(b.cls)}" x="{LABEL_W}" y="{y}" width="{bw:.1f}" height="{BAR_H}">'
                     f"<title>{_e(f'{b.label}: {b.text}')}</title></rect>"
                     f'<text class="value" x="{LABEL_W + bw + 4:.1f}" y="{y + BAR_H - 4}">{_e(b.text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def latency_text(ms: float | None) -> str:
    return "-" if ms is None else f"{num(ms)} ms"


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
