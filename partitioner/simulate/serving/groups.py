"""Decode groups: requests that decode in lockstep, advanced in O(1) per iteration.

Every iteration that schedules a group gives each member one token, so a
member's KV-cache length is ``c0 + counter``: ``c0`` is fixed while it stays in
the group and ``counter`` counts the group's iterations. What an iteration
needs from the group then comes from running totals, whatever its size:

- the sum of the members' cache lengths: ``c0_sum + len·counter``;
- the longest cache: the largest ``c0`` (a heap) plus ``counter``;
- KV blocks the next iteration opens: members whose next token lands at a block
  boundary, ``c0 ≡ -counter (mod block)`` (a histogram of ``c0 mod block``);
- who finishes: the members whose ``c0 + counter`` reaches their last cache
  length, ``prompt + output - 1`` (a heap keyed by that counter value).

Heaps drop entries lazily: an entry stands only while its request is still a
member with the same ``c0``.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

__all__ = ["DecodeGroup"]


class DecodeGroup:
    """Requests decoding together (mutable: the engine's working state).

    Attributes:
        counter: Iterations this group has been scheduled for.
        members: ``request -> c0``; a member's cache holds ``c0 + counter`` tokens.
        c0_sum: Sum of the members' ``c0``.
        last_token_s: When the members emitted their last token (valid while idle).
        busy: Whether an in-flight iteration holds the group.
    """

    __slots__ = (
        "block",
        "final_ctx",
        "counter",
        "members",
        "c0_sum",
        "phases",
        "_finishes",
        "_tops",
        "last_token_s",
        "busy",
    )

    def __init__(self, block: int, final_ctx: Sequence[int]) -> None:
        self.block = block
        self.final_ctx = final_ctx  # per request: its cache length once it has finished
        self.counter = 0
        self.members: dict[int, int] = {}
        self.c0_sum = 0
        self.phases = [0] * block
        self._finishes: list[tuple[int, int, int]] = []
        self._tops: list[tuple[int, int]] = []
        self.last_token_s = 0.0
        self.busy = False

    def __len__(self) -> int:
        return len(self.members)

    def add(self, request: int, ctx: int) -> None:
        """Make ``request``, whose cache holds ``ctx`` tokens, a member."""
        c0 = ctx - self.counter
        self.members[request] = c0
        self.c0_sum += c0
        self.phases[c0 % self.block] += 1
        heapq.heappush(self._finishes, (self.final_ctx[request] - c0, request, c0))
        heapq.heappush(self._tops, (-c0, request))

    def remove(self, request: int) -> int:
        """Drop ``request``; its cache length."""
        c0 = self.members.pop(request)
        self.c0_sum -= c0
        self.phases[c0 % self.block] -= 1
        return c0 + self.counter

    def ctx(self, request: int) -> int:
        """Tokens in ``request``'s cache."""
        return self.members[request] + self.counter

    def context_sum(self) -> int:
        """Tokens in all the members' caches."""
        return self.c0_sum + len(self.members) * self.counter

    def max_context(self) -> int:
        """The longest member cache (the group must not be empty)."""
        tops, members = self._tops, self.members
        while members.get(tops[0][1]) != -tops[0][0]:
            heapq.heappop(tops)
        return -tops[0][0] + self.counter

    def opens(self) -> int:
        """KV blocks the group's next iteration opens."""
        return self.phases[-self.counter % self.block]

    def iterations_to_finish(self) -> int:
        """Iterations until the next member reaches its last token (the group must not be empty)."""
        finishes, members = self._finishes, self.members
        while members.get(finishes[0][1]) != finishes[0][2]:
            heapq.heappop(finishes)
        return finishes[0][0] - self.counter

    def finished(self) -> list[int]:
        """Members whose caches reached their last length, removed from the group, by request."""
        done = []
        finishes, members = self._finishes, self.members
        while finishes and finishes[0][0] <= self.counter:
            _, request, c0 = heapq.heappop(finishes)
            if members.get(request) == c0:
                self.remove(request)
                done.append(request)
        return done

    def absorb(self, other: DecodeGroup) -> None:
        """Move ``other``'s members in (their caches unchanged)."""
        for request, c0 in other.members.items():
            self.add(request, c0 + other.counter)
        other.members.clear()
