"""The step interpreter under `run_nodes`: ONNX nodes resolved to kernels, then run.

`compile_steps` resolves each node once to its registered kernel and decoded
attributes; `free_plan` works out when each value is last used, so a run drops
it then; `Runner` executes the steps over a value environment, running
If/Loop/Scan bodies with outer-scope lookup and caching their compiled form for
the run. `missing_kernels` finds every op without a kernel, so a run can refuse
before it starts rather than fail half-way. Nothing here knows the project IR.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from partitioner.executor import kernels as _kernels  # noqa: F401  (registers every kernel)
from partitioner.executor.attributes import node_attributes
from partitioner.executor.errors import (
    ExecutorError,
    KernelError,
    MissingValueError,
    UnsupportedOpError,
)
from partitioner.executor.registry import KernelContext, Registration, lookup
from passes.ir import node_subgraphs, outer_references

__all__ = [
    "OpsetImports",
    "CompiledGraph",
    "Runner",
    "Step",
    "compile_steps",
    "describe_value",
    "display_name",
    "free_plan",
    "missing_kernels",
    "norm_domain",
    "opsets_of",
    "raise_unsupported",
    "registration_for",
]

OpsetImports = Mapping[str, int]


def norm_domain(domain: str) -> str:
    """The default domain spelled one way ("" and "ai.onnx" are the same domain)."""
    return "" if domain in ("", "ai.onnx") else domain


def opsets_of(opset_imports: OpsetImports | int) -> dict[str, int]:
    """Domain -> opset version, domains normalised; a bare int is the default domain's."""
    if isinstance(opset_imports, int):
        return {"": opset_imports}
    return {norm_domain(d): int(v) for d, v in opset_imports.items()}


def display_name(node: onnx.NodeProto, index: int) -> str:
    """The node's name for messages; unnamed nodes are told apart by op type and index."""
    return node.name or f"<{node.op_type} #{index}>"


def registration_for(node: onnx.NodeProto, opsets: Mapping[str, int]) -> Registration | None:
    """The kernel for the node at its domain's opset; None if none (or the domain is not imported)."""
    opset = opsets.get(norm_domain(node.domain))
    return None if opset is None else lookup(node.op_type, node.domain, opset)


def missing_kernels(
    nodes: Iterable[onnx.NodeProto], opset_imports: OpsetImports | int
) -> list[tuple[str, str]]:
    """Every node (sub-graphs included) whose op has no kernel at the given opset.

    Args:
        nodes: the nodes to check, e.g. ``model.graph.node``.
        opset_imports: domain -> opset version (``{"": 17}``), or the default-domain opset.

    Returns:
        ``(node display name, op type)`` pairs in graph order; a sub-graph node's
        name is prefixed with its parent's (``"loop/add"``); a non-default
        domain is shown as ``"domain::Op"``.
    """
    opsets = opsets_of(opset_imports)
    found: list[tuple[str, str]] = []

    def visit(graph_nodes: Iterable[onnx.NodeProto], prefix: str) -> None:
        for index, node in enumerate(graph_nodes):
            name = prefix + display_name(node, index)
            if registration_for(node, opsets) is None:
                domain = norm_domain(node.domain)
                found.append((name, f"{domain}::{node.op_type}" if domain else node.op_type))
            for graph in node_subgraphs(node):
                visit(graph.node, name + "/")

    visit(nodes, "")
    return found


def raise_unsupported(missing: list[tuple[str, str]]) -> None:
    ops = sorted({op for _, op in missing})
    first = {op: next(n for n, o in missing if o == op) for op in ops}
    listed = ", ".join(f"{op} (e.g. node {first[op]!r})" for op in ops)
    raise UnsupportedOpError(
        f"the NumPy executor has no kernel for {len(ops)} op(s) used by {len(missing)} node(s): "
        f"{listed}; add kernels in partitioner/executor/kernels or check the model's opset"
    )


