"""Plan MODEL onto a target and write the placement plan (JSON, schema_version 2).

The model is analysed (FLOPs, bytes, parameters, activation liveness) and
coarsened into blocks. On GPU targets the blocks are split into pipeline stages
by CP-SAT, warm-started from an exact dynamic programme. On wafer targets each
block becomes a rectangle of cores (split across wafers first when one is not
enough), sized for its SRAM and balanced compute, and placed by CP-SAT from a
serpentine start to cut fabric traffic. Baselines are available with --solver.

targets: gpu (= h100x8), wafer (= wse3), a preset (a100x4, h100x8, h100x16, h200x8,
b200x8, wse2, wse3x4, ...; see `partition targets`), or a .json/.yaml target file.

examples:
  partition gpt2.onnx --target h100x4 --dim batch=1 --dim seq=128
  partition llama70b-prefill.onnx --target h100x8 --dim batch=1 --dim seq=2048 -o plan.json
  partition model.onnx --target h100x8 --devices auto      # fewest GPUs that fit
  partition model.onnx --target h100x8 --solver params     # DeepSpeed-style baseline
  partition llama70b-decode.onnx --target wse3x4 --dim batch=1 --dim past=4095 --png floor.png
  partition decode.onnx --prefill prefill.onnx --target h100x8 --dim batch=1 --dim past=4095

Ctrl-C during the solve stops the search and writes the best plan found so far.
"""

from __future__ import annotations

import argparse
import shlex
import time
from dataclasses import replace
from pathlib import Path

from partitioner.commands._common import (
    LiveStatus,
    add_model_arguments,
    console,
    err_console,
    external_data_paths,
    load_graph,
    path_from,
)
from partitioner.commands.plan_prefill import (
    add_prefill_arguments,
    prepare_prefill,
    with_prefill,
)
from partitioner.commands.summaries import print_summary, print_wafer_summary
from partitioner.errors import UsageError
from partitioner.outputs import Outputs
from partitioner.plan import Plan
from partitioner.planning import (
    GPU_SOLVERS,
    OBJECTIVES,
    WAFER_SOLVERS,
    GpuOptions,
    PlanOutcome,
    WaferOptions,
    WaferOutcome,
    plan_model,
)
from partitioner.simulate import simulate_plan
from partitioner.simulate.plot import render_png
from partitioner.solvers.interrupt import Interrupt, exit_code
from partitioner.units import human_seconds
from passes.ir import Graph
from targets import Target, WaferTarget, load_target

__all__ = ["add_arguments", "run", "default_plan_path"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    _add_target_arguments(parser)
    _add_solver_arguments(parser.add_argument_group("solver"))
    add_prefill_arguments(parser.add_argument_group("prefill from a second file"))
    _add_gpu_arguments(parser.add_argument_group("GPU targets only (refused on wafers)"))
    _add_wafer_arguments(parser.add_argument_group("wafer targets only (refused on GPUs)"))


def _add_target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        "-t",
        default="gpu",
        metavar="T",
        help="gpu, wafer, a preset name (see `partition targets`) or a .json/.yaml target file (default: gpu = h100x8)",
    )
    parser.add_argument(
        "--devices",
        default=None,
        metavar="N",
        help="use the first N devices of the target, or 'auto' for the fewest that fit (default: all)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PLAN",
        help="where to write the plan (default: next to the model)",
    )
    parser.add_argument(
        "--png",
        type=Path,
        default=None,
        metavar="FILE",
        help="also draw the plan (floorplan and heatmaps on wafers)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the plan path")


