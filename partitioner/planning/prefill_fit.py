"""Prefill from a second file: a prefill graph's load model on a decode plan's stages.

Serving stacks that ship a model as two ONNX files (a prefill graph of
``[batch, seq]`` tokens without a cache, and a decode-step graph that reads
one) run the prompt through the first and every later token through the
second, on the same devices with the same weights. `partition decode.onnx
--prefill prefill.onnx` plans the decode graph as usual, then:

1. **maps** each prefill node to a partition of the plan (`map_prefill_nodes`):
   a node whose name is a decode node's takes that node's partition, one that
   reads a decode weight takes the partition holding it, and every other node
   the latest partition among its inputs' producers; no node goes before its
   inputs, so activations only flow forward;
2. **fits** the prefill graph's work per stage and rank as exact polynomials in
   (batch, seq) over `PREFILL_MONOMIALS`: a prompt's attention grows with
   seq², so the basis is ``{1, b} × {1, s, s²}``, solved exactly from a 2 × 3
   grid of points and compared with the analysis at two others.

`simulate` then prices each iteration's new prompts as one prefill pass
(padded to the longest) and its other rows through the decode polynomials.
On a wafer plan the partitions are regions, and the prefill's tensors move as
the wafer planner moves the decode graph's (`planning.wafer.transfers`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import onnx

from partitioner.errors import UsageError
from partitioner.plan import HOST, Partition, Transfer
from partitioner.plan.load_model import PREFILL_MONOMIALS, LoadModel
from partitioner.planning.load_fit import (
    Fit,
    far_point,
    fit_works,
    graph_at,
    structure,
    structure_change,
    work_at,
)
from partitioner.planning.serving_dims import BATCH_NAMES, serving_dims
from partitioner.planning.wafer.transfers import wafer_transfers
from passes.analysis.partition_io import tensor_flows
from passes.ir import Graph
from passes.load import read_model
from targets.cost import WaferCostModel

__all__ = [
    "SEQ_NAMES", "check_pair", "fit_prefill", "map_prefill_nodes", "prefill_dims", "prefill_roles",
    "prefill_transfers", "solve_exact",
]  # fmt: skip

log = logging.getLogger(__name__)

SEQ_NAMES = ("seq", "seq_len", "sequence", "sequence_length", "seqlen", "num_tokens")
# a fit worse than this at its checks is worth a warning (the plan records it anyway)
ROUGH = 1e-2
# the share of the prefill graph's weight bytes that must be the decode graph's
MATCHED_WEIGHTS = 0.9


def prefill_roles(names: Sequence[str]) -> dict[str, str] | None:
    """``{"batch": name, "seq": name}`` among a prefill graph's symbolic dims, or None."""
    lower = {n.lower(): n for n in names}
    batch = next((lower[n] for n in BATCH_NAMES if n in lower), None)
    seq = next((lower[n] for n in SEQ_NAMES if n in lower), None)
    return {"batch": batch, "seq": seq} if batch and seq else None


def _decode_owners(decode: Graph, parts: Sequence[Partition]) -> tuple[dict, dict]:
    """(node name -> partition position, weight name -> partition position) of the plan."""
    by_name: dict[str, int] = {}
    counts = Counter(n.name for n in decode.nodes)
    unique = {name for name, count in counts.items() if name and count == 1}
    weights: dict[str, int] = {}
    for k, p in enumerate(parts):
        for i in p.nodes:
            node = decode.nodes[i]
            if node.name in unique:
                by_name[node.name] = k
            for name in node.present_inputs:
                t = decode.tensors.get(name)
                if t is not None and t.is_param and t.is_float:
                    weights.setdefault(name, k)
    return by_name, weights


