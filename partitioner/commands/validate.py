"""Check a plan against the plan contract, independently of the solvers.

Without MODEL, the checks that need no graph run (the schema, the target spec
and its sha256, ids, devices, memory within capacity, wafer regions); the
plan's recorded model path (relative to the plan's folder) is used when that
file exists. With the model: its sha256, node coverage, execution order,
transfers for every tensor that crosses partitions, and parameter memory.

Exit 0 if the plan is valid, 1 naming the first violation, 2 for bad input.

examples:
  partition validate gpt2.h100x4.plan.json gpt2.onnx
  partition validate plan.json --all
"""

from __future__ import annotations

import argparse
from pathlib import Path

from partitioner.commands._common import console, err_console
from partitioner.plan import Plan
from partitioner.plan.io import read_plan_text
from partitioner.plan.schema import check_schema, parse_plan_json
from partitioner.plan.validate import validate_plan
from passes.load import load
from passes.transforms.dims import parse_dim_overrides

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", type=Path, help="the plan JSON")
    parser.add_argument(
        "model", metavar="MODEL", type=Path, nargs="?", help="the .onnx file the plan is for"
    )
    parser.add_argument(
        "--all", action="store_true", help="list every violation, not only the first"
    )


def _load(path: Path) -> tuple[Plan | None, list[str]]:
    """The plan, or the schema's complaints about it (a malformed plan is a violation, exit 1)."""
    doc = parse_plan_json(read_plan_text(path), source=f"'{path}'")
    problems = check_schema(doc)
    return (None, problems) if problems else (Plan.from_dict(doc), [])


def _recorded_model(plan: Plan, plan_path: Path) -> Path | None:
    """The model the plan records, when it exists: its path is relative to the plan's folder."""
    if not plan.model.path:
        return None
    recorded = Path(plan.model.path)
    candidate = recorded if recorded.is_absolute() else plan_path.parent / recorded
    try:
        return candidate if candidate.is_file() else None
    except OSError:  # a path the system cannot look up (too long, ...) names no model here
        return None


def run(args: argparse.Namespace) -> int:
    plan, problems = _load(args.plan)
    if plan is None:
        shown = problems if args.all else problems[:1]
        for problem in shown:
            err_console.print(f"invalid: [schema] {problem}", highlight=False, markup=False)
        return 1
    model_path = args.model if args.model is not None else _recorded_model(plan, args.plan)
    graph = None
    if model_path is not None:
        dims = parse_dim_overrides(f"{k}={v}" for k, v in plan.model.dims.items())
        from passes.load import read_model

        _, sha = read_model(model_path)
        if sha != plan.model.sha256:
            violations = validate_plan(plan, None, sha)
        else:
            graph = load(model_path, dims)
            violations = validate_plan(plan, graph, sha)
    else:
        violations = validate_plan(plan)
    if violations:
        shown = violations if args.all else violations[:1]
        for v in shown:
            err_console.print(f"invalid: {v}", highlight=False, markup=False)
        if not args.all and len(violations) > 1:
            err_console.print(f"({len(violations) - 1} more; --all lists them)")
        return 1
    scope = (
        f"against {model_path}" if graph is not None else "(no model given: graph checks skipped)"
    )
    console.print(
        f"valid: {len(plan.partitions)} partitions, {len(plan.transfers)} transfers {scope}",
        markup=False,  # the model path is the user's text, not rich markup
    )
    return 0
