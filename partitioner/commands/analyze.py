"""Report a model's FLOPs, parameters and memory: totals, per op type, and the top nodes.

Weights are never loaded: a model whose weights live in external files is
analysed from its graph and tensor metadata alone.

examples:
  partition analyze gpt2.onnx --dim batch=1 --dim seq=128
  partition analyze llama-70b-decode.onnx --dim batch=1 --dim past=4095 --json
  partition analyze llama-70b-decode.onnx --dim batch=1 --dim past=4095 --tp 8
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from partitioner.commands._common import add_model_arguments, console, load_graph
from partitioner.errors import UsageError
from partitioner.units import human_bytes, human_count, human_flops
from passes.analysis import (
    CostReport,
    activation_liveness,
    attention_patterns,
    node_costs,
    shard_graph,
)
from passes.ir import Graph

__all__ = ["add_arguments", "run", "analysis_json"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--top", type=int, default=10, metavar="N", help="how many top nodes by FLOPs (default 10)"
    )
    parser.add_argument(
        "--tp",
        type=int,
        default=None,
        metavar="N",
        help="also report tensor-parallel sharding over N ranks: the shardable share of "
        "FLOPs and weights and the collectives it needs (default: off)",
    )


@dataclass(frozen=True)
class _OpTypeRow:
    op_type: str
    count: int
    flops: int
    param_bytes: int
    output_bytes: int
    unknown: int


def _output_bytes(graph: Graph, index: int) -> int:
    return sum(
        graph.tensors[o].nbytes
        for o in graph.nodes[index].present_outputs
        if graph.tensors[o].is_static
    )


def _nodes_json(graph: Graph, costs: CostReport) -> list[dict]:
    return [
        {
            "index": node.index,
            "name": node.name,
            "op_type": node.op_type,
            "domain": node.domain,
            "flops": c.flops,
            "param_bytes": c.param_bytes,
            "output_bytes": _output_bytes(graph, node.index),
            "bytes_read": c.bytes_read,
            "folded": node.folded,
            "known_cost": c.known,
            **({"unknown_reason": c.reason} if not c.known else {}),
        }
        for node, c in zip(graph.nodes, costs.nodes, strict=True)
    ]


def _sharding_json(graph: Graph, degree: int) -> dict:
    plan = shard_graph(graph, degree)
    return {
        "degree": plan.degree,
        "shardable_flops_fraction": plan.shardable_flops_fraction,
        "shardable_param_fraction": plan.shardable_param_fraction,
        "collectives": plan.collective_counts(),
    }


def analysis_json(graph: Graph, tp: int | None = None) -> dict:
    """The `analyze --json` document (DESIGN.md's fields plus a few more).

    With ``tp``, a ``"sharding"`` entry reports the tensor-parallel sharding over
    that many ranks (`passes.analysis.sharding`).
    """
    costs = node_costs(graph)
    live = activation_liveness(graph)
    attention = attention_patterns(graph, costs)
    doc = {
        "model": {
            "path": str(graph.path) if graph.path else None,
            "sha256": graph.sha256,
            "opset": graph.opset,
            "dims": dict(graph.dims),
        },
        "nodes": _nodes_json(graph, costs),
        "totals": {
            "num_nodes": graph.num_nodes,
            "flops": costs.total_flops,
            "param_bytes": costs.param_bytes,
            "param_count": costs.param_count,
            "constant_bytes": costs.constant_bytes,
            "peak_activation_bytes": live.peak_bytes,
            "folded_nodes": sum(1 for n in graph.nodes if n.folded),
            "unknown_cost_nodes": costs.num_unknown,
        },
        "unknown_cost": {op: list(names) for op, names in costs.unknown.items()},
        "attention": [
            {
                "nodes": list(p.nodes),
                "flops": p.flops,
                "q_len": p.q_len,
                "kv_len": p.kv_len,
                "fused": p.fused,
            }
            for p in attention
        ],
    }
    if tp is not None:
        doc["sharding"] = _sharding_json(graph, tp)
    return doc


def _by_op_type(doc: dict) -> list[_OpTypeRow]:
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for n in doc["nodes"]:
        if n["folded"]:
            continue
        row = acc[n["op_type"]]
        row[0] += 1
        row[1] += n["flops"]
        row[2] += n["param_bytes"]
        row[3] += n["output_bytes"]
        row[4] += 0 if n["known_cost"] else 1
    rows = [_OpTypeRow(op, *vals) for op, vals in acc.items()]
    return sorted(rows, key=lambda r: (-r.flops, -r.count, r.op_type))


def _print_totals(graph: Graph, doc: dict) -> None:
    """The model line, then its dims, parameters, compute and peak activation."""
    t = doc["totals"]
    dims = " ".join(f"{k}={v}" for k, v in doc["model"]["dims"].items()) or "(none)"
    folded = t["folded_nodes"]
    console.print(
        Text.assemble(
            (str(graph.path), "bold"),
            f"  opset {graph.opset}, {t['num_nodes']:,} nodes ({folded:,} folded into constants)",
        )
    )
    console.print(f"  sha256       {graph.sha256}")
    console.print(f"  dims         {dims}")
    console.print(
        f"  parameters   {human_count(t['param_count'])} "
        f"({human_bytes(t['param_bytes'])}, of which non-float constants "
        f"{human_bytes(t['constant_bytes'])})"
    )
    console.print(f"  compute      {human_flops(t['flops'])} per run")
    console.print(
        f"  peak activation  {human_bytes(t['peak_activation_bytes'])} "
        "(topological order, weights and KV cache excluded)"
    )


def _print_attention(doc: dict) -> None:
    """One line on the attention subgraphs found, if any: count, score shapes, FLOPs."""
    att = doc["attention"]
    if not att:
        return
    flops = sum(a["flops"] for a in att)
    lengths = {(a["q_len"], a["kv_len"]) for a in att}
    shape = (
        ", ".join(f"{q}x{k}" for q, k in sorted(lengths, key=str))
        if len(lengths) <= 3
        else "various"
    )
    console.print(
        f"  attention    {len(att)} subgraphs (Q·Kᵀ → softmax → ·V; scores {shape}), "
        f"{human_flops(flops)} ({100 * flops / max(doc['totals']['flops'], 1):.1f}% of the FLOPs)"
    )


def _print_unknown_cost(doc: dict) -> None:
    """One line on the nodes whose cost is unknown, if any, per op type."""
    t = doc["totals"]
    if not t["unknown_cost_nodes"]:
        return
    ops = ", ".join(f"{op} ×{len(names)}" for op, names in doc["unknown_cost"].items())
    console.print(
        Text.assemble(
            "  ",
            ("unknown cost", "yellow"),
            f" {t['unknown_cost_nodes']} nodes: {ops} (not counted in the totals)",
        )
    )


def _print_sharding(doc: dict) -> None:
    """One line on the tensor-parallel sharding, if asked for (--tp)."""
    sharding = doc.get("sharding")
    if sharding is None:
        return
    counts = sharding["collectives"]
    collectives = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "none"
    console.print(
        f"  tensor parallel  degree {sharding['degree']}: "
        f"{100 * sharding['shardable_flops_fraction']:.1f}% of the FLOPs and "
        f"{100 * sharding['shardable_param_fraction']:.1f}% of the parameter bytes split; "
        f"collectives per run: {collectives}"
    )


def _op_type_table(doc: dict) -> Table:
    """Nodes, FLOPs, parameters and output bytes per op type, most FLOPs first."""
    table = Table(title="Per op type", title_justify="left")
    for col in ("op type", "nodes", "FLOPs", "% FLOPs", "params", "output bytes"):
        table.add_column(col, justify="left" if col == "op type" else "right")
    total = max(doc["totals"]["flops"], 1)
    for r in _by_op_type(doc):
        name = Text.assemble(r.op_type, (" (unknown cost)", "yellow") if r.unknown else "")
        table.add_row(
            name,
            str(r.count),
            human_flops(r.flops),
            f"{100 * r.flops / total:.1f}",
            human_bytes(r.param_bytes),
            human_bytes(r.output_bytes),
        )
    return table


def _top_nodes_table(doc: dict, top: int) -> Table:
    """The ``top`` nodes with the most FLOPs (ties by index)."""
    ranked = sorted(
        (n for n in doc["nodes"] if n["flops"]), key=lambda n: (-n["flops"], n["index"])
    )
    table = Table(title=f"Top {min(top, len(ranked))} nodes by FLOPs", title_justify="left")
    for col in ("#", "node", "op", "FLOPs", "params", "output bytes"):
        table.add_column(col, justify="left" if col in ("node", "op") else "right")
    for n in ranked[:top]:
        table.add_row(
            str(n["index"]),
            n["name"],
            n["op_type"],
            human_flops(n["flops"]),
            human_bytes(n["param_bytes"]),
            human_bytes(n["output_bytes"]),
        )
    return table


def _print_report(graph: Graph, doc: dict, top: int) -> None:
    _print_totals(graph, doc)
    _print_attention(doc)
    _print_unknown_cost(doc)
    _print_sharding(doc)
    console.print(_op_type_table(doc))
    console.print(_top_nodes_table(doc, top))


def run(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise UsageError(f"--top {args.top}: give a whole number of at least 0")
    if args.tp is not None and args.tp < 1:
        raise UsageError(f"--tp {args.tp}: give a tensor-parallel degree of at least 1")
    graph = load_graph(args)
    doc = analysis_json(graph, args.tp)
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        _print_report(graph, doc, args.top)
    return 0
