"""`run_deployment` end to end: a wafer pool and a GPU pool of real plans of the tiny Llama,
routed by class, the wafer pool failing at once; and its refusals."""

from __future__ import annotations

import argparse
import contextlib
import json

import pytest

from examples import llama
from partitioner.cli import build_parser
from partitioner.commands.deployment import (
    add_deployment_arguments,
    print_deployment,
    run_deployment,
    wants_deployment,
)
from partitioner.errors import UsageError
from tests.cli import run_cli

DEPLOYMENT = """\
name: hybrid
pools:
  wafer: {plan: wafer.plan.json, max_batch: 32}
  gpu: {plan: gpu.plan.json, replicas: 2}
routing: {policy: slo-class, classes: {interactive: wafer, batch: gpu}}
fallback: gpu
slo:
  interactive: {ttft_p99_s: 0.05, tpot_p99_s: 0.01}
"""
WORKLOAD = """\
arrivals: {process: offline}
requests: 24
prompt_len: 32
output_len: 8
slo: {ttft_p99_s: 1.0, tpot_p99_s: 0.1}
classes: {interactive: 0.5, batch: 0.5}
"""
PERCENTILES = {"p50", "p90", "p95", "p99"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deployment")
    model = llama.build(folder / "tiny.onnx", "tiny", kind="decode")
    # the snake layout: a wafer plan in a few seconds, rather than CP-SAT's floorplan
    for target, plan, extra in (("h100x2", "gpu", ()), ("wse3", "wafer", ("--solver", "snake"))):
        made = run_cli(str(model), "--target", target, "--dim", "batch=1", "--dim", "past=4095",
                       "-o", str(folder / f"{plan}.plan.json"), "-q", *extra)  # fmt: skip
        assert made.code == 0, made.err
    (folder / "hybrid.yaml").write_text(DEPLOYMENT)
    (folder / "mixed.yaml").write_text(WORKLOAD)
    return folder


def args_of(*argv: str) -> argparse.Namespace:
    parser = build_parser("simulate")
    with contextlib.suppress(argparse.ArgumentError):  # simulate's parser may have them
        add_deployment_arguments(parser)
    return parser.parse_args(list(argv))


def run(folder, *flags: str) -> dict:
    return run_deployment(
        args_of(
            str(folder / "gpu.plan.json"),
            "--deployment",
            str(folder / "hybrid.yaml"),
            "--workload",
            str(folder / "mixed.yaml"),
            *flags,
        )  # fmt: skip
    )


def test_a_failed_wafer_pool_hands_its_requests_to_the_gpus_and_loses_none(folder, capsys):
    doc = run(folder, "--fail", "wafer@0.000001")  # before its first iteration ends
    serving, wafer, gpu = doc["serving"], doc["pools"]["wafer"], doc["pools"]["gpu"]
    for key in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        assert set(serving[key]) >= PERCENTILES
    for key in ("throughput_tokens_per_s", "requests_per_s", "usd_per_million_tokens"):
        assert serving[key] > 0
    assert (serving["requests"], serving["completed"], serving["lost_requests"]) == (24, 24, 0)
    (fault,) = doc["faults"]
    moved = wafer["routed_requests"]
    assert moved > 0 and wafer["completed"] == 0 and gpu["completed"] == 24
    assert fault["moved_requests"] == fault["restarted_requests"] == moved
    assert serving["restarted_requests"] == moved and fault["lost_requests"] == 0
    assert doc["classes"]["interactive"]["restarted"] == moved
    assert doc["classes"]["interactive"]["pools"] == {"gpu": moved}
    assert (wafer["target"], wafer["engines"], gpu["engines"]) == ("wse3", 1, 2)
    assert serving["usd_per_hour"] == pytest.approx(wafer["usd_per_hour"] + gpu["usd_per_hour"])
    # the same flags give the same bytes
    assert json.dumps(run(folder, "--fail", "wafer@0.000001")) == json.dumps(doc)
    print_deployment(doc)
    out = capsys.readouterr().out
    assert "pool wafer down at 1e-06 s to the end" in out and "interactive" in out
    # the wafer pool's estimate beside Cerebras' API prices (the tiny model matches none)
    assert wafer["cerebras_api_prices"]["same_size"] is False and "cerebras_api_prices" not in gpu
    assert "pool wafer: Cerebras' public API lists no model of this size" in out


def test_without_a_fault_each_class_stays_on_its_pool(folder):
    doc = run(folder, "--seed", "2")
    classes = doc["classes"]
    assert set(classes["interactive"]["pools"]) == {"wafer"}
    assert set(classes["batch"]["pools"]) == {"gpu"}
    assert doc["faults"] == [] and doc["serving"]["restarted_requests"] == 0
    assert classes["interactive"]["slo"] == {"ttft_p99_s": 0.05, "tpot_p99_s": 0.01}
    assert classes["batch"]["slo"] == {"ttft_p99_s": 1.0, "tpot_p99_s": 0.1}  # the workload's


def test_refusals_are_one_line(folder, tmp_path):
    assert not wants_deployment(args_of("p.json"))
    assert wants_deployment(args_of("p.json", "--fail", "wafer@1"))
    with pytest.raises(UsageError, match="give --deployment FILE"):
        run_deployment(args_of("p.json", "--fail", "wafer@1"))
    with pytest.raises(UsageError, match="--rate-sweep sweeps one plan"):
        run(folder, "--rate-sweep")
    with pytest.raises(UsageError, match="the deployment has no pool 'cpu'"):
        run(folder, "--fail", "cpu@1")
    (tmp_path / "d.yaml").write_text(DEPLOYMENT.replace("wafer.plan.json", "nope.json"))
    with pytest.raises(UsageError, match=r"deployment d.yaml: pool wafer \(nope.json\): ") as err:
        run_deployment(args_of("p.json", "--deployment", str(tmp_path / "d.yaml")))
    assert "\n" not in str(err.value)


def test_the_command_line_serves_a_deployment_without_a_plan_argument(folder):
    argv = ["simulate", "--deployment", str(folder / "hybrid.yaml"), "--workload",
            str(folder / "mixed.yaml"), "--fail", "wafer@0.000001", "--json"]  # fmt: skip
    result = run_cli(*argv)
    assert result.code == 0, result.err
    assert json.loads(result.out)["serving"]["lost_requests"] == 0
    both = run_cli("simulate", str(folder / "gpu.plan.json"), *argv[1:])
    assert both.code == 2 and "leave PLAN out" in both.err
    assert run_cli("simulate").code == 2  # no plan, no deployment: one line, exit 2
