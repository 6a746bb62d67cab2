"""The real two-stage serving loop of bench/serving_pipeline.py: two torch.distributed
gloo ranks, one per stage, each with its stage's decode and prefill files and its layers'
KV cache.

Rank 0 schedules (`_pipeline_sched.Scheduler`) and computes stage 0; rank 1 computes
stage 1 and posts each iteration's next tokens. Everything rank 0 hands rank 1 goes by
gloo, as `partition run` sends it (one batch of isends, waited for: the stage holds until
its activations are out, as the plan prices it): first the iteration's layout (rows,
slots, positions, the activations' shapes: a fixed-size int64 message), posted as soon as
the iteration is formed, before stage 0 computes it, then the activations. Rank 1
receives on a thread of its own, so that its receives are posted while either rank
computes, as a runtime overlapping transfers with compute does. A gloo send completes
only once its receive is posted, so activations whose receives were posted only when
their layout came waited for a round trip more than the one message their transfer is
priced at: a layout and 8 KiB of activations sent together took 370 µs (median, rank 1
idle), where calibrate measures 55-90 µs a message on this VM. The tokens come back through
shared memory, which rank 0 polls, because it also waits for arrivals and a gloo receive
cannot be polled; with them comes the time rank 1 had them, the token's time (one
monotonic clock for both processes).

Per iteration, each stage runs its prefill pass (the chunks starting an empty cache, in
one ``[chunks, longest]`` batch) and then its decode pass (every other row, on caches
padded to the longest), and rank 0 sends both passes' activations after both: the stage
holds the whole iteration, as `simulate` prices a plan with a prefill file.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

from bench._serving_loop import MAX_BATCH, MAX_CONTEXT, TOKEN_BUDGET, session

__all__ = [
    "StageFiles",
    "StageRank",
    "StageTimes",
    "Shared",
    "Crossing",
    "send",
    "start_send",
    "finish_send",
    "shape_rules",
    "shapes_at",
    "post_shapes",
    "read_shapes",
    "worker_main",
]

MAX_TENSORS, MAX_DIMS = 8, 6
# where each part of a header starts: counts (5), fresh chunks (slot, take), rest rows (slot, pos),
# the rest sequences' last rows, then each pass's tensor shapes
FRESH_AT, ROWS_AT = 5, 5 + 2 * MAX_BATCH
LAST_AT = ROWS_AT + 2 * TOKEN_BUDGET
SHAPES_AT = LAST_AT + MAX_BATCH
HEADER = SHAPES_AT + 2 * MAX_TENSORS * MAX_DIMS
STOP = -1  # a header's first count that ends rank 1
RESULT = 2 * MAX_BATCH
CONTROL = 1  # results posted
INTS = CONTROL + 2 * RESULT
FLOATS = 2 * 4  # per result slot: done, receive, session.run, total seconds


@dataclass(frozen=True)
class StageFiles:
    decode: Path
    prefill: Path


@dataclass(frozen=True)
class StageTimes:
    """One iteration's seconds on a stage: in ``session.run``, moving activations (rank 0
    sending; rank 1 waiting for them once it is free to compute them), and all of it."""

    run_s: float
    move_s: float
    total_s: float


class Shared:
    """The results rank 1 posts and rank 0 polls (module doc)."""

    def __init__(self, name: str | None = None) -> None:
        size = INTS * 8 + FLOATS * 8
        self.shm = shared_memory.SharedMemory(name=name, create=name is None, size=size)
        self.ints = np.ndarray((INTS,), np.int64, self.shm.buf)
        self.floats = np.ndarray((FLOATS,), np.float64, self.shm.buf, offset=INTS * 8)
        if name is None:
            self.ints[:], self.floats[:] = 0, 0.0

    def result(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        start = CONTROL + (k % 2) * RESULT
        return self.ints[start : start + RESULT], self.floats[(k % 2) * 4 : (k % 2) * 4 + 4]

    def close(self, unlink: bool = False) -> None:
        del self.ints, self.floats
        self.shm.close()
        if unlink:
            self.shm.unlink()


class StageRank:
    """One rank's stage: its two sessions, its layers' KV cache, and its two passes."""

    def __init__(self, files: StageFiles) -> None:
        self.decode, self.prefill = session(files.decode), session(files.prefill)
        past = [i for i in self.decode.get_inputs() if i.name.startswith("past.")]
        self.layers = sorted({int(i.name.split(".")[1]) for i in past})
        _, heads, _, dim = past[0].shape
        self.cache = np.zeros((2 * len(self.layers), MAX_BATCH, heads, MAX_CONTEXT, dim),
                              np.float32)  # fmt: skip
        self.pasts = np.zeros(self.cache[:, :1].size * TOKEN_BUDGET, np.float32)
        self.decode_out = [o.name for o in self.decode.get_outputs()]
        self.prefill_out = [o.name for o in self.prefill.get_outputs()]

    @staticmethod
    def token_inputs(sess, positions: np.ndarray) -> dict[str, np.ndarray]:
        """The model's token inputs a later stage's file takes for their shape alone (its
        attention mask is sized by them): token ids as zeros, and the positions."""
        names = {i.name for i in sess.get_inputs()}
        feeds = {"input_ids": np.zeros(positions.shape, np.int64),
                 "position_ids": positions.astype(np.int64)}  # fmt: skip
        return {k: v for k, v in feeds.items() if k in names}

    def cache_index(self, name: str) -> int:
        """Where ``past.L.key`` / ``present.L.value`` lives in this rank's cache."""
        _, layer, kind = name.split(".")
        return 2 * self.layers.index(int(layer)) + (kind == "value")

    def run_prefill(self, feeds: dict, chunks: list[tuple[int, int]]) -> tuple[dict, float]:
        """The prefill pass; its presents written to the chunks' slots; (outputs, seconds)."""
        start = time.perf_counter()
        out = dict(zip(self.prefill_out, self.prefill.run(self.prefill_out, feeds), strict=True))
        run_s = time.perf_counter() - start
        for name, kv in out.items():
            if name.startswith("present."):
                j = self.cache_index(name)
                for b, (slot, take) in enumerate(chunks):
                    self.cache[j, slot, :, :take] = kv[b, :, :take]
        return out, run_s

    def run_decode(self, feeds: dict, slots: np.ndarray, pos: np.ndarray,
                   past: int) -> tuple[dict, float]:  # fmt: skip
        """The decode pass on caches padded to ``past``; each row's new key and value
        written at its position; (outputs, seconds)."""
        shape = (len(self.cache), len(slots), *self.cache.shape[2:3], past, self.cache.shape[4])
        pasts = self.pasts[: math.prod(shape)].reshape(shape)
        for i, slot in enumerate(slots.tolist()):  # 3x np.take's speed on this strided slice
            pasts[:, i] = self.cache[:, slot, :, :past]
        for name in (i.name for i in self.decode.get_inputs() if i.name.startswith("past.")):
            feeds[name] = pasts[self.cache_index(name)]
        start = time.perf_counter()
        out = dict(zip(self.decode_out, self.decode.run(self.decode_out, feeds), strict=True))
        run_s = time.perf_counter() - start
        for name, kv in out.items():
            if name.startswith("present."):
                self.cache[self.cache_index(name), slots, :, pos, :] = kv[:, :, past]
        return out, run_s


