"""Versioned message contracts of Shelfcast: JSON Schema files and the typed models built on them.

A breaking change is a new version (a new schema file and model), never an edit.
"""

from contracts._schemas import load_schema
from contracts.dead_letter import DeadLetter
from contracts.errors import ContractError
from contracts.pos_sale import CONTRACT as POS_SALE_V1
from contracts.pos_sale import PosSale, Rejection, series_key, validate_pos_sale

__all__ = [
    "POS_SALE_V1",
    "ContractError",
    "DeadLetter",
    "PosSale",
    "Rejection",
    "load_schema",
    "series_key",
    "validate_pos_sale",
]
