"""Torch-free clean-up of exported ONNX graphs (used by :mod:`examples._torch_export`).

* :func:`optimize_keeping_parameters`: onnxscript constant folding plus a list of its public
  structural rewrite rules, never folding a node that reads a parameter.
* :func:`literals_to_constant_nodes`: exporter-made literals (GELU's 0.5, ``-inf``,
  ``1/sqrt(head_dim)``) stored as tiny float initializers become ``Constant`` nodes, so the
  float initializers are exactly the parameters. Larger non-parameter float initializers
  are left alone on purpose: a duplicated weight must show up in the parameter count.
* :func:`convert_down`: onnx's version converter below opset 18, with a fix for its Reduce*
  adapters.
"""

from __future__ import annotations

import logging
import math

import onnx
import onnx.version_converter
from onnx import helper, numpy_helper

from examples._onnx_utils import ExampleError

__all__ = [
    "convert_down",
    "default_domain_opset",
    "literals_to_constant_nodes",
    "optimize_keeping_parameters",
]

logger = logging.getLogger(__name__)

#: Non-parameter float initializers up to this size are literals, turned into Constant nodes.
_MAX_LITERAL_ELEMENTS = 16


def default_domain_opset(model: onnx.ModelProto) -> int:
    """The model's opset of the default (``ai.onnx``) domain."""
    return next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))


def convert_down(model: onnx.ModelProto, opset: int, *, fallback_hint: str) -> onnx.ModelProto:
    """Convert a cleaned opset-18 model to an older opset with onnx's version converter.

    Args:
        model: The model at opset 18, its axes/shape operands already constants.
        opset: Target opset (below 18).
        fallback_hint: What the user can do instead, for the error message.

    Returns:
        The converted model, checked.

    Raises:
        ExampleError: If onnx cannot convert it (missing or faulty adapters).
    """
    try:
        converted = onnx.version_converter.convert_version(model, opset)
        _drop_stale_noop_with_empty_axes(converted)
        onnx.checker.check_model(converted, full_check=True)
    except (RuntimeError, onnx.checker.ValidationError) as error:
        # The converter lacks adapters for some ops: a limit of the tools, not a model bug.
        first_line = str(error).splitlines()[0]
        raise ExampleError(
            f"onnx cannot convert the model to opset {opset} ({first_line}); {fallback_hint}"
        ) from error
    return converted


def _drop_stale_noop_with_empty_axes(model: onnx.ModelProto) -> None:
    """Work around onnx's 18->17 Reduce* adapters, which keep an opset-18-only attribute.

    ``noop_with_empty_axes`` exists for ReduceSum from opset 13 but for the other Reduce*
    ops only from 18. Its default (0) is what the older ops do, so dropping a 0 is exact.
    """
    if default_domain_opset(model) >= 18:
        return
    for node in model.graph.node:
        if node.op_type.startswith("Reduce") and node.op_type != "ReduceSum":
            kept = [
                attribute
                for attribute in node.attribute
                if not (attribute.name == "noop_with_empty_axes" and attribute.i == 0)
            ]
            del node.attribute[:]
            node.attribute.extend(kept)


def optimize_keeping_parameters(
    model: onnx.ModelProto, parameter_names: set[str]
) -> onnx.ModelProto:
    """Fold constants and tidy a graph with onnxscript, leaving every parameter as it is.

    Args:
        model: The exported model.
        parameter_names: Initializers that must stay as they are (no folding reads them).

    Returns:
        The cleaned model.
    """
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes
    from onnxscript import rewriter
    from onnxscript.optimizer import fold_constants_ir
    from onnxscript.rewriter.rules import common as rules

    def should_fold(node: ir.Node) -> bool | None:
        reads_parameter = any(
            value is not None and value.is_initializer() and value.name in parameter_names
            for value in node.inputs
        )
        return False if reads_parameter else None

    # The subset of onnxscript's default rules that only simplify structure; the
    # BatchNorm/Pad fusions and Gemm rewrites are left out on purpose.
    tidy_rules = [
        rules.cast_cast_rule,
        rules.no_op_cast_rule,
        rules.no_op_expand_rule,
        rules.no_op_transpose_rule,
        rules.reshape_reshape_rule,
        rules.slice_split_rule,
        rules.squeeze_reshape_1d_rule,
        rules.transpose_transpose_rule,
        rules.unsqueeze_unsqueeze_rule,
        rules.collapse_slice_rule,
        rules.collapse_slice2_rule,
        rules.add_0_rule,
        rules.sub_0_rule,
        rules.mul_by_1_rule,
        rules.div_by_1_rule,
        # torchlib gives bias-free convs an all-zero bias initializer; drop it again.
        rules.remove_optional_bias_from_conv_rule,
        rules.remove_optional_bias_from_gemm_rule,
    ]
    ir_model = ir.serde.deserialize_model(model)
    common_passes.InlinePass()(ir_model)
    for _ in range(2):
        fold_constants_ir(ir_model, onnx_shape_inference=True, should_fold=should_fold)
        rewriter.RewritePass(tidy_rules)(ir_model)
        common_passes.RemoveUnusedNodesPass()(ir_model)
    common_passes.CommonSubexpressionEliminationPass()(ir_model)
    common_passes.RemoveUnusedNodesPass()(ir_model)
    common_passes.RemoveUnusedOpsetsPass()(ir_model)
    return ir.serde.serialize_model(ir_model)


def literals_to_constant_nodes(model: onnx.ModelProto, parameter_names: set[str]) -> None:
    """Turn tiny non-parameter float initializers into Constant nodes, in place.

    Args:
        model: The model to edit.
        parameter_names: Initializers that are parameters and stay initializers.
    """
    graph = model.graph
    literals = [
        tensor
        for tensor in graph.initializer
        if tensor.name not in parameter_names
        and tensor.data_type
        in {
            onnx.TensorProto.FLOAT,
            onnx.TensorProto.FLOAT16,
            onnx.TensorProto.BFLOAT16,
            onnx.TensorProto.DOUBLE,
        }
        and math.prod(tensor.dims) <= _MAX_LITERAL_ELEMENTS
    ]
    if not literals:
        return
    names = {tensor.name for tensor in literals}
    kept = [tensor for tensor in graph.initializer if tensor.name not in names]
    nodes = [
        helper.make_node(
            "Constant",
            [],
            [tensor.name],
            name=f"{tensor.name}_literal",
            value=numpy_helper.from_array(numpy_helper.to_array(tensor)),
        )
        for tensor in literals
    ]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    # A graph input may shadow an initializer in old IR versions; drop such entries too.
    inputs = [value for value in graph.input if value.name not in names]
    del graph.input[:]
    graph.input.extend(inputs)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *existing])
    logger.debug("turned %d literal initializers into Constant nodes", len(nodes))
