"""The forecast views name the model family that made the forecast."""

from datetime import UTC, date, datetime

from contracts import Forecast
from shelfcast.forecasts_view import format_forecast, plot_title


def forecast(family: str | None) -> Forecast:
    point = {"date": "2024-01-02", "yhat": 3.0, "yhat_lower": 1.0, "yhat_upper": 4.0}
    return Forecast.model_validate(
        {
            "store_id": "S1",
            "item_id": "I1",
            "generated_at": datetime(2024, 1, 1, tzinfo=UTC),
            "model_version": 7,
            "mlflow_run_id": "r",
            "method": "tuned",
            "data_through": date(2024, 1, 1),
            "horizon": 1,
            "points": [point],
            "family": family,
        }
    )


def test_the_plot_title_and_the_line_name_the_family() -> None:
    assert plot_title(forecast("arima")) == (
        "S1|I1: model v7, arima (tuned), data through 2024-01-01"
    )
    assert "combo (a mean of families)" in plot_title(forecast("combo"))
    assert "family not recorded" in plot_title(forecast(None))  # a message from before
    assert " ets " in format_forecast(forecast("ets"))
