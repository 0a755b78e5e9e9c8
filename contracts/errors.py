"""The root of every error raised by :mod:`contracts`."""

__all__ = ["ContractError"]


class ContractError(Exception):
    """A message does not follow its contract, or a contract file is missing."""
