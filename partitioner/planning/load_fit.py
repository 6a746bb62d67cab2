"""Solve a GPU plan's load model: every stage's work as exact polynomials in (batch, past).

A serving iteration runs the plan at batch sizes and context lengths it was not
planned at. The analysis (`runtime_costs`, the tensor-parallel split) is run
again at six (batch, past) points next to the plan's own, and each count (a
node's FLOPs and bytes on one rank, a collective's or transfer's bytes, a
stage's KV cache) is solved for its coefficients over
`partitioner.plan.load_model.MONOMIALS` by forward differences, in exact
rational arithmetic. The polynomials are then compared with the analysis at
the plan's own dims and at a point far from both, and the worst relative
difference is recorded: 0 means exact there.

Only decode-step graphs qualify: a KV cache among the inputs, and dims the
user bound whose names say batch and past (`serving_dims`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import onnx

from partitioner.plan import Partition, Plan, Transfer
from partitioner.plan.load_model import (
    MONOMIALS,
    LoadCollective,
    LoadModel,
    LoadStage,
    LoadTerm,
    LoadTransfer,
)
from partitioner.planning.common import runtime_costs
from partitioner.planning.gpu.tensor_parallel import local_bytes, rank_kernels, rank_work
from partitioner.planning.serving_dims import check_shapes_known, dims_at, serving_dims
from passes.analysis.costs import CostReport, node_costs
from passes.analysis.fusion import fusion_groups
from passes.analysis.partition_io import residency
from passes.analysis.sharding import ShardingPlan, shard_graph
from passes.errors import PartitionError
from passes.ir import Graph
from passes.load import graph_at_dims, read_model

__all__ = [
    "far_point",
    "fit_load_model",
    "with_load_model",
    "fit_works",
    "work_at",
    "Fit",
]

log = logging.getLogger(__name__)

# offsets from the base point, in MONOMIALS order: forward differences need exactly these;
# the bilinear ones come first, so a bilinear fit needs only the first four
OFFSETS = ((0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (0, 2))
BILINEAR = 4
# relative difference at the checks below which a bilinear fit is taken as exact
EXACT = 1e-6


@dataclass(frozen=True)
class _Work:
    """Every count at one (batch, past) point, in an order the same at every point."""

    # per stage, its kernels: (key, dtype, launches, contractions, FLOPs, bytes moved)
    nodes: tuple[tuple[tuple[object, str, int, int, float, float], ...], ...]
    collectives: tuple[tuple[tuple[str, int], ...], ...]  # per stage: (kind, bytes)
    kv_bytes: tuple[int, ...]
    transfer_bytes: tuple[int, ...]
    point: tuple[int, int]


def graph_at(model: onnx.ModelProto, path: Path, sha: str, dims: Mapping[str, int]) -> Graph:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return graph_at_dims(copy, path, sha, dims)


@dataclass(frozen=True)
class _Group:
    """A fused kernel: its id, the bytes of its one pass, its members' eager bytes."""

    gid: int
    moved_bytes: int
    eager_bytes: int


def _fused_groups(graph: Graph, eager: CostReport) -> dict[int, _Group]:
    """Member node -> its fused group, as `passes.analysis.fusion` makes them."""
    out = {}
    for gid, (members, moved) in enumerate(fusion_groups(graph, eager)):
        group = _Group(gid, moved, sum(eager.nodes[i].bytes_moved for i in members))
        out.update(dict.fromkeys(members, group))
    return out


