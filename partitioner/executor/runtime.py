"""Run ONNX nodes with the registered NumPy kernels.

`run_nodes` executes a list of `onnx.NodeProto`s in order over a value
environment (name -> array, list for sequences, None for an empty optional),
dropping each value after its last use unless the caller keeps it, and running
If/Loop/Scan sub-graphs with outer-scope lookup. `run_model` is a thin
whole-model wrapper (initializers, feed checks, local functions inlined).
Nothing here knows the project IR; the plan runner builds on `run_nodes`.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx.inliner
from onnx import numpy_helper

from partitioner.executor import kernels as _kernels  # noqa: F401  (registers every kernel)
from partitioner.executor.attributes import node_attributes
from partitioner.executor.errors import (
    ExecutorError,
    KernelError,
    MissingValueError,
    UnsupportedOpError,
)
from partitioner.executor.feeds import as_feed, check_feeds
from partitioner.executor.registry import KernelContext, Registration, lookup
from passes.ir import node_subgraphs, outer_references

__all__ = [
    "missing_kernels",
    "run_nodes",
    "run_model",
    "prepare_model",
    "PreparedModel",
    "describe_value",
]

OpsetImports = Mapping[str, int]


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def _opsets(opset_imports: OpsetImports | int) -> dict[str, int]:
    if isinstance(opset_imports, int):
        return {"": opset_imports}
    return {_norm_domain(d): int(v) for d, v in opset_imports.items()}


def _display_name(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"<{node.op_type} #{index}>"


def _registration(node: onnx.NodeProto, opsets: Mapping[str, int]) -> Registration | None:
    opset = opsets.get(_norm_domain(node.domain))
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
    opsets = _opsets(opset_imports)
    found: list[tuple[str, str]] = []

    def visit(graph_nodes: Iterable[onnx.NodeProto], prefix: str) -> None:
        for index, node in enumerate(graph_nodes):
            name = prefix + _display_name(node, index)
            if _registration(node, opsets) is None:
                domain = _norm_domain(node.domain)
                found.append((name, f"{domain}::{node.op_type}" if domain else node.op_type))
            for graph in node_subgraphs(node):
                visit(graph.node, name + "/")

    visit(nodes, "")
    return found


def _raise_unsupported(missing: list[tuple[str, str]]) -> None:
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
class _Step:
    """One node, resolved to its kernel and decoded attributes."""

    name: str
    op_type: str
    registration: Registration
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    captured: frozenset[str]


def _compile(nodes: Sequence[onnx.NodeProto], opsets: Mapping[str, int]) -> list[_Step]:
    steps = []
    for index, node in enumerate(nodes):
        registration = _registration(node, opsets)
        if registration is None:
            _raise_unsupported(missing_kernels([node], opsets))
        captured = frozenset(
            name for graph in node_subgraphs(node) for name in outer_references(graph)
        )
        opset = opsets[_norm_domain(node.domain)]
        steps.append(
            _Step(
                name=_display_name(node, index),
                op_type=node.op_type,
                registration=registration,
                inputs=tuple(node.input),
                outputs=tuple(node.output),
                attrs=node_attributes(node, opset),
                captured=captured,
            )
        )
    return steps


def _free_plan(steps: Sequence[_Step], keep: Collection[str]) -> list[tuple[str, ...]]:
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
class _CompiledGraph:
    steps: list[_Step]
    initializers: dict[str, Any]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    free_after: list[tuple[str, ...]]


class _Runner:
    """Executes compiled steps; caches compiled sub-graphs for the run's duration."""

    def __init__(self, opsets: Mapping[str, int]) -> None:
        self.opsets = opsets
        self.default_opset = opsets.get("", 0)
        self._graphs: dict[int, tuple[onnx.GraphProto, _CompiledGraph]] = {}

    def run_steps(
        self,
        steps: Sequence[_Step],
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
        name: str, local: dict[str, Any], outer: Mapping[str, Any] | None, step: _Step
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
        self, step: _Step, args: list[Any], local: dict[str, Any], outer: Mapping[str, Any] | None
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

    def _compiled(self, graph: onnx.GraphProto) -> _CompiledGraph:
        cached = self._graphs.get(id(graph))
        if cached is not None and cached[0] is graph:
            return cached[1]
        steps = _compile(graph.node, self.opsets)
        output_names = tuple(v.name for v in graph.output)
        compiled = _CompiledGraph(
            steps=steps,
            initializers={t.name: numpy_helper.to_array(t) for t in graph.initializer},
            input_names=tuple(v.name for v in graph.input),
            output_names=output_names,
            free_after=_free_plan(steps, set(output_names)),
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


def run_nodes(
    nodes: Sequence[onnx.NodeProto],
    values: Mapping[str, Any],
    opset_imports: OpsetImports | int,
    *,
    keep: Collection[str] | None = None,
    observe: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Execute ``nodes`` in order over ``values``.

    Every op (sub-graphs included) is checked for a kernel before anything runs.

    Args:
        nodes: nodes in an order that executes (each input produced before use).
        values: name -> array (list for a sequence, None for an empty optional);
            graph inputs and initializers the nodes read. Not modified.
        opset_imports: domain -> opset version, or the default-domain opset.
        keep: names to keep; every other value is dropped after its last use
            (values nobody reads are dropped at once). ``None`` keeps everything.
        observe: called with the environment after each node stores its outputs and
            before anything is dropped (to measure the memory actually held).

    Returns:
        The environment after the run: with ``keep``, exactly the kept names that
        exist; without, every input and every produced value.

    Raises:
        UnsupportedOpError: some op has no kernel (all such nodes are listed).
        MissingValueError: a node reads a name nothing provides.
        KernelError: a kernel raised (message names node, op type, input shapes).
    """
    opsets = _opsets(opset_imports)
    missing = missing_kernels(nodes, opsets)
    if missing:
        _raise_unsupported(missing)
    steps = _compile(nodes, opsets)
    local = dict(values)
    free_after = None if keep is None else _free_plan(steps, set(keep))
    # ONNX follows IEEE semantics (log(0) = -inf, 0/0 = nan): not worth a warning.
    with np.errstate(all="ignore"):
        _Runner(opsets).run_steps(steps, local, None, free_after, observe)
    if keep is None:
        return local
    return {name: local[name] for name in keep if name in local}


def _initializer_array(tensor: onnx.TensorProto) -> np.ndarray:
    if tensor.data_location == onnx.TensorProto.EXTERNAL and not tensor.HasField("raw_data"):
        raise ExecutorError(
            f"initializer {tensor.name!r} keeps its data in an external file that was not loaded; "
            f"load the model with onnx.load(path) (load_external_data=True) before running it"
        )
    array = numpy_helper.to_array(tensor)
    # Outputs may be views of initializers (Identity, Reshape); read-only keeps
    # a caller's in-place edit from changing the model for the next run.
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class PreparedModel:
    """A model ready to run many times: initializers decoded once, functions inlined.

    Attributes:
        graph: the top-level graph (local functions already inlined).
        opsets: domain -> opset version.
        initializers: initializer name -> array.
        output_names: graph outputs, in order.
    """

    graph: onnx.GraphProto
    opsets: Mapping[str, int]
    initializers: Mapping[str, np.ndarray]
    output_names: tuple[str, ...]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Outputs by name for ``feeds`` (see `run_model`)."""
        feeds = {name: as_feed(value) for name, value in feeds.items()}
        check_feeds(self.graph, feeds)
        values = {**self.initializers, **feeds}
        env = run_nodes(self.graph.node, values, self.opsets, keep=self.output_names)
        absent = [name for name in self.output_names if name not in env]
        if absent:
            raise MissingValueError(
                f"graph output {absent[0]!r} is produced by no node and is no input; fix the model"
            )
        return {name: env[name] for name in self.output_names}


def prepare_model(model: onnx.ModelProto) -> PreparedModel:
    """Decode initializers and inline local functions once, for repeated runs.

    Raises:
        ExecutorError: an initializer's external data was not loaded.
        UnsupportedOpError: some op has no kernel (checked here, before any run).
    """
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    graph = model.graph
    opsets = _opsets({d.domain: d.version for d in model.opset_import})
    missing = missing_kernels(graph.node, opsets)
    if missing:
        _raise_unsupported(missing)
    return PreparedModel(
        graph=graph,
        opsets=opsets,
        initializers={t.name: _initializer_array(t) for t in graph.initializer},
        output_names=tuple(v.name for v in graph.output),
    )


def run_model(model: onnx.ModelProto, feeds: Mapping[str, Any]) -> dict[str, Any]:
    """Run a whole model once; return its graph outputs by name, in graph order.

    For repeated runs, `prepare_model` once and call ``.run(feeds)``.

    Args:
        model: a loaded model; external data must already be loaded (``onnx.load`` does).
            Model-local functions are inlined first.
        feeds: input name -> array (list for a sequence input, None for an empty optional).
            Inputs that are also initializers may be omitted (the initializer is used).

    Raises:
        FeedError: a feed is missing, unknown, or of the wrong dtype/shape.
        UnsupportedOpError, MissingValueError, KernelError: as for `run_nodes`.
    """
    return prepare_model(model).run(feeds)