def start_send(arrays: list[np.ndarray]) -> list:
    """Post sends of ``arrays`` to rank 1 as `partition run`'s ranks do, one batch of
    isends; their works, to wait for with `finish_send`."""
    import torch
    import torch.distributed as dist

    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    return dist.batch_isend_irecv([dist.P2POp(dist.isend, t, 1) for t in tensors])


def finish_send(works: list) -> None:
    """Wait for posted sends: the stage holds until its activations are out, as the plan
    prices it."""
    for work in works:
        work.wait()


def send(arrays: list[np.ndarray]) -> None:
    """Send ``arrays`` to rank 1 and wait for them."""
    finish_send(start_send(arrays))


def _recv(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Fill ``arrays`` from rank 0: one batch of irecvs."""
    import torch
    import torch.distributed as dist

    ops = [dist.P2POp(dist.irecv, torch.from_numpy(a), 0) for a in arrays]
    for work in dist.batch_isend_irecv(ops):
        work.wait()
    return arrays


def read_shapes(header: np.ndarray, pass_index: int, count: int) -> list[tuple[int, ...]]:
    """The activations' shapes a layout announces for one pass."""
    start = SHAPES_AT + pass_index * MAX_TENSORS * MAX_DIMS
    dims = header[start : start + count * MAX_DIMS].reshape(count, MAX_DIMS)
    return [tuple(int(d) for d in row if d >= 0) for row in dims]


def post_shapes(header: np.ndarray, pass_index: int, shapes: list[tuple[int, ...]]) -> None:
    """Announce one pass's activations' shapes in its layout."""
    start = SHAPES_AT + pass_index * MAX_TENSORS * MAX_DIMS
    for t, shape in enumerate(shapes):
        if len(shape) > MAX_DIMS:
            raise ValueError(f"an activation of shape {shape}: more than {MAX_DIMS} dims")
        row = header[start + t * MAX_DIMS : start + (t + 1) * MAX_DIMS]
        row[:] = -1
        row[: len(shape)] = shape


#: Batch and sequence sizes of the probe `shape_rules` runs: no fixed dim of the model's
#: activations equals either, so each dim of what comes out tells which it is.
PROBE_BATCH, PROBE_SEQ = 3, 5
BATCH, SEQ = -1, -2  # a rule's dims standing for the pass's batch and sequence


def shape_rules(stage: StageRank, crossing: Crossing) -> tuple[list, list]:
    """Each activation's shape as a rule of its pass's (batch, seq), per pass (prefill,
    decode): stage 0 run once on a probe, its fixed dims kept, the probe's sizes named."""
    ids = np.zeros((PROBE_BATCH, PROBE_SEQ), np.int64)
    feeds = {"input_ids": ids, "position_ids": np.tile(np.arange(PROBE_SEQ), (PROBE_BATCH, 1))}
    prefill = stage.prefill.run(list(crossing.prefill), feeds)
    one = {k: v[:, :1] for k, v in feeds.items()}
    for i in stage.decode.get_inputs():
        if i.name.startswith("past."):
            _, heads, _, dim = i.shape
            one[i.name] = np.zeros((PROBE_BATCH, heads, PROBE_SEQ, dim), np.float32)
    decode = stage.decode.run(list(crossing.decode), one)
    named = {PROBE_BATCH: BATCH, PROBE_SEQ: SEQ}
    for a in (*prefill, *decode):
        if a.dtype != np.float32:
            raise ValueError(f"an activation of {a.dtype}: the bench sends float32")
    return ([tuple(named.get(d, d) for d in a.shape) for a in prefill],
            [tuple(named.get(d, d) for d in a.shape) for a in decode])  # fmt: skip


def shapes_at(rules: list, batch: int, seq: int) -> list[tuple[int, ...]]:
    """`shape_rules`' shapes at a pass's ``batch`` and ``seq``."""
    sizes = {BATCH: batch, SEQ: seq}
    return [tuple(sizes.get(d, d) for d in rule) for rule in rules]


@dataclass(frozen=True)
class Crossing:
    """The activations stage 1 receives, per pass, in the order its files take them."""

    prefill: tuple[str, ...]
    decode: tuple[str, ...]


def worker_main(shm_name: str, port: int, files: StageFiles, crossing: Crossing) -> None:
    """Rank 1: compute each iteration the receiving thread hands over, post the tokens."""
    import queue
    import threading

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=1, world_size=2)
    shared, stage = Shared(shm_name), StageRank(files)
    received: queue.Queue = queue.Queue()
    threading.Thread(target=_receive, args=(crossing, received), daemon=True).start()
    dist.barrier()
    k = 0
    while (item := received.get()) is not None:
        _stage_one(stage, shared, k, crossing, *item)
        k += 1
    shared.close()
    dist.destroy_process_group()


