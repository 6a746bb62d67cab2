"""Fast path for one stage: consecutive iterations of one decode group, in a tight loop.

On a single stage, while the running requests are one idle decode group, no
prompt is being prefilled and no waiting request can be admitted, every
iteration is "the group decodes once": the event loop would form it, price it,
complete it, retire who finished and look for arrivals, then do the same
again. `steady_run` does exactly those steps, in the same order and with the
same arithmetic (so every figure comes out bit for bit the same), without the
loop's general machinery, and hands back as soon as anything else could
happen: a request may be admitted (one is waiting, or arrived during the last
iteration, and a slot is free), the next iteration's blocks do not fit (it would
preempt), the group outgrows the token budget, or it empties. An engine run
in steps (`Engine.run`'s horizon) must not complete an iteration at or past
the horizon, since requests may arrive then: that one is left in flight, as the
event loop would have it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from partitioner.simulate.serving.groups import DecodeGroup
from partitioner.simulate.serving.iteration import IterationShape
from partitioner.simulate.serving.launch import Launch

if TYPE_CHECKING:
    from partitioner.simulate.serving.engine import Engine

__all__ = ["steady_run"]


def _blocked(engine: Engine) -> bool:
    """Whether no waiting request could join the next iteration for want of a slot."""
    return not engine.waiting or len(engine.running) >= engine.config.max_num_seqs


def _priced(engine: Engine, start_s: float, shape: IterationShape) -> float:
    """`Engine.price` for one stage, inlined: the same arithmetic in the same order."""
    seconds = engine.cost.stage_seconds(shape)
    if len(seconds) != 1 or not 0.0 <= float(seconds[0]) < math.inf:
        return engine.price(start_s, shape)  # let the general path raise its error
    d = float(seconds[0])
    free = engine.stage_free_s[0]
    done = (start_s if start_s > free else free) + d + engine.config.host_s(shape.rows)
    engine.stage_free_s[0] = done
    rec = engine.rec
    rec.stage_busy_s[0] += d
    rec.iterations += 1
    rec.batched_sequences += shape.sequences
    return done


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


def steady_run(engine: Engine, now: float) -> bool:
    """Run the group's iterations from ``now`` while nothing else can happen (module doc);
    False, touching nothing, if not even one applies."""
    group = engine.idle_groups[0]
    block, budget, rec, arrival = engine.block, engine.budget, engine.rec, engine.arrival_s
    n = len(group.members)
    if n == 0 or n > budget or not _blocked(engine):
        return False
    t, ran, horizon = now, False, engine.horizon_s
    top, until = group.max_context() - group.counter, group.iterations_to_finish()
    while True:
        opens = group.phases[-group.counter % block]
        if opens > engine.free_blocks:
            return ran
        if opens:
            engine.allocate(t, opens)
        before = group.c0_sum + n * group.counter
        done = _priced(
            engine, t, IterationShape(n, n, before + n, before + n, top + group.counter + 1)
        )
        if done >= horizon:  # what arrives then must be queued before the next one forms
            _leave_in_flight(engine, group, done)
            return True
        group.counter += 1
        rec.repeated_gap(done - group.last_token_s, n)
        group.last_token_s = t = done
        ran = True
        until -= 1
        if until == 0:
            for r in group.finished():
                engine.finish(done, r, engine.final_ctx[r])
            n = len(group.members)
            if n == 0:
                engine.idle_groups.clear()
                return True
            top, until = group.max_context() - group.counter, group.iterations_to_finish()
        if engine.next_arrival < len(arrival) and arrival[engine.next_arrival] <= done:
            engine.arrive(done)
        if not _blocked(engine):
            return True
