"""What the GPU and wafer simulators share: errors, plan checks and the decode-step figures."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import networkx as nx

from partitioner.plan import HOST, Partition, Transfer
from targets.cost import CostModel, pipelined_tokens_per_s, tokens_per_s
from targets.errors import PartitionError

__all__ = [
    "replica_devices",
    "SimulateError",
    "check_transfer_ends",
    "critical_path",
    "decode_figures",
    "InFlight",
    "batches_in_flight",
    "devices_in_use",
    "partition_positions",
    "utilisation",
]


_SOURCE, _SINK = "host in", "host out"


class SimulateError(PartitionError):
    """A plan cannot be simulated: a transfer names a missing partition, a region is missing, ..."""


def partition_positions(partitions: Sequence[Partition]) -> dict[int, int]:
    """Partition id -> its index in plan order (ids must be unique)."""
    position: dict[int, int] = {}
    for index, p in enumerate(partitions):
        if p.id in position:
            raise SimulateError(f"partition id {p.id} appears twice; run `partition validate`")
        position[p.id] = index
    return position


def check_transfer_ends(t: Transfer, position: Mapping[int, int]) -> None:
    """Raise a one-line `SimulateError` if a transfer names a missing partition."""
    for end in (t.src, t.dst):
        if end != HOST and end not in position:
            raise SimulateError(
                f"transfer of '{t.tensor}' names partition {end}, which the plan does not have; "
                "run `partition validate`"
            )
    if t.src == t.dst:
        raise SimulateError(
            f"transfer of '{t.tensor}' goes from {t.src} to itself; run `partition validate`"
        )


def critical_path(
    partitions: Sequence[Partition], transfers: Sequence[Transfer], position: Mapping[int, int]
) -> tuple[float, tuple[int, ...]]:
    """Longest path from the host through compute and transfers back to the host.

    Transfers between the same two partitions (or the host and one partition)
    share their links, so their seconds add up on one edge.
    """
    host_in: dict[int, float] = defaultdict(float)
    host_out: dict[int, float] = defaultdict(float)
    between: dict[tuple[int, int], float] = defaultdict(float)
    for t in transfers:
        if t.src == HOST:
            host_in[t.dst] += t.time_s
        elif t.dst == HOST:
            host_out[t.src] += t.time_s
        elif position[t.src] >= position[t.dst]:
            raise SimulateError(
                f"transfer of '{t.tensor}' goes from partition {t.src} to partition {t.dst}, "
                "which is not later in the plan; run `partition validate`"
            )
        else:
            between[t.src, t.dst] += t.time_s
    graph = nx.DiGraph()
    for p in partitions:
        graph.add_edge(_SOURCE, p.id, weight=host_in[p.id] + p.compute_s)
        graph.add_edge(p.id, _SINK, weight=host_out[p.id])
    compute = {p.id: p.compute_s for p in partitions}
    for (a, b), seconds in between.items():
        graph.add_edge(a, b, weight=seconds + compute[b])
    order = [_SOURCE, *(p.id for p in partitions), _SINK]  # plan order is topological
    path = nx.dag_longest_path(graph, weight="weight", topo_order=order)
    latency_s = sum(graph.edges[u, v]["weight"] for u, v in zip(path, path[1:], strict=False))
    return latency_s, tuple(node for node in path if node not in (_SOURCE, _SINK))


def devices_in_use(partitions: Iterable[Partition]) -> list[int]:
    """The devices (GPUs or wafers) the partitions use, in order of first use."""
    return list(dict.fromkeys(d for p in partitions for d in p.devices))


def replica_devices(devices: Sequence[int], replicas: int) -> list[int]:
    """Every replica's devices: replica r runs on the first replica's devices shifted by
    r times their span (a plan lists replica 0; the others repeat it on the next devices)."""
    if replicas <= 1 or not devices:
        return list(devices)
    span = max(devices) + 1
    return [d + r * span for r in range(replicas) for d in devices]


def utilisation(busy_s: float, period_s: float) -> float:
    """Fraction of each period something is busy (0 when the period is 0)."""
    return busy_s / period_s if period_s > 0 else 0.0


@dataclass(frozen=True)
class InFlight:
    """Batches a decode pipeline keeps in flight, each with its own KV cache on every stage.

    Attributes:
        needed: what running at the pipeline's throughput takes: ⌈latency × throughput⌉.
        held: what every stage's memory holds (at most ``needed``): a stage's room
            beyond what its plan counts once, over its KV cache per batch.
        max_batch: the largest batch that fits with ``needed`` batches in flight (KV
            caches only; activations held per micro-batch are already in the plan).
    """

    needed: int
    held: int
    max_batch: int
    replicas: int = 1


def batches_in_flight(
    partitions: Sequence[Partition],
    batch: int,
    latency_s: float,
    throughput_per_s: float,
    replicas: int = 1,
) -> InFlight:
    """`InFlight` of one pipeline replica of a decode plan (``throughput_per_s`` is all
    ``replicas``' together; each holds its own); no KV cache: nothing caps it."""
    per_replica = throughput_per_s / max(replicas, 1)
    finite = 0 < per_replica < math.inf and latency_s > 0
    needed = max(1, math.ceil(latency_s * per_replica - 1e-9)) if finite else 1
    held, max_batch = needed, None
    for p in partitions:
        if p.kv_cache_bytes <= 0:
            continue
        room = p.capacity_bytes - (p.memory_bytes - p.kv_cache_bytes)
        held = min(held, max(room // p.kv_cache_bytes, 0))
        fits = batch * room // (p.kv_cache_bytes * needed)
        max_batch = fits if max_batch is None else min(max_batch, fits)
    return InFlight(needed, held, batch if max_batch is None else max(max_batch, 0), replicas)


def decode_figures(
    batch: int,
    latency_s: float,
    throughput_per_s: float,
    cost: CostModel,
    devices: Sequence[int],
    in_flight: InFlight | None = None,
) -> dict[str, object]:
    """Figures of an LLM decode step that makes ``batch`` tokens per run, from the cost model.

    With one batch in flight a request gets one token per pass, so it waits
    ``s_per_token`` = the latency and streams `tokens_per_s` (1, latency); with
    the pipeline full the plan makes `pipelined_tokens_per_s` (batch,
    throughput), but only as many batches can be in flight as the stages'
    memory holds KV caches for (``in_flight``): with fewer, the pipeline runs at
    ``held / latency`` batches a second. ``usd_per_token`` (`CostModel.usd_per_token`) appears only
    when tokens are made and every device used has a price. Energy per token
    is not among them: plans have never recorded it.
    """
    rate = throughput_per_s
    if in_flight is not None and latency_s > 0:
        rate = min(rate, in_flight.replicas * max(in_flight.held, 1) / latency_s)
    made_per_s = pipelined_tokens_per_s(batch, rate) if rate > 0 else 0.0
    figures: dict[str, object] = {
        "llm_decode_step": True,
        "batch": batch,
        "s_per_token": latency_s,
        "tokens_per_s_per_stream": tokens_per_s(1, latency_s) if latency_s > 0 else 0.0,
        "tokens_per_s": made_per_s,
    }
    if in_flight is not None:
        figures["batches_in_flight"] = min(in_flight.needed, max(in_flight.held, 1))
        figures["batches_in_flight_needed"] = in_flight.needed
        figures["max_batch_in_flight"] = in_flight.max_batch
    usd = cost.usd_per_token(made_per_s, list(devices)) if made_per_s > 0 else None
    if usd is not None:
        figures["usd_per_token"] = usd
    return figures
