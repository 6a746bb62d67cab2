"""The real serving loop of bench/serving_fidelity.py, and the same loop on a virtual clock.

The rules the loop keeps to (what the simulator prices) are in serving_fidelity.py's doc.
"""

from __future__ import annotations

import gc
import math
import time
from collections import deque
from collections.abc import Callable, Container
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partitioner.simulate.serving import IterationShape, Requests, ServingConfig
from partitioner.simulate.serving.recorder import Recorder

__all__ = ["Iteration", "PricedEngine", "RealEngine", "session", "arrive", "form_schedule", "shape_of",
           "MAX_CONTEXT", "PROMPT_TOKENS", "OUTPUT_TOKENS", "MAX_BATCH", "TOKEN_BUDGET", "SEED"]  # fmt: skip

PROMPT_TOKENS, OUTPUT_TOKENS = 32, 32
MAX_CONTEXT = PROMPT_TOKENS + OUTPUT_TOKENS - 1  # the last token's KV is never written
MAX_BATCH, TOKEN_BUDGET, SEED = 16, 64, 7
VOCAB, LAYERS, KV_HEADS, HEAD_DIM = 256, 2, 2, 16  # examples.llama "tiny"


@dataclass(frozen=True)
class Iteration:
    """One real iteration: what it computed and how long it took."""

    shape: IterationShape  # as the simulator's engine counts it
    past: int  # the graph's padded ``past`` dim
    run_s: float  # inside session.run
    total_s: float  # forming, gathering, running, writing back, bookkeeping


