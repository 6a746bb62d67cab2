"""What the simulator asks of a cost model, and how one serving engine is configured.

An iteration (one forward pass of the engine) is described by aggregates, not
by its rows, so that pricing it is O(1) whatever the batch: `IterationShape`.
Whoever prices iterations implements `IterationCost`; the simulator never looks
inside it.

Definitions the aggregates follow (vLLM's, with ``L`` a sequence's KV-cache
length before the iteration):

- a decode row attends to ``L + 1`` keys and grows the cache to ``L + 1``;
- a prefill chunk of ``n`` tokens is ``n`` rows; row ``i`` (0-based) attends to
  ``L + i + 1`` keys, so the chunk adds ``n·L + n(n+1)/2`` to
  ``row_context_sum``, and the cache becomes ``L + n``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from partitioner.errors import UsageError

__all__ = ["IterationShape", "IterationCost", "ServingConfig", "MAX_ITERATION_OVERHEAD_S"]

#: A host pause per iteration beyond any runtime's (a second), which keeps the clock finite.
MAX_ITERATION_OVERHEAD_S = 1.0


class IterationShape(NamedTuple):
    """What one iteration computes, in aggregates (so pricing is O(1) per iteration).

    Immutable like a frozen dataclass, but a named tuple: the simulator builds one per
    iteration, millions a run, and a tuple is built twice as fast.

    Attributes:
        rows: Tokens computed: one per decode row plus every token of each prefill chunk.
        sequences: Sequences in the iteration.
        row_context_sum: Sum over rows of the keys that row attends to.
        sequence_context_sum: Sum over sequences of their KV-cache length after the iteration.
        max_context: The largest KV-cache length after the iteration.
        prefill_sequences: Of ``sequences``, those whose chunk starts an empty cache
            (a prompt's first chunk, or a preempted request's recompute).
        prefill_rows: Their tokens (included in ``rows``).
        prefill_row_context_sum: Their share of ``row_context_sum`` (n(n+1)/2 each).
        prefill_max_tokens: The longest of those chunks: a prefill graph of ``[batch,
            seq]`` pads its batch to it. A plan with a prefill load model prices these
            chunks as one prefill pass, and the rest through the decode polynomials.
    """

    rows: int
    sequences: int
    row_context_sum: int
    sequence_context_sum: int
    max_context: int
    prefill_sequences: int = 0
    prefill_rows: int = 0
    prefill_row_context_sum: int = 0
    prefill_max_tokens: int = 0

    def decode_step(self, steps: int = 1) -> IterationShape:
        """The same decode iteration ``steps`` tokens later (every row a sequence's next
        token): each sequence's cache, so both context sums, grows by one a step, and the
        longest context too. Only for decode iterations (one row a sequence)."""
        n = self.sequences
        return IterationShape(n, n, self.row_context_sum + n * steps,
                              self.sequence_context_sum + n * steps, self.max_context + steps)  # fmt: skip

    def decode_part(self) -> IterationShape:
        """The iteration without its chunks that start an empty cache."""
        return IterationShape(
            self.rows - self.prefill_rows,
            self.sequences - self.prefill_sequences,
            self.row_context_sum - self.prefill_row_context_sum,
            self.sequence_context_sum - self.prefill_rows,
            self.max_context,
        )


@runtime_checkable
class IterationCost(Protocol):
    """Prices an iteration on a pipeline of ``stages`` stages.

    ``stage_seconds(shape)`` gives one figure per stage, each counting the
    stage's outgoing transfer; all must be finite and non-negative. A cost whose
    stages' devices share one memory system may also have ``contended``: a cost of
    the same stages while they stream at once, which the engine uses for an
    iteration formed while another is in flight.
    """

    @property
    def stages(self) -> int: ...

    def stage_seconds(self, shape: IterationShape) -> Sequence[float]: ...


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"serving: {name} must be a positive integer, got {value!r}")
    return value


def _overhead(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"serving: {name} must be a number, got {value!r}")
    if not 0.0 <= value <= MAX_ITERATION_OVERHEAD_S:
        raise UsageError(
            f"serving: {name} must be from 0 to {MAX_ITERATION_OVERHEAD_S:g} s, got {value!r}"
        )


@dataclass(frozen=True)
class ServingConfig:
    """One serving engine (one replica), scheduled as vLLM's v1 scheduler does.

    Attributes:
        kv_capacity_tokens: Tokens of KV cache the engine holds, all stages together
            (a token's KV counts once even though each stage keeps its own layers').
        max_num_seqs: Most sequences holding KV cache at once (vLLM ``--max-num-seqs``).
        max_num_batched_tokens: Token budget of one iteration (``--max-num-batched-tokens``).
        chunked_prefill: Whether a prompt may be split across iterations; without it a
            prompt is prefilled whole, so it must fit the token budget.
        block_size_tokens: Tokens per KV-cache block (vLLM's default 16); caches grow by
            whole blocks.
        seed: Overrides the workload's seed when set.
        iteration_overhead_s: Host seconds each iteration spends before its first stage
            can start (scheduling, building inputs, sampling), when the runtime does not
            overlap them with the devices. 0 (the default) prices a runtime that does, as
            vLLM's asynchronous scheduling aims to; a synchronous Python loop pays it all.
        token_overhead_s: Host seconds more per token (row) of the iteration, on the same
            terms: the part of building inputs, writing caches back and sampling that
            grows with the batch (a 32-token prompt's iteration costs a Python loop about
            three times a one-token step's host work).
        stage_overhead_s: Host seconds each pipeline stage after the first spends per
            iteration on its own rank (receiving the batch's layout, gathering and writing
            back its layers' caches), holding that stage as its kernels do
            (`stage_host.with_stage_host`). 0 by default.
    """

    kv_capacity_tokens: int
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunked_prefill: bool = True
    block_size_tokens: int = 16
    seed: int | None = None
    iteration_overhead_s: float = 0.0
    token_overhead_s: float = 0.0
    stage_overhead_s: float = 0.0

    def __post_init__(self) -> None:
        _positive_int(self.kv_capacity_tokens, "kv_capacity_tokens")
        _positive_int(self.max_num_seqs, "max_num_seqs")
        _positive_int(self.max_num_batched_tokens, "max_num_batched_tokens")
        _positive_int(self.block_size_tokens, "block_size_tokens")
        if self.kv_capacity_tokens < self.block_size_tokens:
            raise UsageError(
                f"serving: kv_capacity_tokens ({self.kv_capacity_tokens}) holds no whole "
                f"block of {self.block_size_tokens} tokens"
            )
        if not isinstance(self.chunked_prefill, bool):
            raise UsageError(
                f"serving: chunked_prefill must be true or false, got {self.chunked_prefill!r}"
            )
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0
        ):
            raise UsageError(f"serving: seed must be a non-negative integer, got {self.seed!r}")
        for name in ("iteration_overhead_s", "token_overhead_s", "stage_overhead_s"):
            _overhead(getattr(self, name), name)

    def host_s(self, rows: int) -> float:
        """Host seconds of an iteration of ``rows`` tokens (see the class's doc)."""
        return self.iteration_overhead_s + rows * self.token_overhead_s

    @property
    def kv_capacity_blocks(self) -> int:
        """Whole blocks the KV capacity holds (a partial block is unusable)."""
        return self.kv_capacity_tokens // self.block_size_tokens