def check_pair(decode: Graph, prefill: Graph) -> None:
    """Refuse a prefill graph that does not hold the decode graph's weights.

    Raises:
        UsageError: under `MATCHED_WEIGHTS` of its float weight bytes are the decode
            graph's, by initializer name.
    """
    decode_names = {t.name for t in decode.iter_tensors() if t.is_param}
    floats = {
        t.name: t.nbytes
        for t in prefill.iter_tensors()
        if t.is_param and t.is_float and t.is_static
    }
    shared = sum(b for name, b in floats.items() if name in decode_names)
    total = sum(floats.values())
    if total and shared < MATCHED_WEIGHTS * total:
        raise UsageError(
            f"--prefill: only {shared / total:.0%} of the prefill model's weight bytes are the "
            "decode model's (by initializer name); pass the prefill graph of the same model"
        )


def map_prefill_nodes(
    decode: Graph, prefill: Graph, parts: Sequence[Partition]
) -> list[tuple[int, ...]]:
    """The prefill node indices each partition runs, in the plan's partition order."""
    by_name, weights = _decode_owners(decode, parts)
    made: dict[str, int] = {}
    owner: dict[int, int] = {}
    for i in prefill.topological_order():
        node = prefill.nodes[i]
        after = max((made[n] for n in node.present_inputs if n in made), default=0)
        held = [weights[n] for n in node.present_inputs if n in weights]
        k = by_name.get(node.name, held[0] if held else after)
        owner[i] = max(k, after)
        made.update(dict.fromkeys(node.present_outputs, owner[i]))
    out: list[list[int]] = [[] for _ in parts]
    for i, k in owner.items():
        out[k].append(i)
    return [tuple(sorted(nodes)) for nodes in out]


def _runtime_owner(
    prefill: Graph, parts: Sequence[Partition], nodes: Sequence[Sequence[int]]
) -> dict[int, int]:
    """Runtime prefill node -> the id of the partition that runs it."""
    return {
        i: p.id
        for p, members in zip(parts, nodes, strict=True)
        for i in members
        if not prefill.nodes[i].folded
    }


def prefill_transfers(
    prefill: Graph,
    parts: Sequence[Partition],
    nodes: Sequence[Sequence[int]],
    from_host: bool = False,
) -> list[Transfer]:
    """The tensors one partition makes and another reads (`tensor_flows`), once per reader
    partition; sizes and times are the fit's business (0 here). What the host sends
    (``from_host``: the graph's inputs too, as stage files need them) or gets is no
    stage's work, and a KV cache the prefill writes stays where it is made."""
    flows = tensor_flows(prefill, _runtime_owner(prefill, parts, nodes))
    return [
        Transfer(f.tensor, 0, f.src, reader, 0.0)
        for f in flows
        if from_host or f.src != HOST
        for reader in f.readers
    ]


def solve_exact(values: Sequence[float], points: Sequence[tuple[int, int]]) -> tuple[float, ...]:
    """Coefficients over `PREFILL_MONOMIALS` of the polynomial taking ``values`` at
    ``points`` (six, unisolvent: a 2 × 3 grid in (batch, seq)), in exact arithmetic."""
    n = len(PREFILL_MONOMIALS)
    rows = [
        [Fraction(b) ** i * Fraction(s) ** j for i, j in PREFILL_MONOMIALS] + [Fraction(v)]
        for (b, s), v in zip(points, values, strict=True)
    ]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col] / rows[col][col]
                rows[r] = [a - factor * c for a, c in zip(rows[r], rows[col], strict=True)]
    return tuple(float(rows[k][n] / rows[k][k]) for k in range(n))


def _symbolic_dims(model: onnx.ModelProto) -> list[str]:
    names = [
        d.dim_param
        for vi in model.graph.input
        for d in vi.type.tensor_type.shape.dim
        if d.HasField("dim_param")
    ]
    return list(dict.fromkeys(names))


