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
- Two graphs (``--runtime two-graphs``, the default), as a runtime serving a
  prefill/decode pair of files runs them and as `simulate` prices a plan made
  with ``--prefill``: each iteration's chunks that start an empty cache (a prompt's
  first) go through the prefill graph in one ``session.run`` (``[chunks, longest]``,
  causal), then every other row through the decode graph in a second. With
  ``--runtime one-graph`` every row goes through the decode graph, as the simulator
  prices a chunk of n prompt tokens as n decode rows without a prefill file; a
  chunk's rows are then fed the cache before the chunk (the graph takes one token
  per row), so their keys are approximate but their work is not (the weights are
  random).
- The decode graph has no attention mask and one ``past`` for the batch, so each
  row's cache is padded to the pass's longest and the padding is attended to: more
  attention than the simulator prices (each row the longest context). The
  iteration table prices both shapes with the plan's cost model to size this.
- One stage: `partition run` drives fixed micro-batches through torch.distributed
  ranks and has no request loop. The loop's host work (gathering the caches, writing
  new keys back, argmax, scheduling in Python) is measured first, on a separate serve
  of other requests, and given to simulate as ``--iteration-overhead``; the compared
  runs time it apart again.

``python bench/serving_fidelity.py [--scale X] [--wait spin|sleep] [--runtime
two-graphs|one-graph]``, on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, calibrate, console, machine, partition_json, print_table  # noqa: E402
from bench._serving_loop import (  # noqa: E402
    MAX_BATCH,
    MAX_CONTEXT,
    OUTPUT_TOKENS,
    PROMPT_TOKENS,
    SEED,
    TOKEN_BUDGET,
    Iteration,
    PricedEngine,
    RealEngine,
    session,
)  # fmt: skip
from partitioner.plan import Plan  # noqa: E402
from partitioner.simulate.serving import IterationShape, Requests, workload_from_args  # noqa: E402
from partitioner.simulate.serving.report import ServingReport, build_report  # noqa: E402
from partitioner.simulate.serving_cost import iteration_cost  # noqa: E402
from targets.loader import load_target, target_from_dict  # noqa: E402


@dataclass(frozen=True)
class Load:
    name: str
    rate_per_s: float
    requests: int


LOADS = (Load("moderate", 100.0, 1200), Load("heavy", 200.0, 2400))
HOST_REQUESTS = 300  # the warm-up serve that measures the loop's host work


def requests_of(load: Load) -> Requests:
    """The load's requests, as `partition simulate --rate --requests ... --seed` draws them."""
    workload = workload_from_args(load.rate_per_s, load.requests, PROMPT_TOKENS, OUTPUT_TOKENS)
    return workload.sample(SEED)


def plan_cost(plan: Path):
    """The plan's `IterationCost` on its target, as `partition simulate` builds it."""
    loaded = Plan.from_json(plan.read_text())
    return iteration_cost(loaded, target_from_dict(loaded.target.spec))


def scheduler_check(cost, load: Load, predicted: dict, host_s: tuple[float, float],
                    two_graphs: bool) -> float:  # fmt: skip
    """Largest relative difference of `PricedEngine`'s latency percentiles from simulate's."""
    requests = requests_of(load)
    engine = PricedEngine(requests, cost, host_s, two_graphs)
    return report_difference(build_report(engine.serve(), requests, 1, None).to_json(), predicted)


def report_difference(ours: dict, predicted: dict) -> float:
    """Largest relative difference of ``ours``'s latency percentiles (p50, p99) from
    ``predicted``'s; infinite if their iteration counts differ."""
    keys = ("ttft_s", "tpot_s", "itl_s", "e2e_s")
    worst = max(abs(ours[k][p] / predicted[k][p] - 1) for k in keys for p in ("p50", "p99"))
    return math.inf if ours["iterations"] != predicted["iterations"] else worst


def calibrated(target: Path) -> str:
    """`partition calibrate --ranks 1` into ``target``; its per-op and per-step figures."""
    calibrate(target, ranks=1)
    cpu = load_target(target).devices[0]
    return f"{cpu.launch_overhead_s * 1e9:.0f} ns an op, {cpu.step_overhead_s * 1e6:.1f} µs a step"


