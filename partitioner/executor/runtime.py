"""Run ONNX nodes with the registered NumPy kernels.

`run_nodes` executes a list of `onnx.NodeProto`s in order over a value
environment (name -> array, list for sequences, None for an empty optional),
dropping each value after its last use unless the caller keeps it, and running
If/Loop/Scan sub-graphs with outer-scope lookup (the step interpreter is in
`partitioner.executor.interpreter`). `run_model` is a thin whole-model wrapper
(initializers, feed checks, local functions inlined). Nothing here knows the
project IR; the plan runner builds on `run_nodes`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx.inliner
from onnx import numpy_helper

from partitioner.executor.errors import ExecutorError, MissingValueError
from partitioner.executor.feeds import as_feed, check_feeds
from partitioner.executor.interpreter import (
    OpsetImports,
    Runner,
    compile_steps,
    describe_value,
    free_plan,
    missing_kernels,
    opsets_of,
    raise_unsupported,
)

__all__ = [
    "missing_kernels",
    "run_nodes",
    "run_model",
    "prepare_model",
    "PreparedModel",
    "describe_value",
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
    opsets = opsets_of(opset_imports)
    missing = missing_kernels(nodes, opsets)
    if missing:
        raise_unsupported(missing)
    steps = compile_steps(nodes, opsets)
    local = dict(values)
    free_after = None if keep is None else free_plan(steps, set(keep))
    # ONNX follows IEEE semantics (log(0) = -inf, 0/0 = nan): not worth a warning.
    with np.errstate(all="ignore"):
        Runner(opsets).run_steps(steps, local, None, free_after, observe)
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
    opsets = opsets_of({d.domain: d.version for d in model.opset_import})
    missing = missing_kernels(graph.node, opsets)
    if missing:
        raise_unsupported(missing)
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