def _add_solver_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--solver",
        default="cpsat",
        choices=sorted(set(GPU_SOLVERS) | set(WAFER_SOLVERS)),
        help="GPU targets: cpsat (default; DP warm start, proven bound), dp (exact over one topological "
        "order), greedy, params (DeepSpeed parameter-balanced), uniform (equal node counts). "
        "Wafer targets: cpsat (floorplan warm-started from the snake), snake (serpentine layout), "
        "blind (packing that ignores the graph)",
    )
    group.add_argument(
        "--objective",
        default="auto",
        choices=OBJECTIVES,
        help="auto (default): latency for LLM decode steps (what a stream waits per token), "
        "throughput otherwise; throughput: minimise the slowest stage, then latency; "
        "latency: minimise end-to-end time",
    )
    group.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SEC",
        help="CP-SAT budget in deterministic seconds (about seconds of one core). Default: 30 on GPU "
        "targets; on wafers 5 for the split across wafers and 3 per wafer's floorplan. A deterministic "
        "budget keeps plans reproducible",
    )
    group.add_argument("--seed", type=int, default=0, help="CP-SAT random seed (default 0)")


def _add_gpu_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--tp",
        default=None,
        metavar="N",
        help="tensor-parallel degree, GPUs per stage inside one node, or auto (default: search)",
    )
    group.add_argument(
        "--pp",
        default=None,
        metavar="N",
        help="pipeline stages, or auto (default: search); tp x pp is the devices used",
    )
    group.add_argument(
        "--dp",
        default=None,
        metavar="N",
        help="replicas of the tp x pp pipeline, each on its own devices, serving 1/N of the "
        "requests (default: 1, or searched with --objective throughput)",
    )
    group.add_argument(
        "--microbatches",
        type=int,
        default=None,
        metavar="M",
        help="micro-batches in flight per stage: activation memory is counted M times (default 1)",
    )
    group.add_argument(
        "--overlap",
        action="store_true",
        help="transfers overlap compute (period = max, not sum)",
    )
    group.add_argument(
        "--blocks",
        type=int,
        default=None,
        metavar="N",
        help="coarsen to about N blocks (default: 32 per device, 64..512)",
    )


def _add_wafer_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--regions",
        type=int,
        default=None,
        metavar="N",
        help="regions (rectangles) per wafer (default 48)",
    )
    group.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="CORES",
        help="floorplan in tiles of CORES x CORES cores (default: about 3000 tiles a wafer)",
    )


def default_plan_path(model: Path, target_name: str) -> Path:
    return model.with_name(f"{model.stem}.{target_name}.plan.json")


def _degree_option(flag: str, value: str | None) -> int | None:
    if value is None or value == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{flag} {value[:24]!r}: give a whole number or 'auto'") from None


def _devices_option(value: str | None) -> int | str | None:
    if value is None or value in ("auto", "all"):
        return value
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--devices {value!r}: give a whole number or 'auto'") from None


class SolveDisplay(LiveStatus):
    """Solver progress on stderr: a live status line on a terminal, plain lines in logs."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.live = enabled and err_console.is_terminal
        super().__init__("analysing…", err_console if self.live else None)
        self._last_line_s = 0.0

    def announce(self, message: str) -> None:
        if self.status is not None:
            self.status.update(message)
        elif self.enabled:
            err_console.print(message, markup=False)

    def progress(self, best_s: float, bound_s: float) -> None:
        if not self.enabled:
            return
        gap = (best_s - bound_s) / best_s if best_s > 0 else 0.0
        line = f"CP-SAT: best {human_seconds(best_s)}, bound {human_seconds(bound_s)}, gap {100 * gap:.1f}%"
        if self.status is not None:
            self.status.update(line)
        elif time.monotonic() - self._last_line_s >= 1.0:  # logs get at most a line a second
            self._last_line_s = time.monotonic()
            err_console.print(line, markup=False)


# Options that change where output goes or how much is printed, not the plan.
_OUTPUT_ONLY = {"-o": 1, "--output": 1, "--png": 1, "-q": 0, "--quiet": 0}


def reproducible_command(argv: list[str]) -> str:
    """The command that reproduces the plan, without output-only options.

    Writing the same plan to another file must not change its bytes, so ``-o``,
    ``--png`` and ``--quiet`` are left out of the recorded provenance.
    """
    kept, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in _OUTPUT_ONLY:
            skip = _OUTPUT_ONLY[name] if "=" not in arg else 0
            continue
        kept.append(arg)
    return shlex.join(["partition", *kept])


_GPU_ONLY = {
    "--microbatches": "microbatches",
    "--overlap": "overlap",
    "--blocks": "blocks",
    "--tp": "tp",
    "--pp": "pp",
    "--dp": "dp",
}
_WAFER_ONLY = {"--regions": "regions", "--tile": "tile"}
"""Flags of one target kind, by argparse destination; given for the other kind, they are refused."""


def _refuse_other_kind(args: argparse.Namespace, target: Target) -> None:
    """A flag that does not apply to the target is an error, never silently ignored."""
    wafer = isinstance(target, WaferTarget)
    for flag, dest in (_GPU_ONLY if wafer else _WAFER_ONLY).items():
        if getattr(args, dest) not in (None, False):
            kind, other = ("a wafer", "GPU") if wafer else ("a GPU", "wafer")
            raise UsageError(
                f"{flag} applies to {other} targets only, and {target.name} is {kind} target; drop it"
            )


def plan_options(args: argparse.Namespace, target: Target) -> GpuOptions | WaferOptions:
    """The typed options for ``target``'s kind, checked (UsageError) before any work."""
    _refuse_other_kind(args, target)
    common = {
        "devices": _devices_option(args.devices),
        "solver": args.solver,
        "objective": args.objective,
        "time_limit_s": args.time_limit,
        "seed": args.seed,
        "command": reproducible_command(args.argv),
    }
    if isinstance(target, WaferTarget):
        return WaferOptions(**common, regions_per_wafer=args.regions, tile_cores=args.tile)
    return GpuOptions(
        **common,
        microbatches_in_flight=1 if args.microbatches is None else args.microbatches,
        overlap_transfers=args.overlap,
        target_blocks=args.blocks,
        tp=_degree_option("--tp", args.tp),
        pp=_degree_option("--pp", args.pp),
        dp=_degree_option("--dp", args.dp),
    )


