"""Mutations of a model file: byte damage, and field edits of the parsed protobuf.

Every mutation is plain data (a tuple of operations), so a failure hypothesis
reports can be pasted back as an explicit regression case.
"""

from __future__ import annotations

import copy

import onnx
from hypothesis import strategies as st

from tests.modelgen import vi

__all__ = ["byte_mutations", "apply_bytes", "proto_mutations", "apply_proto"]

# A mutation is ("set", ((pos, byte), ...)) | ("xor", ((pos, bit), ...)) | ("truncate", n)
# | ("insert", pos, bytes) | ("delete", pos, n); positions are taken modulo the length.

_INTERESTING_BYTES = st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, 0x08, 0x0A, 0x12, 0x22, 0x3A])


def byte_mutations(size: int) -> st.SearchStrategy[tuple]:
    pos = st.integers(0, size - 1)
    value = st.one_of(st.integers(0, 255), _INTERESTING_BYTES)
    return st.one_of(
        st.tuples(
            st.just("set"), st.lists(st.tuples(pos, value), min_size=1, max_size=8).map(tuple)
        ),
        st.tuples(
            st.just("xor"),
            st.lists(st.tuples(pos, st.integers(0, 7)), min_size=1, max_size=8).map(tuple),
        ),
        st.tuples(st.just("truncate"), pos),
        st.tuples(st.just("insert"), st.integers(0, size), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("delete"), pos, st.integers(1, 8)),
    )


def apply_bytes(data: bytes, mutation: tuple) -> bytes:
    kind = mutation[0]
    buf = bytearray(data)
    if kind == "set":
        for pos, value in mutation[1]:
            buf[pos % len(buf)] = value
    elif kind == "xor":
        for pos, bit in mutation[1]:
            buf[pos % len(buf)] ^= 1 << bit
    elif kind == "truncate":
        del buf[mutation[1] :]
    elif kind == "insert":
        buf[mutation[1] : mutation[1]] = mutation[2]
    elif kind == "delete":
        del buf[mutation[1] : mutation[1] + mutation[2]]
    else:
        raise ValueError(kind)
    return bytes(buf)


_VALID_ELEM = frozenset(onnx.helper.get_all_tensor_dtypes())
"""The TensorProto.DataType values the installed onnx maps to numpy (1..28 in onnx 1.23)."""


_DIMS = [0, 1, 3, 7, -1, -(2**62), 2**31, 2**40, 2**62, 2**63 - 1, "N", ""]
_OPS = [
    "MatMul",
    "Add",
    "Relu",
    "Gemm",
    "Conv",
    "Softmax",
    "Reshape",
    "Transpose",
    "Concat",
    "Identity",
    "Cast",
    "Foo",
    "",
    "Loop",
    "If",
    "MaxPool",
    "LayerNormalization",
]
# Every valid element type, UNDEFINED (0) and values that are no TensorProto.DataType.
_ELEM = sorted(_VALID_ELEM | {0, -1, 99, 2**31 - 1})


def proto_mutations(model) -> st.SearchStrategy[tuple]:
    graph = model.graph
    n_nodes, n_inits = len(graph.node), len(graph.initializer)
    n_io = len(graph.input) + len(graph.output)
    names = sorted({t for n in graph.node for t in (*n.input, *n.output)} | {"", "nope"})
    node = st.integers(0, n_nodes - 1)
    op = st.one_of(
        st.tuples(
            st.just("dim"), st.integers(0, n_io - 1), st.integers(0, 2), st.sampled_from(_DIMS)
        ),
        st.tuples(
            st.just("rank"),
            st.integers(0, n_io - 1),
            st.lists(st.sampled_from(_DIMS), max_size=5).map(tuple),
        ),
        st.tuples(st.just("elem_type"), st.integers(0, n_io - 1), st.sampled_from(_ELEM)),
        st.tuples(
            st.just("init_dims"),
            st.integers(0, n_inits - 1),
            st.lists(st.sampled_from([0, 1, 2, 4, 6, 24, -1, 2**40]), max_size=4).map(tuple),
        ),
        st.tuples(st.just("init_dtype"), st.integers(0, n_inits - 1), st.sampled_from(_ELEM)),
        st.tuples(st.just("init_raw"), st.integers(0, n_inits - 1), st.integers(0, 200)),
        st.tuples(
            st.just("init_external"),
            st.integers(0, n_inits - 1),
            st.sampled_from(["w.bin", "../../../etc/passwd", "/dev/zero", "", "m.onnx", "x" * 300]),
        ),
        st.tuples(st.just("op_type"), node, st.sampled_from(_OPS)),
        st.tuples(
            st.just("domain"),
            node,
            st.sampled_from(["com.microsoft", "ai.onnx.ml", "bogus", "ai.onnx"]),
        ),
        st.tuples(st.just("input"), node, st.integers(0, 3), st.sampled_from(names)),
        st.tuples(st.just("output"), node, st.integers(0, 1), st.sampled_from(names)),
        st.tuples(st.just("drop_node"), node),
        st.tuples(st.just("dup_node"), node),
        st.tuples(st.just("swap_nodes"), node, node),
        st.tuples(
            st.just("attr"),
            node,
            st.sampled_from(["transA", "transB", "axis", "alpha", "perm", "to", "shape"]),
            st.sampled_from([0, 1, -1, 99, 2**40, 0.5, float("nan"), "s", (0, 1), (1, 0), ()]),
        ),
        st.tuples(
            st.just("opset"),
            st.sampled_from([1, 6, 7, 11, 13, 17, 18, 21, 22, 23, 24, 99, 10**6, -1, 0]),
        ),
        st.tuples(st.just("ir_version"), st.sampled_from([0, 1, 3, 7, 10, 11, 12, 99, -1])),
        st.tuples(st.just("drop_init"), st.integers(0, n_inits - 1)),
        st.tuples(st.just("drop_io"), st.integers(0, n_io - 1)),
        st.tuples(st.just("add_output"), st.sampled_from(names)),
    )
    return st.lists(op, min_size=1, max_size=3).map(tuple)


