"""`partition decode.onnx --prefill prefill.onnx`: a plan that also prices prompts.

The decode graph is planned as usual; the prefill file (the same model's graph
of ``[batch, seq]`` tokens without a KV cache) is then mapped onto the plan's
stages and its load model fitted (`partitioner.planning.prefill_fit`), so that
`simulate` prices each iteration's new prompts as the prefill pass a two-file
serving stack runs.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from partitioner.commands._common import external_data_paths, path_from
from partitioner.errors import UsageError
from partitioner.outputs import Outputs
from partitioner.plan import Plan
from partitioner.planning.prefill_fit import check_pair, fit_prefill, prefill_dims
from partitioner.planning.serving_dims import serving_dims
from passes.ir import Graph
from passes.load import load
from passes.transforms.dims import parse_dim_overrides
from targets import Target, WaferTarget
from targets.cost import WaferCostModel

__all__ = ["add_prefill_arguments", "load_prefill", "prepare_prefill", "with_prefill"]


#: What ``--prefill`` does when planning.
PLAN_PREFILL_HELP = (
    "the same model's prefill graph ([batch, seq] tokens, no KV cache): mapped onto the "
    "decode plan's stages, so simulate prices new prompts as a prefill pass"
)


def add_prefill_arguments(
    group: argparse._ArgumentGroup, help_text: str = PLAN_PREFILL_HELP
) -> None:
    group.add_argument("--prefill", type=Path, default=None, metavar="FILE", help=help_text)
    group.add_argument(
        "--prefill-dim",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="a symbolic dim of the prefill file besides its batch and seq (which take the "
        "plan's batch and past + 1); repeatable",
    )


def prepare_prefill(args: argparse.Namespace, graph: Graph, outputs: Outputs) -> Graph | None:
    """The prefill graph at its dims (before any planning, so bad input fails at once),
    declared an input no output may replace; None without ``--prefill``.

    Raises:
        UsageError: ``--prefill-dim`` without ``--prefill``, or dims that do not bind.
        PartitionError: the file is not a model we read (one line each).
    """
    if args.prefill is None:
        if args.prefill_dim:
            raise UsageError("--prefill-dim needs --prefill FILE")
        return None
    if serving_dims(graph) is None:
        raise UsageError(
            "--prefill needs a decode-step MODEL (a KV-cache input) planned with its batch "
            "and past dims bound (--dim batch=B --dim past=P)"
        )
    outputs.add_inputs([args.prefill])
    prefill = load_prefill(args, graph)
    assert prefill is not None
    outputs.add_inputs(external_data_paths(prefill))
    return prefill


def load_prefill(args: argparse.Namespace, graph: Graph) -> Graph | None:
    """``--prefill FILE`` at its dims (`prefill_dims`), checked to hold the decode model's
    weights; None without it.

    Raises:
        UsageError: ``--prefill-dim`` without ``--prefill``, dims that do not bind, or a
            prefill file of another model.
    """
    if args.prefill is None:
        if args.prefill_dim:
            raise UsageError("--prefill-dim needs --prefill FILE")
        return None
    dims = prefill_dims(args.prefill, graph, parse_dim_overrides(args.prefill_dim or []))
    prefill = load(args.prefill, dims)
    check_pair(graph, prefill)
    return prefill


def with_prefill(
    prefill: Graph | None, plan: Plan, graph: Graph, target: Target, plan_folder: Path
) -> Plan:
    """``plan`` with the prefill graph's load model (``plan`` itself without one); its
    source path is recorded relative to ``plan_folder``, where the plan is written.

    Raises:
        UsageError: the prefill graph's work is not a polynomial in its dims (`fit_prefill`).
    """
    if prefill is None or plan.load_model is None:
        return plan
    if isinstance(target, WaferTarget):
        fitted = fit_prefill(graph, prefill, None, plan.partitions, WaferCostModel(target))
    else:
        fitted = fit_prefill(graph, prefill, target.runtime, plan.partitions)
    assert prefill.path is not None and prefill.sha256 is not None
    source = {"path": path_from(plan_folder, prefill.path), "sha256": prefill.sha256}
    prefill_load = replace(fitted, source=source)
    return replace(plan, load_model=replace(plan.load_model, prefill=prefill_load))
