"""Versioned message contracts of Shelfcast: JSON Schema files and the typed models built on them.

A breaking change is a new version (a new schema file and model), never an edit.
"""

from contracts._schemas import load_schema
from contracts.dead_letter import DeadLetter
from contracts.errors import ContractError, SeriesKeyError
from contracts.forecast import CONTRACT as FORECAST_V1
from contracts.forecast import Forecast, ForecastPoint, parse_forecast
from contracts.pos_sale import CONTRACT as POS_SALE_V1
from contracts.pos_sale import PosSale, Rejection, validate_pos_sale
from contracts.series import parse_series_key, series_key

__all__ = [
    "FORECAST_V1",
    "POS_SALE_V1",
    "ContractError",
    "DeadLetter",
    "Forecast",
    "ForecastPoint",
    "PosSale",
    "Rejection",
    "SeriesKeyError",
    "load_schema",
    "parse_forecast",
    "parse_series_key",
    "series_key",
    "validate_pos_sale",
]
