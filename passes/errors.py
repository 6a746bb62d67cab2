"""Errors raised while reading and analysing a model (all user-facing, exit code 2)."""

from __future__ import annotations

from targets.errors import PartitionError

__all__ = ["ModelError", "DimError", "ExternalDataError", "PassError"]


class ModelError(PartitionError):
    """The model file is missing, unreadable, not ONNX, or invalid."""


class DimError(PartitionError):
    """A ``--dim`` override is malformed, unknown, or symbolic dims remain unresolved."""


class ExternalDataError(PartitionError):
    """Weights stored as external data are needed but their file is missing or short."""


class PassError(PartitionError):
    """A transform pass's pre- or post-condition failed; the message names the passes run so far."""
