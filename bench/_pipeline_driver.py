"""Rank 0 of bench/serving_pipeline.py's real two-stage loop: the scheduler and stage 0
(the protocol is in `_pipeline_ranks`), and the two ranks started once for every serve."""

from __future__ import annotations

import gc
import socket
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from bench._pipeline_ranks import (
    FRESH_AT,
    HEADER,
    LAST_AT,
    ROWS_AT,
    STOP,
    Crossing,
    Shared,
    StageFiles,
    StageRank,
    StageTimes,
    finish_send,
    post_shapes,
    read_shapes,
    send,
    shape_rules,
    shapes_at,
    start_send,
    worker_main,
)  # fmt: skip
from bench._pipeline_sched import STAGES, Formed, Scheduler
from bench._serving_loop import MAX_BATCH, PROMPT_TOKENS, SEED
from partitioner.simulate.serving import IterationShape, Requests
from partitioner.simulate.serving.recorder import Recorder

__all__ = ["Ranks", "Served"]


@dataclass(frozen=True)
class Served:
    """One real iteration: its shape as the engine counts it and its seconds per stage
    (stage 0's total: from the loop's top, completions and forming included, to its
    last send; its host work is that less ``run_s`` and ``move_s``)."""

    shape: IterationShape
    stages: tuple[StageTimes, StageTimes]


class Driver:
    """Rank 0: forms iterations, computes stage 0, sends its activations, emits tokens."""

    def __init__(self, stage: StageRank, shared: Shared, crossing: Crossing, vocab: int) -> None:
        self.stage, self.shared, self.crossing, self.vocab = stage, shared, crossing, vocab
        self.k = 0  # iterations posted, over every serve (the shared counters go on)
        self.rules = shape_rules(stage, crossing)

    def serve(self, requests: Requests) -> tuple[Recorder, list[Served]]:
        count = len(requests)
        sched = Scheduler(requests)
        self.prompt_ids = np.random.default_rng(SEED).integers(
            0, self.vocab, (count, PROMPT_TOKENS)
        )
        self.token = [0] * count
        ints, in_flight, trace = self.shared.ints, deque(), []
        gc.collect()
        gc.disable()  # a collection pause is no part of what the simulator prices
        t0 = time.perf_counter()
        while not sched.done:
            start = time.perf_counter() - t0
            while in_flight and ints[0] > in_flight[0][0]:
                trace.append(self.complete(sched, *in_flight.popleft(), t0))
            sched.arrive(start)
            if sched.has_work() and len(in_flight) < STAGES:
                formed = sched.form(start)
                if formed is not None:
                    run_s, send_s = self.stage_zero(sched, formed)
                    total_s = time.perf_counter() - t0 - start
                    in_flight.append((self.k, formed, StageTimes(run_s, send_s, total_s)))
                    self.k += 1
                    continue
            if not sched.done:
                _wait(ints, in_flight[0][0] if in_flight else None, sched.next_arrival_s() + t0)
        gc.enable()
        for s in range(STAGES):
            sched.rec.stage_busy_s[s] = sum(it.stages[s].run_s + (it.stages[s].move_s if s == 0 else 0.0)
                                            for it in trace)  # fmt: skip
        return sched.rec, trace

    def complete(self, sched: Scheduler, k: int, formed: Formed, zero: StageTimes,
                 t0: float) -> Served:  # fmt: skip
        tokens, floats = self.shared.result(k)
        for i, (r, _) in enumerate((*formed.fresh, *formed.rest)):
            self.token[r] = int(tokens[i])
        sched.complete(formed, float(floats[0]) - t0)
        return Served(formed.shape, (zero, StageTimes(float(floats[2]), float(floats[1]),
                                                      float(floats[3]))))  # fmt: skip

    def stage_zero(self, sched: Scheduler, formed: Formed) -> tuple[float, float]:
        """Stage 0's passes and its activations sent: (run, send) seconds. The layout goes
        first, before stage 0 computes (it is known once the iteration is formed), so rank 1
        posts the activations' receives while stage 0 computes and they go in one message
        time, as a transfer is priced (a gloo send waits for its receive to be posted)."""
        h = np.zeros(HEADER, np.int64)
        prefill = self.prefill_layout(sched, formed, h) if formed.fresh else None
        decode = self.decode_layout(sched, formed, h) if formed.rest else None
        layout = start_send([h])
        run_s, sent = 0.0, []
        if prefill is not None:
            out, seconds = self.stage.run_prefill(*prefill)
            run_s += seconds
            sent += self.checked(out, self.crossing.prefill, h, 0)
        if decode is not None:
            out, seconds = self.stage.run_decode(*decode)
            run_s += seconds
            sent += self.checked(out, self.crossing.decode, h, 1)
        start = time.perf_counter()
        finish_send(layout + start_send(sent))
        return run_s, time.perf_counter() - start

    def prefill_layout(self, sched: Scheduler, formed: Formed, h: np.ndarray):
        """The prefill pass's inputs and chunks; its layout and activations' shapes in ``h``."""
        seq = max(take for _, take in formed.fresh)
        ids = np.zeros((len(formed.fresh), seq), np.int64)
        for b, (r, take) in enumerate(formed.fresh):
            ids[b, :take] = self.prompt_ids[r, :take]
            h[FRESH_AT + 2 * b : FRESH_AT + 2 * b + 2] = (sched.slot[r], take)
        feeds = {"input_ids": ids, "position_ids": np.tile(np.arange(seq), (len(ids), 1))}
        h[0], h[1] = len(formed.fresh), seq
        post_shapes(h, 0, shapes_at(self.rules[0], len(ids), seq))
        return feeds, [(sched.slot[r], take) for r, take in formed.fresh]

    def decode_layout(self, sched: Scheduler, formed: Formed, h: np.ndarray):
        """The decode pass's inputs over every row not in the prefill pass; the rows' layout
        and activations' shapes in ``h``."""
        ids, pos, slots, last = [], [], [], []
        for r, take in formed.rest:
            before = sched.ctx[r]
            if sched.generated[r]:
                ids.append(self.token[r])
            else:
                ids.extend(self.prompt_ids[r, before : before + take].tolist())
            pos.extend(range(before, before + take))
            slots.extend([sched.slot[r]] * take)
            last.append(len(ids) - 1)
        rows = len(ids)
        h[ROWS_AT : ROWS_AT + 2 * rows] = np.column_stack((slots, pos)).reshape(-1)
        h[LAST_AT : LAST_AT + len(last)] = last
        h[2], h[4] = rows, len(last)
        past = max(sched.ctx[r] + take for r, take in formed.rest) - 1
        h[3] = past
        post_shapes(h, 1, shapes_at(self.rules[1], rows, 1))
        feeds = {"input_ids": np.array(ids, np.int64)[:, None],
                 "position_ids": np.array(pos, np.int64)[:, None]}  # fmt: skip
        return feeds, np.array(slots, np.intp), np.array(pos), past

    @staticmethod
    def checked(out: dict, names: tuple[str, ...], h: np.ndarray, pass_index: int) -> list:
        """The pass's activations for rank 1, each the shape its layout announced."""
        arrays = [out[name] for name in names]
        announced = read_shapes(h, pass_index, len(names))
        if [a.shape for a in arrays] != announced:
            raise RuntimeError(f"stage 0 computed {[a.shape for a in arrays]}, announced "
                               f"{announced}")  # fmt: skip
        return arrays