def prepare(folder: Path, two_graphs: bool) -> tuple[Models, Path]:
    """Calibrate this CPU, build the tiny Llama decode graph (and prefill graph) and plan it
    on one stage (with the prefill graph mapped onto it: ``--prefill``)."""
    target, plan = folder / "cpu.yaml", folder / "plan.json"
    models = Models(
        folder / "tiny-decode.onnx", folder / "tiny-prefill.onnx" if two_graphs else None
    )
    console.print(f"calibrated before: {calibrated(target)}")
    for kind, path in (("decode", models.decode), ("prefill", models.prefill)):
        if path is not None:
            subprocess.run([sys.executable, "-m", "examples.llama", "--config", "tiny", "--kind",
                            kind, "--weights", "random", "--out", str(path)],
                           cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    prefill = ("--prefill", str(models.prefill)) if models.prefill else ()
    partition_json(str(models.decode), "--target", str(target), "--tp", "1", "--pp", "1", "--dim",
                   "batch=1", "--dim", f"past={MAX_CONTEXT}", *prefill, "-o", str(plan),
                   "-q")  # fmt: skip
    return models, plan


@dataclass(frozen=True)
class Models:
    """The decode graph, and the prefill graph when prompts run on their own (two graphs)."""

    decode: Path
    prefill: Path | None

    def engine(self, requests: Requests, spin: bool) -> RealEngine:
        """A real serving loop on fresh onnxruntime sessions of these graphs."""
        prefill = session(self.prefill) if self.prefill else None
        return RealEngine(session(self.decode), requests, spin, prefill)


def measure(models: Models, load: Load, spin: bool) -> tuple[ServingReport, list[Iteration]]:
    """Serve the load's requests for real; the report by the simulator's definitions."""
    requests = requests_of(load)
    engine = models.engine(requests, spin)
    return build_report(engine.serve(), requests, 1, None), engine.trace


def host_overhead_s(models: Models, spin: bool) -> tuple[float, float]:
    """This loop's host seconds outside ``session.run`` (forming, gathering and writing back
    caches, argmax, bookkeeping) per iteration and per token, a least-squares line over the
    iterations of a separate serve of other requests (seed `SEED` + 1): the runtime's own
    cost, measured like calibrate's figures and apart from the runs compared. A line through
    every iteration, not a median: iterations add their host time up, its distribution has
    a long tail, and a prompt's iteration gathers and writes back 32 rows, a step's one."""
    workload = workload_from_args(LOADS[-1].rate_per_s, HOST_REQUESTS, PROMPT_TOKENS,
                                  OUTPUT_TOKENS)  # fmt: skip
    engine = models.engine(workload.sample(SEED + 1), spin)
    engine.serve()
    rows = np.array([it.shape.rows for it in engine.trace], dtype=float)
    host = np.array([it.total_s - it.run_s for it in engine.trace])
    per_token_s, per_iteration_s = np.polyfit(rows, host, 1)
    return max(float(per_iteration_s), 0.0), max(float(per_token_s), 0.0)


def predict(plan: Path, load: Load, host_s: tuple[float, ...]) -> dict:
    """``partition simulate`` of the same requests and engine limits, the loop's host work
    per iteration given as ``--iteration-overhead`` and ``--token-overhead``; a third
    figure, a later pipeline stage's host work an iteration, as ``--stage-overhead``."""
    stage = ("--stage-overhead", repr(host_s[2])) if len(host_s) > 2 else ()
    doc = partition_json("simulate", str(plan), "--rate", str(load.rate_per_s), "--requests",
                         str(load.requests), "--prompt-len", str(PROMPT_TOKENS), "--output-len",
                         str(OUTPUT_TOKENS), "--seed", str(SEED), "--max-batch", str(MAX_BATCH),
                         "--token-budget", str(TOKEN_BUDGET), "--iteration-overhead",
                         repr(host_s[0]), "--token-overhead", repr(host_s[1]), *stage,
                         "--json")  # fmt: skip
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


def padded(it: Iteration) -> IterationShape:
    """The iteration as the graphs compute it: every decode-pass row attends to the pass's
    padded past (the graph has no mask and one ``past``); a prefill pass as scheduled."""
    shape, keys = it.shape, it.past + 1
    rows = shape.rows - shape.prefill_rows  # the decode pass's
    return IterationShape(shape.rows, rows + shape.prefill_sequences,
                          rows * keys + shape.prefill_row_context_sum,
                          rows * keys + shape.prefill_rows,
                          max(keys if rows else 0, shape.prefill_max_tokens),
                          shape.prefill_sequences, shape.prefill_rows,
                          shape.prefill_row_context_sum, shape.prefill_max_tokens)  # fmt: skip


def iteration_rows(load: Load, trace: list[Iteration], cost) -> list[str]:
    """Seconds summed over the real iterations: measured, and priced by the plan's cost model
    for the shapes the engine schedules and for the padded shapes the graph computes."""
    scheduled = as_padded = 0.0
    for it in trace:
        scheduled += cost.stage_seconds(it.shape)[0]
        as_padded += cost.stage_seconds(padded(it))[0]
    run, total = sum(it.run_s for it in trace), sum(it.total_s for it in trace)
    return [load.name, f"{len(trace):,}", _ms(total), _ms(run), _ms(scheduled),
            f"{scheduled / run:.2f}", _ms(as_padded), f"{as_padded / run:.2f}",
            f"{(total - run) / len(trace) * 1e6:.0f}"]  # fmt: skip


def kind_rows(load: Load, trace: list[Iteration], cost) -> list[list[str]]:
    """Median µs per iteration of decode steps alone and of iterations carrying a prompt
    chunk: where TTFT's and TPOT's gaps come from."""
    out = []
    for kind, chosen in (("decode only", [it for it in trace if it.shape.rows == it.shape.sequences]),
                         ("with a prompt", [it for it in trace if it.shape.rows > it.shape.sequences])):  # fmt: skip
        if not chosen:
            continue
        run = np.median([it.run_s for it in chosen])
        scheduled = np.median([cost.stage_seconds(it.shape)[0] for it in chosen])
        as_padded = np.median([cost.stage_seconds(padded(it))[0] for it in chosen])
        out.append([load.name, kind, f"{len(chosen):,}", f"{run * 1e6:.0f}",
                    f"{scheduled * 1e6:.0f}", f"{as_padded * 1e6:.0f}"])  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, metavar="X",
                        help="scale every load's request count (default 1)")  # fmt: skip
    parser.add_argument("--wait", choices=("spin", "sleep"), default="spin",
                        help="how the real loop waits for the next arrival when it has no "
                        "work: spin, as a polling serving loop does (default), or sleep, "
                        "which on a VM costs the next run a cold start")  # fmt: skip
    parser.add_argument("--runtime", choices=("two-graphs", "one-graph"), default="two-graphs",
                        help="two-graphs: prompts starting an empty cache run on the prefill "
                        "graph, planned as the decode plan's prefill pair (default); one-graph: "
                        "every row on the decode graph, each prompt token a row")  # fmt: skip
    args = parser.parse_args()
    spin, two_graphs = args.wait == "spin", args.runtime == "two-graphs"
    console.print(f"{machine()}; load average {os.getloadavg()[0]:.2f}")
    loads = [Load(x.name, x.rate_per_s, max(1, round(x.requests * args.scale))) for x in LOADS]
    latency, iterations, kinds = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        models, plan = prepare(Path(folder), two_graphs)
        cost, step_s = plan_cost(plan), json.loads(plan.read_text())["estimate"]["s_per_token"]
        console.print(f"plan: 1 stage, {step_s * 1e6:.0f} µs a step at batch 1, past "
                      f"{MAX_CONTEXT}; real run: 1 onnxruntime session a graph, 1 thread, waiting "
                      f"for arrivals by {'spinning' if spin else 'sleeping'}; {args.runtime}")  # fmt: skip
        host_s = host_overhead_s(models, spin)
        console.print(f"the loop's host work: {host_s[0] * 1e6:.0f} µs an iteration + "
                      f"{host_s[1] * 1e6:.2f} µs a token (a line through the iterations of a "
                      f"separate serve of {HOST_REQUESTS} other requests)")  # fmt: skip
        for load in loads:
            predicted = predict(plan, load, host_s)
            start = time.perf_counter()
            measured, trace = measure(models, load, spin)
            wall_s, check = (
                time.perf_counter() - start,
                scheduler_check(cost, load, predicted, host_s, two_graphs),
            )
            console.print(f"{load.name}: {load.requests} requests at {load.rate_per_s:g}/s served "
                          f"in {wall_s:.1f} s; the loop on the plan's prices differs from "
                          f"`simulate` by {check:.1e}")  # fmt: skip
            latency += latency_rows(load, measured, predicted)
            iterations.append(iteration_rows(load, trace, cost))
            kinds += kind_rows(load, trace, cost)
        after = calibrated(Path(folder) / "after.yaml")  # how much the machine drifted
    console.print(f"calibrated after: {after}; load average {os.getloadavg()[0]:.2f}")
    flags = (f"--prompt-len {PROMPT_TOKENS} --output-len {OUTPUT_TOKENS} --seed {SEED} "
             f"--max-batch {MAX_BATCH} --token-budget {TOKEN_BUDGET} "
             f"--iteration-overhead {host_s[0]:.2e} --token-overhead {host_s[1]:.2e}")  # fmt: skip
    print_table(f"Serving: measured on this CPU against `partition simulate PLAN --rate R "
                f"--requests N {flags} --json` (ratio = predicted / measured)",
                ["load", "figure", "measured", "predicted", "ratio"], latency)  # fmt: skip
    print_table("The real iterations priced by the plan's cost model (ms summed; ratio = "
                "priced / session.run; host = µs per iteration outside session.run)",
                ["load", "iterations", "wall", "session.run", "priced as scheduled", "ratio",
                 "priced as padded", "ratio", "host µs/it"], iterations)  # fmt: skip
    print_table("Median µs per iteration, by kind: session.run measured, priced as scheduled, "
                "priced as the padded graph computes", ["load", "iterations", "count",
                "session.run", "priced", "padded"], kinds)  # fmt: skip


if __name__ == "__main__":
    main()