def apply_proto(model, ops: tuple) -> bytes:
    """The serialized model after the operations (each one that no longer applies is a no-op)."""
    from onnx import AttributeProto, TensorProto

    m = copy.deepcopy(model)
    g = m.graph
    for op in ops:
        kind = op[0]
        ios = [*g.input, *g.output]
        try:
            if kind in ("dim", "rank", "elem_type"):
                tt = ios[op[1]].type.tensor_type
                if kind == "elem_type":
                    tt.elem_type = op[2]
                elif kind == "rank":
                    tt.shape.ClearField("dim")
                    for d in op[2]:
                        _set_dim(tt.shape.dim.add(), d)
                else:
                    _set_dim(tt.shape.dim[op[2]], op[3])
            elif kind == "init_dims":
                t = g.initializer[op[1]]
                t.ClearField("dims")
                t.dims.extend(op[2])
            elif kind == "init_dtype":
                g.initializer[op[1]].data_type = op[2]
            elif kind == "init_raw":
                t = g.initializer[op[1]]
                t.raw_data = t.raw_data[: op[2]]
            elif kind == "init_external":
                t = g.initializer[op[1]]
                t.ClearField("raw_data")
                t.data_location = TensorProto.EXTERNAL
                for key, value in (("location", op[2]), ("offset", "0"), ("length", "96")):
                    entry = t.external_data.add()
                    entry.key, entry.value = key, value
            elif kind == "op_type":
                g.node[op[1]].op_type = op[2]
            elif kind == "domain":
                g.node[op[1]].domain = op[2]
            elif kind in ("input", "output"):
                field = g.node[op[1]].input if kind == "input" else g.node[op[1]].output
                if op[2] < len(field):
                    field[op[2]] = op[3]
                else:
                    field.append(op[3])
            elif kind == "drop_node":
                del g.node[op[1]]
            elif kind == "dup_node":
                g.node.append(copy.deepcopy(g.node[op[1]]))
            elif kind == "swap_nodes":
                a, b = copy.deepcopy(g.node[op[1]]), copy.deepcopy(g.node[op[2]])
                g.node[op[1]].CopyFrom(b)
                g.node[op[2]].CopyFrom(a)
            elif kind == "attr":
                node = g.node[op[1]]
                value = op[3]
                attr = (
                    next((a for a in node.attribute if a.name == op[2]), None)
                    or node.attribute.add()
                )
                attr.Clear()
                attr.name = op[2]
                if isinstance(value, tuple):
                    attr.type = AttributeProto.INTS
                    attr.ints.extend(value)
                elif isinstance(value, str):
                    attr.type, attr.s = AttributeProto.STRING, value.encode()
                elif isinstance(value, float):
                    attr.type, attr.f = AttributeProto.FLOAT, value
                else:
                    attr.type, attr.i = AttributeProto.INT, value
            elif kind == "opset":
                m.opset_import[0].version = op[1]
            elif kind == "ir_version":
                m.ir_version = op[1]
            elif kind == "drop_init":
                del g.initializer[op[1]]
            elif kind == "drop_io":
                n_in = len(g.input)
                if op[1] < n_in:
                    del g.input[op[1]]
                else:
                    del g.output[op[1] - n_in]
            elif kind == "add_output":
                g.output.append(vi(op[1], [2, 4]))
            else:
                raise ValueError(kind)
        except IndexError:
            pass  # an earlier operation removed what this one targets
    return m.SerializeToString()


def _set_dim(dim, value: int | str) -> None:
    if isinstance(value, str):
        dim.dim_param = value
    else:
        dim.dim_value = value
