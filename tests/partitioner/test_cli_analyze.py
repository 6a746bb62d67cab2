"""`partition analyze`: readable report, --json contract, one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

from partitioner.cli import main
from tests.cli import run_cli
from tests.modelgen import init, make_model, save, vi


@pytest.fixture
def mlp(tmp_path):
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2"),
    ]
    inits = [init("w1", np.ones((8, 16), np.float32)), init("w2", np.ones((16, 4), np.float32))]
    return save(
        make_model(nodes, [vi("x", ["batch", 8])], [vi("y", ["batch", 4])], inits),
        tmp_path / "mlp.onnx",
    )


def test_analyze_json_contract(mlp, capsys):
    assert main(["analyze", str(mlp), "--dim", "batch=2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    first = doc["nodes"][0]
    for key in ("index", "name", "op_type", "flops", "param_bytes", "output_bytes"):
        assert key in first
    assert [n["name"] for n in doc["nodes"]] == ["fc1", "relu", "fc2"]
    # 2*2*8*16 + 2*16 + 2*2*16*4 = 512 + 32 + 256
    assert doc["totals"]["flops"] == 800
    assert doc["totals"]["param_bytes"] == (128 + 64) * 4
    assert doc["totals"]["num_nodes"] == 3
    assert doc["model"]["dims"] == {"batch": 2}


def test_analyze_table(mlp, capsys):
    assert main(["analyze", str(mlp), "--dim", "batch=2"]) == 0
    out = capsys.readouterr().out
    assert "Per op type" in out and "MatMul" in out and "Top 3 nodes" in out
    assert "768 B" in out  # parameters in human units


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["analyze", "/no/such.onnx"], "does not exist"),
        (["analyze", "{mlp}"], "unresolved symbolic dims: batch"),
        (["analyze", "{mlp}", "--dim", "batch"], "malformed"),
        (["analyze", "{mlp}", "--dim", "bach=2"], "no symbolic dim 'bach'"),
        (["analyze"], "required"),
    ],
)
def test_bad_input_one_line_exit_2(mlp, argv, needle):
    result = run_cli(*[a.replace("{mlp}", str(mlp)) for a in argv])
    assert result.code == 2
    assert needle in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err


def test_console_entry_point_no_traceback(tmp_path):
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 50)
    proc = subprocess.run(
        [sys.executable, "-m", "partitioner", "analyze", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_analyze_tp_reports_sharding(mlp, capsys):
    # fc1 column split, relu split, fc2 row split: every node and weight split, one all-reduce
    assert main(["analyze", str(mlp), "--dim", "batch=2", "--json", "--tp", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["sharding"] == {
        "degree": 2,
        "shardable_flops_fraction": 1.0,
        "shardable_param_fraction": 1.0,
        "collectives": {"all_reduce": 1},
    }
    assert main(["analyze", str(mlp), "--dim", "batch=2", "--tp", "2"]) == 0
    out = capsys.readouterr().out
    assert "tensor parallel  degree 2: 100.0% of the FLOPs" in out and "1 all_reduce" in out
    # 3 divides none of 8, 16, 4: nothing is split
    assert main(["analyze", str(mlp), "--dim", "batch=2", "--json", "--tp", "3"]) == 0
    sharding = json.loads(capsys.readouterr().out)["sharding"]
    assert sharding["collectives"] == {} and sharding["shardable_flops_fraction"] == 0.0


def test_analyze_without_tp_has_no_sharding(mlp, capsys):
    assert main(["analyze", str(mlp), "--dim", "batch=2", "--json"]) == 0
    assert "sharding" not in json.loads(capsys.readouterr().out)
    assert main(["analyze", str(mlp), "--dim", "batch=2"]) == 0
    assert "tensor parallel" not in capsys.readouterr().out


def test_analyze_tp_below_1_is_a_usage_error(mlp):
    result = run_cli("analyze", str(mlp), "--dim", "batch=2", "--tp", "0")
    assert result.code == 2 and "--tp 0" in result.err and "Traceback" not in result.err
