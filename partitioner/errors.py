"""Errors of the planner layer: each is one line a user can act on (exit code 2).

Cheap to import: commands raise them before any planning starts.
"""

from __future__ import annotations

from targets.errors import PartitionError

__all__ = ["PartitionError", "UsageError", "InfeasibleError"]


class UsageError(PartitionError):
    """An option is out of range, inconsistent, or does not apply to the chosen target."""


class InfeasibleError(PartitionError):
    """The model cannot be placed on the devices given."""
