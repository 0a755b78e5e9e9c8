"""Percentiles as the benchmarks report them."""

__all__ = ["pct"]


def pct(values: list[float], q: float) -> float:
    """The sample at ``q`` of the way through ``values`` by rank (no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