def _units(
    graph: Graph,
    costs: tuple[CostReport, CostReport],
    sharding: ShardingPlan | None,
    degree: int,
    nodes: Sequence[int],
    groups: Mapping[int, _Group],
) -> tuple[tuple[object, str, int, int, float, float], ...]:
    """The stage's kernels on one rank: (key, dtype, launches, contractions, FLOPs, bytes).

    A fused group's members in the stage make one kernel whose bytes are their share
    of the group's one pass, unrounded (`fused_costs` rounds each member's share, which
    no polynomial follows); any other node is its own kernel.
    """
    eager, run = costs
    units: dict[object, list] = {}
    for n in nodes:
        _, moved = rank_work(graph, eager, sharding, degree, n)
        flops, _ = rank_work(graph, run, sharding, degree, n)  # a causal kernel's share
        group = groups.get(n)
        if group is not None:  # its share of the one pass, scaled as rank_work scaled it
            moved = moved * group.moved_bytes / group.eager_bytes if group.eager_bytes else 0.0
        c = run.nodes[n]
        key = ("group", group.gid) if group is not None else ("node", n)
        unit = units.setdefault(key, [key, c.dtype or "float32", 0, 0, 0.0, 0.0, -1.0])
        if flops > unit[6]:  # the kernel computes in its heaviest member's dtype
            unit[1], unit[6] = c.dtype or "float32", flops
        unit[2] += rank_kernels(c)
        unit[3] += c.matmuls
        unit[4] += flops
        unit[5] += moved
    return tuple(tuple(u[:6]) for u in units.values())  # type: ignore[misc]


def work_at(
    graph: Graph,
    runtime: str | None,
    parts: Sequence[Partition],
    transfers: Sequence[Transfer],
    roles: tuple[str, str] | None = None,
    sizing: Graph | None = None,
) -> _Work:
    """Every count at the graph's dims; ``runtime`` None for a wafer (op by op); ``roles``:
    the two dims the polynomials are in (the decode graph's batch and past by default);
    ``sizing``: the model at the plan's dims, whose sizes fix the tensor-parallel split's
    size-based choices (`shard_graph`), as the deployed split is fixed at every size."""
    eager = node_costs(graph)
    run = runtime_costs(graph, runtime, eager) if runtime else eager
    costs = (run if runtime == "eager" else eager, run)
    groups = _fused_groups(graph, eager) if runtime == "fused" else {}
    shardings: dict[int, ShardingPlan] = {}
    nodes, collectives, kv = [], [], []
    for p in parts:
        degree = len(p.devices)
        sharding = shardings.get(degree)
        if degree > 1 and sharding is None:
            sharding = shardings[degree] = shard_graph(graph, degree, sizing)
        runtime_nodes = [n for n in p.nodes if not graph.nodes[n].folded]
        nodes.append(_units(graph, costs, sharding, degree, runtime_nodes, groups))
        mine = set(runtime_nodes)
        ops = sharding.collectives if sharding is not None else ()
        collectives.append(tuple((op.kind, op.nbytes) for op in ops if op.node in mine))
        held = residency(graph, runtime_nodes).kv_cache
        kv.append(sum(local_bytes(graph, sharding, name) for name in held))
    sizes = tuple(graph.tensors[t.tensor].nbytes for t in transfers)
    if roles is None and (dims := serving_dims(graph)):
        roles = (dims["batch"], dims["past"])
    point = (graph.dims[roles[0]], graph.dims[roles[1]]) if roles else (0, 0)
    return _Work(tuple(nodes), tuple(collectives), tuple(kv), sizes, point)


def structure(work: _Work) -> tuple[object, ...]:
    """What must be the same at every point for the counts to line up."""
    nodes = tuple(tuple(n[:4] for n in stage) for stage in work.nodes)
    kinds = tuple(tuple(kind for kind, _ in stage) for stage in work.collectives)
    return nodes, kinds


def structure_change(works: Sequence[_Work]) -> str:
    """Where the first of ``works`` and a later one differ in `structure`, in words:
    "stage 0's collectives differ between (2, 65) and (4, 69)"."""
    first = structure(works[0])
    for work in works[1:]:
        other = structure(work)
        for part, what in ((1, "collectives"), (0, "kernels")):
            for stage, (a, b) in enumerate(zip(first[part], other[part], strict=False)):
                if a != b:
                    return (f"stage {stage}'s {what} differ between {works[0].point} and "
                            f"{work.point}")  # fmt: skip
    return "the same everywhere"


