"""Symbolic-dim overrides (``--dim NAME=VALUE``) and the pass that applies them."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence

import onnx

from passes.errors import DimError
from passes.ir import Graph, build_graph
from passes.pass_infra import Pass, PassResult

__all__ = ["parse_dim_overrides", "symbolic_dims", "ResolveDims", "MAX_DIM"]

MAX_DIM = 1 << 40
"""Largest --dim value: far beyond any real batch or sequence, and small enough that
element and byte counts of every tensor stay within int64 for the libraries."""

_DIM_SPEC = re.compile(r"^\s*([^=\s][^=]*?)\s*=\s*(-?\d+)\s*$")


def parse_dim_overrides(specs: Iterable[str]) -> dict[str, int]:
    """Parse ``NAME=VALUE`` strings into a dict, rejecting malformed or repeated names.

    Raises:
        DimError: one line naming the bad spec and showing the expected form.
    """
    dims: dict[str, int] = {}
    for spec in specs:
        m = _DIM_SPEC.match(spec)
        if not m:
            raise DimError(
                f"--dim {spec[:60]!r} is malformed: write NAME=VALUE with a whole number, "
                "e.g. --dim batch=1 --dim seq=128"
            )
        name, digits = m.group(1), m.group(2)
        value = int(digits) if len(digits) <= 20 else MAX_DIM + 1
        if value <= 0:
            raise DimError(f"--dim {spec[:60]!r}: the value must be a positive whole number")
        if value > MAX_DIM:
            raise DimError(
                f"--dim {name[:40]}={digits[:24]}{'…' if len(digits) > 24 else ''}: too large; "
                f"a dimension is at most {MAX_DIM:,} (2^{MAX_DIM.bit_length() - 1})"
            )
        if name in dims and dims[name] != value:
            raise DimError(f"--dim {name} is given twice ({dims[name]} and {value}); keep one")
        dims[name] = value
    return dims


def _value_infos(graph: onnx.GraphProto) -> Sequence[onnx.ValueInfoProto]:
    return [*graph.input, *graph.output, *graph.value_info]


def symbolic_dims(model: onnx.ModelProto) -> list[str]:
    """Every symbolic dim name declared on the top-level graph's values, sorted."""
    names = set()
    for vi in _value_infos(model.graph):
        if vi.type.HasField("tensor_type"):
            for d in vi.type.tensor_type.shape.dim:
                if d.HasField("dim_param") and d.dim_param:
                    names.add(d.dim_param)
    return sorted(names)


class ResolveDims(Pass[Graph, Graph]):
    """Replace symbolic dims by the user's values on every declared value."""

    def __init__(self, overrides: Mapping[str, int]) -> None:
        self.overrides = dict(overrides)

    def requires(self, model: Graph) -> None:
        known = symbolic_dims(model.model)
        for name in self.overrides:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                listing = ", ".join(known) if known else "none (all dims are fixed)"
                raise DimError(
                    f"--dim {name}={self.overrides[name]}: the model has no symbolic dim "
                    f"{name!r} (its symbolic dims: {listing}){hint}"
                )

    def ensures(self, model: Graph) -> None:
        named: list[str] = []
        unnamed: list[str] = []
        for name in model.inputs:
            shape = model.tensors[name].shape
            if shape is None:
                unnamed.append(f"{name} (unknown rank)")
                continue
            for axis, d in enumerate(shape):
                if isinstance(d, str) and d not in named:
                    named.append(d)
                elif d is None:
                    unnamed.append(f"{name}[{axis}]")
        if named:
            example = " ".join(f"--dim {d}=N" for d in named)
            raise DimError(
                f"unresolved symbolic dims: {', '.join(named)}; give each a value, e.g. {example}"
            )
        if unnamed:
            raise DimError(
                f"inputs with unnamed dynamic dims: {', '.join(unnamed)}; re-export the model "
                "with named dynamic axes (then set them with --dim NAME=VALUE) or static shapes"
            )

    def call(self, model: Graph) -> PassResult[Graph]:
        if not self.overrides:
            return PassResult(model, False)
        proto = onnx.ModelProto()
        proto.CopyFrom(model.model)
        for vi in _value_infos(proto.graph):
            if not vi.type.HasField("tensor_type"):
                continue
            for d in vi.type.tensor_type.shape.dim:
                if d.HasField("dim_param") and d.dim_param in self.overrides:
                    d.dim_value = self.overrides[d.dim_param]  # clears dim_param (oneof)
        dims = {**model.dims, **self.overrides}
        graph = build_graph(proto, path=model.path, sha256=model.sha256, dims=dims)
        return PassResult(graph, True)
