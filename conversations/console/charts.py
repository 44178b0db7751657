"""The dashboard's charts as SVG drawn on the server: no chart library, no script and no build
step, so the page works without JavaScript, under a strict content policy and in a screenshot,
and the figures in the chart are the very ones the page's tables print."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from .figures import PHASES, ChannelFigures, HourFigures

OK_COLOUR = "#417690"  # the admin's own blue
FAILED_COLOUR = "#ba2121"  # the admin's error red
P50_COLOUR = "#417690"
P95_COLOUR = "#9cc3d5"
FONT = 'font-family="sans-serif" font-size="11" fill="#333"'


def _nice_top(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** len(str(int(value))) / 10
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _n(value: float) -> str:
    return f"{value:.1f}"


def _svg(width: int, height: int, label: str, body: str | SafeString) -> SafeString:
    """An SVG that shrinks to fit narrower screens."""
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" '
        'style="max-width: 100%; height: auto" role="img" aria-label="{}">{}</svg>',
        width,
        height,
        width,
        height,
        label,
        mark_safe(body),
    )


def turns_per_hour(hours: Sequence[HourFigures], width: int = 960, height: int = 220) -> SafeString:
    """Stacked bars per hour: turns that did not fail, then the failed ones in red."""
    left, bottom, top = 44, 36, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = _nice_top(max((h.turns for h in hours), default=0))
    slot = plot_w / max(len(hours), 1)
    ticks = 4 if peak % 4 == 0 else 2 if peak % 2 == 0 else 1  # whole numbers of turns
    parts = []
    for i in range(ticks + 1):
        y = round(top + plot_h * (1 - i / ticks), 1)
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#ddd"/>'
                '<text x="{}" y="{}" text-anchor="end" {}>{}</text>',
                left,
                width - 10,
                y,
                y,
                left - 4,
                y + 4,
                mark_safe(FONT),
                f"{peak * i / ticks:g}",
            )
        )
    # Label hours that are round on the clock (every 1, 2, 3, 6 or 12 hours, or midnights),
    # about a dozen of them.
    step = next((n for n in (1, 2, 3, 6, 12) if len(hours) / n <= 14), 24)
    for i, hour in enumerate(hours):
        x = left + i * slot
        ok_h = plot_h * (hour.turns - hour.failed) / peak
        failed_h = plot_h * hour.failed / peak
        title = f"{hour.start:%Y-%m-%d %H:%M %Z}: {hour.turns} turns, {hour.failed} failed"
        parts.append(
            format_html(
                '<g><title>{}</title><rect x="{}" y="{}" width="{}" height="{}" '
                'fill="{}"/><rect x="{}" y="{}" width="{}" height="{}" '
                'fill="{}"/></g>',
                title,
                _n(x + slot * 0.1),
                _n(top + plot_h - ok_h - failed_h),
                _n(slot * 0.8),
                _n(failed_h),
                FAILED_COLOUR,
                _n(x + slot * 0.1),
                _n(top + plot_h - ok_h),
                _n(slot * 0.8),
                _n(ok_h),
                OK_COLOUR,
            )
        )
        days = max(1, round(len(hours) / 24 / 10)) if step == 24 else 1
        if hour.start.hour % step == 0 and hour.start.minute == 0 and hour.start.day % days == 0:
            text = f"{hour.start:%H:%M}" if hour.start.hour else f"{hour.start:%m-%d}"
            parts.append(
                format_html(
                    '<text x="{}" y="{}" text-anchor="middle" {}>{}</text>',
                    _n(x + slot / 2),
                    height - bottom + 14,
                    mark_safe(FONT),
                    text,
                )
            )
    parts.append(
        format_html(
            '<rect x="{}" y="{}" width="10" height="10" fill="{}"/>'
            '<text x="{}" y="{}" {}>turns</text>'
            '<rect x="{}" y="{}" width="10" height="10" fill="{}"/>'
            '<text x="{}" y="{}" {}>failed</text>',
            left,
            height - 12,
            OK_COLOUR,
            left + 14,
            height - 3,
            mark_safe(FONT),
            left + 60,
            height - 12,
            FAILED_COLOUR,
            left + 74,
            height - 3,
            mark_safe(FONT),
        )
    )
    return _svg(width, height, "Turns per hour", "".join(parts))


def phase_latencies(channel: ChannelFigures, width: int = 380) -> SafeString:
    """One row per phase: the p95 bar (light) behind the p50 bar (dark), in milliseconds."""
    left, row_h, top = 90, 22, 6
    height = top + row_h * len(PHASES) + 26
    plot_w = width - left - 90  # room for the figures after the longest bar
    highest = max(
        (v for by_q in channel.percentiles.values() for v in by_q.values() if v is not None),
        default=0.0,
    )
    peak = _nice_top(highest)
    rows = []
    for i, (column, label) in enumerate(PHASES):
        y = top + i * row_h
        p50, p95 = channel.percentiles[column][0.5], channel.percentiles[column][0.95]
        bars = format_html_join(
            "",
            '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>',
            (
                (left, y + offset, _n(plot_w * value / peak), size, colour)
                for value, offset, size, colour in (
                    (p95, 2, 16, P95_COLOUR),
                    (p50, 6, 8, P50_COLOUR),
                )
                if value is not None
            ),
        )
        figure = "-" if p50 is None or p95 is None else f"{p50:,.0f} / {p95:,.0f}"
        rows.append(
            format_html(
                "<g><title>{} p50 / p95 (ms): {}</title>"
                '<text x="{}" y="{}" text-anchor="end" {}>{}</text>{}'
                '<text x="{}" y="{}" {}>{}</text></g>',
                label,
                figure,
                left - 6,
                y + 14,
                mark_safe(FONT),
                label,
                bars,
                _n(left + 4 + (plot_w * p95 / peak if p95 is not None else 0)),
                y + 14,
                mark_safe(FONT),
                figure,
            )
        )
    axis_y = top + row_h * len(PHASES) + 14
    rows.append(
        format_html(
            '<text x="{}" y="{}" {}>0</text><text x="{}" y="{}" text-anchor="end" {}>{} ms</text>'
            '<rect x="{}" y="{}" width="10" height="8" fill="{}"/><text x="{}" y="{}" {}>p50</text>'
            '<rect x="{}" y="{}" width="10" height="8" fill="{}"/>'
            '<text x="{}" y="{}" {}>p95</text>',
            left,
            axis_y,
            mark_safe(FONT),
            left + plot_w,
            axis_y,
            mark_safe(FONT),
            f"{peak:,.0f}",
            left + 40,
            axis_y - 8,
            P50_COLOUR,
            left + 54,
            axis_y,
            mark_safe(FONT),
            left + 90,
            axis_y - 8,
            P95_COLOUR,
            left + 104,
            axis_y,
            mark_safe(FONT),
        )
    )
    return _svg(width, height, f"Phase latencies on {channel.channel}", "".join(rows))