def describe_value(value: Any) -> str:
    """Short text for a value in error messages: ``float32[2,3]``, ``seq[4]``, ``None``."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype}[{','.join(str(d) for d in value.shape)}]"
    if isinstance(value, list):
        return f"seq[{len(value)}]"
    return "None" if value is None else type(value).__name__


@dataclass(frozen=True)
class Step:
    """One node, resolved to its kernel and decoded attributes."""

    name: str
    op_type: str
    registration: Registration
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    captured: frozenset[str]


def compile_steps(nodes: Sequence[onnx.NodeProto], opsets: Mapping[str, int]) -> list[Step]:
    steps = []
    for index, node in enumerate(nodes):
        registration = registration_for(node, opsets)
        if registration is None:
            raise_unsupported(missing_kernels([node], opsets))
        captured = frozenset(
            name for graph in node_subgraphs(node) for name in outer_references(graph)
        )
        opset = opsets[norm_domain(node.domain)]
        steps.append(
            Step(
                name=display_name(node, index),
                op_type=node.op_type,
                registration=registration,
                inputs=tuple(node.input),
                outputs=tuple(node.output),
                attrs=node_attributes(node, opset),
                captured=captured,
            )
        )
    return steps


def free_plan(steps: Sequence[Step], keep: Collection[str]) -> list[tuple[str, ...]]:
    """For each step, the names to drop once it has run (last use, not kept)."""
    last_use: dict[str, int] = {}
    for index, step in enumerate(steps):
        for name in (*step.inputs, *step.captured):
            if name:
                last_use[name] = index
        for name in step.outputs:
            if name:
                last_use.setdefault(name, index)  # produced but never read: drop at once
    plan: list[list[str]] = [[] for _ in steps]
    for name, index in last_use.items():
        if name not in keep:
            plan[index].append(name)
    return [tuple(names) for names in plan]


@dataclass(frozen=True)
class CompiledGraph:
    steps: list[Step]
    initializers: dict[str, Any]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    free_after: list[tuple[str, ...]]


class Runner:
    """Executes compiled steps; caches compiled sub-graphs for the run's duration."""

    def __init__(self, opsets: Mapping[str, int]) -> None:
        self.opsets = opsets
        self.default_opset = opsets.get("", 0)
        self._graphs: dict[int, tuple[onnx.GraphProto, CompiledGraph]] = {}

    def run_steps(
        self,
        steps: Sequence[Step],
        local: dict[str, Any],
        outer: Mapping[str, Any] | None,
        free_after: Sequence[tuple[str, ...]] | None,
        observe: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        for index, step in enumerate(steps):
            args = [self._fetch(name, local, outer, step) if name else None for name in step.inputs]
            results = self._call(step, args, local, outer)
            if len(results) < sum(1 for name in step.outputs if name):
                raise KernelError(
                    f"node {step.name!r} ({step.op_type}) kernel returned {len(results)} value(s) "
                    f"for {len(step.outputs)} output(s)"
                )
            for name, value in zip(step.outputs, results, strict=False):
                if name:
                    local[name] = value
            if observe is not None:
                observe(local)  # inputs and outputs of this step are live together here
            if free_after is not None:
                for name in free_after[index]:
                    local.pop(name, None)

    @staticmethod
    def _fetch(
        name: str, local: dict[str, Any], outer: Mapping[str, Any] | None, step: Step
    ) -> Any:
        if name in local:
            return local[name]
        if outer is not None and name in outer:
            return outer[name]
        raise MissingValueError(
            f"node {step.name!r} ({step.op_type}) needs value {name!r}, which no input provides "
            f"and no earlier node produced; feed it or fix the node order"
        )

    def _call(
        self, step: Step, args: list[Any], local: dict[str, Any], outer: Mapping[str, Any] | None
    ) -> Sequence[Any]:
        registration = step.registration
        try:
            if registration.needs_context:
                scope = ChainMap(local) if outer is None else ChainMap(local, outer)
                ctx = KernelContext(
                    opset=self.default_opset,
                    run_subgraph=self.run_subgraph,
                    outer_values=scope,
                    num_outputs=len(step.outputs),
                )
                return registration.fn(*args, ctx=ctx, **step.attrs)
            return registration.fn(*args, **step.attrs)
        except ExecutorError:
            raise
        except KernelError as error:
            raise KernelError(f"in node {step.name!r} ({step.op_type}): {error}") from error
        except Exception as error:
            shapes = ", ".join(
                f"{name or '<none>'}: {describe_value(arg)}"
                for name, arg in zip(step.inputs, args, strict=True)
            )
            first_line = (str(error).splitlines() or [""])[0]
            raise KernelError(
                f"node {step.name!r} ({step.op_type}, opset {self.default_opset}) failed on "
                f"inputs ({shapes}): {type(error).__name__}: {first_line}"
            ) from error

    def _compiled(self, graph: onnx.GraphProto) -> CompiledGraph:
        cached = self._graphs.get(id(graph))
        if cached is not None and cached[0] is graph:
            return cached[1]
        steps = compile_steps(graph.node, self.opsets)
        output_names = tuple(v.name for v in graph.output)
        compiled = CompiledGraph(
            steps=steps,
            initializers={t.name: numpy_helper.to_array(t) for t in graph.initializer},
            input_names=tuple(v.name for v in graph.input),
            output_names=output_names,
            free_after=free_plan(steps, set(output_names)),
        )
        self._graphs[id(graph)] = (graph, compiled)
        return compiled

    def run_subgraph(
        self, graph: onnx.GraphProto, feeds: Sequence[Any], outer_values: Mapping[str, Any]
    ) -> list[Any]:
        """Run ``graph`` with ``feeds`` bound to its formal inputs; return its outputs."""
        compiled = self._compiled(graph)
        if len(feeds) > len(compiled.input_names):
            raise KernelError(
                f"sub-graph {graph.name!r} takes {len(compiled.input_names)} input(s), "
                f"got {len(feeds)}"
            )
        local = dict(compiled.initializers)
        local.update(zip(compiled.input_names, feeds, strict=False))
        self.run_steps(compiled.steps, local, outer_values, compiled.free_after)
        return [
            local[name] if name in local else outer_values[name] for name in compiled.output_names
        ]
