"""Rank 0's part after the run: check the outputs, put the report together, print it.

The outputs of every timed micro-batch are compared with onnxruntime running
the whole model on the same generated inputs, with `verify`'s tolerances
(`compare_output`); an output is reported with its worst micro-batch.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from partitioner.console import console, err_console
from partitioner.executor.reference import run_reference
from partitioner.executor.verify import Comparison, compare_output, make_inputs
from partitioner.outputs import Outputs
from partitioner.runtime.program import RunInputs
from partitioner.runtime.report import (
    RankRecord,
    rank_spans,
    stage_figures,
    throughput_figures,
)
from partitioner.simulate import simulate_plan
from partitioner.simulate.trace import chrome_trace
from partitioner.units import human_seconds

__all__ = ["finish_run", "check_outputs", "publish", "render_report", "result_document"]


def check_outputs(
    inputs: RunInputs, seed: int, outputs: Mapping[int, Mapping[str, Any]]
) -> list[Comparison]:
    """Each output's worst comparison with onnxruntime over the micro-batches given (the
    first of each input set: micro-batch ``m`` ran input set ``m``, seeded ``seed + m``)."""
    worst: dict[str, Comparison] = {}
    for microbatch in sorted(outputs):
        reference = run_reference(inputs.graph.path, make_inputs(inputs.graph, seed + microbatch))  # type: ignore[arg-type]
        for name, value in sorted(outputs[microbatch].items()):
            c = compare_output(name, value, reference.outputs[name], None, reference.float32_copy)
            if name not in worst or (not c.ok, c.max_rel) > (
                not worst[name].ok,
                worst[name].max_rel,
            ):
                worst[name] = c
    return [worst[name] for name in sorted(worst)]


def _comparison_dict(c: Comparison) -> dict[str, Any]:
    return {
        "name": c.name, "dtype": c.dtype, "max_abs": c.max_abs, "max_rel": c.max_rel,
        "rtol": c.tolerance.rtol, "atol": c.tolerance.atol, "ok": c.ok,
    }  # fmt: skip


def result_document(
    inputs: RunInputs,
    args: argparse.Namespace,
    records: Sequence[RankRecord],
    outputs: Mapping[int, Mapping[str, Any]],
    round_sizes: Sequence[int],
) -> dict[str, Any]:
    """The run's JSON report (``--json``), the Chrome trace under ``"trace"``."""
    checks = check_outputs(inputs, args.seed, outputs)
    simulated = simulate_plan(inputs.plan)
    stages = stage_figures(inputs.plan, inputs.layout, records, simulated)
    return {
        "ok": all(c.ok for c in checks) and bool(checks),
        "engine": args.engine,
        "ranks": inputs.layout.world_size,
        "backend": getattr(args, "backend", "gloo"),
        "throughput": throughput_figures(inputs.plan, records, round_sizes, simulated),
        "stages": [s.to_dict() for s in stages],
        "outputs": [_comparison_dict(c) for c in checks],
        "trace": chrome_trace(
            rank_spans(inputs.layout, records),
            {"tool": "partition run", "plan": str(args.plan), "engine": args.engine},
        ),
    }


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _stage_table(stages: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="per micro-batch, measured vs the plan's estimate", title_justify="left")
    for col in ("stage", "ranks", "compute", "est.", "ratio", "collect.", "est.",
                "recv", "est.", "send", "est.", "idle", "busy ratio"):  # fmt: skip
        table.add_column(col, justify="right")
    for s in stages:
        e, r = s["estimated"], s["ratio"]
        ranks = s["ranks"]
        table.add_row(
            str(s["stage"]), f"{ranks[0]}-{ranks[-1]}" if len(ranks) > 1 else str(ranks[0]),
            human_seconds(s["compute_s"]), human_seconds(e["compute_s"]), _ratio(r["compute_s"]),
            human_seconds(s["collective_s"]), human_seconds(e["collective_s"]),
            human_seconds(s["recv_s"]), human_seconds(e["recv_s"]),
            human_seconds(s["send_s"]), human_seconds(e["send_s"]),
            human_seconds(s["idle_s"]), _ratio(r["busy"]),
        )  # fmt: skip
    return table


def render_report(document: Mapping[str, Any], console: Console) -> None:
    """The stage table, the throughput against the simulator's and the output checks."""
    console.print(_stage_table(document["stages"]))
    t = document["throughput"]
    predicted = (
        f"; the simulator predicts {t['predicted_per_s']:.3g}/s ({_ratio(t['measured_per_s'] / t['predicted_per_s'])})"
        if t["predicted_per_s"] and t["measured_per_s"]
        else ""
    )
    measured = t["measured_per_s"] or 0.0
    console.print(
        f"{t['microbatches']} micro-batches in {t['rounds']} round(s) on {document['ranks']} "
        f"ranks ({document['engine']}): {human_seconds(t['measured_s'])}, {measured:.3g}/s{predicted}"
    )
    repeated = document.get("repeated_inputs")
    if repeated and repeated["checked"]:
        changed = len(repeated["changed"])
        console.print(
            f"{repeated['checked']} micro-batches repeated an input set: "
            + (f"{changed} outputs changed" if changed else "their outputs equal the first run's")
        )
    for c in document["outputs"]:
        verdict = Text("ok", style="green") if c["ok"] else Text("MISMATCH", style="red")
        line = Text(
            f"output {c['name']} ({c['dtype']}) vs onnxruntime: max abs {c['max_abs']:.3g}, "
            f"max rel {c['max_rel']:.3g} (rtol {c['rtol']:g}, atol {c['atol']:g}) "
        )
        console.print(line + verdict)


def finish_run(
    inputs: RunInputs,
    args: argparse.Namespace,
    gathered: Sequence[tuple[RankRecord, Mapping[int, Mapping[str, Any]], list[dict[str, Any]]]],
    round_sizes: Sequence[int],
) -> int:
    """Check, report (to --result for the launcher, else printed) and write --trace; exit code."""
    records = [record for record, _, _ in gathered]
    outputs: dict[int, dict[str, Any]] = {}
    for _, mine, _ in gathered:
        for microbatch, values in mine.items():
            outputs.setdefault(microbatch, {}).update(values)
    document = result_document(inputs, args, records, outputs, round_sizes)
    repeats = [r for _, _, changed in gathered for r in changed]
    document["repeated_inputs"] = {"checked": sum(round_sizes) - len(outputs), "changed": repeats}
    document["ok"] = document["ok"] and not repeats
    if getattr(args, "result", None):  # the launcher prints it
        Path(args.result).write_text(json.dumps(document))
        return 0 if document["ok"] else 1
    outputs = Outputs([args.model, args.plan])
    if args.trace is not None:
        outputs.add("--trace", args.trace)
    return publish(document, args, outputs)


def publish(document: dict[str, Any], args: argparse.Namespace, outputs: Outputs) -> int:
    """Write --trace (declared in ``outputs``), print the report or its JSON; the exit code."""
    trace = document.pop("trace")
    with outputs:
        if args.trace is not None:
            outputs.stage(args.trace, json.dumps(trace))
            outputs.commit()
    if args.json:
        print(json.dumps(document, indent=1))
    else:
        render_report(document, console)
    if not document["ok"]:
        err_console.print(
            "mismatch: the distributed run's outputs differ from onnxruntime", markup=False
        )
        return 1
    return 0
