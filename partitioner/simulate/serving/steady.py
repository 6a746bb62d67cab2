"""Fast path: consecutive iterations of one decode group, in bulk.

While the running requests are one idle decode group, no prompt is being
prefilled, no waiting request can be admitted and (on a pipeline) nothing else
is in flight, every
iteration is "the group decodes once": the event loop would form it, price it,
complete it, retire who finished and look for arrivals, then do the same
again. `steady_run` does exactly those steps, in the same order and with the
same arithmetic, without the loop's general machinery, and hands back as soon
as anything else could happen: a request may be admitted (one is waiting, or
arrived during the last iteration, and a slot is free), the next iteration's
blocks do not fit (it would preempt), the group outgrows the token budget, or
it empties. An engine run in steps (`Engine.run`'s horizon) must not complete
an iteration at or past the horizon, since requests may arrive then: that one
is left in flight, as the event loop would have it.

With a cost that prices a run of iterations in one call (below; plan costs can),
it goes a window of iterations at a time; with any other, one at a time. It
prices the window ahead, works out each iteration's end with the same sequence
of float additions the event loop makes (`itertools.accumulate`), and commits at
once every iteration before the first one after which something happens: a
member finishes, a request arrives, the horizon passes, or the blocks run out.
That one goes through the step the event loop would take. The window doubles
while the run goes on, so a run that stops early wastes at most as much pricing
as it used.

On a pipeline (a cost that prices runs in bulk only) each iteration of the run
starts when the last one leaves the last stage, when every stage is free, so it
takes the host's seconds plus its stages' in turn (`pipeline_seconds`; with rows
streaming through a wafer's regions, the flow shop's). After a bulk commit every
stage's free time is the run's clock: no later figure depends on the exact
values below it, since the recurrences take the later of the two.

Every figure comes out bit for bit as the event loop's, but for two things: a
cost that prices a run of decode iterations in one call (``decode_run_seconds``)
is asked for the window's seconds in bulk, and a matrix product over many
iterations may round a stage's seconds in the last bit differently from one
over one iteration; and on a pipeline the stages' seconds are added up in
another order.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from itertools import accumulate
from typing import TYPE_CHECKING

import numpy as np

from partitioner.simulate.serving.groups import DecodeGroup
from partitioner.simulate.serving.iteration import IterationShape
from partitioner.simulate.serving.launch import Launch
from partitioner.simulate.serving.streaming import row_latency

if TYPE_CHECKING:
    from partitioner.simulate.serving.engine import Engine

__all__ = ["steady_run"]

#: A cost's ``decode_run_seconds``: seconds (stages by iterations) of a run of decode
#: iterations from its first (`serving_cost.PlanIterationCost.decode_run_seconds`).
RunPricer = Callable[[IterationShape, int], np.ndarray]

#: The first window's iterations, and the most a window grows to.
FIRST_WINDOW, LARGEST_WINDOW = 16, 256


def _blocked(engine: Engine) -> bool:
    """Whether no waiting request could join the next iteration for want of a slot."""
    return not engine.waiting or len(engine.running) >= engine.config.max_num_seqs


def pipeline_seconds(engine: Engine, seconds: np.ndarray, rows: int) -> np.ndarray:
    """Seconds from the first stage's start to the last's end of iterations (columns of
    ``seconds``, stages by iterations) that find every stage free: their stages' seconds
    in turn, or with rows streaming through the stages (`streaming`: a wafer's regions)
    a row's crossing of each plus the longest stage's wait for the rest of its rows."""
    if not engine.streams or rows <= 1:
        return seconds.sum(axis=0)
    fixed = None if engine.fixed_s is None else engine.fixed_s[:, None]
    per_row = row_latency(seconds, fixed, rows)
    return per_row.sum(axis=0) + (seconds - per_row).max(axis=0)


def _one(engine: Engine, shape: IterationShape) -> float | None:
    """The seconds of one iteration on the one stage; None if not one good figure."""
    seconds = engine.cost.stage_seconds(shape)
    if len(seconds) != 1 or not 0.0 <= float(seconds[0]) < math.inf:
        return None
    return float(seconds[0])


def _leave_in_flight(engine: Engine, group: DecodeGroup, done_s: float) -> None:
    """Put the group's priced iteration in flight until ``done_s``, as `Engine.launch_groups`
    and `Engine.launch` would have."""
    launch = Launch()
    launch.group = group
    launch.cohorts = [(group.last_token_s, len(group.members))]
    group.counter += 1
    group.busy = True
    engine.idle_groups = []
    engine.in_flight.append((done_s, launch))


class _Run:
    """One steady run: the group, the clock, and the seconds priced ahead."""

    def __init__(
        self, engine: Engine, group: DecodeGroup, now: float, bulk: RunPricer | None
    ) -> None:
        self.engine, self.group, self.t, self.ran = engine, group, now, False
        self.bulk, self.window = bulk, FIRST_WINDOW
        self.regroup()

    def regroup(self) -> None:
        """Read the group afresh (its members changed): what was priced is for others."""
        g = self.group
        self.n = len(g.members)
        self.top, self.until = g.max_context() - g.counter, g.iterations_to_finish()
        self.host_s = self.engine.config.host_s(self.n)
        self.ahead: list[float] = []
        self.stage_seconds = np.zeros((self.engine.stages, 0))  # of the iterations ahead

    def shape(self, i: int) -> IterationShape:
        """The iteration ``i`` after the group's next one."""
        g, n = self.group, self.n
        before = g.c0_sum + n * (g.counter + i)
        return IterationShape(n, n, before + n, before + n, self.top + g.counter + i + 1)

    def price_ahead(self) -> None:
        """Price the next window (up to the next member's last token) in one call. At a bad
        figure the run goes on one iteration at a time, and `step` meets it."""
        assert self.bulk is not None
        count = min(self.until, self.window)
        self.window = min(2 * self.window, LARGEST_WINDOW)
        seconds = self.bulk(self.shape(0), count)
        stages = self.engine.stages
        if seconds.shape != (stages, count):
            self.bulk = None
            return
        if stages == 1:
            ahead = seconds[0].tolist()
            lowest = min(ahead)
        else:
            ahead = pipeline_seconds(self.engine, seconds, self.n).tolist()
            lowest = float(seconds.min())
        if math.isfinite(sum(ahead)) and lowest >= 0.0:  # a NaN makes the sum one
            self.ahead, self.stage_seconds = ahead, seconds
        else:
            self.bulk = None

    def ends(self) -> list[float]:
        """When each priced iteration ends, with the event loop's additions in its order:
        the first starts when the clock and the stage are both free, each next one when
        the last ends, and each ends ``seconds + host`` later."""
        free = float(self.engine.stage_free_s[0])
        start = self.t if self.t > free else free
        steps = [0.0] * (2 * len(self.ahead))
        steps[0::2], steps[1::2] = self.ahead, [self.host_s] * len(self.ahead)
        return list(accumulate(steps, initial=start))[2::2]

    def plain(self, ends: list[float]) -> int:
        """How many of the priced iterations lead to nothing but the next: each before the
        horizon and the next arrival, with its blocks free, and not a member's last."""
        engine, g = self.engine, self.group
        phases, block = g.phases, engine.block
        count = min(len(ends), bisect_left(ends, engine.horizon_s), self.until - 1)
        if engine.next_arrival < len(engine.arrival_s):
            count = min(count, bisect_left(ends, engine.arrival_s[engine.next_arrival]))
        free = engine.free_blocks
        if free >= self.n * (count // block + 1):  # a member opens a block each `block` at most
            return count
        for i in range(count):
            free -= phases[-(g.counter + i) % block]
            if free < 0:
                return i
        return count

    def commit(self, ends: list[float], count: int) -> None:
        """Run the first ``count`` priced iterations at once, each as the event loop would."""
        engine, g, rec, n = self.engine, self.group, self.engine.rec, self.n
        phases, block = g.phases, engine.block
        starts = [self.t, *ends[: count - 1]]
        for i in range(count):
            opens = phases[-(g.counter + i) % block]
            if opens:
                engine.allocate(starts[i], opens)
        if engine.stages == 1:
            seconds = self.ahead[:count]
            rec.stage_busy_s[0] = list(accumulate(seconds, initial=rec.stage_busy_s[0]))[-1]
        else:
            for s, busy_s in enumerate(self.stage_seconds[:, :count].sum(axis=1).tolist()):
                rec.stage_busy_s[s] += busy_s
            self.stage_seconds = self.stage_seconds[:, count:]
        rec.iterations += count
        rec.batched_sequences += n * count
        previous = [g.last_token_s, *starts[1:]]
        rec.repeated_gaps([b - a for a, b in zip(previous, ends[:count], strict=True)], n)
        g.last_token_s = self.t = ends[count - 1]
        engine.stage_free_s[:] = [self.t] * engine.stages  # every stage free by then
        g.counter += count
        self.until -= count
        del self.ahead[:count]
        self.ran = True

    def step(self) -> bool | None:
        """The next iteration, the event loop's way: True or False to end the run (as
        `steady_run` answers), None to go on."""
        engine, g, rec, t = self.engine, self.group, self.engine.rec, self.t
        opens = g.phases[-g.counter % engine.block]
        if opens > engine.free_blocks:
            return self.ran
        if opens:
            engine.allocate(t, opens)
        if engine.stages > 1:  # the event loop's own pricing, stage by stage
            if self.ahead:
                self.ahead.pop(0)
                self.stage_seconds = self.stage_seconds[:, 1:]
            d = None
        else:
            d = self.ahead.pop(0) if self.ahead else _one(engine, self.shape(0))
        if d is None:  # a pipeline, or a bad figure (the general path raises)
            done = engine.price(t, self.shape(0))
        else:
            free = engine.stage_free_s[0]
            done = (t if t > free else free) + d + self.host_s
            engine.stage_free_s[0] = done
            rec.stage_busy_s[0] += d
            rec.iterations += 1
            rec.batched_sequences += self.n
        arrival = engine.arrival_s
        arrives = engine.next_arrival < len(arrival) and arrival[engine.next_arrival] <= done
        # what arrives by the horizon must be queued before the next iteration forms; on a
        # pipeline the event loop forms one for an arrival as soon as the first stage is free
        if done >= engine.horizon_s or (arrives and engine.stages > 1):
            _leave_in_flight(engine, g, done)
            return True
        g.counter += 1
        rec.repeated_gap(done - g.last_token_s, self.n)
        g.last_token_s = self.t = done
        self.ran = True
        self.until -= 1
        if self.until == 0:
            for r in g.finished():
                engine.finish(done, r, engine.final_ctx[r])
            if not g.members:
                engine.idle_groups.clear()
                return True
            self.regroup()
        if arrives:
            engine.arrive(done)
        return None if _blocked(engine) else True


def steady_run(engine: Engine, now: float) -> bool:
    """Run the group's iterations from ``now`` while nothing else can happen (module doc);
    False, touching nothing, if not even one applies."""
    group = engine.idle_groups[0]
    n = len(group.members)
    if n == 0 or n > engine.budget or not _blocked(engine):
        return False
    bulk = getattr(engine.cost, "decode_run_seconds", None)
    if engine.stages > 1 and (bulk is None or engine.in_flight):
        return False  # a pipeline goes in bulk or through the event loop
    run = _Run(engine, group, now, bulk)
    while True:
        if run.bulk is not None and not run.ahead:
            if run.group.opens() > engine.free_blocks:  # as `_Run.step` would, unpriced
                return run.ran
            run.price_ahead()
        if run.ahead:
            ends = run.ends()
            count = run.plain(ends)
            if count:
                run.commit(ends, count)
                if not run.ahead:  # the window ran out before anything happened
                    continue
        # an event (what stopped the commit stops the next iteration still), or a cost
        # that prices one iteration at a time
        ended = run.step()
        if ended is not None:
            return ended
