"""What the event loop records as it runs: per-request times, token gaps, KV use, busy time.

Inter-token gaps are the bulk of the data (one per output token after the
first; tens of millions for 100,000 chat requests), so they are kept as
``(gap, count)`` pairs: the requests of a decode group that emitted their
previous token together share their gap. `Recorder.itl_distribution` merges
the pairs into sorted distinct gaps with their counts, so the result depends on
the gaps alone, not on how they were grouped. The pairs sit in typed arrays (16
bytes each, not a Python float's 40), merged into distinct gaps whenever they pass
`COMPACT_PAIRS`: a model whose requests decode alone emits a pair per token, and
100,000 chat requests took 3.5 GB as lists.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

__all__ = ["Recorder", "COMPACT_PAIRS"]

#: Gap pairs held before they are merged into distinct gaps (32 MiB of pairs).
COMPACT_PAIRS = 1 << 21


class Recorder:
    """Accumulates the raw figures of one simulation (mutable; the engine's alone).

    Attributes:
        first_scheduled_s, first_token_s, finish_s: Per request, NaN until set.
        stage_busy_s: Seconds each stage spent computing.
        iterations: Iterations run.
        batched_sequences: Sum over iterations of their sequence counts.
        preemptions: Requests preempted (each recompute counts once).
        rejected: Requests refused because they could never fit.
        kv_used_blocks, kv_peak_blocks: KV blocks held now, and the most ever held.
        kv_block_seconds: Integral of blocks held over time.
        iterations_beside_another: Iterations priced as running beside another (stages
            sharing one memory system, `serving.engine`); None where none can be.
    """

    def __init__(self, requests: int, stages: int, beside: bool = False) -> None:
        self.first_scheduled_s = [math.nan] * requests
        self.first_token_s = [math.nan] * requests
        self.finish_s = [math.nan] * requests
        self.stage_busy_s = [0.0] * stages
        #: Device seconds (all stages) attributed to prompt rows: each iteration's by the
        #: share of its rows that are prompt chunks (`serving.report`'s prompt share).
        self.prompt_busy_s = 0.0
        self.iterations = 0
        self.batched_sequences = 0
        self.iterations_beside_another: int | None = 0 if beside else None
        self.preemptions = 0
        self.rejected = 0
        self.kv_used_blocks = 0
        self.kv_peak_blocks = 0
        self.kv_block_seconds = 0.0
        self._kv_since_s = 0.0
        self._gap_values = array("d")
        self._gap_counts = array("q")
        self._compact_at = COMPACT_PAIRS

    def add_request(self) -> None:
        """One more request (an engine given requests as they arrive)."""
        self.first_scheduled_s.append(math.nan)
        self.first_token_s.append(math.nan)
        self.finish_s.append(math.nan)

    def absorb(self, other: Recorder) -> None:
        """Add ``other``'s totals, token gaps and busy time (stage by stage) to this one's;
        per-request times are not touched, and KV peaks take the larger."""
        self.iterations += other.iterations
        self.batched_sequences += other.batched_sequences
        if other.iterations_beside_another is not None:
            self.iterations_beside_another = (
                self.iterations_beside_another or 0
            ) + other.iterations_beside_another
        self.preemptions += other.preemptions
        self.rejected += other.rejected
        self.kv_block_seconds += other.kv_block_seconds
        self.prompt_busy_s += other.prompt_busy_s
        self.kv_peak_blocks = max(self.kv_peak_blocks, other.kv_peak_blocks)
        self._gap_values += other._gap_values
        self._gap_counts += other._gap_counts
        self._compact_when_full()
        for stage, busy_s in enumerate(other.stage_busy_s[: len(self.stage_busy_s)]):
            self.stage_busy_s[stage] += busy_s

    def kv_change(self, time_s: float, blocks: int) -> None:
        """``blocks`` more (or, negative, fewer) KV blocks held from ``time_s`` on."""
        if blocks == 0:
            return
        self.kv_block_seconds += self.kv_used_blocks * (time_s - self._kv_since_s)
        self._kv_since_s = time_s
        self.kv_used_blocks += blocks
        self.kv_peak_blocks = max(self.kv_peak_blocks, self.kv_used_blocks)

    def scheduled(self, request: int, time_s: float) -> None:
        """``request`` entered a batch at ``time_s`` (only its first time counts)."""
        if math.isnan(self.first_scheduled_s[request]):
            self.first_scheduled_s[request] = time_s

    def repeated_gap(self, gap_s: float, count: int) -> None:
        """Record ``count`` inter-token gaps of ``gap_s`` each."""
        if count == 0:
            return
        self._gap_values.append(gap_s)
        self._gap_counts.append(count)
        if len(self._gap_values) >= self._compact_at:  # `_compact_when_full`, inline: a call
            self._compact()  # per token costs seconds on 30 M tokens

    def repeated_gaps(self, gaps_s: list[float], count: int) -> None:
        """Record ``count`` inter-token gaps of each of ``gaps_s``."""
        if count == 0:
            return
        self._gap_values.extend(gaps_s)
        self._gap_counts.extend([count] * len(gaps_s))
        self._compact_when_full()

    def _compact_when_full(self) -> None:
        if len(self._gap_values) >= self._compact_at:
            self._compact()

    def _compact(self) -> None:
        """Merge the pairs into distinct gaps with their counts (the same distribution);
        the next merge waits until the pairs double, so merging stays linear overall."""
        distinct, counts = self.itl_distribution()
        self._gap_values = array("d", distinct.tobytes())
        self._gap_counts = array("q", counts.tobytes())
        self._compact_at = max(COMPACT_PAIRS, 2 * len(distinct))

    def itl_distribution(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct inter-token gaps in ascending order, and how many times each occurred."""
        values = np.frombuffer(self._gap_values, dtype=np.float64)
        counts = np.frombuffer(self._gap_counts, dtype=np.int64)
        distinct, inverse = np.unique(values, return_inverse=True)
        return distinct, np.bincount(inverse, weights=counts, minlength=distinct.size).astype(
            np.int64
        )
