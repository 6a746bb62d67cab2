"""Shape resolution with the existing libraries.

Order of attempts, each only for what the previous one left unknown:

1. ``onnx.shape_inference`` with data propagation (handles most shape arithmetic),
   strict first so that a model contradicting itself is refused (see
   `passes.transforms.consistency`), lenient where strict fails for other reasons;
2. the same on a copy whose constant subgraphs onnxscript has folded, so that
   Reshape targets computed from ``Shape`` become initializers;
3. our rules for outputs the ONNX schemas leave untyped (Dropout's mask below
   opset 10), applied again after step 4;
4. onnxruntime's symbolic shape inference (``auto_merge``), which knows many
   contrib ops and merges symbolic dims. It runs on a copy whose out-of-proto
   weights are graph inputs, and keeps what it found when it stops early.

Shapes found by any of them are written into the model's ``value_info``;
tensors none of them can size (outputs of unknown custom ops and what follows)
stay unknown and are reported as such by the analyses.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import onnx

from passes.errors import ModelError
from passes.external import weights_as_inputs
from passes.ir import Graph, build_graph
from passes.pass_infra import Pass, PassResult
from passes.transforms.consistency import infer_checked
from passes.transforms.fold_limits import fold_size_guard

__all__ = ["InferShapes", "onnx_infer", "fold_copy", "apply_shape_rules"]

logger = logging.getLogger(__name__)


def _is_static(vi: onnx.ValueInfoProto) -> bool:
    t = vi.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return False
    if t.tensor_type.elem_type == 0:
        return False
    return all(d.HasField("dim_value") for d in t.tensor_type.shape.dim)


def _collect(
    model: onnx.ModelProto, into: dict[str, onnx.ValueInfoProto], *, folded: bool = False
) -> None:
    """Add the static value infos of ``model`` that ``into`` lacks (or has non-static).

    With ``folded``, ``model`` is a constant-folded copy: a value folded into a
    constant has no value_info there, but its initializer has the type and shape.
    Without them a folded Range looked unresolved, and onnxruntime's fallback ran
    (a second on a 70B graph) to type what was already known.
    """
    g = model.graph
    constants = [
        onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in (g.initializer if folded else ())
    ]
    for vi in [*g.value_info, *g.output, *g.input, *constants]:
        old = into.get(vi.name)
        if (old is None or not _is_static(old)) and (_is_static(vi) or old is None):
            into[vi.name] = vi


def _unresolved(model: onnx.ModelProto, known: dict[str, onnx.ValueInfoProto]) -> list[str]:
    return [
        o
        for n in model.graph.node
        for o in n.output
        if o and not (o in known and _is_static(known[o]))
    ]


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def onnx_infer(model: onnx.ModelProto, *, data_prop: bool = True) -> onnx.ModelProto:
    """onnx's shape inference, with data propagation by default; lenient about ops it cannot type.

    Raises:
        ModelError: the shapes contradict each other (often inconsistent ``--dim`` values).
    """
    try:
        return onnx.shape_inference.infer_shapes(
            model, check_type=False, strict_mode=False, data_prop=data_prop
        )
    except onnx.shape_inference.InferenceError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(
            f"shape inference failed: {first}; check that the --dim values agree with each other"
        ) from err


def fold_copy(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """A copy of ``model`` with onnxscript's constant folding applied, or None if it fails.

    Size limits keep folding from materialising large tensors (and from reading
    external weights, which may not exist): only shape arithmetic and small
    constants are evaluated here.
    """
    import onnx_ir as ir
    from onnxscript.optimizer import fold_constants

    try:
        # onnxscript and onnx_ir warn about each weight that is not loaded; expected here.
        with _quiet():
            ir_model = ir.serde.deserialize_model(model)
            limit = 1 << 20
            fold_constants(
                ir_model,
                input_size_limit=1 << 16,
                output_size_limit=limit,
                should_fold=fold_size_guard(limit),
            )
            return ir.serde.serialize_model(ir_model)
    except Exception as err:  # noqa: BLE001 - folding is an optimisation; fall back
        logger.debug("constant folding failed: %s", err)
        return None


@contextlib.contextmanager
def _quiet():
    loggers = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# --- rules for what the schemas leave untyped -----------------------------------------

_ShapeRule = Callable[
    [onnx.NodeProto, int, dict[str, onnx.ValueInfoProto]], list[onnx.ValueInfoProto]
]


def _dropout_mask(
    node: onnx.NodeProto, opset: int, known: dict[str, onnx.ValueInfoProto]
) -> list[onnx.ValueInfoProto]:
    """Dropout's mask has its input's shape; its type is the input's below opset 10
    (schema 7: ``mask: T``) and bool from 10 on. onnx's inference before opset 10
    types only the first output, which left the mask with no size at all."""
    if len(node.output) < 2 or not node.output[1] or not node.input:
        return []
    src = known.get(node.input[0])
    if src is None or not src.type.HasField("tensor_type") or not src.type.tensor_type.elem_type:
        return []
    mask = onnx.ValueInfoProto()
    mask.name = node.output[1]
    mask.type.CopyFrom(src.type)
    if opset >= 10:
        mask.type.tensor_type.elem_type = onnx.TensorProto.BOOL
    return [mask]


_SHAPE_RULES: dict[str, _ShapeRule] = {"Dropout": _dropout_mask}


def apply_shape_rules(model: onnx.ModelProto, known: dict[str, onnx.ValueInfoProto]) -> int:
    """Type the outputs our rules cover and ``known`` lacks, in place; returns how many."""
    opset = _opset(model)
    added = 0
    for node in model.graph.node:
        rule = _SHAPE_RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if rule is None or not _unresolved_outputs(node, known):
            continue
        for vi in rule(node, opset, known):
            old = known.get(vi.name)
            if old is None or (not _is_static(old) and _is_static(vi)):
                known[vi.name] = vi
                added += 1
    return added


def _unresolved_outputs(node: onnx.NodeProto, known: dict[str, onnx.ValueInfoProto]) -> bool:
    return any(o and not (o in known and _is_static(known[o])) for o in node.output)


# --- onnxruntime's symbolic inference ---------------------------------------------------


def _ort_ready(model: onnx.ModelProto) -> tuple[onnx.ModelProto, frozenset[str]]:
    """A copy onnxruntime's symbolic inference accepts, and the graph inputs added to it.

    Weights stored outside the proto make it fail as soon as it reads one
    ("Location of external TensorProto ... should not be empty"), so they become
    graph inputs (`weights_as_inputs`; passes.load strips only weights above
    16 KB, never the small constants of shape arithmetic). A Dropout mask that
    nothing reads is dropped: below opset 10 onnx leaves it untyped, and
    onnxruntime would stop there and infer nothing after it.
    """
    copy, added = weights_as_inputs(model)
    g = copy.graph
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for n in g.node:
        standard = n.domain in ("", "ai.onnx")
        if standard and n.op_type == "Dropout" and len(n.output) > 1 and n.output[1] not in read:
            del n.output[1:]
    return copy, added


@functools.cache
def _symbolic_shape_inference() -> type | None:
    """onnxruntime's ``SymbolicShapeInference`` class, or None where it cannot be loaded.

    ``onnxruntime.tools/__init__`` imports torch whenever torch is installed
    (1.7 s here, and the planner must never import torch), so the one module
    needed, which imports only numpy, onnx, sympy and packaging, is loaded from
    its file on its own.
    """
    import onnxruntime

    path = Path(onnxruntime.__file__).parent / "tools" / "symbolic_shape_infer.py"
    spec = importlib.util.spec_from_file_location("_partition_ort_symbolic_shape_infer", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (ImportError, OSError) as err:  # an onnxruntime without it, or without sympy
        logger.debug("onnxruntime symbolic shape inference unavailable: %s", err)
        return None
    return getattr(module, "SymbolicShapeInference", None)


def _ort_symbolic(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """onnxruntime's symbolic inference: what it found, even where it stopped early.

    ``SymbolicShapeInference.infer_shapes`` saves the model to
    ``sym_shape_infer_temp.onnx`` (plus external data) in the working directory
    whenever inference is incomplete, overwriting any user file of that name, and
    then raises, discarding what it found. This runs the same steps as that
    static method (preprocess, infer until done, copy outputs), minus the save.
    Avoiding the save, rather than running it in a temporary working directory,
    also leaves the process-wide working directory alone, which a chdir would
    change under every other thread.
    """
    if _opset(model) < 7 or _untyped_inputs(model):  # the library's floor; see _untyped_inputs
        return None
    SymbolicShapeInference = _symbolic_shape_inference()
    if SymbolicShapeInference is None:
        return None
    ready, added = _ort_ready(model)
    engine = SymbolicShapeInference(
        int_max=2**31 - 1, auto_merge=True, guess_output_rank=False, verbose=0
    )
    try:
        with _quiet():
            engine._preprocess(ready)
            _run_passes(engine)
            engine._update_output_from_vi()
    except Exception as err:  # noqa: BLE001 - a fallback; unknown shapes are reported later
        logger.debug("onnxruntime symbolic shape inference failed: %s", err)
        if not isinstance(getattr(engine, "out_mp_", None), onnx.ModelProto):
            return None
        _drop_last_node(engine.out_mp_)
    out: onnx.ModelProto = engine.out_mp_
    # The weights it saw as inputs are initializers of the model: give their names back.
    keep = [i for i in out.graph.input if i.name not in added]
    del out.graph.input[:]
    out.graph.input.extend(keep)
    return out


_ORT_MAX_PASSES = 64
"""Passes of onnxruntime's inference at most; each one that stops early merges dims."""


