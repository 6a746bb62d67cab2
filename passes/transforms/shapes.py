"""Shape resolution with the existing libraries.

Order of attempts, each only for what the previous one left unknown:

1. ``onnx.shape_inference`` with data propagation (handles most shape arithmetic);
2. the same on a copy whose constant subgraphs onnxscript has folded, so that
   Reshape targets computed from ``Shape`` become initializers;
3. onnxruntime's symbolic shape inference (``auto_merge``), which knows many
   contrib ops and merges symbolic dims.

Shapes found by any of them are written into the model's ``value_info``;
tensors none of them can size (outputs of unknown custom ops and what follows)
stay unknown and are reported as such by the analyses.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import onnx

from passes.errors import ModelError
from passes.ir import Graph, build_graph
from passes.pass_infra import Pass, PassResult

__all__ = ["InferShapes", "onnx_infer", "fold_copy"]

logger = logging.getLogger(__name__)


def _is_static(vi: onnx.ValueInfoProto) -> bool:
    t = vi.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return False
    if t.tensor_type.elem_type == 0:
        return False
    return all(d.HasField("dim_value") for d in t.tensor_type.shape.dim)


def _collect(model: onnx.ModelProto, into: dict[str, onnx.ValueInfoProto]) -> None:
    """Add the static value infos of ``model`` that ``into`` lacks (or has non-static)."""
    g = model.graph
    for vi in [*g.value_info, *g.output, *g.input]:
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


def onnx_infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx's shape inference with data propagation; lenient about ops it cannot type.

    Raises:
        ModelError: the shapes contradict each other (often inconsistent ``--dim`` values).
    """
    try:
        return onnx.shape_inference.infer_shapes(
            model, check_type=False, strict_mode=False, data_prop=True
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
            fold_constants(ir_model, input_size_limit=1 << 16, output_size_limit=1 << 20)
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


def _ort_symbolic(model: onnx.ModelProto) -> onnx.ModelProto | None:
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        with _quiet():
            return SymbolicShapeInference.infer_shapes(
                model, auto_merge=True, guess_output_rank=False
            )
    except Exception as err:  # noqa: BLE001 - a fallback; unknown shapes are reported later
        logger.debug("onnxruntime symbolic shape inference failed: %s", err)
        return None


class InferShapes(Pass[Graph, Graph]):
    """Fill every tensor's dtype and static shape that the libraries can infer."""

    def call(self, model: Graph) -> PassResult[Graph]:
        proto = model.model
        known: dict[str, onnx.ValueInfoProto] = {}
        _collect(onnx_infer(proto), known)
        if _unresolved(proto, known):
            folded = fold_copy(proto)
            if folded is not None:
                with contextlib.suppress(Exception):
                    _collect(onnx_infer(folded), known)
        if _unresolved(proto, known):
            ort = _ort_symbolic(proto)
            if ort is not None:
                _collect(ort, known)
        out = onnx.ModelProto()
        out.CopyFrom(proto)
        declared = {vi.name for vi in [*out.graph.input, *out.graph.output]}
        del out.graph.value_info[:]
        out.graph.value_info.extend(vi for name, vi in known.items() if name not in declared)
        for vi in out.graph.output:
            if vi.name in known and _is_static(known[vi.name]) and not _is_static(vi):
                vi.type.CopyFrom(known[vi.name].type)
        graph = build_graph(out, path=model.path, sha256=model.sha256, dims=model.dims)
        return PassResult(graph, True)
