"""An iteration being formed or in flight, and the block arithmetic of the KV cache."""

from __future__ import annotations

from partitioner.simulate.serving.groups import DecodeGroup

__all__ = ["Launch", "blocks_for"]


def blocks_for(tokens: int, block: int) -> int:
    """KV blocks holding ``tokens`` tokens."""
    return -(-tokens // block)


class Launch:
    """An iteration being formed or in flight: who is in it, and its shape so far."""

    __slots__ = (
        "group",
        "cohorts",
        "prefills",
        "rows",
        "sequences",
        "row_ctx",
        "seq_ctx",
        "max_ctx",
        "fresh",
        "fresh_rows",
        "fresh_row_ctx",
        "fresh_max",
        "prompt_rows",
    )

    def __init__(self) -> None:
        self.group: DecodeGroup | None = None  # its decoding requests
        self.cohorts: list[tuple[float, int]] = []  # (previous token time, how many) of the group
        self.prefills: list[int] = []  # requests given a prefill chunk
        self.rows = self.sequences = self.row_ctx = self.seq_ctx = self.max_ctx = 0
        # chunks that start an empty cache (`IterationShape.prefill_sequences` ...)
        self.fresh = self.fresh_rows = self.fresh_row_ctx = self.fresh_max = 0
        self.prompt_rows = 0  # rows of prompt chunks (and recompute), as opposed to decode

    def add_rows(self, take: int, before: int) -> None:
        """Count a sequence computing ``take`` tokens on a cache of ``before``."""
        after = before + take
        self.rows += take
        self.sequences += 1
        # row i attends to before + i + 1 keys
        self.row_ctx += take * before + take * (take + 1) // 2
        self.seq_ctx += after
        if after > self.max_ctx:
            self.max_ctx = after
        if before == 0:
            self.fresh += 1
            self.fresh_rows += take
            self.fresh_row_ctx += take * (take + 1) // 2
            if take > self.fresh_max:
                self.fresh_max = take