def _untyped_inputs(model: onnx.ModelProto) -> bool:
    """A graph input without an element type: onnxruntime's inference then repeats a
    pass that changes nothing, forever (passes.load refuses such models; this keeps
    the pass safe for graphs built in memory)."""
    for i in model.graph.input:
        kind = i.type.WhichOneof("value")
        if kind is None or (kind == "tensor_type" and not i.type.tensor_type.elem_type):
            return True
    return False


def _run_passes(engine) -> None:  # noqa: ANN001 - onnxruntime's SymbolicShapeInference
    """The library's ``while run_: _infer_impl()`` loop, stopped when a pass makes no progress.

    A pass that stops early asks for another after suggesting dim merges; one that
    suggests no new merge would run identically again, so it is the last.
    """
    for _ in range(_ORT_MAX_PASSES):
        merges = dict(engine.suggested_merge_)
        if engine._infer_impl():
            return
        logger.debug("onnxruntime symbolic inference stopped at an op it cannot type")
        if not engine.run_ or engine.suggested_merge_ == merges:
            return
    logger.debug("onnxruntime symbolic inference still merging after %d passes", _ORT_MAX_PASSES)


def _drop_last_node(model: onnx.ModelProto) -> None:
    """Forget the value infos of the node onnxruntime raised in (the last one it typed).

    It infers nodes in order, appending each one's outputs before applying its own
    rule, and raises from asserts in those rules: the nodes before are complete.
    """
    vis = model.graph.value_info
    if not vis:
        return
    last = vis[-1].name
    outputs = next((set(n.output) for n in model.graph.node if last in n.output), {last})
    keep = [vi for vi in vis if vi.name not in outputs]
    del vis[:]
    vis.extend(keep)


