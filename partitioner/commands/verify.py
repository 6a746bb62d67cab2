"""Prove that a plan computes the model's numbers: run it partition by partition.

The NumPy executor runs each partition in plan order, with tensors moving only
through the plan's transfers; onnxruntime runs the whole model; the outputs are
compared with tolerances per dtype (or --rtol/--atol). On a mismatch, the first
partition whose outgoing tensors diverge from onnxruntime's is named.

Inputs are generated (seeded) unless --inputs gives an .npz with one array per
model input: token ids within their embedding's range, masks of ones, floats
from a normal distribution. Weights must be available (external data files
next to the model).

With --prefill FILE (a plan made with that prefill file, `partition DECODE
--prefill FILE`), the prefill graph split as the plan prices it runs the same
way, on generated inputs: its numbers are checked, not its memory, which the
plan does not hold for a prefill pass.

Exit 0 when everything matches, 1 on a mismatch, 2 for bad input.

examples:
  partition verify gpt2.onnx gpt2.h100x4.plan.json
  partition verify model.onnx plan.json --inputs batch.npz --rtol 1e-3 --json
  partition verify decode.onnx plan.json --prefill prefill.onnx
"""

from __future__ import annotations

import argparse
import json
import math
import time
import zipfile
from pathlib import Path

import numpy as np
from rich.table import Table
from rich.text import Text

from partitioner.commands._common import console, err_console
from partitioner.commands.plan_prefill import add_prefill_arguments, load_prefill
from partitioner.errors import UsageError
from partitioner.executor.errors import FeedError, UnsupportedOpError
from partitioner.executor.runtime import missing_kernels
from partitioner.executor.verify import (
    Tolerance,
    VerifyReport,
    check_inputs,
    make_inputs,
    verify_plan,
)
from partitioner.export.prefill import prefill_plan
from partitioner.pairing import plan_for_model
from partitioner.plan import Plan
from partitioner.plan.io import regular_file_problem
from partitioner.plan.validate import validate_plan
from partitioner.units import human_bytes
from passes.functions import expand_nodes
from passes.ir import Graph
from passes.load import load, require_external_data
from passes.transforms.dims import parse_dim_overrides

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", type=Path, help="the .onnx file (with its weights)"
    )
    parser.add_argument("plan", metavar="PLAN", type=Path, help="the plan JSON made for this model")
    parser.add_argument(
        "--inputs", type=Path, metavar="FILE.npz", help="model inputs (default: generated)"
    )
    parser.add_argument(
        "--rtol", type=float, default=None, help="relative tolerance (default: per dtype)"
    )
    parser.add_argument(
        "--atol", type=float, default=None, help="absolute tolerance (default: per dtype)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for generated inputs (default 0)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_prefill_arguments(
        parser.add_argument_group("the prefill file of a decode/prefill pair"),
        help_text="the prefill file the plan was made with (`partition DECODE --prefill "
        "FILE`): also run split as the plan prices it, on generated inputs (numbers only)",
    )


_NPZ_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive of .npy files


