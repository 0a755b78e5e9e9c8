"""The forecast chart of one series: recent actuals, the forecast and its interval.

One builder for the console's series page and ``shelfcast forecasts --plot``: both pass
plain data and get the same plotly figure (the console draws it with plotly.js, the CLI
writes it as HTML or PNG).
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

__all__ = ["PLAN_COLOURS", "ChartData", "chart_title", "figure_spec", "forecast_figure"]


@dataclass(frozen=True)
class ChartData:
    """What the chart shows: ``points`` are (day, yhat, lower, upper), ``history`` (day, units)."""

    key: str
    model_version: int
    method: str
    family: str | None
    data_through: date
    points: Sequence[tuple[date, float, float, float]]
    history: Sequence[tuple[date, float]]
    # Plans over the days shown: (kind, first day, last day), shaded on the chart.
    plans: Sequence[tuple[str, date, date]] = ()


# Shading per plan kind (the legend names them).
PLAN_COLOURS = {
    "promotion": "rgba(44, 160, 44, 0.18)",
    "closure": "rgba(127, 127, 127, 0.25)",
    "school_holiday": "rgba(23, 190, 207, 0.15)",
    "price": "rgba(255, 127, 14, 0.18)",
}


def chart_title(
    key: str, model_version: int, method: str, family: str | None, data_through: date
) -> str:
    """The series, its model version, family and method, and the data it reflects."""
    shown = {None: "family not recorded", "combo": "combo (a mean of families)"}.get(family, family)
    return f"{key}: model v{model_version}, {shown} ({method}), data through {data_through}"


def figure_spec(data: ChartData) -> dict[str, Any]:
    """The chart as plotly's JSON (``data`` traces and ``layout``), built as plain data:
    plotly.js draws it as it is, and ``forecast_figure`` wraps it. Building it through
    plotly's graph objects validated every property, ~20 ms a chart."""
    days = [p[0] for p in data.points]
    traces: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "x": days + days[::-1],
            "y": [p[3] for p in data.points] + [p[2] for p in data.points][::-1],
            "mode": "lines",
            "fill": "toself",
            "fillcolor": "rgba(31, 119, 180, 0.2)",
            "line": {"width": 0},
            "hoverinfo": "skip",
            "name": "interval",
        }
    ]
    if data.history:
        traces.append(
            {
                "type": "scatter",
                "x": [d for d, _ in data.history],
                "y": [u for _, u in data.history],
                "mode": "lines",
                "line": {"color": "black", "width": 1},
                "name": "actual",
            }
        )
    traces.append(
        {
            "type": "scatter",
            "x": days,
            "y": [p[1] for p in data.points],
            "mode": "lines",
            "line": {"color": "rgb(31, 119, 180)", "width": 2},
            "name": "forecast",
        }
    )
    shapes: list[dict[str, Any]] = []
    for kind in sorted({kind for kind, _, _ in data.plans}):
        colour = PLAN_COLOURS.get(kind, "rgba(148, 103, 189, 0.18)")
        for _, first, last in (p for p in data.plans if p[0] == kind):
            # A plan covers its days whole: from the start of its first to the end of its last.
            shapes.append(
                {
                    "type": "rect",
                    "x0": _day_start(first) - timedelta(hours=12),
                    "x1": _day_start(last) + timedelta(hours=12),
                    "xref": "x",
                    "y0": 0,
                    "y1": 1,
                    "yref": "y domain",
                    "fillcolor": colour,
                    "line": {"width": 0},
                    "layer": "below",
                    "name": kind,
                }
            )
        # A legend entry for the shading (shapes have none of their own).
        traces.append(
            {
                "type": "scatter",
                "x": [None],
                "y": [None],
                "mode": "markers",
                "marker": {"size": 12, "color": colour, "symbol": "square"},
                "name": f"planned {kind.replace('_', ' ')}",
            }
        )
    layout: dict[str, Any] = {
        "title": {
            "text": chart_title(
                data.key, data.model_version, data.method, data.family, data.data_through
            )
        },
        "xaxis": {"title": {"text": "day"}},
        "yaxis": {"title": {"text": "units"}},
        "template": _template(),
        "height": 420,
        "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
        "legend": {"orientation": "h", "y": -0.2},
    }
    if shapes:
        layout["shapes"] = shapes
    return {"data": traces, "layout": layout}


def forecast_figure(data: ChartData) -> Any:
    """A ``plotly.graph_objects.Figure`` of the series (typed ``Any``: plotly has no stubs)."""
    import plotly.graph_objects as go

    return go.Figure(figure_spec(data))


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


@cache
def _template() -> dict[str, Any]:
    """Plotly's ``plotly_white`` template as JSON, made once (plotly.js has no named ones);
    every spec shares it, so nothing may edit it."""
    import plotly.graph_objects as go

    figure = json.loads(go.Figure(layout={"template": "plotly_white"}).to_json())
    template: dict[str, Any] = figure["layout"]["template"]
    return template
