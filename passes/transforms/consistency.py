"""Refuse models whose declared shapes and types contradict their ops.

Lenient shape inference (what planning needs: type what it can, skip the rest)
also skips contradictions: an input declared [0, 4] added to a [2, 4] tensor
was planned, and the executor then failed on it in `verify`. onnx's strict mode
reports them, and onnxruntime refuses such a model at load as well.

Only complaints about nodes of the default ONNX domain are taken as the model's
fault. onnx stops collecting complaints at the first op it has no schema for
(custom domains, contrib ops), and a complaint that a node's input has no type
only echoes an earlier node that could not be typed, so neither is judged here:
those models fall back to lenient inference, as before.
"""

from __future__ import annotations

import re

import onnx

from passes.errors import ModelError
from passes.external import shown

__all__ = ["infer_checked", "first_contradiction"]

# One complaint per line: "(op_type:Add, node name: add2): [ShapeInferenceError] ..."
_COMPLAINT = re.compile(r"\(op_type:([^,()]*), node name: (.*?)\): (.+)")
# Consequences of an untyped input, not contradictions of the node itself.
_ECHO = re.compile(
    r"expected to have type but instead is null|element type of input \d+ unknown|type was null",
    re.IGNORECASE,
)


def first_contradiction(model: onnx.ModelProto, message: str) -> str | None:
    """The first complaint of a strict inference error about a default-domain node, if any.

    Returns:
        "node 'add2' (Add): Incompatible dimensions", or None when every complaint is
        about another domain's node, an untyped input, or no node of this graph.
    """
    for line in message.splitlines():
        match = _COMPLAINT.search(line)
        if match is None:
            continue
        op_type, name, why = match.groups()
        why = re.sub(r"^(\[\w+\]\s*)+", "", why.strip())
        if _ECHO.search(why):
            continue
        standard = any(
            n.op_type == op_type and n.name == name and n.domain in ("", "ai.onnx")
            for n in model.graph.node
        )
        if standard:
            label = f"node '{shown(name)}'" if name else "a node"
            return f"{label} ({shown(op_type)}): {shown(why, 200)}"
    return None


# check_type stays off: an op fed a type outside its schema's constraints is a different
# fault from contradicting shapes, and models built to exercise other paths (an int4 Add
# over external data) rely on loading regardless.
def infer_checked(
    model: onnx.ModelProto, *, dims_given: bool, where: str = "the model"
) -> onnx.ModelProto | None:
    """onnx's strict shape inference with data propagation; None when it fails for a
    reason that is not the model's own contradiction (lenient inference is then the
    caller's to run).

    Args:
        model: the model, with ``--dim`` values already applied.
        dims_given: whether ``--dim`` values were applied (named in the error).
        where: the model, for the message ("model 'm.onnx'").

    Raises:
        ModelError: a default-domain node contradicts the shapes or types declared or
            inferred for its inputs and outputs (or its own attributes).
    """
    try:
        return onnx.shape_inference.infer_shapes(
            model, check_type=False, strict_mode=True, data_prop=True
        )
    except (onnx.shape_inference.InferenceError, ValueError) as err:
        # ValueError: onnx's own refusal of some malformed types ("Invalid tensor data
        # type 0"); the lenient pass decides about those.
        contradiction = first_contradiction(model, str(err))
        if contradiction is None:
            return None
        fix = "that node and the shapes and types the model declares"
        if dims_given:
            fix += ", and the --dim values"
        raise ModelError(
            f"{where} is inconsistent: {contradiction}; check {fix} (onnx strict shape "
            "inference and onnxruntime refuse it)"
        ) from err
