"""Errors of the planner layer that commands raise before any planning (cheap to import)."""

from __future__ import annotations

from targets.errors import PartitionError

__all__ = ["UsageError"]


class UsageError(PartitionError):
    """An option is out of range or inconsistent."""
