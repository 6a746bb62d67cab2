"""What a set of nodes reads from outside, what it holds resident, and what moves.

Planners, the coarsener and the executor all ask the same questions of a group of
nodes (a block, a stage, a plan partition); answering them here once keeps the
byte counts of a plan, the tensors its transfers move and the values the
executor hands over from drifting apart.

The rules, which every caller shares:

- Only runtime nodes count. A folded node ran once at load time: the values it
  read are not needed at runtime, and the constants it made are parameters of
  the runtime nodes that read them.
- Parameters (initializers and folded constants) are resident on every
  partition whose runtime nodes read them: a weight two partitions share is
  held by both and never travels.
- A KV-cache graph input is resident on the partition that reads it (the cache
  lives where it is used), so it never travels from the host either.
- Every other value a partition reads and does not make itself is received:
  an activation from another partition, or a model input from the host.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from passes.analysis.edges import transfer_bytes
from passes.ir import Graph
from targets import HOST

__all__ = [
    "Residency",
    "residency",
    "PartitionIO",
    "partition_io",
    "TensorFlow",
    "tensor_flows",
]


@dataclass(frozen=True)
class Residency:
    """The data a set of nodes keeps in its device's memory for as long as it runs.

    Only tensors of known size are listed (their bytes are what a memory budget
    needs); `partition_io` names every resident value, sized or not. The mappings
    are plain dicts (picklable, for a runtime that ships them); treat them as read-only.

    Attributes:
        params: name -> bytes of each distinct parameter tensor the runtime nodes
            read, in first-use order (a weight read twice counts once).
        kv_cache: name -> bytes of each KV-cache graph input they read, in first-use order.
    """

    params: Mapping[str, int]
    kv_cache: Mapping[str, int]

    @property
    def param_bytes(self) -> int:
        return sum(self.params.values())

    @property
    def kv_cache_bytes(self) -> int:
        return sum(self.kv_cache.values())


def residency(graph: Graph, nodes: Iterable[int]) -> Residency:
    """The parameters and KV-cache inputs of known size that the runtime nodes among
    ``nodes`` read (folded nodes are skipped: what they read is not needed at runtime)."""
    params: dict[str, int] = {}
    kv_cache: dict[str, int] = {}
    for i in nodes:
        node = graph.nodes[i]
        if node.folded:
            continue
        for name in node.present_inputs:
            t = graph.tensors.get(name)
            if t is None or not t.is_static:
                continue
            if t.is_param:
                params.setdefault(name, t.nbytes)
            elif t.is_kv_cache:
                kv_cache.setdefault(name, t.nbytes)
    return Residency(params, kv_cache)


@dataclass(frozen=True)
class PartitionIO:
    """The values that cross the boundary of a set of nodes, by name.

    Attributes:
        nodes: the runtime nodes of the set, in the order given.
        inputs: every value they read that none of them produced earlier, in
            first-use order; exactly ``received``, ``params`` and ``kv_cache``
            interleaved.
        received: inputs that must be brought in (activations of other
            partitions, model inputs, and names the graph does not define).
        params: inputs that are parameters (resident).
        kv_cache: inputs that are KV-cache graph inputs (resident).
        outputs: values they produce that a runtime node outside the set reads,
            or that are graph outputs (KV-cache outputs included), in production order.
    """

    nodes: tuple[int, ...]
    inputs: tuple[str, ...]
    received: tuple[str, ...]
    params: tuple[str, ...]
    kv_cache: tuple[str, ...]
    outputs: tuple[str, ...]


def partition_io(graph: Graph, nodes: Iterable[int]) -> PartitionIO:
    """What the runtime nodes among ``nodes`` read from outside and hand out (see `PartitionIO`).

    A value read before a node of the set produces it (the order given does not
    execute) counts as an input, as it would have to arrive from outside.
    """
    runtime = tuple(i for i in nodes if not graph.nodes[i].folded)
    produced: set[str] = set()
    needed: dict[str, None] = {}
    for i in runtime:
        node = graph.nodes[i]
        for name in node.present_inputs:
            if name not in produced:
                needed.setdefault(name)
        produced.update(node.present_outputs)
    inputs = tuple(needed)
    params = tuple(n for n in inputs if n in graph.tensors and graph.tensors[n].is_param)
    kv_cache = tuple(n for n in inputs if n in graph.tensors and graph.tensors[n].is_kv_cache)
    resident = set(params) | set(kv_cache)
    inside = set(runtime)
    outputs = tuple(
        name
        for i in runtime
        for name in graph.nodes[i].present_outputs
        if _leaves(graph, name, inside)
    )
    return PartitionIO(
        nodes=runtime,
        inputs=inputs,
        received=tuple(n for n in inputs if n not in resident),
        params=params,
        kv_cache=kv_cache,
        outputs=outputs,
    )


def _leaves(graph: Graph, name: str, inside: set[int]) -> bool:
    """Whether a value made inside the set is needed outside it: a graph output, or
    read by a runtime node elsewhere (a folded reader ran at load time)."""
    t = graph.tensors[name]
    return t.is_graph_output or any(
        c not in inside and not graph.nodes[c].folded for c in t.consumers
    )


@dataclass(frozen=True)
class TensorFlow:
    """Where one runtime tensor is made and where it must go.

    Attributes:
        tensor: its name.
        bytes: what a transfer of it records (`transfer_bytes`: 0 when its size is unknown).
        src: the partition whose node produces it, or ``HOST`` for a model input.
        readers: distinct partitions other than ``src`` whose runtime nodes read it, sorted.
        to_host: it is a graph output (not a KV-cache output, which stays on its
            partition) produced by a partition, so it goes back to the host.
    """

    tensor: str
    bytes: int
    src: int
    readers: tuple[int, ...]
    to_host: bool


def tensor_flows(graph: Graph, owner: Mapping[int, int] | Sequence[int]) -> tuple[TensorFlow, ...]:
    """Every runtime tensor's source and readers under ``owner``, in ``graph.iter_tensors()`` order.

    Args:
        graph: the IR.
        owner: node index -> partition id, for every runtime node (a dict, or a
            sequence indexed by node such as ``BlockGraph.block_of``).

    Parameters never move and KV-cache inputs are resident where read, so
    neither is listed; nor is a model input no runtime node reads. An
    activation nobody else reads is listed with no readers (its owner is still known).
    """
    flows: list[TensorFlow] = []
    for t in graph.iter_tensors():
        if t.is_param:
            continue
        from_host = t.kind == "input"
        if from_host and t.is_kv_cache:
            continue
        src = HOST if from_host else owner[t.producer]  # type: ignore[index]
        readers = sorted({owner[c] for c in t.consumers if not graph.nodes[c].folded} - {src})
        if from_host and not readers:
            continue
        to_host = t.is_graph_output and not t.is_kv_cache_output and not from_host
        flows.append(TensorFlow(t.name, transfer_bytes(t), src, tuple(readers), to_host))
    return tuple(flows)
