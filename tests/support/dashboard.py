"""What the provisioned Grafana dashboard reads."""

import re
from pathlib import Path
from typing import Any

__all__ = ["DASHBOARD", "expressions", "used_names"]

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "shelfcast.json"
)


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every panel target's PromQL expression."""
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def used_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (ours all start with ``shelfcast_``)."""
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    without_strings = re.sub(r"\"[^\"]*\"", "", without_labels)
    return {m for m in re.findall(r"[a-zA-Z_:][\w:]*", without_strings) if "_" in m} - {
        "histogram_quantile",
        "label_replace",
        "avg_over_time",
        "max_over_time",
        "min_over_time",
        "sum_over_time",
    }
