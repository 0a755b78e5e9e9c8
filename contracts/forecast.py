"""Contract ``forecast`` v1: one series' new forecast on the ``forecasts`` topic."""

from datetime import date
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.errors import ContractError
from contracts.series import series_key

__all__ = [
    "CONTRACT",
    "Forecast",
    "ForecastPoint",
    "Method",
    "parse_forecast",
    "parse_model_version",
]

CONTRACT = "forecast/v1"

Method = Literal["tuned", "defaults", "last_good", "seasonal_naive"]


class ForecastPoint(BaseModel):
    """One forecast day with its interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date: date
    yhat: float
    yhat_lower: float
    yhat_upper: float


class Forecast(BaseModel):
    """A published forecast. Consumers deduplicate on ``(key, model_version)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    contract: Literal["forecast/v1"] = "forecast/v1"
    store_id: str = Field(min_length=1)
    item_id: str = Field(min_length=1)
    generated_at: AwareDatetime
    # The series' serial: grows with every forecast (it went on from the registry version
    # the series' forecasts carried before). The run is the series' own, or its wave's.
    model_version: int = Field(ge=1)
    mlflow_run_id: str = Field(min_length=1)
    method: Method
    warm: bool = False
    data_through: date
    data_version: int | None = Field(default=None, ge=0)
    horizon: int = Field(ge=1)
    points: tuple[ForecastPoint, ...] = Field(min_length=1)
    validation_mae: float | None = Field(default=None, ge=0)
    validation_mase: float | None = Field(default=None, ge=0)
    fallback_reason: str | None = None
    # Lineage (optional, added compatibly): the model family that made the forecast
    # ("combo" for a mean of families), and the runner-up on the same validation folds.
    family: str | None = None
    runner_up_family: str | None = None
    runner_up_validation_mae: float | None = Field(default=None, ge=0)
    # The group model's registry version when ``global`` took part (added compatibly).
    group_model_version: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _points_follow_the_data(self) -> "Forecast":
        if len(self.points) != self.horizon:
            raise ValueError(f"has {len(self.points)} points for a horizon of {self.horizon}")
        if self.points[0].date <= self.data_through:
            raise ValueError("its first point is not after data_through")
        return self

    @property
    def key(self) -> str:
        return series_key(self.store_id, self.item_id)


def parse_forecast(value: bytes | str) -> Forecast:
    """A ``forecast`` v1 message from its JSON; ``ContractError`` says what is wrong."""
    try:
        return Forecast.model_validate_json(value)
    except ValidationError as exc:
        raise ContractError(f"Not a valid forecast v1 message: {exc}") from exc


def parse_model_version(value: Any) -> int | None:
    """A forecast's ``model_version`` as a table stores it (``series_state`` keeps it as
    text), or None when there is none or it is not a number."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