def _declare_outputs(args: argparse.Namespace, target_name: str) -> tuple[Outputs, Path]:
    """The plan (and picture) destinations, checked against the inputs before any work."""
    inputs = [args.model] + [p for p in [Path(args.target)] if p.exists()]
    outputs = Outputs(inputs)
    plan_path = args.output or default_plan_path(args.model, target_name)
    outputs.add("-o", plan_path)
    if args.png is not None:
        outputs.add("--png", args.png)
    return outputs, plan_path


def _with_model_path(plan: Plan, model: Path, plan_path: Path) -> Plan:
    """Record the model's path relative to the plan's folder, so both can move together."""
    return replace(plan, model=replace(plan.model, path=path_from(plan_path.parent, model)))


def _plan(
    args: argparse.Namespace, target: Target, graph: Graph, options: GpuOptions | WaferOptions
) -> PlanOutcome | WaferOutcome:
    display = SolveDisplay(enabled=not args.quiet)
    with display:
        return plan_model(
            graph, target, options, progress=display.progress, announce=display.announce
        )


def run(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    options = plan_options(args, target)
    outputs, plan_path = _declare_outputs(args, target.name)
    with outputs:
        graph = load_graph(args)
        outputs.add_inputs(external_data_paths(graph))
        prefill = prepare_prefill(args, graph, outputs)
        # From here on Ctrl-C and SIGTERM stop the search and keep the best plan.
        with Interrupt() as stop:
            outcome = _plan(args, target, graph, options)
            plan = _with_model_path(outcome.plan, args.model, plan_path.resolve())
            plan = with_prefill(prefill, plan, graph, target, plan_path.resolve().parent)
            outputs.stage(plan_path, plan.to_json())
            if args.png is not None:
                title = f"{args.model.name} on {plan.target.name}"
                outputs.stage(args.png, render_png(simulate_plan(plan), title))
            outputs.commit()
    if not args.quiet:
        (print_wafer_summary if isinstance(target, WaferTarget) else print_summary)(outcome)
    if outcome.interrupted or stop.hit:
        err_console.print(
            f"interrupted: wrote the best plan found so far ({plan.solver.status}) to {plan_path}",
            markup=False,
        )
        return exit_code(stop.signum)
    console.print(
        f"plan written to {plan_path}" + (f", picture in {args.png}" if args.png else ""),
        markup=False,
    )
    return 0