class InferShapes(Pass[Graph, Graph]):
    """Fill every tensor's dtype and static shape that the libraries can infer."""

    def call(self, model: Graph) -> PassResult[Graph]:
        proto = model.model
        known: dict[str, onnx.ValueInfoProto] = {}
        where = f"model '{model.path}'" if model.path else "the model"
        checked = infer_checked(proto, dims_given=bool(model.dims), where=where)
        _collect(checked if checked is not None else onnx_infer(proto), known)
        if _unresolved(proto, known):
            folded = fold_copy(proto)
            if folded is not None:
                # No data propagation here: folding has already turned shape arithmetic
                # into constants, and onnx propagates a constant-bound Range element by
                # element (a --dim seq=10**8 took over 4 GB).
                with contextlib.suppress(Exception):
                    _collect(onnx_infer(folded, data_prop=False), known, folded=True)
        apply_shape_rules(proto, known)
        if _unresolved(proto, known):
            ort = _ort_symbolic(proto)
            if ort is not None:
                _collect(ort, known)
                apply_shape_rules(proto, known)
        out = onnx.ModelProto()
        out.CopyFrom(proto)
        declared = {vi.name for vi in [*out.graph.input, *out.graph.output, *out.graph.initializer]}
        del out.graph.value_info[:]
        out.graph.value_info.extend(vi for name, vi in known.items() if name not in declared)
        for vi in out.graph.output:
            if vi.name in known and _is_static(known[vi.name]) and not _is_static(vi):
                vi.type.CopyFrom(known[vi.name].type)
        graph = build_graph(out, path=model.path, sha256=model.sha256, dims=model.dims)
        return PassResult(graph, True)