def _solve(values: Sequence[float], base: tuple[int, int]) -> tuple[float, ...]:
    """Coefficients over MONOMIALS of the polynomial taking ``values`` at base + OFFSETS.

    With only the first four values (offsets (0,0), (1,0), (0,1), (1,1)) the
    polynomial is taken as bilinear: no b² or p² term.
    """
    f = dict(zip(OFFSETS, (Fraction(v) for v in values), strict=False))
    a00, a10, a01 = f[0, 0], f[1, 0] - f[0, 0], f[0, 1] - f[0, 0]
    a11 = f[1, 1] - f[1, 0] - f[0, 1] + f[0, 0]
    a20 = f[2, 0] - 2 * f[1, 0] + f[0, 0] if (2, 0) in f else Fraction(0)
    a02 = f[0, 2] - 2 * f[0, 1] + f[0, 0] if (0, 2) in f else Fraction(0)
    b0, p0 = base
    # a00 + a10·x + a01·y + a20·x(x-1)/2 + a11·x·y + a02·y(y-1)/2 with x = b-b0, y = p-p0
    c_b = a10 - a20 * b0 - a20 / 2 - a11 * p0
    c_p = a01 - a02 * p0 - a02 / 2 - a11 * b0
    c_1 = (a00 - a10 * b0 - a01 * p0 + a20 * (b0 * b0 + b0) / 2 + a02 * (p0 * p0 + p0) / 2
           + a11 * b0 * p0)  # fmt: skip
    return tuple(float(c) for c in (c_1, c_b, c_p, a20 / 2, a11, a02 / 2))


def _fit_stage(k: int, works: Sequence[_Work], solve: Solver, part: Partition):
    terms: Counter[tuple[str, int, int, tuple[float, ...], tuple[float, ...]]] = Counter()
    for i, unit in enumerate(works[0].nodes[k]):
        flops = solve([w.nodes[k][i][4] for w in works])
        moved = solve([w.nodes[k][i][5] for w in works])
        terms[(unit[1], unit[2], unit[3], flops, moved)] += 1
    kinds: Counter[tuple[str, tuple[float, ...]]] = Counter()
    for i, (kind, _) in enumerate(works[0].collectives[k]):
        kinds[(kind, solve([w.collectives[k][i][1] for w in works]))] += 1
    return LoadStage(
        part.id,
        tuple(LoadTerm(n, d, kern, mm, f, b) for (d, kern, mm, f, b), n in terms.items()),
        tuple(LoadCollective(n, kind, b) for (kind, b), n in kinds.items()),
        solve([w.kv_bytes[k] for w in works]),
    )


def _relative(predicted: float, actual: float) -> float:
    return abs(predicted - actual) / max(abs(actual), 1.0)


def _check(model: LoadModel, work: _Work, point: tuple[int, int]) -> float:
    """Worst relative difference between the polynomials and the analysis at ``point``."""
    worst = 0.0
    for stage, nodes, collectives, kv in zip(
        model.stages, work.nodes, work.collectives, work.kv_bytes, strict=True
    ):
        for pick, actual in ((4, sum(n[4] for n in nodes)), (5, sum(n[5] for n in nodes))):
            poly = [t.count * model.value(t.flops if pick == 4 else t.bytes, *point)
                    for t in stage.terms]  # fmt: skip
            worst = max(worst, _relative(sum(poly), actual))
        sent = sum(c.count * model.value(c.bytes, *point) for c in stage.collectives)
        worst = max(worst, _relative(sent, sum(b for _, b in collectives)))
        worst = max(worst, _relative(model.value(stage.kv_cache_bytes, *point), kv))
    for t, actual in zip(model.transfers, work.transfer_bytes, strict=True):
        worst = max(worst, _relative(model.value(t.bytes, *point), actual))
    return worst


