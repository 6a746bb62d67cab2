"""Every claimed NN op has a kernel at every opset 7..latest whose signature takes all the
schema's inputs and attributes (the runner passes every attribute with its schema default)."""

from __future__ import annotations

import inspect

import onnx.defs
import pytest

from partitioner.executor import registry
from tests.partitioner.nn_nodecase_harness import import_nn_kernels
from tests.partitioner.test_kernels_nn_nodecases import CLAIMED_OPS

OLDEST_OPSET = 7


def _schema_versions(op_type: str) -> list[int]:
    """The opsets (>= 7, or the op's first) at which ``op_type``'s schema changed."""
    versions = set()
    for opset in range(1, onnx.defs.onnx_opset_version() + 1):
        try:
            versions.add(onnx.defs.get_schema(op_type, opset).since_version)
        except onnx.defs.SchemaError:
            continue
    first_used = max(OLDEST_OPSET, min(versions))
    in_range = {v for v in versions if v >= first_used}
    # the schema in force at opset 7 may date from earlier
    in_range.add(onnx.defs.get_schema(op_type, first_used).since_version)
    return sorted(in_range)


@pytest.fixture(scope="module", autouse=True)
def _kernels() -> None:
    import_nn_kernels()


@pytest.mark.parametrize("op_type", sorted(CLAIMED_OPS))
def test_kernel_accepts_every_schema_input_and_attribute(op_type: str) -> None:
    for version in _schema_versions(op_type):
        opset = max(version, OLDEST_OPSET)
        reg = registry.lookup(op_type, "", opset)
        assert reg is not None, f"{op_type}: no kernel at opset {opset}"
        schema = onnx.defs.get_schema(op_type, opset)
        params = inspect.signature(reg.fn).parameters.values()
        names = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
        takes_any_keyword = any(p.kind is p.VAR_KEYWORD for p in params)
        missing = set(schema.attributes) - names
        assert takes_any_keyword or not missing, f"{op_type}@{opset} lacks attributes {missing}"
        positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert len(positional) >= len(schema.inputs), f"{op_type}@{opset} takes too few inputs"
