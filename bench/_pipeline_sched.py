"""The scheduler of bench/serving_pipeline.py's real two-stage loop, and the same scheduler
on a clock advanced by the plan's prices (`priced_serve`), which must give `partition
simulate`'s figures: the check that the real loop schedules as the simulator's engine does.

The rules are the engine's (partitioner/simulate/serving/engine.py) for a pipeline:
an iteration is formed whenever stage 0 is free, fewer iterations than stages are in
flight and there is work; the running requests that are not in flight, oldest admitted
first, get what they lack (a decode 1 token, a prompt the rest of it) while the token
budget lasts, then waiting requests are admitted first come, first served, while
sequences < max batch and budget is left (the last maybe with a partial chunk). A
request is in at most one iteration in flight; its tokens are emitted when the iteration
leaves the last stage. The KV cache never fills, so nothing is preempted.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from bench._serving_loop import MAX_BATCH, MAX_CONTEXT, arrive, form_schedule, shape_of
from partitioner.simulate.serving import IterationShape, Requests, ServingConfig
from partitioner.simulate.serving.recorder import Recorder

__all__ = ["Scheduler", "Formed", "priced_serve"]

STAGES = 2


@dataclass(frozen=True)
class Formed:
    """One iteration as formed: its chunks and rows, and its shape as the engine counts it."""

    schedule: tuple[tuple[int, int], ...]  # (request, tokens), running ones first
    fresh: tuple[tuple[int, int], ...]  # of those, the chunks starting an empty cache
    rest: tuple[tuple[int, int], ...]  # the others (decode steps, later chunks)
    shape: IterationShape


class Scheduler:
    """Who runs next, and what each request has done (module doc); tokens in `complete`."""

    def __init__(self, requests: Requests) -> None:
        self.arrival_s = requests.arrival_s.tolist()
        self.prompt, self.output = requests.prompt_tokens.tolist(), requests.output_tokens.tolist()
        count = len(self.arrival_s)
        self.ctx, self.generated = [0] * count, [0] * count
        self.slot, self.last_token_s = [0] * count, [math.nan] * count
        self.running: dict[int, None] = {}  # admission order
        self.busy: set[int] = set()  # in an iteration in flight
        self.waiting: deque[int] = deque()
        self.free_slots = list(range(MAX_BATCH - 1, -1, -1))
        self.rec = Recorder(count, STAGES)
        self.next_arrival, self.finished = 0, 0

    @property
    def done(self) -> bool:
        return self.finished == len(self.arrival_s)

    def next_arrival_s(self) -> float:
        i = self.next_arrival
        return self.arrival_s[i] if i < len(self.arrival_s) else math.inf

    def arrive(self, now: float) -> None:
        arrive(self, now)

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    def form(self, now: float) -> Formed | None:
        """The next iteration at ``now``, or None when nothing can run."""
        schedule = form_schedule(self, now, self.busy)
        if not schedule:
            return None
        self.busy.update(r for r, _ in schedule)
        fresh = tuple((r, take) for r, take in schedule if self.ctx[r] == 0)
        rest = tuple((r, take) for r, take in schedule if self.ctx[r] != 0)
        return Formed(tuple(schedule), fresh, rest, shape_of(self.ctx, schedule, self.fresh))

    def fresh(self, r: int) -> bool:
        """Whether request ``r``'s chunk starts an empty cache (the prefill pass's)."""
        return self.ctx[r] == 0

    def complete(self, formed: Formed, done_s: float) -> None:
        """``formed`` left the last stage at ``done_s``: its tokens are out."""
        rec = self.rec
        for r, take in formed.schedule:
            self.busy.discard(r)
            self.ctx[r] += take
            if not self.generated[r] and self.ctx[r] < self.prompt[r]:
                continue  # a partial chunk: no token yet
            if self.generated[r]:
                rec.repeated_gap(done_s - self.last_token_s[r], 1)
            else:
                rec.first_token_s[r] = done_s
            self.last_token_s[r] = done_s
            self.generated[r] += 1
            if self.generated[r] == self.output[r]:
                rec.finish_s[r] = done_s
                del self.running[r]
                self.free_slots.append(self.slot[r])
                self.finished += 1
        rec.iterations += 1
        rec.batched_sequences += len(formed.schedule)


def priced_serve(requests: Requests, cost, host_s: tuple[float, ...]) -> Recorder:
    """The scheduler on a virtual clock: each iteration holds stage ``s`` for the plan's
    price of it there once the stage is free and it has left the stage before, the host
    work (seconds per iteration and per token, the simulator's own formula) before stage 0,
    and a later stage's own (``host_s[2]``, when given) on that stage; an iteration formed
    while another is in flight priced contended, as the engine does."""
    host = ServingConfig(MAX_BATCH * MAX_CONTEXT, iteration_overhead_s=host_s[0],
                         token_overhead_s=host_s[1])  # fmt: skip
    stage_s = host_s[2] if len(host_s) > 2 else 0.0
    sched, now = Scheduler(requests), 0.0
    contended = getattr(cost, "contended", None)
    free, in_flight = [0.0] * STAGES, deque()
    while not sched.done:
        while in_flight and in_flight[0][0] <= now:
            done_s, formed = in_flight.popleft()
            sched.complete(formed, done_s)
        sched.arrive(now)
        if sched.has_work() and now >= free[0] and len(in_flight) < STAGES:
            formed = sched.form(now)
            if formed is not None:
                t, extra = now, host.host_s(formed.shape.rows)
                # formed beside another in flight: stages sharing memory priced contended
                priced = contended if in_flight and contended is not None else cost
                for s, seconds in enumerate(priced.stage_seconds(formed.shape)):
                    d = seconds + (stage_s if s else 0.0)  # as `serving.stage_host` adds it
                    t = max(t, free[s]) + d + extra
                    free[s], extra = t, 0.0
                    sched.rec.stage_busy_s[s] += d
                in_flight.append((t, formed))
                continue
        upcoming = min(in_flight[0][0] if in_flight else math.inf, sched.next_arrival_s())
        if sched.has_work() and now < free[0] < upcoming and len(in_flight) < STAGES:
            upcoming = free[0]
        now = upcoming
    return sched.rec
