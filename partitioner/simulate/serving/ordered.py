"""Forming an iteration one request at a time, when the budget or the free blocks run short.

This is step 1 of `engine`'s module doc taken literally: the running requests
in admission order, each given what it lacks while the token budget lasts,
preempting the most recently admitted idle request (possibly itself) until its
new blocks fit. It costs O(running requests), so the engine comes here only
when the bulk path cannot schedule everyone at once.

One departure from vLLM, for pipelines: when the request short of blocks is
the last idle one, so that it would preempt itself, while other iterations are
in flight, it waits instead, keeping its blocks, and the step ends there.
vLLM v1 preempts in-flight requests (discarding their work); this simulator
never does, and without the wait two requests on a pipeline can preempt
themselves by turns forever, each while the other, in flight, holds the blocks.
Once the in-flight iterations complete, the oldest request preempts the younger
ones as usual. With one stage nothing is ever in flight when a step is formed,
so the rule never applies there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from partitioner.simulate.serving.groups import DecodeGroup
from partitioner.simulate.serving.launch import Launch, blocks_for

if TYPE_CHECKING:
    from partitioner.simulate.serving.engine import Engine

__all__ = ["form_ordered", "preempt"]


def _idle(engine: Engine, request: int) -> bool:
    group = engine.group_of[request]
    return not group.busy if group is not None else not engine.busy[request]


def preempt(engine: Engine, now: float, request: int) -> None:
    """Free ``request``'s cache and put it at the front of the waiting queue (recompute)."""
    group = engine.group_of[request]
    if group is not None:
        ctx = group.remove(request)
        engine.group_of[request] = None
        # its state leaves the group: generated tokens and when it emitted the last one
        engine.generated[request] = ctx + 1 - engine.prompt[request]
        engine.last_token_s[request] = group.last_token_s
    else:
        ctx = engine.ctx[request]
        del engine.prefilling[request]
    del engine.running[request]
    engine.allocate(now, -blocks_for(ctx, engine.block))
    engine.waiting.appendleft(request)
    engine.rec.preemptions += 1


def _make_room(engine: Engine, now: float, order: list[int], at: int, need: int) -> bool:
    """Preempt from the tail of ``order`` until ``need`` blocks are free; False if the
    request at ``at`` cannot run now (it was preempted, or it waits; module doc)."""
    while need > engine.free_blocks:
        victim = next(j for j in range(len(order) - 1, at - 1, -1) if _idle(engine, order[j]))
        if victim == at and engine.in_flight:
            return False  # it waits, keeping its blocks, for the in-flight requests
        request = order.pop(victim)
        preempt(engine, now, request)
        if victim == at:
            return False
    return True


def _regroup(engine: Engine, launch: Launch, decoders: list[int]) -> None:
    """Move the scheduled ``decoders`` (their blocks taken) out of their idle groups into one
    group in ``launch``."""
    group = DecodeGroup(engine.block, engine.final_ctx)
    cohorts: dict[float, int] = {}
    for r in decoders:
        old = engine.group_of[r]
        assert old is not None
        before = old.remove(r)
        cohorts[old.last_token_s] = cohorts.get(old.last_token_s, 0) + 1
        group.add(r, before + 1)
        engine.group_of[r] = group
        launch.add_rows(1, before)
    group.busy = True
    launch.group = group
    launch.cohorts = list(cohorts.items())


def form_ordered(engine: Engine, now: float) -> bool:
    """Schedule and launch an iteration at ``now``, one running request at a time."""
    launch, budget, preempted = Launch(), engine.budget, False
    order = list(engine.running)
    decoders: list[int] = []
    i = 0
    while i < len(order) and budget > 0:
        r = order[i]
        if not _idle(engine, r):
            i += 1
            continue
        group = engine.group_of[r]
        before = group.ctx(r) if group is not None else engine.ctx[r]
        take = min(1 if group is not None else engine.known[r] - before, budget)
        need = blocks_for(before + take, engine.block) - blocks_for(before, engine.block)
        if need > engine.free_blocks:
            # whether it preempts or waits, nobody new is admitted: they would take its blocks
            preempted = True
            if not _make_room(engine, now, order, i, need):
                break
        if group is not None:
            engine.allocate(now, need)
            decoders.append(r)  # it joins the launch's group below, once the walk is done
        else:
            engine.launch_chunk(now, launch, r, take)
        budget -= take
        i += 1
    if decoders:
        _regroup(engine, launch, decoders)
    engine.idle_groups = [g for g in engine.idle_groups if len(g)]
    if not preempted:
        engine.admit(now, launch, budget)
    return engine.launch(now, launch)
