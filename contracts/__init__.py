"""Versioned message contracts of Shelfcast: JSON Schema files and the typed models built on them.

A breaking change is a new version (a new schema file and model), never an edit.
"""

from contracts._schemas import load_schema
from contracts.dead_letter import DeadLetter
from contracts.errors import ContractError, SeriesKeyError
from contracts.forecast import CONTRACT as FORECAST_V1
from contracts.forecast import Forecast, ForecastPoint, parse_forecast
from contracts.plan import CONTRACT as PLAN_V1
from contracts.plan import EVERY_ITEM, PLAN_KINDS, Plan, PlanKind, validate_plan
from contracts.pos_sale import CONTRACT as POS_SALE_V1
from contracts.pos_sale import PosSale, Rejection, validate_pos_sale
from contracts.series import parse_series_key, series_key
from contracts.store import CONTRACT as STORE_V1
from contracts.store import Store, validate_store

__all__ = [
    "EVERY_ITEM",
    "FORECAST_V1",
    "PLAN_KINDS",
    "PLAN_V1",
    "POS_SALE_V1",
    "STORE_V1",
    "ContractError",
    "DeadLetter",
    "Forecast",
    "ForecastPoint",
    "Plan",
    "PlanKind",
    "PosSale",
    "Rejection",
    "SeriesKeyError",
    "Store",
    "load_schema",
    "parse_forecast",
    "parse_series_key",
    "series_key",
    "validate_plan",
    "validate_pos_sale",
    "validate_store",
]
