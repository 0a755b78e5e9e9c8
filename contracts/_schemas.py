"""Loading of the JSON Schema files shipped with the package."""

import json
from functools import cache
from importlib import resources
from typing import Any

from contracts.errors import ContractError

__all__ = ["load_schema"]


@cache
def load_schema(name: str, version: int) -> dict[str, Any]:
    """Return the JSON Schema of contract ``name`` at ``version`` (e.g. ``pos_sale``, 1)."""
    path = resources.files("contracts") / "schemas" / f"{name}.v{version}.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ContractError(
            f"No schema file for contract {name} v{version}: expected {path}. "
            "Reinstall shelfcast, or check the contract name and version."
        ) from exc
    schema: dict[str, Any] = json.loads(text)
    return schema
