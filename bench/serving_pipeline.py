"""The serving simulator against a real two-stage pipeline on this CPU, request by request.

bench/serving_fidelity.py checks one stage; this checks what a pipeline adds:
iterations streaming through two stages on two torch.distributed (gloo) ranks, up to
two in flight, a request in at most one of them, activations crossing between the ranks.

- `partition calibrate --ranks 2` measures this CPU and its gloo link, and the memory
  bandwidth each rank gets while both stream at once: the two stages run side by side
  and share the host's memory, so `simulate` prices an iteration formed while another
  is in flight at that bandwidth (`GpuTarget.contended`).
- A small Llama (`CONFIG`: 6 layers, hidden 512, random weights; each stage's weights
  outgrow the 32 MiB cache, as a GPU's outgrow its L2) gets a decode and a prefill
  graph, planned on two stages (``--tp 1 --pp 2 --objective throughput --prefill``).
- `partition export --prefill --symbolic-dims` writes each stage's decode and prefill
  files with their dims open, as a serving loop batching anything needs them.
- The loop (`_pipeline_driver`, `_pipeline_ranks`, `_pipeline_sched`): rank 0 schedules
  by the engine's rules and computes stage 0, rank 1 computes stage 1, the activations
  go as `partition run` sends them (a batch of gloo isends), their layout posted before
  stage 0 computes them (`_pipeline_ranks`). The same scheduler on the
  plan's prices (`priced_serve`) must reproduce `partition simulate`: it shows the loop
  schedules as the simulator does.
- Rank 0's host work (forming, gathering and writing back caches, the loop's
  bookkeeping: its time outside ``session.run`` and the sends) is measured on a separate
  serve and given to simulate as ``--iteration-overhead`` and ``--token-overhead``, as
  in serving_fidelity.py. Rank 1's own host work (gathering its caches, argmax) is
  measured there too and given as ``--stage-overhead``.

``python bench/serving_pipeline.py [--scale X]``, on a quiet machine (both cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import calibrate, console, machine, partition_json, print_table  # noqa: E402
from bench._pipeline_driver import Ranks, Served  # noqa: E402
from bench._pipeline_ranks import Crossing, StageFiles  # noqa: E402
from bench._pipeline_sched import priced_serve  # noqa: E402
from bench._serving_loop import (  # noqa: E402
    MAX_CONTEXT,
    OUTPUT_TOKENS,
    PROMPT_TOKENS,
    SEED,
)
from bench.serving_fidelity import Load, plan_cost, predict, report_difference, requests_of  # noqa: E402
from examples.llama import LlamaConfig, build  # noqa: E402
from partitioner.simulate.serving import workload_from_args  # noqa: E402
from partitioner.simulate.serving.report import ServingReport, build_report  # noqa: E402
from targets.loader import load_target  # noqa: E402

CONFIG = LlamaConfig(hidden_size=512, num_layers=6, num_heads=8, num_kv_heads=4,
                     intermediate_size=1536, vocab_size=4096, rope_theta=10_000.0,
                     rope_scaling=None, default_dtype="float32",
                     default_weights="random")  # fmt: skip
LOADS = (Load("moderate", 10.0, 600), Load("heavy", 16.0, 960))
HOST_REQUESTS = 200
TOKEN_INPUTS = ("input_ids", "position_ids")


@dataclass(frozen=True)
class Setup:
    plan: Path
    stages: tuple[StageFiles, StageFiles]
    crossing: Crossing


def _received(path: Path) -> tuple[str, ...]:
    """What a stage-1 file takes from stage 0, in its input order."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    return tuple(i.name for i in graph.input
                 if not i.name.startswith("past.") and i.name not in TOKEN_INPUTS)  # fmt: skip


def prepare(folder: Path) -> Setup:
    target, plan = folder / "cpu.yaml", folder / "plan.json"
    calibrate(target, ranks=2)
    cpu = load_target(target)
    link, device = cpu.intra_node_link, cpu.devices[0]
    console.print(f"calibrated: {device.peak_flops_per_s['float32'] / 1e9:.1f} GFLOP/s, "
                  f"{device.hbm_bandwidth_bytes_per_s / 1e9:.1f} GB/s alone, "
                  f"{(device.contended_bandwidth_bytes_per_s or 0) / 1e9:.1f} GB/s both ranks "
                  "at once, "
                  f"{device.launch_overhead_s * 1e9:.0f} ns a kernel, "
                  f"{device.step_overhead_s * 1e6:.1f} µs a step; gloo "
                  f"{link.latency_s * 1e6:.1f} µs + {link.bandwidth_bytes_per_s / 1e9:.2f} GB/s "
                  "a message")  # fmt: skip
    models = {kind: folder / f"small-{kind}.onnx" for kind in ("decode", "prefill")}
    for kind, path in models.items():
        build(path, CONFIG, kind=kind, weights="random")
    partition_json(str(models["decode"]), "--target", str(target), "--tp", "1", "--pp", "2",
                   "--objective", "throughput", "--dim", "batch=1", "--dim",
                   f"past={MAX_CONTEXT}", "--prefill", str(models["prefill"]), "-o", str(plan),
                   "-q")  # fmt: skip
    export = folder / "export"
    subprocess.run([sys.executable, "-m", "partitioner", "export", str(models["decode"]),
                    str(plan), "--prefill", str(models["prefill"]), "--symbolic-dims", "--out",
                    str(export)], check=True, capture_output=True)  # fmt: skip
    manifest = json.loads((export / "manifest.json").read_text())
    decode = [export / s["file"] for s in manifest["stages"]]
    prefill = [export / s["file"] for s in manifest["prefill_stages"]]
    stages = (StageFiles(decode[0], prefill[0]), StageFiles(decode[1], prefill[1]))
    return Setup(plan, stages, Crossing(_received(prefill[1]), _received(decode[1])))


def host_overhead_s(ranks: Ranks) -> tuple[float, float, float]:
    """Rank 0's seconds outside ``session.run`` and its sends, per iteration and per token
    (a least-squares line over the iterations of a separate serve of other requests, seed
    `SEED` + 1, as serving_fidelity.py measures its one stage's), and rank 1's own host
    work an iteration (its mean there: outside ``session.run`` and waiting for its data),
    which simulate takes as ``--stage-overhead``."""
    load = LOADS[-1]
    workload = workload_from_args(load.rate_per_s, HOST_REQUESTS, PROMPT_TOKENS, OUTPUT_TOKENS)
    _, trace = ranks.serve(workload.sample(SEED + 1))
    rows = np.array([it.shape.rows for it in trace], dtype=float)
    zero = [it.stages[0] for it in trace]
    host = np.array([t.total_s - t.run_s - t.move_s for t in zero])
    per_token_s, per_iteration_s = np.polyfit(rows, host, 1)
    one = np.mean([t.total_s - t.run_s - t.move_s for t in (it.stages[1] for it in trace)])
    return max(float(per_iteration_s), 0.0), max(float(per_token_s), 0.0), max(float(one), 0.0)


def scheduler_check(cost, load: Load, predicted: dict, host_s: tuple[float, ...]) -> float:
    """Largest relative difference of the scheduler on the plan's prices from simulate's
    latency percentiles (infinite if the iteration counts differ)."""
    requests = requests_of(load)
    ours = build_report(priced_serve(requests, cost, host_s), requests, 1, None).to_json()
    return report_difference(ours, predicted)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


class ReplayCost:
    """The plan's stage prices mapped onto this run's measured stage times: per stage, a
    least-squares line ``measured = a * priced + b`` over the run's iterations. Stage 0's
    measured time is rank 0's whole iteration (host work, ``session.run``, sends), stage
    1's rank 1's from the moment it is free to compute it. Served on the virtual clock
    (`priced_serve`, no host term: it is in the line), it separates the simulator's
    pipeline and queueing from its per-iteration prices: what the replay misses is the
    former, what the plan misses beyond it the latter."""

    stages = 2

    def __init__(self, cost, trace: list[Served]) -> None:
        self.cost, self.lines = cost, []
        priced = np.array([cost.stage_seconds(it.shape) for it in trace])
        for s in range(2):
            measured = np.array([it.stages[s].total_s for it in trace])
            self.lines.append(tuple(np.polyfit(priced[:, s], measured, 1)))

    def stage_seconds(self, shape) -> list[float]:
        priced = self.cost.stage_seconds(shape)
        return [a * p + b for (a, b), p in zip(self.lines, priced, strict=True)]


def latency_rows(load: Load, measured: ServingReport, predicted: dict,
                 replayed: dict) -> list[list[str]]:  # fmt: skip
    """Measured, simulate's, the replay's (`ReplayCost`); ratios = model / measured."""
    got, rows = measured.to_json(), []
    for metric, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("E2E", "e2e_s")):
        for p in ("p50", "p99"):
            real, model, replay = got[key][p], predicted[key][p], replayed[key][p]
            rows.append([load.name, f"{metric} {p} (ms)", _ms(real), _ms(model),
                         f"{model / real:.2f}", _ms(replay), f"{replay / real:.2f}"])  # fmt: skip
    for what, key in (("throughput (tok/s)", "throughput_tokens_per_s"),
                      ("mean batch (seqs)", "mean_batch_size")):  # fmt: skip
        real, model, replay = got[key], predicted[key], replayed[key]
        rows.append([load.name, what, f"{real:,.1f}", f"{model:,.1f}", f"{model / real:.2f}",
                     f"{replay:,.1f}", f"{replay / real:.2f}"])  # fmt: skip
    return rows


