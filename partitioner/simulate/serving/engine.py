"""The discrete-event loop: vLLM-style continuous batching on a pipeline of stages.

Each iteration is formed as vLLM's v1 scheduler forms a step:

1. The running requests, oldest admitted first, each get the tokens they lack
   (a decode: 1; a partly prefilled prompt: its next chunk), while the token
   budget lasts. Their caches grow by whole KV blocks. When blocks run out, the
   most recently admitted running request is preempted (recompute: its blocks
   are freed and it goes to the front of the waiting queue; re-admitted, it
   prefills its prompt and the tokens it has generated, and emits no token
   twice), possibly the request itself, which then ends this phase (on a
   pipeline it waits instead while other iterations are in flight; see
   `ordered`).
2. Unless step 1 preempted anything, waiting requests are admitted first come,
   first served, while sequences < ``max_num_seqs``, the budget lasts and their
   first chunk's blocks are free. With chunked prefill the last one admitted may
   get a partial chunk; without it a prompt must fit the budget whole.

Pipelines: up to ``stages`` iterations are in flight. An iteration holds stage
``s`` for ``stage_seconds[s]`` once stage ``s`` is free and it has left stage
``s - 1``; a new one is formed whenever stage 0 is free and there is work. A
request is in at most one in-flight iteration (its next token depends on the
last), and an in-flight request is never chosen for preemption (vLLM v1 would
preempt it and discard its result; its blocks are in use). Tokens are emitted
when an iteration leaves the last stage. Where the stages' devices share one
memory system (CPU ranks on one host), an iteration formed while another is in
flight runs beside it and is priced with the cost's ``contended`` seconds; one
formed alone keeps the full bandwidth (though the next may overlap its end).

Rejection: a request that can never be served (its prompt plus output, less
the last token whose KV is never written, needs more blocks than the whole
cache; or, without chunked prefill, exceeds the token budget, since a
recompute would prefill that much at once) is refused on arrival and counted
in ``rejected``.

Speed: decoding requests sit in `DecodeGroup`s that advance in O(1) per
iteration, so an iteration costs O(1) plus O(1) per prefill chunk and per
request arriving, finishing or preempted. When the running requests fit the
budget and the free blocks whole (the usual case) order does not matter and
they are scheduled in bulk; otherwise `ordered.form_ordered` walks them one by
one in admission order. Stretches where a single group decodes alone (on a
pipeline, with nothing else in flight and a cost that prices runs of decode
iterations in bulk) run in `steady.steady_run`, a window of iterations at a
time. Both shortcuts give the same figures as the rules above applied literally,
to rounding (the tests compare them with a one-request-at-a-time reference).

Advancing in steps (several engines sharing a clock, `fleet`): ``run(horizon_s)``
stops at ``horizon_s`` once the iterations that complete by then have
completed, before the requests arriving then are queued and before an iteration
is formed then; `submit` hands it a request arriving at the time it stopped,
and the next ``run`` carries on from there. Stopping where nothing happens
changes nothing (a step that formed nothing, formed again with nothing changed,
forms nothing again), so an engine run in steps gives the figures of one run
over the same arrivals.
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from collections.abc import Callable

import numpy as np

from partitioner.errors import UsageError
from partitioner.simulate.serving.groups import DecodeGroup
from partitioner.simulate.serving.iteration import IterationCost, IterationShape, ServingConfig
from partitioner.simulate.serving.launch import Launch, blocks_for
from partitioner.simulate.serving.ordered import form_ordered
from partitioner.simulate.serving.recorder import Recorder
from partitioner.simulate.serving.run_prices import RunPrices, contended_prices
from partitioner.simulate.serving.stage_host import with_stage_host
from partitioner.simulate.serving.steady import steady_run
from partitioner.simulate.serving.streaming import batch_finish, row_latency, streamed_finish
from partitioner.simulate.serving.workload import Requests

__all__ = ["Engine", "DEEP_PIPELINE_STAGES"]

#: Beyond this many stages an iteration is priced with arrays (`Engine._price_deep`).
DEEP_PIPELINE_STAGES = 16


class Engine:
    """One simulation; `run` advances it to the last completion (mutable working state)."""

    def __init__(self, requests: Requests, cost: IterationCost, config: ServingConfig) -> None:
        stages = cost.stages
        if isinstance(stages, bool) or not isinstance(stages, numbers.Integral) or stages < 1:
            raise UsageError(
                f"serving: the cost model's stages must be a positive integer, got {stages!r}"
            )
        stages = int(stages)
        cost = with_stage_host(cost, config.stage_overhead_s)  # later stages' own host work
        count = len(requests)
        self.cost, self.stages, self.config = cost, stages, config
        self.block, self.budget = config.block_size_tokens, config.max_num_batched_tokens
        self.arrival_s: list[float] = requests.arrival_s.tolist()
        self.prompt: list[int] = requests.prompt_tokens.tolist()
        self.output: list[int] = requests.output_tokens.tolist()
        self.final_ctx = [p + o - 1 for p, o in zip(self.prompt, self.output, strict=True)]
        limit = config.max_num_batched_tokens if not config.chunked_prefill else math.inf
        capacity = config.kv_capacity_blocks
        self.fits = [blocks_for(c, self.block) <= capacity and c <= limit for c in self.final_ctx]
        self.generated = [0] * count
        self.ctx = [0] * count  # cache length of a request outside any group
        self.known = [0] * count  # prompt + generated, outside any group
        self.busy = [False] * count  # in flight, outside any group
        self.last_token_s = [math.nan] * count  # outside any group
        self.group_of: list[DecodeGroup | None] = [None] * count
        self.running: dict[int, None] = {}  # admission order
        self.prefilling: dict[int, None] = {}  # running and outside any group
        self.idle_groups: list[DecodeGroup] = []
        self.waiting: deque[int] = deque()
        self.in_flight: deque[tuple[float, Launch]] = deque()
        # rows stream through the stages (a wafer's regions, `streaming`): priced with arrays
        self.streams = bool(getattr(cost, "streams_rows", False))
        fixed = getattr(cost, "stage_fixed_s", None) if self.streams else None
        self.fixed_s = None if fixed is None else np.asarray(fixed, dtype=float)
        self.deep = stages > DEEP_PIPELINE_STAGES or self.streams
        self.prices = RunPrices(cost) if stages > 1 else cost  # groups taking turns
        self.contended_prices = contended_prices(cost, stages)  # stages sharing memory
        self.stage_free_s = [0.0] * stages
        if self.deep:  # priced with arrays (`_price_deep`)
            self.stage_free_s, self._lag = np.zeros(stages), np.zeros(stages)
        self.free_blocks = capacity
        self.next_arrival = 0
        self.rec = Recorder(count, stages, beside=self.contended_prices is not None)
        if self.deep:
            self.rec.stage_busy_s = np.zeros(stages)  # type: ignore[assignment]
        self.now_s = 0.0
        self.horizon_s = math.inf
        #: Called with the requests finished so far, every ``progress_every`` of them.
        self.on_progress: Callable[[int], None] | None = None
        self.progress_every, self.finished = max(count // 100, 1), 0

    def submit(self, prompt_tokens: int, output_tokens: int) -> int:
        """A request arriving now (where `run` stopped); its index in this engine."""
        final = prompt_tokens + output_tokens - 1
        limit = self.budget if not self.config.chunked_prefill else math.inf
        fits = blocks_for(final, self.block) <= self.config.kv_capacity_blocks and final <= limit
        self.arrival_s.append(self.now_s)
        self.prompt.append(prompt_tokens)
        self.output.append(output_tokens)
        self.final_ctx.append(final)
        self.fits.append(fits)
        self.generated.append(0)
        self.ctx.append(0)
        self.known.append(0)
        self.busy.append(False)
        self.last_token_s.append(math.nan)
        self.group_of.append(None)
        self.rec.add_request()
        return len(self.arrival_s) - 1

    def run(self, horizon_s: float = math.inf) -> Recorder:
        """Simulate until every admitted request has finished, or stop at ``horizon_s``
        (module doc)."""
        in_flight, arrival, stage_free = self.in_flight, self.arrival_s, self.stage_free_s
        count, now = len(arrival), self.now_s
        self.horizon_s = horizon_s
        while True:
            while in_flight and in_flight[0][0] <= now:
                self.complete(*in_flight.popleft())
            if self.next_arrival < count and arrival[self.next_arrival] <= now:
                self.arrive(now)
            work = bool(self.running or self.waiting)
            ready = now >= stage_free[0] and len(in_flight) < self.stages
            if work and ready and self.form(now):
                continue
            upcoming = in_flight[0][0] if in_flight else math.inf
            if self.next_arrival < count and arrival[self.next_arrival] < upcoming:
                upcoming = arrival[self.next_arrival]
            # stage 0 freeing matters only to work that waits for it alone
            if work and now < stage_free[0] < upcoming and len(in_flight) < self.stages:
                upcoming = stage_free[0]
            if upcoming >= horizon_s:
                if horizon_s < math.inf:
                    return self.stop(horizon_s)
                if work:
                    raise RuntimeError("serving simulation stalled with work left (a bug)")
                return self.rec
            now = upcoming

    def stop(self, horizon_s: float) -> Recorder:
        """Complete what completes by ``horizon_s`` and wait there (module doc)."""
        in_flight = self.in_flight
        while in_flight and in_flight[0][0] <= horizon_s:
            self.complete(*in_flight.popleft())
        self.now_s = horizon_s
        return self.rec

    def arrive(self, now: float) -> None:
        """Queue the requests that have arrived by ``now``; refuse those that never fit."""
        arrival, i = self.arrival_s, self.next_arrival
        while i < len(arrival) and arrival[i] <= now:
            if self.fits[i]:
                self.waiting.append(i)
            else:
                self.rec.rejected += 1
            i += 1
        self.next_arrival = i

    def allocate(self, now: float, blocks: int) -> None:
        """Take ``blocks`` KV blocks (negative: give them back) at ``now``."""
        self.free_blocks -= blocks
        self.rec.kv_change(now, blocks)

    def form(self, now: float) -> bool:
        """Schedule and launch an iteration at ``now`` (module doc); False when nothing runs."""
        groups = self.idle_groups
        if not self.prefilling and len(groups) == 1:  # the usual case, counted at once
            if steady_run(self, now):
                return True
            lacking, need, idle = len(groups[0].members), groups[0].opens(), []
        else:
            block, ctx, known = self.block, self.ctx, self.known
            idle = [r for r in self.prefilling if not self.busy[r]]
            lacking = sum(len(g) for g in groups)
            need = sum(g.opens() for g in groups)
            for r in idle:
                lacking += known[r] - ctx[r]
                need += blocks_for(known[r], block) - blocks_for(ctx[r], block)
        if lacking > self.budget or need > self.free_blocks:
            return form_ordered(self, now)
        launch = Launch()
        if groups:
            self.launch_groups(now, launch)
        for r in idle:
            self.launch_chunk(now, launch, r, self.known[r] - self.ctx[r])
        self.admit(now, launch, self.budget - lacking)
        return self.launch(now, launch)

    def launch_groups(self, now: float, launch: Launch) -> None:
        """Put every idle decode group, merged into one, in ``launch``."""
        groups, self.idle_groups = self.idle_groups, []
        base = groups[0] if len(groups) == 1 else max(groups, key=len)
        launch.cohorts = [(g.last_token_s, len(g.members)) for g in groups]
        for g in groups:
            if g is not base:
                for r in g.members:
                    self.group_of[r] = base
                base.absorb(g)
        n, before = len(base), base.context_sum()
        launch.rows += n
        launch.sequences += n
        launch.row_ctx += before + n
        launch.seq_ctx += before + n
        launch.max_ctx = max(launch.max_ctx, base.max_context() + 1)
        self.allocate(now, base.opens())
        base.counter += 1
        base.busy = True
        launch.group = base

    def launch_chunk(self, now: float, launch: Launch, request: int, take: int) -> None:
        """Give ``request`` (outside any group) a chunk of ``take`` tokens in ``launch``."""
        before = self.ctx[request]
        after = before + take
        self.allocate(now, blocks_for(after, self.block) - blocks_for(before, self.block))
        self.ctx[request] = after
        self.busy[request] = True
        launch.prefills.append(request)
        launch.add_rows(take, before)
        launch.prompt_rows += take

    def admit(self, now: float, launch: Launch, budget: int) -> None:
        """Step 2 of the module doc, with ``budget`` tokens left."""
        waiting, chunked = self.waiting, self.config.chunked_prefill
        while waiting and len(self.running) < self.config.max_num_seqs and budget > 0:
            request = waiting[0]
            known = self.prompt[request] + self.generated[request]
            take = min(known, budget)
            if (take < known and not chunked) or blocks_for(take, self.block) > self.free_blocks:
                return
            waiting.popleft()
            self.running[request] = None
            self.prefilling[request] = None
            self.ctx[request], self.known[request] = 0, known
            self.rec.scheduled(request, now)
            self.launch_chunk(now, launch, request, take)
            budget -= take

    def launch(self, now: float, launch: Launch) -> bool:
        """Price ``launch`` and put it in flight; False if it computes nothing."""
        if launch.sequences == 0:
            return False
        shape = IterationShape(
            launch.rows, launch.sequences, launch.row_ctx, launch.seq_ctx, launch.max_ctx,
            launch.fresh, launch.fresh_rows, launch.fresh_row_ctx, launch.fresh_max,
        )  # fmt: skip
        rec = self.rec
        before = float(sum(rec.stage_busy_s)) if launch.prompt_rows else 0.0
        self.in_flight.append((self.price(now, shape), launch))
        if launch.prompt_rows:  # the prompts' share of the device time, by rows
            busy = float(sum(rec.stage_busy_s)) - before
            rec.prompt_busy_s += busy * launch.prompt_rows / launch.rows
        return True

    def price(self, now: float, shape: IterationShape) -> float:
        """Run one iteration through the stages from ``now``; the time it leaves the last.
        Formed while another is in flight, its stages run beside that one's, so stages
        sharing a memory system are priced contended (the cost's ``contended``)."""
        prices = self.contended_prices if self.in_flight else None
        if prices is not None:
            self.rec.iterations_beside_another += 1  # type: ignore[operator]
        seconds = (prices or self.prices).stage_seconds(shape)
        if len(seconds) != self.stages:
            raise UsageError(
                f"serving: the cost model gave {len(seconds)} stage times for {self.stages} stages"
            )
        host_s = self.config.host_s(shape.rows)  # before the first stage, which waits for it
        if self.deep:
            t = self._price_deep(now, shape, seconds, host_s)
        else:
            t, free, busy = now, self.stage_free_s, self.rec.stage_busy_s
            for s, raw in enumerate(seconds):
                d = float(raw)
                if not 0.0 <= d < math.inf:
                    raise UsageError(
                        f"serving: the cost model priced stage {s} at {raw!r} s for {shape}"
                    )
                t = (t if t > free[s] else free[s]) + d + host_s
                free[s] = t
                busy[s] += d
                host_s = 0.0
        self.rec.iterations += 1
        self.rec.batched_sequences += shape.sequences
        return t

    def _price_deep(
        self, now: float, shape: IterationShape, seconds: object, host_s: float
    ) -> float:
        """`price` for a deep pipeline (a wafer's regions), with arrays (`streaming`)."""
        d = np.asarray(seconds, dtype=float)
        total = np.cumsum(d)  # finite with every d >= 0 only if each d is (a NaN fails >=)
        if not (d.min() >= 0.0 and total[-1] < math.inf):
            s = int(np.argmax(~((d >= 0.0) & np.isfinite(d))))
            raise UsageError(f"serving: the cost model priced stage {s} at {d[s]!r} s for {shape}")
        free = self.stage_free_s  # arrays, made so in __init__; updated in place (run aliases it)
        if self.streams and shape.rows > 1:
            per_row = row_latency(d, self.fixed_s, shape.rows)
            free[:] = streamed_finish(free, d, per_row, now + host_s)
            self.rec.stage_busy_s += d
            return float(free[-1])
        if host_s:
            total += host_s  # the host's part holds the first stage, so every later one
        batch_finish(free, total, now, self._lag)
        self.rec.stage_busy_s += d
        return float(free[-1])

    def complete(self, done_s: float, launch: Launch) -> None:
        """``launch`` left the last stage at ``done_s``: emit tokens, retire finished requests."""
        rec, group = self.rec, launch.group
        if group is not None:
            for last_s, count in launch.cohorts:
                rec.repeated_gap(done_s - last_s, count)
            for r in group.finished():
                self.finish(done_s, r, self.final_ctx[r])
        decoding = []
        for r in launch.prefills:
            self.busy[r] = False
            if self.ctx[r] < self.known[r]:
                continue  # a partial chunk: no token yet
            before = self.generated[r]
            if before == 0:
                rec.first_token_s[r] = done_s
            else:  # the first token after a recompute
                rec.repeated_gap(done_s - self.last_token_s[r], 1)
            self.generated[r] = before + 1
            self.known[r] += 1
            if before + 1 == self.output[r]:
                self.finish(done_s, r, self.ctx[r])
            else:
                del self.prefilling[r]
                decoding.append(r)
        if decoding and group is None:
            group = DecodeGroup(self.block, self.final_ctx)
        for r in decoding:
            group.add(r, self.ctx[r])
            self.group_of[r] = group
        if group is not None:
            group.busy, group.last_token_s = False, done_s
            if len(group):
                self.idle_groups.append(group)

    def finish(self, done_s: float, request: int, ctx: int) -> None:
        """``request`` emitted its last token at ``done_s``; free its ``ctx`` tokens of cache."""
        self.rec.finish_s[request] = done_s
        self.finished += 1
        if self.on_progress is not None and self.finished % self.progress_every == 0:
            self.on_progress(self.finished)
        del self.running[request]
        self.prefilling.pop(request, None)
        self.group_of[request] = None
        self.allocate(done_s, -blocks_for(ctx, self.block))