def _wait(ints: np.ndarray, first: int | None, deadline_s: float) -> None:
    """Poll until iteration ``first``'s tokens are posted (None: nothing is in flight) or
    the clock reaches ``deadline_s``, letting gloo's threads have the core between polls."""
    while (first is None or ints[0] <= first) and time.perf_counter() < deadline_s:
        time.sleep(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ranks:
    """Rank 1 in a process of its own and rank 0 here, for as many serves as asked."""

    def __init__(self, stage0: StageFiles, stage1: StageFiles, crossing: Crossing,
                 vocab: int) -> None:  # fmt: skip
        import multiprocessing

        import torch.distributed as dist

        self.shared, port = Shared(), _free_port()
        spawn = multiprocessing.get_context("spawn")
        self.worker = spawn.Process(target=worker_main, daemon=True,
                                    args=(self.shared.shm.name, port, stage1, crossing))  # fmt: skip
        self.worker.start()
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0,
                                world_size=2)  # fmt: skip
        self.driver = Driver(StageRank(stage0), self.shared, crossing, vocab)
        dist.barrier()

    def serve(self, requests: Requests) -> tuple[Recorder, list[Served]]:
        """Serve ``requests`` for real, after an untimed serve of the largest shapes."""
        self.driver.serve(_warm_up())
        return self.driver.serve(requests)

    def close(self) -> None:
        import torch.distributed as dist

        stop = np.zeros(HEADER, np.int64)
        stop[0] = STOP
        send([stop])
        self.worker.join(timeout=60)
        dist.destroy_process_group()
        self.shared.close(unlink=True)


def _warm_up() -> Requests:
    """Twice the max batch at once: full budgets of prompt chunks, then full decode batches."""
    count = 2 * MAX_BATCH
    return Requests(np.zeros(count), np.full(count, PROMPT_TOKENS), np.full(count, 4))
