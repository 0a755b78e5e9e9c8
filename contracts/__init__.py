"""Versioned message contracts of Shelfcast: JSON Schema files and the typed models built on them.

A breaking change is a new version (a new schema file and model), never an edit.
"""

from contracts._schemas import load_schema
from contracts.dead_letter import DeadLetter
from contracts.errors import ContractError
from contracts.forecast import CONTRACT as FORECAST_V1
from contracts.forecast import Forecast, ForecastPoint, parse_forecast
from contracts.pos_sale import CONTRACT as POS_SALE_V1
from contracts.pos_sale import PosSale, Rejection, series_key, validate_pos_sale

__all__ = [
    "FORECAST_V1",
    "POS_SALE_V1",
    "ContractError",
    "DeadLetter",
    "Forecast",
    "ForecastPoint",
    "PosSale",
    "Rejection",
    "load_schema",
    "parse_forecast",
    "series_key",
    "validate_pos_sale",
]
