"""User-facing errors shared by every layer.

`targets` is the bottom layer, so the error family lives here and `passes`
and `partitioner` subclass it. The CLI prints ``str(error)`` as one line on
stderr and exits with ``error.exit_code``; a traceback means a bug.
"""

from __future__ import annotations

__all__ = ["PartitionError", "TargetError"]


class PartitionError(Exception):
    """An error the user can fix. Its message is one line: what is wrong and how to fix it."""

    exit_code: int = 2


class TargetError(PartitionError):
    """A target name, file or field is invalid."""
