"""The root of every error raised by :mod:`contracts`."""

__all__ = ["ContractError", "SeriesKeyError"]


class ContractError(Exception):
    """A message does not follow its contract, or a contract file is missing."""


class SeriesKeyError(ContractError, ValueError):
    """A series key, or the ids that would make one, is malformed (a ``ValueError`` too, so
    validators that expect one report it as a bad value)."""