def _receive(crossing: Crossing, received) -> None:
    """Rank 1's receiving thread: each iteration's layout, then its activations."""
    while True:
        h = _recv([np.empty(HEADER, np.int64)])[0]
        if h[0] == STOP:
            received.put(None)
            return
        start = time.perf_counter()
        shapes = (read_shapes(h, 0, len(crossing.prefill)) if h[0] else [],
                  read_shapes(h, 1, len(crossing.decode)) if h[2] else [])  # fmt: skip
        arrays = _recv([np.empty(shape, np.float32) for shape in shapes[0] + shapes[1]])
        received.put((h, arrays[: len(shapes[0])], arrays[len(shapes[0]) :], start,
                      time.perf_counter()))  # fmt: skip


def _stage_one(stage: StageRank, shared: Shared, k: int, crossing: Crossing, h: np.ndarray,
               first: list, second: list, sent_s: float, received_s: float) -> None:  # fmt: skip
    """Stage 1 of iteration ``k``; its tokens and times posted."""
    start = time.perf_counter()  # free to compute it (its data came at ``received_s``)
    fresh, seq, rows, past, sequences = (int(x) for x in h[:5])
    tokens, run_s = [], 0.0
    if fresh:
        chunks = [(int(h[FRESH_AT + 2 * b]), int(h[FRESH_AT + 2 * b + 1])) for b in range(fresh)]
        feeds = dict(zip(crossing.prefill, first, strict=True))
        feeds.update(stage.token_inputs(stage.prefill, np.tile(np.arange(seq), (fresh, 1))))
        out, seconds = stage.run_prefill(feeds, chunks)
        run_s += seconds
        tokens += [int(out["logits"][b, take - 1].argmax()) for b, (_, take) in enumerate(chunks)]
    if rows:
        pairs = h[ROWS_AT : ROWS_AT + 2 * rows].reshape(rows, 2)
        feeds = dict(zip(crossing.decode, second, strict=True))
        feeds.update(stage.token_inputs(stage.decode, pairs[:, 1:]))
        out, seconds = stage.run_decode(
            feeds, pairs[:, 0].astype(np.intp), pairs[:, 1].copy(), past
        )
        run_s += seconds
        tokens += out["logits"][h[LAST_AT : LAST_AT + sequences], 0].argmax(axis=-1).tolist()
    done = time.perf_counter()
    result, floats = shared.result(k)
    result[: len(tokens)] = tokens
    floats[:] = (done, max(received_s - max(start, sent_s), 0.0), run_s, done - start)
    shared.ints[0] = k + 1
