"""Errors raised while executing ONNX nodes with the NumPy executor.

User-facing problems (an op without a kernel, a missing or mistyped feed, data
that was never loaded) are `ExecutorError`s: one line saying what is wrong and
how to fix it. A kernel that fails on data it should handle is a bug; it is
re-raised as `KernelError` (not a `PartitionError`) naming the node, its op
type and its input shapes, chained to the original exception.
"""

from __future__ import annotations

from targets.errors import PartitionError

__all__ = ["ExecutorError", "UnsupportedOpError", "FeedError", "MissingValueError", "KernelError"]


class ExecutorError(PartitionError):
    """The model or its inputs cannot be executed as given."""


class UnsupportedOpError(ExecutorError):
    """One or more nodes use an op (at the model's opset) that has no kernel."""


class FeedError(ExecutorError):
    """A model input is missing, unknown, or has the wrong dtype or shape."""


class MissingValueError(ExecutorError):
    """A node needs a value that no input provides and no earlier node produced."""


class KernelError(RuntimeError):
    """A kernel raised; the message names the node, op type and input shapes."""
