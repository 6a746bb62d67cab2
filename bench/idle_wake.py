"""What a CPU stage pays for having waited: `session.run` after an idle gap, against hot.

In `partition run` a pipeline stage blocks on its receive between micro-batches,
while the other stages compute, and then computes. On a VM an idle vCPU is
descheduled, and the next burst runs on cold caches at whatever clock it gets:
the same `session.run` takes longer after a sleep than in a hot loop. This times
it, for calibrate's one-op step model and for the tiny Llama (random weights,
batch 1, 64 tokens), hot and after sleeps of 0.5, 2 and 10 ms (about the gaps a
stage of the tiny Llama's two-stage plan waits). Rounds alternate the gaps, so
drift hits them alike.

``--wait spin`` spins through the gaps instead, as a polling serving loop waits
for its next request (bench/serving_fidelity.py): the core never idles, yet on this
VM a graph not run for milliseconds still runs slower the next time.

    python bench/idle_wake.py [--rounds 5] [--wait sleep|spin]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import console, machine, print_table  # noqa: E402

GAPS_S = (0.0, 0.0005, 0.002, 0.01)
CALLS = 100  # per gap and round
WAITING = {"sleep": "sleeping", "spin": "spinning"}


def _timed(run: Callable[[], object], gap_s: float, spin: bool = False) -> list[float]:
    out = []
    for _ in range(CALLS):
        if gap_s and spin:
            until = time.perf_counter() + gap_s
            while time.perf_counter() < until:
                continue  # a busy wait: the core never idles
        elif gap_s:
            time.sleep(gap_s)
        start = time.perf_counter()
        run()
        out.append(time.perf_counter() - start)
    return out


def _runners(folder: Path) -> dict[str, Callable[[], object]]:
    import onnxruntime as ort

    from examples import llama
    from partitioner.calibrate import host

    step = host.session(host.step_model(), 1)
    step_feeds = {"x": np.zeros(host.STEP_ELEMENTS, np.float32)}
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    path = llama.build(folder / "tiny.onnx", "tiny", kind="prefill")
    tiny = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {"input_ids": np.zeros((1, 64), np.int64), "position_ids": np.arange(64)[None]}
    return {
        "one-op step model": lambda: step.run(None, step_feeds),
        "tiny Llama, 64 tokens": lambda: tiny.run(None, feeds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wait", choices=("sleep", "spin"), default="sleep",
                        help="how to pass each gap: sleep (the core idles) or spin")  # fmt: skip
    args = parser.parse_args()
    spin = args.wait == "spin"
    console.print(machine())
    with tempfile.TemporaryDirectory() as name:
        runners = _runners(Path(name))
        times: dict[tuple[str, float], list[float]] = {}
        for run in runners.values():
            _timed(run, 0.0)  # warm-up
        for _ in range(args.rounds):
            for label, run in runners.items():
                for gap in GAPS_S:
                    times.setdefault((label, gap), []).extend(_timed(run, gap, spin))
    rows = []
    for label in runners:
        hot = statistics.median(times[(label, 0.0)])
        cells = [label, f"{hot * 1e6:,.0f}"]
        for gap in GAPS_S[1:]:
            waited = statistics.median(times[(label, gap)])
            cells.append(f"{waited * 1e6:,.0f} (+{(waited - hot) * 1e6:,.0f})")
        rows.append(cells)
    print_table(
        f"session.run, median µs: hot, then after a gap (excess over hot; {args.wait})",
        ["model", "hot", *(f"after {g * 1e3:g} ms {WAITING[args.wait]}" for g in GAPS_S[1:])],
        rows,
    )


if __name__ == "__main__":
    main()
