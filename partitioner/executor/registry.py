"""Kernel registry: op type (and the opset where semantics changed) -> NumPy function.

Kernel conventions (after onnx.reference, but vectorised):
- inputs arrive positionally in ONNX order; a missing optional input is ``None``;
- attributes arrive keyword-only, spelled the ONNX way, with the schema defaults;
- a kernel returns a tuple of arrays and keeps the input dtype;
- no Python loop over elements, pixels or windows.

Several versions of one op live side by side: ``@kernel("Split", since=13)`` serves
opsets 13 and later until a registration with a higher ``since`` takes over.
A kernel that runs sub-graphs (If/Loop/Scan) or needs the run's settings asks
for them with ``needs_context=True`` and receives ``ctx=`` (see `KernelContext`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["KernelFn", "Registration", "kernel", "lookup", "registered_ops", "KernelContext"]

KernelFn = Callable[..., tuple[Any, ...]]


@dataclass(frozen=True)
class Registration:
    op_type: str
    domain: str
    since: int
    fn: KernelFn
    needs_context: bool


@dataclass(frozen=True)
class KernelContext:
    """What a context-needing kernel may use besides its inputs.

    Attributes:
        opset: the opset of the model's default domain.
        run_subgraph: runs a sub-graph (an onnx.GraphProto) given feeds for its
            formal inputs and the enclosing scope's values; returns its outputs in order.
        outer_values: values visible from the enclosing scope (read-only mapping).
        num_outputs: how many outputs the node declares (trailing optional ones
            left out); Split needs it when neither ``split`` nor ``num_outputs`` is given.
    """

    opset: int
    run_subgraph: Callable[..., list[Any]]
    outer_values: Any
    num_outputs: int = 1


# (domain, op_type) -> registrations sorted by `since`
_REGISTRY: dict[tuple[str, str], list[Registration]] = {}


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def kernel(
    op_type: str, *, since: int = 1, domain: str = "", needs_context: bool = False
) -> Callable[[KernelFn], KernelFn]:
    """Register ``fn`` as the kernel for ``op_type`` from opset ``since`` onwards."""

    def register(fn: KernelFn) -> KernelFn:
        key = (_norm_domain(domain), op_type)
        regs = _REGISTRY.setdefault(key, [])
        if any(r.since == since for r in regs):
            raise ValueError(f"kernel {op_type} (domain {domain!r}) since {since} registered twice")
        regs.append(Registration(op_type, key[0], since, fn, needs_context))
        regs.sort(key=lambda r: r.since)
        return fn

    return register


def lookup(op_type: str, domain: str, opset: int) -> Registration | None:
    """The registration serving ``op_type`` at ``opset``, or None if there is none."""
    regs = _REGISTRY.get((_norm_domain(domain), op_type))
    if not regs:
        return None
    i = bisect.bisect_right([r.since for r in regs], opset)
    return regs[i - 1] if i else None


def registered_ops() -> list[tuple[str, str]]:
    """Every (domain, op_type) that has at least one kernel."""
    return sorted(_REGISTRY)
