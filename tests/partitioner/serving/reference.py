"""A literal, slow serving simulator: the engine's rules written out one request at a time.

It follows the scheduling rules in `partitioner.simulate.serving.engine`'s
module doc with nothing clever (no decode groups, no bulk path): every
iteration walks the running requests in admission order, counts its shape row
by row, and emits tokens request by request. The tests run it beside the real
engine on random workloads and compare every per-request time.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from partitioner.simulate.serving import IterationCost, IterationShape, Requests, ServingConfig


def _blocks(tokens: int, block: int) -> int:
    return -(-tokens // block)


@dataclass
class Outcome:
    """Per-request times and run totals of one reference simulation."""

    first_scheduled_s: list[float]
    first_token_s: list[float]
    finish_s: list[float]
    token_times_s: list[list[float]]
    rejected: int = 0
    preemptions: int = 0
    iterations: int = 0
    shapes: list[IterationShape] = field(default_factory=list)
    stage_busy_s: list[float] = field(default_factory=list)
    peak_blocks: int = 0


class Reference:
    def __init__(self, requests: Requests, cost: IterationCost, config: ServingConfig) -> None:
        self.cost, self.config = cost, config
        self.arrival = requests.arrival_s.tolist()
        self.prompt = requests.prompt_tokens.tolist()
        self.output = requests.output_tokens.tolist()
        count = len(self.arrival)
        self.ctx, self.gen, self.busy = [0] * count, [0] * count, [False] * count
        self.running: list[int] = []
        self.waiting: deque[int] = deque()
        self.free = config.kv_capacity_blocks
        self.stage_free = [0.0] * cost.stages
        self.in_flight: deque[tuple[float, list[int]]] = deque()
        nan = math.nan
        self.out = Outcome([nan] * count, [nan] * count, [nan] * count, [[] for _ in range(count)])
        self.out.stage_busy_s = [0.0] * cost.stages

    def known(self, r: int) -> int:
        return self.prompt[r] + self.gen[r]

    def fits(self, r: int) -> bool:
        most = self.prompt[r] + self.output[r] - 1
        ok = _blocks(most, self.config.block_size_tokens) <= self.config.kv_capacity_blocks
        return ok and (self.config.chunked_prefill or most <= self.config.max_num_batched_tokens)

    def take_blocks(self, blocks: int) -> None:
        self.free -= blocks
        used = self.config.kv_capacity_blocks - self.free
        self.out.peak_blocks = max(self.out.peak_blocks, used)

    def preempt(self, r: int) -> None:
        self.running.remove(r)
        self.take_blocks(-_blocks(self.ctx[r], self.config.block_size_tokens))
        self.ctx[r] = 0
        self.waiting.appendleft(r)
        self.out.preemptions += 1

    def form(self, now: float) -> list[tuple[int, int, int]]:
        block, budget, preempted = (
            self.config.block_size_tokens,
            self.config.max_num_batched_tokens,
            False,
        )
        picked: list[tuple[int, int, int]] = []  # (request, take, cache before)
        i = 0
        while i < len(self.running) and budget > 0:
            r = self.running[i]
            if self.busy[r]:
                i += 1
                continue
            take = min(self.known(r) - self.ctx[r], budget)
            need = _blocks(self.ctx[r] + take, block) - _blocks(self.ctx[r], block)
            waits = False
            while need > self.free:
                victim = max(
                    j for j in range(i, len(self.running)) if not self.busy[self.running[j]]
                )
                preempted = True
                if victim == i and self.in_flight:
                    waits = True  # the last idle one, with others in flight: it waits
                    break
                self.preempt(self.running[victim])
                if victim == i:
                    break
            if waits or r not in self.running:
                break
            picked.append((r, take, self.ctx[r]))
            self.take_blocks(need)
            self.ctx[r] += take
            self.busy[r] = True
            budget -= take
            i += 1
        while not preempted and self.waiting and budget > 0:
            if len(self.running) >= self.config.max_num_seqs:
                break
            r = self.waiting[0]
            take = min(self.known(r), budget)
            if take < self.known(r) and not self.config.chunked_prefill:
                break
            if _blocks(take, block) > self.free:
                break
            self.waiting.popleft()
            self.running.append(r)
            if math.isnan(self.out.first_scheduled_s[r]):
                self.out.first_scheduled_s[r] = now
            picked.append((r, take, 0))
            self.take_blocks(_blocks(take, block))
            self.ctx[r] = take
            self.busy[r] = True
            budget -= take
        return picked

    def price(self, now: float, picked: list[tuple[int, int, int]]) -> float:
        rows = sum(t for _, t, _ in picked)
        row_ctx = sum(sum(before + k + 1 for k in range(t)) for _, t, before in picked)
        after = [before + t for _, t, before in picked]
        shape = IterationShape(rows, len(picked), row_ctx, sum(after), max(after))
        self.out.shapes.append(shape)
        t = now
        for s, d in enumerate(self.cost.stage_seconds(shape)):
            t = max(t, self.stage_free[s]) + d
            self.stage_free[s] = t
            self.out.stage_busy_s[s] += d
        self.out.iterations += 1
        return t

    def complete(self, done: float, requests: list[int]) -> None:
        for r in requests:
            self.busy[r] = False
            if self.ctx[r] < self.known(r):
                continue
            if self.gen[r] == 0:
                self.out.first_token_s[r] = done
            self.out.token_times_s[r].append(done)
            self.gen[r] += 1
            if self.gen[r] == self.output[r]:
                self.out.finish_s[r] = done
                self.running.remove(r)
                self.take_blocks(-_blocks(self.ctx[r], self.config.block_size_tokens))

    def run(self) -> Outcome:
        now, nxt = 0.0, 0
        while True:
            while self.in_flight and self.in_flight[0][0] <= now:
                self.complete(*self.in_flight.popleft())
            while nxt < len(self.arrival) and self.arrival[nxt] <= now:
                if self.fits(nxt):
                    self.waiting.append(nxt)
                else:
                    self.out.rejected += 1
                nxt += 1
            busy_ok = len(self.in_flight) < self.cost.stages and now >= self.stage_free[0]
            if busy_ok and (self.running or self.waiting):
                picked = self.form(now)
                if picked:
                    done = self.price(now, picked)
                    self.in_flight.append((done, [r for r, _, _ in picked]))
                    continue
            upcoming = [self.in_flight[0][0]] if self.in_flight else []
            if nxt < len(self.arrival):
                upcoming.append(self.arrival[nxt])
            if self.stage_free[0] > now and (self.running or self.waiting):
                upcoming.append(self.stage_free[0])
            if not upcoming:
                assert not self.running and not self.waiting
                return self.out
            now = min(upcoming)


def reference_run(requests: Requests, cost: IterationCost, config: ServingConfig) -> Outcome:
    return Reference(requests, cost, config).run()
