"""The forecast chart of one series: recent actuals, the forecast and its interval.

One builder for the console's series page and ``shelfcast forecasts --plot``: both pass
plain data and get the same plotly figure (the console draws it with plotly.js, the CLI
writes it as HTML or PNG).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

__all__ = ["PLAN_COLOURS", "ChartData", "chart_title", "forecast_figure"]


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


def forecast_figure(data: ChartData) -> Any:
    """A ``plotly.graph_objects.Figure`` of the series (typed ``Any``: plotly has no stubs)."""
    import plotly.graph_objects as go

    days = [p[0] for p in data.points]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=days + days[::-1],
            y=[p[3] for p in data.points] + [p[2] for p in data.points][::-1],
            mode="lines",
            fill="toself",
            fillcolor="rgba(31, 119, 180, 0.2)",
            line={"width": 0},
            hoverinfo="skip",
            name="interval",
        )
    )
    if data.history:
        fig.add_trace(
            go.Scatter(
                x=[d for d, _ in data.history],
                y=[u for _, u in data.history],
                mode="lines",
                line={"color": "black", "width": 1},
                name="actual",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=days,
            y=[p[1] for p in data.points],
            mode="lines",
            line={"color": "rgb(31, 119, 180)", "width": 2},
            name="forecast",
        )
    )
    for kind in sorted({kind for kind, _, _ in data.plans}):
        colour = PLAN_COLOURS.get(kind, "rgba(148, 103, 189, 0.18)")
        for _, first, last in (p for p in data.plans if p[0] == kind):
            # A plan covers its days whole: from the start of its first to the end of its last.
            fig.add_vrect(
                x0=first - timedelta(hours=12),
                x1=last + timedelta(hours=12),
                fillcolor=colour,
                line_width=0,
                layer="below",
                name=kind,
            )
        # A legend entry for the shading (shapes have none of their own).
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                marker={"size": 12, "color": colour, "symbol": "square"},
                name=f"planned {kind.replace('_', ' ')}",
            )
        )
    fig.update_layout(
        title={
            "text": chart_title(
                data.key, data.model_version, data.method, data.family, data.data_through
            )
        },
        xaxis_title="day",
        yaxis_title="units",
        template="plotly_white",
        height=420,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig
