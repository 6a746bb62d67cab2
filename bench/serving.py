"""Speed of the request-level serving simulator: requests simulated per second of wall time.

The bundled ``chat`` workload (ShareGPT-like lengths, Poisson arrivals) at a few
rates, on an iteration cost shaped like Llama-2-70B decoding on 8 H100s with
tensor parallelism, and the same cost split into a 4-stage pipeline:

- per iteration 20 ms, plus 30 µs per row computed (2·70e9 FLOPs a token over
  8 × 989 TFLOP/s at about 60 %), plus 12 ns per token of KV cache read
  (80 layers × 2 × 8 KV heads × 128 × 2 bytes = 327,680 bytes a token over
  8 × 3.35 TB/s);
- up to 256 sequences and 8192 tokens an iteration, 1,000,000 tokens of KV cache
  (8 × 80 GB less 140 GB of weights, at 327,680 bytes a token, rounded down).

A pipeline stage takes a quarter of each term. The figures are for the
simulator's speed; the cost is a stand-in, not a prediction. Like a plan's cost
it prices a run of decode iterations in one call (`decode_run_seconds`), so the
simulator takes the same paths as on a real plan; ``--one-at-a-time`` leaves that
out, for comparison.

Usage::

    python bench/serving.py                      # 100,000 requests
    python bench/serving.py --requests 20000 --rates 10 20
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from _common import console, machine, print_table

from partitioner.simulate.serving import (
    IterationShape,
    ServingConfig,
    load_workload,
    simulate_serving,
)


@dataclass(frozen=True)
class DecodeShapedCost:
    """``stages`` equal stages sharing a 70B-decode-shaped iteration cost (module doc)."""

    stages: int = 1
    base_s: float = 20e-3
    per_row_s: float = 30e-6
    per_context_token_s: float = 12e-9

    def stage_seconds(self, shape: IterationShape) -> tuple[float, ...]:
        whole = (
            self.base_s
            + self.per_row_s * shape.rows
            + self.per_context_token_s * shape.sequence_context_sum
        )
        return (whole / self.stages,) * self.stages

    def decode_run_seconds(self, first: IterationShape, iterations: int) -> np.ndarray:
        """A run of decode iterations priced at once, as plan costs price them (the steady
        loop's bulk path): each iteration one token further for every sequence."""
        context = first.sequence_context_sum + first.sequences * np.arange(iterations)
        whole = self.base_s + self.per_row_s * first.rows + self.per_context_token_s * context
        return np.tile(whole / self.stages, (self.stages, 1))


@dataclass(frozen=True)
class OneAtATimeCost(DecodeShapedCost):
    """`DecodeShapedCost` without its bulk pricing: every iteration priced alone."""

    decode_run_seconds = None  # type: ignore[assignment]  # the engine finds none


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rates", type=float, nargs="*", default=[5.0, 20.0, 40.0])
    parser.add_argument("--stages", type=int, nargs="*", default=[1, 4])
    parser.add_argument("--one-at-a-time", action="store_true",
                        help="price every iteration alone (no decode_run_seconds)")  # fmt: skip
    args = parser.parse_args()
    kind = OneAtATimeCost if args.one_at_a_time else DecodeShapedCost
    workload = load_workload("chat").with_requests(args.requests)
    config = ServingConfig(kv_capacity_tokens=1_000_000)
    rows = []
    for stages in args.stages:
        for rate in args.rates:
            start = time.perf_counter()
            report = simulate_serving(workload.with_rate(rate), kind(stages), config)
            wall = time.perf_counter() - start
            rows.append(
                [
                    f"{stages}",
                    f"{rate:g}",
                    f"{report.requests:,}",
                    f"{report.iterations:,}",
                    f"{report.mean_batch_size:.1f}",
                    f"{report.preemptions:,}",
                    f"{report.ttft_s.p99:.3f}",
                    f"{report.tpot_s.p99 * 1e3:.1f}",
                    f"{wall:.2f}",
                    f"{report.requests / wall:,.0f}",
                ]
            )
    print_table(
        f"serving simulator speed, chat workload ({machine()})",
        [
            "stages",
            "rate /s",
            "requests",
            "iterations",
            "mean batch",
            "preempted",
            "TTFT p99 s",
            "TPOT p99 ms",
            "wall s",
            "requests / wall s",
        ],
        rows,
    )
    console.print(
        "[dim]wall s: the whole simulate_serving call (drawing the requests included)[/dim]"
    )


if __name__ == "__main__":
    main()