def fit_load_model(
    graph: Graph, runtime: str | None, parts: Sequence[Partition], transfers: Sequence[Transfer]
) -> LoadModel | None:
    """The load model of a plan of ``graph`` (its partitions and transfers), or None
    when the graph is not a decode step with batch and past dims, or its structure
    changes between points (then no polynomial describes it).

    ``runtime``: the GPU target's (``eager``/``fused``), None for a wafer target, whose
    regions run op by op with every partition on one wafer.

    Raises:
        ModelError: the graph contradicts itself at a point away from its own dims
            (`with_load_model` keeps that as the plan's reason to have none).
    """
    dims = serving_dims(graph)
    if dims is None or graph.path is None:
        return None
    model, sha = read_model(graph.path)
    own = (graph.dims[dims["batch"]], graph.dims[dims["past"]])
    base = (own[0] + 1, own[1] + 1)
    far = far_point(own)
    points = [(base[0] + i, base[1] + j) for i, j in OFFSETS]

    def at(point: tuple[int, int]) -> _Work:
        bound = dims_at(graph, dims, point)
        at_point = graph_at(model, graph.path, sha, bound)
        check_shapes_known(graph, at_point, bound, dims)
        return work_at(at_point, runtime, parts, transfers, sizing=graph)

    checks = [work_at(graph, runtime, parts, transfers), at(far)]
    works = [at(p) for p in points[:BILINEAR]]

    def fit() -> LoadModel | None:
        return fit_works(
            Fit(dims, MONOMIALS, points[: len(works)], lambda v: _solve(v, base)),
            works, checks, parts, transfers,
        )  # fmt: skip

    fitted = fit()
    if fitted is not None and fitted.max_relative_error > EXACT:  # b² or p² terms: 6 points
        works += [at(p) for p in points[BILINEAR:]]
        fitted = fit()
    return fitted


#: Why a decode step gets no load model when its counts do not line up between points.
NO_FIT = "the graph's kernels or collectives change with its batch and past"


def with_load_model(plan: Plan, graph: Graph, runtime: str | None) -> Plan:
    """``plan`` with its load model (`fit_load_model`); when none can be fitted the plan
    stands without one, and its estimate says why (``no_load_model``), which `simulate
    --workload` repeats when it refuses the plan.

    Raises nothing the fit meets: a graph that contradicts itself away from its own dims
    (`ModelError` and the like) is such a reason.
    """
    try:
        load_model = fit_load_model(graph, runtime, plan.partitions, plan.transfers)
        reason = None if load_model is not None else NO_FIT
    except PartitionError as err:
        load_model, reason = None, str(err)
    if reason is None:
        return dataclasses.replace(plan, load_model=load_model)
    log.warning("no load model (simulate --workload will refuse this plan): %s", reason)
    extra = {**plan.estimate.extra, "no_load_model": reason}
    return dataclasses.replace(plan, estimate=dataclasses.replace(plan.estimate, extra=extra))


Solver = Callable[[Sequence[float]], tuple[float, ...]]


def far_point(own: tuple[int, int]) -> tuple[int, int]:
    """A check point far from a fit's own dims and its points (odd, so no divisibility
    the fit's points share is taken for granted there)."""
    return 2 * own[0] + 7, 2 * own[1] + 13


@dataclass(frozen=True)
class Fit:
    """What a load model is solved over: its dims by role, its basis, the points the
    works were taken at, and the exact solver for values at those points."""

    dims: Mapping[str, str]
    monomials: tuple[tuple[int, int], ...]
    points: Sequence[tuple[int, int]]
    solve: Solver


def fit_works(
    fit: Fit,
    works: Sequence[_Work],
    checks: Sequence[_Work],
    parts: Sequence[Partition],
    transfers: Sequence[Transfer],
) -> LoadModel | None:
    """The polynomials through ``works`` (at ``fit.points``), compared at the checks (the
    graph's own dims, then a point far from both); None when the structure changes."""
    if len({structure(w) for w in (*works, *checks)}) != 1:
        return None  # `with_load_model` says so
    stages = tuple(_fit_stage(k, works, fit.solve, p) for k, p in enumerate(parts))
    moved = tuple(
        LoadTransfer(t.src, t.dst, fit.solve([w.transfer_bytes[i] for w in works]))
        for i, t in enumerate(transfers)
    )
    own, far = checks[0], checks[1]
    fitted = LoadModel(
        fit.dims, tuple(fit.points), (own.point, far.point), 0.0, stages, moved, fit.monomials
    )
    worst = max(_check(fitted, w, w.point) for w in (own, far))
    return dataclasses.replace(fitted, max_relative_error=worst)
