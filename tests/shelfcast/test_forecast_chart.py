"""The forecast chart built as plain data: what plotly.js draws in the console, and what
plotly's own validation accepts for ``shelfcast forecasts --plot``."""

from datetime import date, datetime, timedelta

from shelfcast.forecast_chart import ChartData, figure_spec, forecast_figure

THROUGH = date(2024, 3, 31)


def _chart() -> ChartData:
    days = [THROUGH + timedelta(days=k + 1) for k in range(7)]
    return ChartData(
        key="S1|A",
        model_version=3,
        method="tuned",
        family="global",
        data_through=THROUGH,
        points=[(d, 10.0, 8.0, 12.0) for d in days],
        history=[(THROUGH - timedelta(days=k), 9.0) for k in range(5)],
        plans=[("promotion", days[1], days[3]), ("closure", days[5], days[5])],
    )


def test_the_spec_is_a_figure_plotly_accepts_with_its_traces_and_plans() -> None:
    spec = figure_spec(_chart())
    names = [t["name"] for t in spec["data"]]
    assert names == ["interval", "actual", "forecast", "planned closure", "planned promotion"]
    assert spec["layout"]["title"]["text"].startswith("S1|A: model v3, global (tuned)")
    # A plan covers its days whole: from the start of its first to the end of its last.
    promotion = next(s for s in spec["layout"]["shapes"] if s["name"] == "promotion")
    assert promotion["x0"] == datetime(2024, 4, 1, 12)
    assert promotion["x1"] == datetime(2024, 4, 4, 12)
    assert spec["layout"]["template"]["layout"]["plot_bgcolor"] == "white"  # plotly_white
    figure = forecast_figure(_chart())  # plotly validates every property of the spec
    assert [t.name for t in figure.data] == names
    assert len(figure.layout.shapes) == 2


def test_a_chart_without_history_or_plans_has_the_forecast_and_its_interval() -> None:
    bare = ChartData("S2|B", 1, "naive", None, THROUGH, [(THROUGH, 1.0, 0.0, 2.0)], [])
    spec = figure_spec(bare)
    assert [t["name"] for t in spec["data"]] == ["interval", "forecast"]
    assert "shapes" not in spec["layout"]
    assert "family not recorded" in spec["layout"]["title"]["text"]