def session(model: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()  # as a `partition run` rank's, one thread
    options.log_severity_level, options.intra_op_num_threads = 3, 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def arrive(loop, now: float) -> None:
    """Queue a serving loop's requests that have arrived by ``now``."""
    arrival, i = loop.arrival_s, loop.next_arrival
    while i < len(arrival) and arrival[i] <= now:
        loop.waiting.append(i)
        i += 1
    loop.next_arrival = i


def form_schedule(loop, now: float, busy: Container[int] = ()) -> list[tuple[int, int]]:
    """(request, tokens) of a loop's next iteration by the engine's rules: the running
    requests not ``busy`` (in an iteration in flight), oldest admitted first, get what
    they lack while the token budget lasts, then waiting ones are admitted FCFS while
    sequences < max batch and budget is left. ``loop``: a serving loop's state (running,
    waiting, generated, prompt, ctx, slot, free_slots, rec)."""
    budget, schedule = TOKEN_BUDGET, []
    for r in loop.running:
        if budget <= 0:
            break
        if r in busy:
            continue
        take = min(1 if loop.generated[r] else loop.prompt[r] - loop.ctx[r], budget)
        schedule.append((r, take))
        budget -= take
    while loop.waiting and len(loop.running) < MAX_BATCH and budget > 0:
        r = loop.waiting.popleft()
        take = min(loop.prompt[r], budget)
        loop.running[r] = None
        loop.slot[r] = loop.free_slots.pop()
        loop.rec.scheduled(r, now)
        schedule.append((r, take))
        budget -= take
    return schedule


def shape_of(ctx: list[int], schedule: list[tuple[int, int]],
             fresh: Callable[[int], bool]) -> IterationShape:  # fmt: skip
    """An iteration as the simulator's engine counts it (iteration.py's definitions);
    ``fresh``: whether a request's chunk goes to the prefill graph."""
    rows = row_ctx = seq_ctx = max_ctx = 0
    p_seqs = p_rows = p_row_ctx = p_max = 0
    for r, take in schedule:
        before = ctx[r]
        rows += take
        row_ctx += take * before + take * (take + 1) // 2
        seq_ctx += before + take
        max_ctx = max(max_ctx, before + take)
        if fresh(r):
            p_seqs, p_rows, p_max = p_seqs + 1, p_rows + take, max(p_max, take)
            p_row_ctx += take * (take + 1) // 2
    return IterationShape(rows, len(schedule), row_ctx, seq_ctx, max_ctx, p_seqs, p_rows,
                          p_row_ctx, p_max)  # fmt: skip


class RealEngine:
    """Serves ``requests`` in wall-clock time (serving_fidelity.py's rules): every row on the
    decode graph ``sess``, or with a ``prefill`` session (``two_graphs``), each chunk that
    starts an empty cache on the prefill graph and the other rows on the decode graph."""

    def __init__(self, sess, requests: Requests, spin: bool = True, prefill=None,
                 two_graphs: bool | None = None) -> None:  # fmt: skip
        self.sess, self.spin, self.prefill = sess, spin, prefill
        self.two_graphs = prefill is not None if two_graphs is None else two_graphs
        self.names = [o.name for o in sess.get_outputs()] if sess is not None else []
        self.prefill_names = [o.name for o in prefill.get_outputs()] if prefill else []
        self.arrival_s = requests.arrival_s.tolist()
        self.prompt, self.output = requests.prompt_tokens.tolist(), requests.output_tokens.tolist()
        count = len(self.arrival_s)
        prompt_ids = np.random.default_rng(SEED).integers(0, VOCAB, (count, PROMPT_TOKENS))
        self.prompt_ids = prompt_ids.tolist()
        self.ctx, self.generated = [0] * count, [0] * count
        self.token, self.slot = [0] * count, [0] * count
        self.last_token_s = [math.nan] * count
        self.running: dict[int, None] = {}  # admission order
        self.waiting: deque[int] = deque()
        self.free_slots = list(range(MAX_BATCH - 1, -1, -1))
        # per (layer, key|value), per slot: [kv heads, context, head dim]
        self.cache = np.zeros((2 * LAYERS, MAX_BATCH, KV_HEADS, MAX_CONTEXT, HEAD_DIM), np.float32)
        # the batch's padded pasts are gathered here: fresh arrays each iteration would
        # page-fault their way in, which is no part of serving
        self.pasts = np.zeros(self.cache[:, :1].size * TOKEN_BUDGET, np.float32)
        self.rec = Recorder(count, 1)
        self.trace: list[Iteration] = []
        self.tokens: dict[int, int] = {}  # the last iteration's next token, per request
        self.next_arrival, self.t0 = 0, 0.0

    def clock(self) -> float:
        return time.perf_counter() - self.t0

    def serve(self) -> Recorder:
        self.warm_up()
        count, finished = len(self.arrival_s), 0
        gc.collect()
        gc.disable()  # a collection pause is no part of what the simulator prices
        self.t0 = time.perf_counter()
        while finished < count:
            start = self.clock()
            self.arrive(start)
            if not self.running and not self.waiting:
                self.wait_until(self.arrival_s[self.next_arrival])
                continue
            schedule = self.form(start)
            done_s, shape, past, run_s = self.step(schedule)
            finished += self.complete(schedule, done_s)
            self.trace.append(Iteration(shape, past, run_s, self.clock() - start))
        gc.enable()
        self.rec.stage_busy_s[0] = sum(it.run_s for it in self.trace)  # the graph's time
        return self.rec

    def warm_up(self) -> None:
        """Run the largest shapes once, so onnxruntime's buffers exist before the clock."""
        for rows, past in ((1, 1), (TOKEN_BUDGET, MAX_CONTEXT - 1), (MAX_BATCH, MAX_CONTEXT - 1)):
            self.run_graph(np.zeros(rows, np.int64), np.zeros(rows, np.int64),
                           np.zeros(rows, np.intp), past)  # fmt: skip
        if self.two_graphs:  # into slot 0's cache, which every admission overwrites
            for batch in (1, TOKEN_BUDGET // PROMPT_TOKENS):
                self.run_prefill([(r, PROMPT_TOKENS) for r in range(batch)])

    def wait_until(self, arrival_s: float) -> None:
        """Wait for ``arrival_s``: spin (``spin``, as a polling serving loop waits), or sleep
        to just before it and then spin (a sleep overshoots by ~0.1 ms). On this VM a core
        that sleeps is descheduled and the next ``session.run`` starts cold, up to 0.5 ms
        slower (bench/idle_wake.py): a cost of the machine, which the simulator leaves out."""
        while (left := arrival_s - self.clock()) > 0:
            if left > 2e-3 and not self.spin:
                time.sleep(left - 1e-3)

    def arrive(self, now: float) -> None:
        arrive(self, now)

    def form(self, now: float) -> list[tuple[int, int]]:
        """(request, tokens) of the next iteration: running ones first, then admissions."""
        return form_schedule(self, now)

    def fresh(self, r: int) -> bool:
        """Whether request ``r``'s chunk goes to the prefill graph (it starts an empty cache)."""
        return self.two_graphs and self.ctx[r] == 0

    def shape_of(self, schedule: list[tuple[int, int]]) -> IterationShape:
        """The iteration as the simulator's engine counts it (iteration.py's definitions)."""
        return shape_of(self.ctx, schedule, self.fresh)

    def step(self, schedule: list[tuple[int, int]]) -> tuple[float, IterationShape, int, float]:
        """Run one iteration; when it ended, its shape, the decode pass's padded past and the
        seconds in ``session.run``."""
        shape, run_s, past = self.shape_of(schedule), 0.0, 0
        fresh = [(r, take) for r, take in schedule if self.fresh(r)]
        rest = [(r, take) for r, take in schedule if not self.fresh(r)]
        self.tokens = {}
        if fresh:
            run_s += self.run_prefill(fresh)
        if rest:
            ids, pos, slots = [], [], []  # per row
            for r, take in rest:
                before = self.ctx[r]
                if self.generated[r]:
                    ids.append(self.token[r])
                else:
                    ids.extend(self.prompt_ids[r][before : before + take])
                pos.extend(range(before, before + take))
                slots.extend([self.slot[r]] * take)
            past = max(self.ctx[r] + take for r, take in rest) - 1
            tokens, seconds = self.run_graph(np.array(ids, np.int64), np.array(pos, np.int64),
                                             np.array(slots, np.intp), past)  # fmt: skip
            run_s, k = run_s + seconds, 0
            for r, take in rest:
                k += take
                self.tokens[r] = tokens[k - 1]
        return self.clock(), shape, past, run_s

    def run_prefill(self, fresh: list[tuple[int, int]]) -> float:
        """One session.run of the prefill graph on the chunks that start an empty cache, each
        padded to the longest; their caches written back, their next tokens kept; seconds."""
        seq = max(take for _, take in fresh)
        ids = np.zeros((len(fresh), seq), np.int64)
        for b, (r, take) in enumerate(fresh):
            ids[b, :take] = self.prompt_ids[r][:take]
        feeds = {"input_ids": ids, "position_ids": np.tile(np.arange(seq), (len(fresh), 1))}
        start = time.perf_counter()
        logits, *present = self.prefill.run(self.prefill_names, feeds)
        run_s = time.perf_counter() - start
        for b, (r, take) in enumerate(fresh):
            for j, kv in enumerate(present):  # key, value per layer: [batch, heads, seq, dim]
                self.cache[j, self.slot[r], :, :take] = kv[b, :, :take]
            self.tokens[r] = int(logits[b, take - 1].argmax())
        return run_s

    def run_graph(self, ids, pos, slots, past: int) -> tuple[list[int], float]:
        """One session.run on ``past``-long padded caches; the next token of every row."""
        feeds = {"input_ids": ids[:, None], "position_ids": pos[:, None]}
        shape = (2 * LAYERS, len(ids), KV_HEADS, past, HEAD_DIM)
        pasts = self.pasts[: math.prod(shape)].reshape(shape)
        np.take(self.cache[:, :, :, :past], slots, axis=1, out=pasts, mode="clip")  # unbuffered
        for j in range(2 * LAYERS):
            feeds[f"past.{j // 2}.{'value' if j % 2 else 'key'}"] = pasts[j]
        start = time.perf_counter()
        logits, *present = self.sess.run(self.names, feeds)
        run_s = time.perf_counter() - start
        for j, kv in enumerate(present):  # key, value per layer; a row's new token is last
            self.cache[j, slots, :, pos, :] = kv[:, :, past]
        return logits[:, 0, :].argmax(axis=-1).tolist(), run_s

    def complete(self, schedule: list[tuple[int, int]], done_s: float) -> int:
        """Emit the iteration's tokens at ``done_s``; how many requests finished."""
        finished = 0
        for r, take in schedule:
            self.ctx[r] += take
            if not self.generated[r] and self.ctx[r] < self.prompt[r]:
                continue  # a partial chunk: no token yet
            if self.generated[r]:
                self.rec.repeated_gap(done_s - self.last_token_s[r], 1)
            else:
                self.rec.first_token_s[r] = done_s
            self.token[r], self.last_token_s[r] = self.tokens[r], done_s
            self.generated[r] += 1
            if self.generated[r] == self.output[r]:
                self.rec.finish_s[r] = done_s
                del self.running[r]
                self.free_slots.append(self.slot[r])
                finished += 1
        self.rec.iterations += 1
        self.rec.batched_sequences += len(schedule)
        return finished


class PricedEngine(RealEngine):
    """The same loop on a virtual clock that each iteration advances by the plan's price
    of it and the host work given to simulate (seconds per iteration and per token), the
    graph not run: its report must be `partition simulate`'s, which shows that the real
    loop schedules as the simulator's engine does."""

    def __init__(self, requests: Requests, cost, host_s: tuple[float, float],
                 two_graphs: bool = False) -> None:  # fmt: skip
        super().__init__(None, requests, two_graphs=two_graphs)
        # the simulator's own host formula, on a config whose KV capacity is never reached
        self.host = ServingConfig(MAX_BATCH * MAX_CONTEXT, iteration_overhead_s=host_s[0],
                                  token_overhead_s=host_s[1])  # fmt: skip
        self.cost, self.now = cost, 0.0

    def clock(self) -> float:
        return self.now

    def wait_until(self, arrival_s: float) -> None:
        self.now = max(self.now, arrival_s)

    def warm_up(self) -> None: ...

    def run_graph(self, ids, pos, slots, past: int) -> tuple[list[int], float]:
        return [0] * len(ids), 0.0

    def run_prefill(self, fresh: list[tuple[int, int]]) -> float:
        self.tokens.update((r, 0) for r, _ in fresh)
        return 0.0

    def step(self, schedule: list[tuple[int, int]]) -> tuple[float, IterationShape, int, float]:
        _, shape, past, run_s = super().step(schedule)
        self.now += self.cost.stage_seconds(shape)[0] + self.host.host_s(shape.rows)
        return self.now, shape, past, run_s