def _load_inputs(path: Path) -> dict[str, np.ndarray]:
    problem = regular_file_problem(path)
    if problem is not None:
        raise FeedError(f"inputs file '{path}' {problem}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != _NPZ_MAGIC:
        hint = " (it is a single .npy array; save with numpy.savez)" if magic[:1] == b"\x93" else ""
        raise FeedError(
            f"inputs file '{path}' is not an .npz archive{hint}; write one array per model "
            "input with numpy.savez(path, name=array, ...)"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        reason = " ".join(str(err).split())[:160]
        raise FeedError(f"cannot read inputs file '{path}' as .npz: {reason}") from err


def _check_tolerances(args: argparse.Namespace) -> None:
    if (args.rtol is None) != (args.atol is None):
        raise UsageError("give --rtol and --atol together (or neither, for per-dtype defaults)")
    for flag, value in (("--rtol", args.rtol), ("--atol", args.atol)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{flag} {value:g}: give a finite number of at least 0")


# Violations that mean the plan does not describe this model's graph at all: bad
# input (exit 2). Others (transfers, order, memory) are plan faults that verify
# exists to catch: exit 1, as `validate` gives.
_WRONG_MODEL_RULES = ("model", "coverage")


def _plan_for(args: argparse.Namespace) -> tuple[Plan, Graph, list[str]]:
    """The plan, its model and the plan's contract violations against it.

    Raises:
        UsageError: the plan is for another model, or names nodes this model lacks.
    """
    plan, sha = plan_for_model(args.model, args.plan)
    graph = load(args.model, parse_dim_overrides(f"{k}={v}" for k, v in plan.model.dims.items()))
    violations = validate_plan(plan, graph, sha)
    wrong_model = [v for v in violations if v.rule in _WRONG_MODEL_RULES]
    if wrong_model:
        raise UsageError(
            f"the plan does not fit this model: {wrong_model[0]}; "
            f"`partition validate {args.plan} {args.model} --all` lists every violation"
        )
    return plan, graph, [str(v) for v in violations]


def run(args: argparse.Namespace) -> int:
    _check_tolerances(args)
    plan, graph, violations = _plan_for(args)
    if violations:
        err_console.print(
            f"invalid: {violations[0]} (`partition validate {args.plan} {args.model} --all` "
            "lists every violation)",
            markup=False,
        )
        return 1
    _require_kernels(graph)
    require_external_data(graph)
    feeds = _feeds(args, graph)
    prefill = load_prefill(args, graph)
    tolerance = Tolerance(args.rtol, args.atol) if args.rtol is not None else None
    started = time.perf_counter()
    report = verify_plan(graph, plan, feeds, tolerance=tolerance)
    prompt = None if prefill is None else _verify_prefill(graph, prefill, plan, args, tolerance)
    wall = time.perf_counter() - started
    if args.json:
        extra = {} if prompt is None else {"prefill": _numbers(prompt)}
        print(json.dumps({**report.to_dict(), **extra, "wall_s": wall}, indent=1))
    else:
        _print_report(report, len(plan.partitions), wall)
        if prompt is not None:
            console.print(_outputs_table(prompt, f"prefill: {len(plan.partitions)} partitions "
                                         "vs onnxruntime (numbers only)"))  # fmt: skip
    if report.over_memory:
        _print_over_memory(report)
    for what, run in (("", report), ("prefill: ", prompt)):
        if run is not None and not all(c.ok for c in run.outputs):
            _print_mismatch(run, what)
    prompt_ok = prompt is None or all(c.ok for c in prompt.outputs)
    return 0 if report.ok and prompt_ok else 1


def _verify_prefill(
    graph: Graph, prefill: Graph, plan: Plan, args: argparse.Namespace, tolerance: Tolerance | None
) -> VerifyReport:
    """The prefill graph split as the plan prices it (`export.prefill.prefill_plan`), run
    with the executor against onnxruntime on generated inputs."""
    _require_kernels(prefill)
    require_external_data(prefill)
    feeds = make_inputs(prefill, args.seed)
    check_inputs(prefill, feeds, "generated prefill inputs")
    return verify_plan(prefill, prefill_plan(graph, prefill, plan), feeds, tolerance=tolerance)


def _numbers(report: VerifyReport) -> dict:
    """A report's comparisons and divergence, without the memory a prefill split has no
    plan for."""
    doc = report.to_dict()
    ok = all(c.ok for c in report.outputs)
    kept = ("reference", "outputs", "first_divergent_partition", "divergent_tensor")
    return {"ok": ok, **{k: doc[k] for k in kept}}


def _require_kernels(graph: Graph) -> None:
    """Refuse a graph with ops the executor cannot run, naming the first eight.

    Raises:
        UnsupportedOpError: the executor has no kernel for some of the graph's ops.
    """
    missing = missing_kernels(
        expand_nodes(graph, range(graph.num_nodes)),
        {o.domain: o.version for o in graph.model.opset_import},
    )
    if missing:
        listed = ", ".join(f"{op} (node {name})" for name, op in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise UnsupportedOpError(f"the executor has no kernel for: {listed}{more}")


def _feeds(args: argparse.Namespace, graph: Graph) -> dict[str, np.ndarray]:
    """The model's inputs, from --inputs or generated (seeded), checked against the graph."""
    feeds = _load_inputs(args.inputs) if args.inputs else make_inputs(graph, args.seed)
    check_inputs(graph, feeds, f"'{args.inputs}'" if args.inputs else "generated inputs")
    return feeds


def _print_report(report: VerifyReport, num_partitions: int, wall: float) -> None:
    """Per output: the largest errors against the tolerances; then the activations held."""
    console.print(_outputs_table(report, f"{num_partitions} partitions vs onnxruntime"))
    held = ", ".join(
        f"{p.id}: {human_bytes(p.peak_bytes)} (plan {human_bytes(p.planned_bytes)})"
        for p in report.partitions
    )
    console.print(f"activations held per partition: {held}", markup=False)
    console.print(f"reference: {report.reference}; verified in {wall:.1f} s", markup=False)


def _outputs_table(report: VerifyReport, title: str) -> Table:
    """Per output: the largest errors against the tolerances."""
    table = Table(title=title, title_justify="left")
    for col in ("output", "dtype", "max abs", "max rel", "rtol", "atol", ""):
        table.add_column(col, justify="left" if col in ("output", "dtype") else "right")
    for c in report.outputs:
        table.add_row(
            c.name,
            c.dtype,
            f"{c.max_abs:.3g}",
            f"{c.max_rel:.3g}",
            f"{c.tolerance.rtol:g}",
            f"{c.tolerance.atol:g}",
            "ok" if c.ok else Text("MISMATCH", style="red"),
        )
    return table


def _print_over_memory(report: VerifyReport) -> None:
    """Name each partition that held more than its plan's memory leaves for it."""
    runs = {p.id: p for p in report.partitions}
    for pid in report.over_memory:
        run = runs[pid]
        err_console.print(
            f"memory: partition {pid} held {human_bytes(run.peak_bytes)} besides its "
            f"parameters, more than the {human_bytes(run.planned_bytes)} its plan gives it",
            markup=False,
        )


def _print_mismatch(report: VerifyReport, what: str = "") -> None:
    """Say that the run differs, naming the first partition that diverges when known."""
    where = (
        f"; first divergence: partition {report.first_divergent_partition} "
        f"(tensor {report.divergent_tensor!r})"
        if report.first_divergent_partition is not None
        else ""
    )
    err_console.print(
        f"{what}mismatch: the partitioned run differs from onnxruntime{where}", markup=False
    )