def prefill_dims(path: Path, decode: Graph, extra: Mapping[str, int]) -> dict[str, int]:
    """The dims a prefill file is analysed at: ``extra`` (``--prefill-dim``), then its batch
    dim at the decode plan's batch and its seq dim at the decode plan's past + 1 (a prompt
    as long as the context planned for); the fit is exact at any point.

    Raises:
        UsageError: the file has no batch or seq dim, or a symbolic dim is left unbound.
    """
    model, _ = read_model(path)
    names = _symbolic_dims(model)
    roles = prefill_roles(names)
    decode_roles = serving_dims(decode)
    if roles is None or decode_roles is None:
        raise UsageError(
            f"--prefill: {path.name} needs symbolic batch and seq dims on its inputs "
            f"(found: {', '.join(names) or 'none'}), and the decode model batch and past dims"
        )
    dims = {
        roles["batch"]: decode.dims[decode_roles["batch"]],
        roles["seq"]: decode.dims[decode_roles["past"]] + 1,
        **extra,
    }
    unbound = [n for n in names if n not in dims]
    if unbound:
        raise UsageError(
            f"--prefill: bind {unbound[0]!r} of {path.name} with --prefill-dim {unbound[0]}=VALUE"
        )
    return dims


def _unfittable(prefill: Graph, works: Sequence) -> str:
    """Why no polynomial prices ``prefill``'s work, and what to do about it."""
    where = structure_change(works)
    why = (": the tensor-parallel split changes with the sizes; plan this pair "
           "with --tp 1" if "collectives" in where else "")  # fmt: skip
    assert prefill.path is not None  # `fit_prefill`'s
    return (f"--prefill: the work of {prefill.path.name} changes structure with its batch and seq "
            f"({where}), so no polynomial prices it{why}")  # fmt: skip


def fit_prefill(
    decode: Graph,
    prefill: Graph,
    runtime: str | None,
    parts: Sequence[Partition],
    wafer_cost: WaferCostModel | None = None,
) -> LoadModel:
    """The prefill graph's load model on ``parts`` (the decode plan's partitions).

    ``runtime``: the GPU target's; None with ``wafer_cost`` for a wafer plan, whose
    transfers are the wafer planner's (one crossing per other wafer, relayed there).

    Raises:
        UsageError: its structure changes with batch or seq (then no polynomial describes
            it), saying where.
    """
    assert prefill.path is not None
    roles = prefill_roles(list(prefill.dims))
    assert roles is not None, "prefill_dims bound the batch and seq dims"
    nodes = map_prefill_nodes(decode, prefill, parts)
    mapped = [dataclasses.replace(p, nodes=n) for p, n in zip(parts, nodes, strict=True)]
    if wafer_cost is None:
        transfers = prefill_transfers(prefill, parts, nodes)
    else:
        owner = _runtime_owner(prefill, parts, nodes)
        transfers = wafer_transfers(prefill, owner, parts, wafer_cost)
    model, sha = read_model(prefill.path)
    axes = (roles["batch"], roles["seq"])
    own = (prefill.dims[axes[0]], prefill.dims[axes[1]])
    grid = [(own[0] + 1 + i, own[1] + 1 + j) for i in (0, 1) for j in (0, 1, 2)]

    def at(point: tuple[int, int]):
        bound = {**prefill.dims, axes[0]: point[0], axes[1]: point[1]}
        at_point = graph_at(model, prefill.path, sha, bound)
        return work_at(at_point, runtime, mapped, transfers, axes, sizing=prefill)

    checks = [work_at(prefill, runtime, mapped, transfers, axes), at(far_point(own))]
    if structure(checks[1]) != structure(checks[0]):  # a size-based sharding choice flipped
        checks[1] = at((own[0] + 3, own[1] + 5))
    fit = Fit(roles, PREFILL_MONOMIALS, grid, lambda v: solve_exact(v, grid))
    works = [at(p) for p in grid]
    fitted = fit_works(fit, works, checks, mapped, transfers)
    if fitted is None:
        raise UsageError(_unfittable(prefill, [checks[0], *works, checks[1]]))
    # fused groups share their bytes in proportion to members whose sizes grow at
    # different rates (b·s against b·s²): a ratio, not a polynomial, so exact only nearly
    if fitted.max_relative_error > ROUGH:
        log.warning(
            "the prefill load model is off by %.2g at its checks", fitted.max_relative_error
        )
    return fitted
