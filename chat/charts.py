"""Charts drawn on the server as inline SVG: no chart library, no script, no
request leaving the site. Colours come from classes in static/chat/dashboard.css
(the CSP allows no inline style); every label is escaped."""

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH = 720
HEIGHT = 180
# Room for the axis labels under the bars and the scale on the left.
BOTTOM = 22
LEFT = 44


def _scale(largest: float) -> float:
    """A round number at or above `largest`, for the axis."""
    if largest <= 0:
        return 1
    step = 1
    while step * 10 <= largest:
        step *= 10
    for multiple in (1, 2, 5, 10):
        if step * multiple >= largest:
            return step * multiple
    return step * 10


def _f(value: float) -> str:
    # A tenth of a pixel is enough: the full repr would lengthen every bar's markup.
    return f"{value:.1f}"


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.2f}"


def stacked_bars(labels: list[str], series: list[tuple[str, str, list[float]]], *, title: str) -> SafeString:
    """One bar per label, each the sum of `series` (name, css class, values)
    stacked, with a tooltip per part and a legend."""
    totals = [sum(values[i] for _, _, values in series) for i in range(len(labels))]
    top = _scale(max(totals, default=0))
    plot_height = HEIGHT - BOTTOM
    slot = (WIDTH - LEFT) / max(len(labels), 1)
    bar = max(slot * 0.7, 1)
    parts = []
    for i, label in enumerate(labels):
        x = LEFT + i * slot + (slot - bar) / 2
        y = plot_height
        for name, css, values in series:
            height = values[i] / top * (plot_height - 8)
            if height <= 0:
                continue
            y -= height
            parts.append(
                format_html(
                    '<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>{}: {} {}</title></rect>',
                    css,
                    _f(x),
                    _f(y),
                    _f(bar),
                    _f(height),
                    label,
                    _number(values[i]),
                    name,
                )
            )
        # Every label on a short chart, about every seventh on a long one.
        if len(labels) <= 14 or i % 7 == 0:
            parts.append(
                format_html(
                    '<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                    _f(x + bar / 2),
                    HEIGHT - 6,
                    label,
                )
            )
    grid = format_html(
        '<line class="grid" x1="{}" y1="8" x2="{}" y2="8"/><text class="axis" x="{}" y="12" text-anchor="end">{}</text>'
        '<line class="grid" x1="{}" y1="{}" x2="{}" y2="{}"/><text class="axis" x="{}" y="{}" text-anchor="end">0</text>',
        LEFT,
        WIDTH,
        LEFT - 4,
        _number(top),
        LEFT,
        plot_height,
        WIDTH,
        plot_height,
        LEFT - 4,
        plot_height,
    )
    legend = format_html_join(
        " ",
        '<span class="legend-item"><svg width="10" height="10" aria-hidden="true"><rect class="{}" width="10" height="10"/></svg> {}</span>',
        ((css, name) for name, css, _ in series),
    )
    return format_html(
        '<figure class="chart"><svg viewBox="0 0 {} {}" role="img" aria-label="{}">{}{}</svg>'
        "<figcaption>{}</figcaption></figure>",
        WIDTH,
        HEIGHT,
        title,
        grid,
        mark_safe("".join(parts)),
        legend,
    )


def meter(value: float, largest: float, *, css: str = "bar-total") -> SafeString:
    """A small horizontal bar for a table cell: `value` against the column's largest."""
    width = 0 if largest <= 0 else max(value / largest * 120, 1 if value > 0 else 0)
    return format_html(
        '<svg class="meter" width="120" height="10" aria-hidden="true"><rect class="{}" width="{}" height="10"/></svg>',
        css,
        _f(width),
    )
