"""What a decode step's kernels take on this GPU, measured with torch (issue 12's GPU rows).

The cost model prices a fused decode step as its weights streamed at the device's
bandwidth, plus one launch a step for the CUDA graph. vLLM's public figure for
Llama-3.1-8B at batch 8 on an H200 is 1.8× that estimate. This measures the pieces
on the GPU itself, so the gap can be split without fitting anything to vLLM:

1. **Decode GEMMs**: bf16 ``[M, K] @ [K, N]`` at Llama-3.1-8B's projection shapes and
   M = 1, 8, 64 rows, each weight one of enough copies to outgrow the L2 cache (a
   decode step reads every weight once): seconds, weights streamed in TB/s, TFLOP/s.
2. **The step's GEMMs in a row**: the 32 layers' four projections at M = 8 (128 distinct
   weights, 13 GB) run back to back, eagerly and replayed as one CUDA graph: the floor
   a runtime that fuses everything else onto them would reach.
3. **Small kernels**: a chain of 256 tiny elementwise kernels on an ``[8, 4096]`` tensor,
   eagerly and replayed as a CUDA graph: what each kernel costs beyond its bytes (the
   norms, rotary and activations of a step are such kernels, about 5 a layer).

    python bench/gpu_micro.py [--json FILE]        # on a GPU (bench/gpu_session.sh)
    python bench/gpu_micro.py --device cpu         # a smoke run of the code, tiny shapes

Timing: CUDA events around each timed loop, after a warm-up; on ``--device cpu``,
`time.perf_counter` (the figures then mean nothing; the run checks the code runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

#: Llama-3.1-8B's projections per layer: (name, K, N); hidden 4096, 8 KV heads of 128,
#: MLP 14336 (gate and up fused, as serving runtimes run them).
LAYER_GEMMS = (("qkv", 4096, 6144), ("o", 4096, 4096), ("gate_up", 4096, 28672),
               ("down", 14336, 4096))  # fmt: skip
LAYERS, ROWS, L2_BYTES = 32, (1, 8, 64), 60 << 20


def _timer(device: str, run: Callable[[], object], repeats: int) -> float:
    """Mean seconds of ``run`` over ``repeats`` calls, after one warm-up call: CUDA events
    as calibrate times (`mean_seconds`), or the wall clock on the CPU smoke run."""
    if device == "cuda":
        from partitioner.calibrate.cuda import mean_seconds

        return mean_seconds(run, repeats)
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats


def _graphed(device: str, body: Callable[[], object]) -> Callable[[], object]:
    """``body`` captured once as a CUDA graph, returned as its replay (CPU: ``body``)."""
    if device == "cpu":
        return body
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        body()  # warm-up on a side stream, as torch's docs ask before capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph.replay


def decode_gemms(device: str, scale: int) -> list[dict]:
    """Part 1: each projection at each row count, weights rotating past the L2 cache."""
    rows = []
    for name, k, n in LAYER_GEMMS:
        k, n = k // scale, n // scale
        copies = max(2, -(-4 * (L2_BYTES // scale**2) // (k * n * 2)))
        weights = [torch.randn(k, n, device=device, dtype=torch.bfloat16) for _ in range(copies)]
        for m in ROWS:
            x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
            turn = iter(range(1 << 30))

            def run(x=x, weights=weights, turn=turn) -> object:
                return x @ weights[next(turn) % len(weights)]

            seconds = _timer(device, run, 8 * copies)
            rows.append({"gemm": name, "m": m, "k": k, "n": n, "seconds": seconds,
                         "weights_tb_per_s": k * n * 2 / seconds / 1e12,
                         "tflop_per_s": 2 * m * k * n / seconds / 1e12})  # fmt: skip
        del weights
    return rows


def step_gemms(device: str, scale: int, layers: int) -> dict:
    """Part 2: every layer's four projections at 8 rows, back to back, eager and graphed."""
    weights = [torch.randn(k // scale, n // scale, device=device, dtype=torch.bfloat16)
               for _ in range(layers) for _, k, n in LAYER_GEMMS]  # fmt: skip
    inputs = {k // scale: torch.randn(8, k // scale, device=device, dtype=torch.bfloat16)
              for _, k, _ in LAYER_GEMMS}  # fmt: skip
    out = torch.empty(0)

    def body() -> None:
        nonlocal out
        for w in weights:
            out = inputs[w.shape[0]] @ w

    nbytes = sum(w.numel() * 2 for w in weights)
    eager = _timer(device, body, 5)
    graphed = _timer(device, _graphed(device, body), 5)
    return {"gemms": len(weights), "weight_bytes": nbytes, "eager_s": eager, "graph_s": graphed,
            "graph_weights_tb_per_s": nbytes / graphed / 1e12}  # fmt: skip


def small_kernels(device: str, count: int = 256) -> dict:
    """Part 3: ``count`` tiny elementwise kernels in a chain, eager and graphed."""
    x = torch.zeros(8, 4096, device=device, dtype=torch.bfloat16)

    def body() -> None:
        y = x
        for _ in range(count):
            y = y + 1

    eager = _timer(device, body, 20) / count
    graphed = _timer(device, _graphed(device, body), 20) / count
    return {"kernels": count, "eager_s_per_kernel": eager, "graph_s_per_kernel": graphed}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_micro: torch sees no CUDA device (use --device cpu for a smoke run)")
        return 2
    scale, layers = (64, 2) if args.device == "cpu" else (1, LAYERS)  # CPU: tiny, code only
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (smoke run)"
    doc = {"device": name, "torch": torch.__version__, "decode_gemms": decode_gemms(args.device, scale),
           "step_gemms": step_gemms(args.device, scale, layers),
           "small_kernels": small_kernels(args.device)}  # fmt: skip
    print(f"{name}, torch {torch.__version__}")
    for r in doc["decode_gemms"]:
        print(f"  {r['gemm']:8s} M={r['m']:<3d} {r['k']}x{r['n']}: {r['seconds'] * 1e6:9.1f} µs  "
              f"{r['weights_tb_per_s']:6.2f} TB/s of weights  {r['tflop_per_s']:7.1f} TFLOP/s")  # fmt: skip
    s = doc["step_gemms"]
    print(f"  {s['gemms']} GEMMs at M=8 ({s['weight_bytes'] / 1e9:.2f} GB): eager "
          f"{s['eager_s'] * 1e3:.3f} ms, graph {s['graph_s'] * 1e3:.3f} ms "
          f"({s['graph_weights_tb_per_s']:.2f} TB/s)")  # fmt: skip
    k = doc["small_kernels"]
    print(f"  {k['kernels']} tiny kernels: eager {k['eager_s_per_kernel'] * 1e6:.2f} µs, graph "
          f"{k['graph_s_per_kernel'] * 1e6:.2f} µs a kernel")  # fmt: skip
    print(
        f"  median decode GEMM weight stream at M=8: "
        f"{statistics.median(r['weights_tb_per_s'] for r in doc['decode_gemms'] if r['m'] == 8):.2f} TB/s"
    )
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
