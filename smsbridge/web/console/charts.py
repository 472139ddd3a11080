"""Small bar charts drawn on the server as SVG (no script, no build step): one bar per hour of
the last 24, the newest on the right; each bar's `<title>` gives its hour and count."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, GAP = 240, 48, 2


def hourly_bars(label: str, counts: Sequence[int], hour_labels: Sequence[str]) -> str:
    """An SVG of `counts` (oldest first), scaled to the largest; `hour_labels` name the bars."""
    peak = max(counts, default=0) or 1
    step = WIDTH / max(1, len(counts))
    bars = []
    for index, (count, hour) in enumerate(zip(counts, hour_labels, strict=True)):
        height = 0 if count == 0 else max(1.0, HEIGHT * count / peak)
        bars.append(
            f'<rect x="{index * step:.1f}" y="{HEIGHT - height:.1f}" '
            f'width="{step - GAP:.1f}" height="{height:.1f}">'
            f"<title>{escape(hour)}: {count}</title></rect>"
        )
    total = sum(counts)
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}: {total} in 24 hours" preserveAspectRatio="none">'
        f'<line x1="0" y1="{HEIGHT - 0.5}" x2="{WIDTH}" y2="{HEIGHT - 0.5}" class="axis"/>'
        + "".join(bars)
        + "</svg>"
    )
