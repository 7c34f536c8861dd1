"""The pages' charts as geometry: bars, ticks and labels that the templates draw as inline
SVG, so a chart needs no script and fetches nothing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from datasette_claude_mem.pages.formatting import count


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    tooltip: str


@dataclass
class Chart:
    title: str
    description: str
    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    x_labels: list[tuple[float, float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    value_labels: list[tuple[float, float, str]] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    plot_left: float = 0
    plot_right: float = 0
    plot_bottom: float = 0


def nice_max(value: float) -> int:
    """The axis top: the value rounded up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return int(step * power)
    return int(10 * power)  # pragma: no cover - the loop always returns


def activity_chart(days: list[dict[str, Any]]) -> Chart:
    """Grouped bars: tool uses and observations per day."""
    series = (
        ("tool_uses", "Tool uses", "tool use"),
        ("observations", "Observations", "observation"),
    )
    width, height = 480, 200
    left, right, top, bottom = 34, 6, 10, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = nice_max(max([d[key] for d in days for key, _, _ in series] + [0]))
    group = plot_w / max(len(days), 1)
    bar_w = min(12.0, (group - 6) / len(series))
    chart = Chart(
        title=f"Activity over the last {len(days)} days",
        description="Tool uses and observations recorded per day (UTC)",
        width=width,
        height=height,
        legend=[(key, label) for key, label, _ in series],
        plot_left=left,
        plot_right=width - right,
        plot_bottom=top + plot_h,
    )
    for tick in range(5):
        value = top_value * tick / 4
        y = top + plot_h - plot_h * tick / 4
        chart.y_ticks.append((round(y, 1), f"{value:,.0f}" if value == int(value) else ""))
    for i, day in enumerate(days):
        x0 = left + i * group + (group - bar_w * len(series)) / 2
        for j, (key, _, noun) in enumerate(series):
            h = plot_h * day[key] / top_value
            if day[key] and h < 2:
                h = 2.0
            chart.bars.append(
                Bar(
                    x=round(x0 + j * bar_w, 1),
                    y=round(top + plot_h - h, 1),
                    width=round(bar_w - 1, 1),
                    height=round(h, 1),
                    series=key,
                    tooltip=f"{day['day']}: {count(day[key], noun)}",
                )
            )
        if i % 2 == (len(days) - 1) % 2:
            chart.x_labels.append(
                (round(left + i * group + group / 2, 1), height - bottom + 18, day["label"])
            )
    return chart


def queue_chart(states: list[tuple[str, str, int]]) -> Chart:
    """Horizontal bars: how many queue items are in each state."""
    width, row_h = 480, 26
    left, right, top = 84, 48, 4
    height = top * 2 + row_h * len(states)
    plot_w = width - left - right
    top_value = max([count for _, _, count in states] + [1])
    chart = Chart(
        title="Queue depth by state",
        description="Items of the compression queue in each state",
        width=width,
        height=height,
        plot_left=left,
    )
    for i, (key, label, depth) in enumerate(states):
        y = top + i * row_h
        w = plot_w * depth / top_value
        if depth and w < 3:
            w = 3.0
        chart.bars.append(
            Bar(
                x=left,
                y=y + 5,
                width=round(w, 1),
                height=row_h - 10,
                series=key,
                tooltip=f"{label}: {depth:,}",
            )
        )
        chart.x_labels.append((left - 8, y + row_h / 2 + 4, label))
        chart.value_labels.append((round(left + w + 6, 1), y + row_h / 2 + 4, f"{depth:,}"))
    return chart
