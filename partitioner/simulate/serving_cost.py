"""Price a serving iteration from a plan's load model, with the plan's target and cost model.

The load model (`partitioner.plan.load_model`) gives each stage's FLOPs and
bytes per rank as polynomials in the decode graph's (batch, past). A serving
iteration mixes decode rows and prefill chunks of different context lengths,
which `IterationShape` sums up; its monomials are read as follows:

- ``b`` is the rows computed (a prefill chunk of n tokens is n rows: the
  projections and MLPs do the same work per token either way);
- ``b·p`` in FLOPs is the sum over rows of the keys each attends to, less one
  (the decode graph's row attends to past + 1 keys); in bytes it is the sum over
  sequences of their cache, less one: a sequence's KV cache is read once per
  iteration however many of its tokens are computed (FlashAttention-style
  kernels, `runtime: fused`). Eager attention also writes scores per row, which
  this undercounts for prefill chunks;
- ``p`` and ``p²`` alone (mask-sized work) take the longest context, ``b²`` the rows.

With a prefill file (`partitioner.planning.prefill_fit`) the chunks that start
an empty cache are priced instead as one prefill pass of ``[batch, seq]``
(batch: those chunks, seq: the longest), and the other rows as above, the two
passes one after the other, as a runtime serving two graphs runs them.

On GPUs each kernel is then timed by the one roofline (`CostModel.op_time_parts`),
each collective and transfer by its link, plus each stage's fixed step overhead.
On wafers every region is a stage: its FLOPs by dtype and its contractions go
through `WaferCostModel.block_compute_s` on its w×h cores, and each transfer
keeps the plan's latency and scales its byte time with the bytes. Either way,
at the plan's own (batch, past) the stage seconds are the plan's own.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from partitioner.plan import Partition, Plan, Transfer
from partitioner.plan.load_model import (
    BATCH_PAST,
    MONOMIALS,
    PREFILL_MONOMIALS,
    LoadModel,
    LoadStage,
)
from partitioner.simulate.serving.iteration import IterationShape
from partitioner.simulate.serving_pricing import KernelRow, LinkRow, StagePricing
from targets.cost import GpuCostModel, WaferCostModel
from targets.gpu import HOST, GpuTarget
from targets.wafer import WaferTarget

__all__ = [
    "PlanIterationCost",
    "WaferIterationCost",
    "iteration_cost",
    "kv_capacity_tokens",
    "own_point_seconds",
]


def _monomials(shape: IterationShape) -> tuple[float, ...]:
    """The six monomials read per row, then the six per sequence (`StagePricing`)."""
    rows = float(shape.rows)
    longest = float(max(shape.max_context - 1, 0))
    per_sequence = float(max(shape.sequence_context_sum - shape.sequences, 0))
    per_row = float(max(shape.row_context_sum - shape.rows, 0))
    common = (1.0, rows, longest, rows * rows)
    tail = longest * longest
    return (*common, per_row, tail, *common, per_sequence, tail)


#: The powers 1, i and i² of every step i of a run (`_decode_run`).
_STEPS = np.arange(256, dtype=float)
_POWERS = np.vstack((np.ones_like(_STEPS), _STEPS, _STEPS * _STEPS))


def _decode_run(pricing: StagePricing, first: IterationShape, iterations: int) -> np.ndarray:
    """Seconds (stages by iterations) of up to 256 decode iterations of the same sequences:
    ``first``, then each one token further, every sequence's cache one longer (both
    context sums grow by the sequences, the longest context by one).

    Along such a run every monomial is a polynomial in the step i: the rows and their
    square stay, the longest context and both context sums grow by 1, 1 and n a step, and
    the longest context's square is L² + 2Li + i². So the run's monomials are the first
    iteration's plus those growths times i and i²: whole numbers, exactly the ones
    `_monomials` gives each iteration while every product stays below 2**53 (contexts
    under 2**19 tokens; beyond, they round in the 16th digit)."""
    n = first.sequences
    if first.rows != n or first.prefill_sequences or not 0 < iterations <= len(_STEPS):
        raise ValueError(f"not a run of decode iterations: {iterations} of {first}")
    start = _monomials(first)
    longest, n = start[2], float(n)
    per_step = (0.0, 0.0, 1.0, 0.0, n, 2.0 * longest)  # the six per-row monomials, then
    squared = (0.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # the six per-sequence ones, grow alike
    growth = np.array((start, per_step + per_step, squared + squared)).T
    return pricing.seconds_many(growth @ _POWERS[:, :iterations])


def _two_passes(
    decode: StagePricing, prefill: StagePricing | None, shape: IterationShape
) -> list[float]:
    """Seconds per stage of an iteration; with a prefill load model, a two-file runtime's:
    the new prompts in one prefill pass padded to the longest, then the rest as decode."""
    if prefill is None or not shape.prefill_sequences:
        return decode.seconds(_monomials(shape))
    batch, seq = shape.prefill_sequences, shape.prefill_max_tokens
    per_row = [float(batch**i * seq**j) for i, j in PREFILL_MONOMIALS]
    seconds = prefill.seconds(per_row + per_row)
    rest = shape.decode_part()
    if rest.sequences:
        seconds = [a + b for a, b in zip(seconds, decode.seconds(_monomials(rest)), strict=True)]
    return seconds


def _affine(time_s: Callable[[float], float]) -> tuple[float, float]:
    """(seconds at 0 bytes, seconds per byte) of a link time that is latency + bytes / rate,
    read off the cost model itself at two sizes (so the formula stays in one place)."""
    one, two = time_s(1e6), time_s(2e6)
    per_byte = (two - one) / 1e6
    return one - per_byte * 1e6, per_byte


class _PricedPlan:
    """What the GPU and wafer costs share: a plan's stages, priced by its `StagePricing`
    (and its prefill file's, when it has one)."""

    plan: Plan
    _pricing: StagePricing
    _prefill: StagePricing | None

    @property
    def stages(self) -> int:
        return len(self.plan.partitions)

    def stage_seconds(self, shape: IterationShape) -> list[float]:
        return _two_passes(self._pricing, self._prefill, shape)

    def decode_run_seconds(self, first: IterationShape, iterations: int) -> np.ndarray:
        """`stage_seconds` of a run of decode iterations, as stages by iterations, in one
        call (`_decode_run`): the steady loop's bulk path (`serving.steady`)."""
        return _decode_run(self._pricing, first, iterations)


class PlanIterationCost(_PricedPlan):
    """`IterationCost` of a GPU plan with a load model: seconds per pipeline stage.

    Every kernel of every stage is one row of a matrix, so an iteration is priced
    with a few array operations: FLOPs and bytes are the rows times the monomials,
    each row's seconds ``max(FLOPs · s/FLOP, bytes · s/B) + launches`` with the
    per-unit figures read from `CostModel.op_time_parts`, summed per stage.
    """

    def __init__(self, plan: Plan, target: GpuTarget) -> None:
        if plan.load_model is None:
            raise ValueError("the plan has no load model")
        self.plan, self.cost = plan, GpuCostModel(target)
        self._pricing = self._priced(plan.load_model)
        prefill = plan.load_model.prefill
        self._prefill = None if prefill is None else self._priced(prefill)
        contended = target.contended()
        #: The same plan priced with the memory bandwidth each device gets while every
        #: device of its node streams at once (devices sharing one memory system, as CPU
        #: ranks on one host do); None where devices share none. The engine prices an
        #: iteration so when another is in flight (`serving.engine`).
        self.contended = None if contended is None else PlanIterationCost(plan, contended)

    def _priced(self, load: LoadModel) -> StagePricing:
        """The matrices of one load model (the decode graph's, or the prefill file's)."""
        kernels: list[KernelRow] = []
        links: list[LinkRow] = []
        plan = self.plan
        by_id = {p.id: p for p in plan.partitions}
        for k, p in enumerate(plan.partitions):
            self._add_stage(k, p, load.stage(p.id), kernels, links)
        for t in load.transfers:
            if t.src != HOST and t.dst != HOST:
                k = plan.partitions.index(by_id[t.src])
                src, dst = by_id[t.src].devices[0], by_id[t.dst].devices[0]
                fixed, per_byte = _affine(
                    lambda n, a=src, b=dst: self.cost.transfer_time_s(n, a, b)
                )
                links.append(LinkRow(k, 1.0, tuple(t.bytes), fixed, per_byte, False))
        overhead_s = [self.cost.step_overhead_s(p.devices[0]) for p in plan.partitions]
        return StagePricing(self.stages, kernels, links, overhead_s)

    def _add_stage(self, k: int, p: Partition, load: LoadStage, kernels: list, links: list) -> None:
        lead = p.devices[0]
        for t in load.terms:
            unit = self.cost.op_time_parts(1.0, 1.0, t.dtype, lead, t.kernels)
            kernels.append(KernelRow(k, t.count, tuple(t.flops), unit.compute_s, tuple(t.bytes),
                                     unit.memory_s, unit.launch_s, unit.overlap))  # fmt: skip
        for c in load.collectives:
            fixed, per_byte = _affine(
                lambda n, kind=c.kind: self.cost.collective_time_s(kind, n, p.devices)
            )
            links.append(LinkRow(k, float(c.count), tuple(c.bytes), fixed, per_byte, True))


class WaferIterationCost(_PricedPlan):
    """`IterationCost` of a wafer plan with a load model: one stage per region.

    A region's seconds are linear in its FLOPs per dtype (`block_compute_s`: FMAC time
    plus a mesh term that depends only on its contractions and shape), so each kernel
    becomes one row with its seconds per FLOP on its region, read off the cost model,
    and an iteration is priced with a few array operations, as on GPUs.
    """

    #: A region passes each row on as soon as it is done (`serving.streaming`).
    streams_rows = True

    def __init__(self, plan: Plan, target: WaferTarget) -> None:
        if plan.load_model is None:
            raise ValueError("the plan has no load model")
        self.plan, self.cost = plan, WaferCostModel(target)
        kernels, mesh_s = self._kernel_rows(plan.load_model)
        self._pricing = StagePricing(self.stages, kernels, self._send_rows(plan), mesh_s)
        prefill = plan.load_model.prefill
        self._prefill = None
        if prefill is not None:
            kernels, mesh_s = self._kernel_rows(prefill)
            self._prefill = StagePricing(self.stages, kernels, self._region_sends(prefill), mesh_s)

    def _kernel_rows(self, load: LoadModel) -> tuple[list[KernelRow], list[float]]:
        """Each region's kernels, FLOPs at its rate per dtype, and its mesh seconds."""
        kernels: list[KernelRow] = []
        mesh_s = []
        zero = (0.0,) * len(MONOMIALS)
        for k, p in enumerate(self.plan.partitions):
            assert p.region is not None
            w, h = p.region.w, p.region.h
            terms = load.stage(p.id).terms
            matmuls = sum(t.count * t.matmuls for t in terms)
            mesh_s.append(self.cost.block_compute_s({}, w, h, matmuls))
            for t in terms:
                s_per_flop = self.cost.region_compute_s(1.0, w, h, t.dtype)
                kernels.append(KernelRow(k, t.count, tuple(t.flops), s_per_flop, zero, 0.0, 0.0))
        return kernels, mesh_s

    def _region_sends(self, load: LoadModel) -> list[LinkRow]:
        """A prefill load model's transfers between regions, priced from where the regions
        lie, as the wafer planner prices its own (`targets.fabric`)."""
        parts = {p.id: p for p in self.plan.partitions}
        index = {p.id: k for k, p in enumerate(self.plan.partitions)}
        rows = []
        for t in load.transfers:
            if HOST in (t.src, t.dst):
                continue
            a, b = parts[t.src], parts[t.dst]
            assert a.region is not None and b.region is not None
            ra = (a.region.x, a.region.y, a.region.w, a.region.h)
            rb = (b.region.x, b.region.y, b.region.w, b.region.h)
            if a.devices[0] == b.devices[0]:
                fixed, per_byte = _affine(
                    lambda n, x=ra, y=rb: self.cost.region_transfer_s(n, x, y)
                )
            else:
                fixed, per_byte = _affine(self.cost.inter_wafer_transfer_s)
            rows.append(LinkRow(index[t.src], 1.0, tuple(t.bytes), fixed, per_byte,
                                per_sequence=False, always_fixed=True))  # fmt: skip
        return rows

    def _send_rows(self, plan: Plan) -> list[LinkRow]:
        """Each transfer between regions: its stage, bytes polynomial, fixed seconds and
        seconds per byte (the plan's byte time over its bytes)."""
        rows = []
        index = {p.id: k for k, p in enumerate(plan.partitions)}
        assert plan.load_model is not None
        for t, load in zip(plan.transfers, plan.load_model.transfers, strict=True):
            if t.src != HOST and t.dst != HOST:
                fixed = self._latency_s(t)
                per_byte = max(t.time_s - fixed, 0.0) / t.bytes if t.bytes else 0.0
                rows.append(LinkRow(index[t.src], 1.0, tuple(load.bytes), fixed, per_byte,
                                    per_sequence=False, always_fixed=True))  # fmt: skip
        return rows

    def _latency_s(self, t: Transfer) -> float:
        """The part of a transfer's seconds that does not grow with its bytes (a link's
        latency: the cost model gives 0 s for 0 bytes, so it is read off two sizes)."""
        if t.hops is not None:
            return self.cost.hop_latency_s(t.hops)
        return _affine(self.cost.inter_wafer_transfer_s)[0]

    @property
    def stage_fixed_s(self) -> list[float]:
        """Each region's seconds that no row count changes (its mesh term, its sends'
        hop latencies): a streaming row waits for them (`serving.streaming`)."""
        return self._pricing.fixed_s.tolist()


def iteration_cost(plan: Plan, target: GpuTarget | WaferTarget):
    """The plan's `IterationCost` on its target (a load model is needed)."""
    if isinstance(target, WaferTarget):
        return WaferIterationCost(plan, target)
    return PlanIterationCost(plan, target)


def kv_capacity_tokens(plan: Plan) -> int:
    """Tokens of KV cache the plan's devices hold beside everything else the plan keeps.

    Per stage: the room left on a device (capacity less the plan's memory without
    its own KV cache), over the KV bytes one token of one sequence adds there (the
    ``b·p`` coefficient). The smallest over stages bounds the deployment.
    """
    if plan.load_model is None:
        raise ValueError("the plan has no load model")
    tokens = []
    for p in plan.partitions:
        per_token = plan.load_model.stage(p.id).kv_cache_bytes[BATCH_PAST]
        if per_token <= 0:
            continue
        room = p.capacity_bytes - (p.memory_bytes - p.kv_cache_bytes)
        tokens.append(max(int(room // per_token), 0))
    return min(tokens) if tokens else 0


def own_point_seconds(plan: Plan, target: GpuTarget | WaferTarget) -> list[float]:
    """Each stage's seconds at the plan's own dims, uniform decode (for checks)."""
    load = plan.load_model
    assert load is not None
    batch, past = (plan.model.dims[load.dims[r]] for r in ("batch", "past"))
    shape = IterationShape(batch, batch, batch * (past + 1), batch * (past + 1), past + 1)
    return iteration_cost(plan, target).stage_seconds(shape)
