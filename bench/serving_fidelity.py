"""The serving simulator against a real serving run on this CPU, request by request.

`partition calibrate --ranks 1` measures this CPU (again at the end, to show drift)
and the tiny Llama decode graph (random weights, KV-cache inputs) is planned on it
as one stage (``--tp 1 --pp 1 --dim batch=1 --dim past=<max context>``). For each
load the same requests (`workload_from_args(...).sample(seed)`: Poisson arrivals,
fixed lengths) are served for real, by one onnxruntime session with one intra-op
thread as a `partition run` rank has, timestamping every token; and simulated by
``partition simulate PLAN --rate ... --json`` with the same seed, max batch and
budget. Both are reported by the simulator's own `build_report` (TTFT, TPOT =
(E2E - TTFT)/(output - 1), E2E). Nothing is fitted to the measurement.

How the real loop keeps to what the simulator prices (engine.py, serving_cost.py):

- Scheduling: the running requests, oldest first, get what they lack (a decode 1
  token, a prompt the rest) while the token budget lasts, then waiting ones are
  admitted FCFS while sequences < max batch and budget is left (a partial chunk
  maybe); a prompt's last chunk emits its first token. The plan's KV cache never
  fills, so neither side preempts. `PricedEngine` checks it: this loop on a clock
  advanced by the plan's prices reproduces `simulate`.
- One ``session.run`` of the decode graph per iteration with every token a row,
  as the simulator prices a chunk of n prompt tokens as n decode rows. A chunk's
  rows are fed the cache before the chunk (the graph takes one token per row), so
  their keys are approximate but their work is not (the weights are random).
- The graph has no attention mask and one ``past`` for the batch, so each row's
  cache is padded to the iteration's longest and the padding is attended to: more
  attention than the simulator prices (each row the longest context, and each
  chunk row copies the cache a fused kernel reads once per sequence). The
  iteration table prices both shapes with the plan's cost model to size this.
- One stage: `partition run` drives fixed micro-batches through torch.distributed
  ranks and has no request loop. The loop's host work (gathering the caches, writing
  new keys back, argmax, scheduling in Python) is measured first, on a separate serve
  of other requests, and given to simulate as ``--iteration-overhead``; the compared
  runs time it apart again.
  ``python bench/serving_fidelity.py [--scale X]``, on a quiet machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, console, machine, partition_json, print_table  # noqa: E402
from partitioner.plan import Plan  # noqa: E402
from partitioner.simulate.serving import IterationShape, Requests, workload_from_args  # noqa: E402
from partitioner.simulate.serving.recorder import Recorder  # noqa: E402
from partitioner.simulate.serving.report import ServingReport, build_report  # noqa: E402
from partitioner.simulate.serving_cost import iteration_cost  # noqa: E402
from targets.loader import load_target, target_from_dict  # noqa: E402

PROMPT_TOKENS, OUTPUT_TOKENS = 32, 32
MAX_CONTEXT = PROMPT_TOKENS + OUTPUT_TOKENS - 1  # the last token's KV is never written
MAX_BATCH, TOKEN_BUDGET, SEED = 16, 64, 7
VOCAB, LAYERS, KV_HEADS, HEAD_DIM = 256, 2, 2, 16  # examples.llama "tiny"


@dataclass(frozen=True)
class Load:
    name: str
    rate_per_s: float
    requests: int


LOADS = (Load("moderate", 100.0, 1200), Load("heavy", 200.0, 2400))
HOST_REQUESTS = 300  # the warm-up serve that measures the loop's host work


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


class RealEngine:
    """Serves ``requests`` on the decode graph in wall-clock time (module doc's rules)."""

    def __init__(self, sess, requests: Requests) -> None:
        self.sess = sess
        self.names = [o.name for o in sess.get_outputs()] if sess is not None else []
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
        self.tokens: list[int] = []  # the last iteration's next token, per row
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

    def wait_until(self, arrival_s: float) -> None:
        """Sleep to just before ``arrival_s``, then spin (a sleep overshoots by ~0.1 ms)."""
        while (left := arrival_s - self.clock()) > 0:
            if left > 2e-3:
                time.sleep(left - 1e-3)

    def arrive(self, now: float) -> None:
        arrival, i = self.arrival_s, self.next_arrival
        while i < len(arrival) and arrival[i] <= now:
            self.waiting.append(i)
            i += 1
        self.next_arrival = i

    def form(self, now: float) -> list[tuple[int, int]]:
        """(request, tokens) of the next iteration: running ones first, then admissions."""
        budget, schedule = TOKEN_BUDGET, []
        for r in self.running:
            if budget <= 0:
                break
            take = min(1 if self.generated[r] else self.prompt[r] - self.ctx[r], budget)
            schedule.append((r, take))
            budget -= take
        while self.waiting and len(self.running) < MAX_BATCH and budget > 0:
            r = self.waiting.popleft()
            take = min(self.prompt[r], budget)
            self.running[r] = None
            self.slot[r] = self.free_slots.pop()
            self.rec.scheduled(r, now)
            schedule.append((r, take))
            budget -= take
        return schedule

    def step(self, schedule: list[tuple[int, int]]) -> tuple[float, IterationShape, int, float]:
        """Run one iteration; when it ended, its shape, its padded past and its run seconds."""
        ids, pos, slots = [], [], []  # per row
        row_ctx = seq_ctx = max_ctx = 0
        for r, take in schedule:
            before = self.ctx[r]
            if self.generated[r]:
                ids.append(self.token[r])
            else:
                ids.extend(self.prompt_ids[r][before : before + take])
            pos.extend(range(before, before + take))
            slots.extend([self.slot[r]] * take)
            row_ctx += take * before + take * (take + 1) // 2
            seq_ctx += before + take
            max_ctx = max(max_ctx, before + take)
        shape = IterationShape(len(ids), len(schedule), row_ctx, seq_ctx, max_ctx)
        self.tokens, run_s = self.run_graph(
            np.array(ids, np.int64), np.array(pos, np.int64), np.array(slots, np.intp), max_ctx - 1
        )
        return self.clock(), shape, max_ctx - 1, run_s

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
        k = finished = 0
        for r, take in schedule:
            k += take
            self.ctx[r] += take
            if not self.generated[r] and self.ctx[r] < self.prompt[r]:
                continue  # a partial chunk: no token yet
            if self.generated[r]:
                self.rec.repeated_gap(done_s - self.last_token_s[r], 1)
            else:
                self.rec.first_token_s[r] = done_s
            self.token[r], self.last_token_s[r] = self.tokens[k - 1], done_s
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
    of it and the host overhead given to simulate, the graph not run: its report must be `partition simulate`'s, which shows
    that the real loop schedules as the simulator's engine does."""

    def __init__(self, requests: Requests, cost, host_s: float) -> None:
        super().__init__(None, requests)
        self.cost, self.host_s, self.now = cost, host_s, 0.0

    def clock(self) -> float:
        return self.now

    def wait_until(self, arrival_s: float) -> None:
        self.now = max(self.now, arrival_s)

    def warm_up(self) -> None: ...

    def run_graph(self, ids, pos, slots, past: int) -> tuple[list[int], float]:
        return [0] * len(ids), 0.0

    def step(self, schedule: list[tuple[int, int]]) -> tuple[float, IterationShape, int, float]:
        _, shape, past, run_s = super().step(schedule)
        self.now += self.cost.stage_seconds(shape)[0] + self.host_s
        return self.now, shape, past, run_s


def requests_of(load: Load) -> Requests:
    """The load's requests, as `partition simulate --rate --requests ... --seed` draws them."""
    workload = workload_from_args(load.rate_per_s, load.requests, PROMPT_TOKENS, OUTPUT_TOKENS)
    return workload.sample(SEED)


def plan_cost(plan: Path):
    """The plan's `IterationCost` on its target, as `partition simulate` builds it."""
    loaded = Plan.from_json(plan.read_text())
    return iteration_cost(loaded, target_from_dict(loaded.target.spec))


def scheduler_check(cost, load: Load, predicted: dict, host_s: float) -> float:
    """Largest relative difference of `PricedEngine`'s latency percentiles from simulate's."""
    requests = requests_of(load)
    ours = build_report(PricedEngine(requests, cost, host_s).serve(), requests, 1, None).to_json()
    keys = ("ttft_s", "tpot_s", "itl_s", "e2e_s")
    worst = max(abs(ours[k][p] / predicted[k][p] - 1) for k in keys for p in ("p50", "p99"))
    return math.inf if ours["iterations"] != predicted["iterations"] else worst


def calibrate(target: Path) -> str:
    """`partition calibrate --ranks 1` into ``target``; its per-op and per-step figures."""
    subprocess.run([sys.executable, "-m", "partitioner", "calibrate", "--ranks", "1", "-o",
                    str(target)], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    cpu = load_target(target).devices[0]
    return f"{cpu.launch_overhead_s * 1e9:.0f} ns an op, {cpu.step_overhead_s * 1e6:.1f} µs a step"


def prepare(folder: Path) -> tuple[Path, Path]:
    """Calibrate this CPU, build the tiny Llama decode graph and plan it on one stage."""
    target, model, plan = folder / "cpu.yaml", folder / "tiny-decode.onnx", folder / "plan.json"
    console.print(f"calibrated before: {calibrate(target)}")
    subprocess.run([sys.executable, "-m", "examples.llama", "--config", "tiny", "--kind",
                    "decode", "--weights", "random", "--out", str(model)],
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    partition_json(str(model), "--target", str(target), "--tp", "1", "--pp", "1", "--dim",
                   "batch=1", "--dim", f"past={MAX_CONTEXT}", "-o", str(plan), "-q")  # fmt: skip
    return model, plan


def measure(model: Path, load: Load) -> tuple[ServingReport, list[Iteration]]:
    """Serve the load's requests for real; the report by the simulator's definitions."""
    requests = requests_of(load)
    engine = RealEngine(session(model), requests)
    return build_report(engine.serve(), requests, 1, None), engine.trace


def host_overhead_s(model: Path) -> float:
    """This loop's host seconds per iteration outside ``session.run`` (forming, gathering and
    writing back caches, argmax, bookkeeping), the mean over a separate serve of other
    requests (seed `SEED` + 1): the runtime's own per-iteration cost, measured like calibrate's
    figures and apart from the runs compared. The mean, not the median: iterations add their
    host time up, and its distribution has a long tail."""
    workload = workload_from_args(LOADS[-1].rate_per_s, HOST_REQUESTS, PROMPT_TOKENS,
                                  OUTPUT_TOKENS)  # fmt: skip
    engine = RealEngine(session(model), workload.sample(SEED + 1))
    engine.serve()
    return float(np.mean([it.total_s - it.run_s for it in engine.trace]))


def predict(plan: Path, load: Load, host_s: float) -> dict:
    """``partition simulate`` of the same requests and engine limits, the loop's host work
    per iteration given as ``--iteration-overhead``."""
    doc = partition_json("simulate", str(plan), "--rate", str(load.rate_per_s), "--requests",
                         str(load.requests), "--prompt-len", str(PROMPT_TOKENS), "--output-len",
                         str(OUTPUT_TOKENS), "--seed", str(SEED), "--max-batch", str(MAX_BATCH),
                         "--token-budget", str(TOKEN_BUDGET), "--iteration-overhead",
                         repr(host_s), "--json")  # fmt: skip
    return doc["serving"]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def latency_rows(load: Load, measured: ServingReport, predicted: dict) -> list[list[str]]:
    got = measured.to_json()
    rows = []
    for metric, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("E2E", "e2e_s")):
        for p in ("p50", "p99"):
            real, model = got[key][p], predicted[key][p]
            rows.append([load.name, f"{metric} {p} (ms)", _ms(real), _ms(model),
                         f"{model / real:.2f}"])  # fmt: skip
    both = [(doc["throughput_tokens_per_s"], doc["mean_batch_size"],
             100 * doc["stage_utilisation"][0]) for doc in (got, predicted)]  # fmt: skip
    names = ("throughput (tok/s)", "mean batch (seqs)", "busy (%)")
    for what, real, model in zip(names, *both, strict=True):
        rows.append([load.name, what, f"{real:,.1f}", f"{model:,.1f}", f"{model / real:.2f}"])
    return rows


def iteration_rows(load: Load, trace: list[Iteration], cost) -> list[str]:
    """Seconds summed over the real iterations: measured, and priced by the plan's cost model
    for the shapes the engine schedules and for the padded shapes the graph computes."""
    scheduled = padded = 0.0
    for it in trace:
        scheduled += cost.stage_seconds(it.shape)[0]
        rows, keys = it.shape.rows, it.past + 1
        padded += cost.stage_seconds(IterationShape(rows, rows, rows * keys, rows * keys, keys))[0]
    run, total = sum(it.run_s for it in trace), sum(it.total_s for it in trace)
    return [load.name, f"{len(trace):,}", _ms(total), _ms(run), _ms(scheduled),
            f"{scheduled / run:.2f}", _ms(padded), f"{padded / run:.2f}",
            f"{(total - run) / len(trace) * 1e6:.0f}"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, metavar="X",
                        help="scale every load's request count (default 1)")  # fmt: skip
    args = parser.parse_args()
    console.print(f"{machine()}; load average {os.getloadavg()[0]:.2f}")
    loads = [Load(x.name, x.rate_per_s, max(1, round(x.requests * args.scale))) for x in LOADS]
    latency, iterations = [], []
    with tempfile.TemporaryDirectory() as folder:
        model, plan = prepare(Path(folder))
        cost, step_s = plan_cost(plan), json.loads(plan.read_text())["estimate"]["s_per_token"]
        console.print(f"plan: 1 stage, {step_s * 1e6:.0f} µs a step at batch 1, past "
                      f"{MAX_CONTEXT}; real run: 1 onnxruntime session, 1 thread")  # fmt: skip
        host_s = host_overhead_s(model)
        console.print(f"the loop's host work: {host_s * 1e6:.0f} µs an iteration (mean of a "
                      f"separate serve of {HOST_REQUESTS} other requests)")  # fmt: skip
        for load in loads:
            predicted = predict(plan, load, host_s)
            start = time.perf_counter()
            measured, trace = measure(model, load)
            wall_s, check = (
                time.perf_counter() - start,
                scheduler_check(cost, load, predicted, host_s),
            )
            console.print(f"{load.name}: {load.requests} requests at {load.rate_per_s:g}/s served "
                          f"in {wall_s:.1f} s; the loop on the plan's prices differs from "
                          f"`simulate` by {check:.1e}")  # fmt: skip
            latency += latency_rows(load, measured, predicted)
            iterations.append(iteration_rows(load, trace, cost))
        after = calibrate(Path(folder) / "after.yaml")  # how much the machine drifted
    console.print(f"calibrated after: {after}; load average {os.getloadavg()[0]:.2f}")
    flags = (f"--prompt-len {PROMPT_TOKENS} --output-len {OUTPUT_TOKENS} --seed {SEED} "
             f"--max-batch {MAX_BATCH} --token-budget {TOKEN_BUDGET} "
             f"--iteration-overhead {host_s:.2e}")  # fmt: skip
    print_table(f"Serving: measured on this CPU against `partition simulate PLAN --rate R "
                f"--requests N {flags} --json` (ratio = predicted / measured)",
                ["load", "figure", "measured", "predicted", "ratio"], latency)  # fmt: skip
    print_table("The real iterations priced by the plan's cost model (ms summed; ratio = "
                "priced / session.run; host = µs per iteration outside session.run)",
                ["load", "iterations", "wall", "session.run", "priced as scheduled", "ratio",
                 "priced as padded", "ratio", "host µs/it"], iterations)  # fmt: skip


if __name__ == "__main__":
    main()