def stage_rows(load: Load, trace: list[Served], cost) -> list[list[str]]:
    """Median µs per iteration and stage, by kind: measured (session.run; the activations'
    move: rank 0 posting its sends, rank 1 receiving after the layout came; the rest of
    the stage's time), against the plan's price of the stage, alone and beside another
    iteration (stages sharing the host's memory, `GpuTarget.contended`)."""
    out = []
    kinds = (
        ("decode only", lambda s: s.rows == s.sequences),
        ("with a prompt", lambda s: s.rows > s.sequences),
    )
    for kind, chosen in kinds:
        its = [it for it in trace if chosen(it.shape)]
        if not its:
            continue
        priced = np.median([cost.stage_seconds(it.shape) for it in its], axis=0)
        beside = getattr(cost, "contended", None)  # the price beside another iteration
        if beside is not None:
            beside = np.median([beside.stage_seconds(it.shape) for it in its], axis=0)
        for s in range(2):
            times = [it.stages[s] for it in its]
            run, move = np.median([t.run_s for t in times]), np.median([t.move_s for t in times])
            rest = np.median([t.total_s - t.run_s - (t.move_s if s == 0 else 0.0) for t in times])
            out.append([load.name, kind, str(s), f"{len(its):,}", f"{run * 1e6:.0f}",
                        f"{move * 1e6:.0f}", f"{rest * 1e6:.0f}", f"{priced[s] * 1e6:.0f}",
                        "-" if beside is None else f"{beside[s] * 1e6:.0f}"])  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, metavar="X",
                        help="scale every load's request count (default 1)")  # fmt: skip
    args = parser.parse_args()
    console.print(f"{machine()}; load average {os.getloadavg()[0]:.2f}")
    loads = [Load(x.name, x.rate_per_s, max(1, round(x.requests * args.scale))) for x in LOADS]
    latency, stages = [], []
    with tempfile.TemporaryDirectory() as folder:
        setup = prepare(Path(folder))
        cost = plan_cost(setup.plan)
        plan = json.loads(setup.plan.read_text())
        console.print("plan: " + ", ".join(f"stage {p['stage']}: {len(p['nodes'])} nodes"
                                            for p in plan["partitions"]))  # fmt: skip
        ranks = Ranks(*setup.stages, setup.crossing, CONFIG.vocab_size)
        try:
            host_s = host_overhead_s(ranks)
            console.print(f"rank 0's host work: {host_s[0] * 1e6:.0f} µs an iteration + "
                          f"{host_s[1] * 1e6:.2f} µs a token; rank 1's: "
                          f"{host_s[2] * 1e6:.0f} µs an iteration")  # fmt: skip
            for load in loads:
                predicted = predict(setup.plan, load, host_s)
                start = time.perf_counter()
                rec, trace = ranks.serve(requests_of(load))
                measured = build_report(rec, requests_of(load), 1, None)
                check = scheduler_check(cost, load, predicted, host_s)
                console.print(f"{load.name}: {load.requests} requests at {load.rate_per_s:g}/s "
                              f"served in {time.perf_counter() - start:.1f} s; the scheduler on "
                              f"the plan's prices differs from `simulate` by {check:.1e}")  # fmt: skip
                replay = ReplayCost(cost, trace)
                requests = requests_of(load)
                replayed = build_report(
                    priced_serve(requests, replay, (0.0, 0.0)), requests, 1, None
                )
                console.print("  replay lines (measured = a x priced + b): " + "; ".join(
                    f"stage {s}: a {a:.2f}, b {b * 1e6:.0f} µs" for s, (a, b) in enumerate(replay.lines)))  # fmt: skip
                latency += latency_rows(load, measured, predicted, replayed.to_json())
                stages += stage_rows(load, trace, cost)
        finally:
            ranks.close()
    console.print(f"load average {os.getloadavg()[0]:.2f}")
    print_table("Serving on two pipeline stages: measured, `partition simulate` of the plan, "
                "and the replay of this run's stage times (ratios = model / measured)",
                ["load", "figure", "measured", "simulate", "ratio", "replay", "ratio"],
                latency)  # fmt: skip
    print_table("Median µs per iteration and stage: session.run, the activations' move, the "
                "rest of the stage's time (host work), and the plan's price of the stage, "
                "alone and beside another iteration (the ranks sharing the host's memory)",
                ["load", "kind", "stage", "iterations", "session.run", "move", "rest",
                 "priced", "beside"], stages)  # fmt: skip


if __name__ == "__main__":
    main()
