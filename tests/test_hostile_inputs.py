"""Careless and hostile inputs: one clear line, the right exit code, nothing read or written astray."""

from __future__ import annotations

import builtins
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from partitioner.planning import GpuOptions, plan_pipeline
from passes.load import load
from targets import load_target
from tests.cli import run_cli
from tests.hostile import (
    Workspace,
    assert_clean_error,
    changed_files,
    mkfifo,
    no_hang,
    snapshot,
)
from tests.modelgen import make_model, save, vi


def _plan_doc(w: Workspace) -> dict:
    return json.loads(w.plan.read_text())


def _write(w: Workspace, name: str, text: str) -> str:
    (w.root / name).write_text(text)
    return str(w.root / name)


def _mutated_plan(w: Workspace, mutate: Callable[[dict], None]) -> str:
    doc = _plan_doc(w)
    mutate(doc)
    return _write(w, "mutant.json", json.dumps(doc))


def _npz(w: Workspace, **arrays: np.ndarray) -> str:
    np.savez(w.root / "in.npz", **arrays)
    return str(w.root / "in.npz")


def _embed_plan(w: Workspace) -> str:
    out = w.root / "embed.plan.json"
    dims = ("--dim", "batch=1", "--dim", "seq=4")
    assert run_cli(str(w.embed), "--target", "h100x2", *dims, "-o", str(out), "-q").code == 0
    return str(out)


MODEL = ("--target", "h100x2", "-q")
Case = tuple[str, Callable[[Workspace], list[str]], int, str]
CASES: list[Case] = [
    (
        "dim-overflows-int64",
        lambda w: [str(w.embed), *MODEL, "--dim", "batch=99999999999999999999", "--dim", "seq=2"],
        2,
        "too large",
    ),
    ("time-limit-nan", lambda w: [str(w.model), *MODEL, "--time-limit", "nan"], 2, "--time-limit"),
    ("time-limit-inf", lambda w: [str(w.model), *MODEL, "--time-limit", "inf"], 2, "--time-limit"),
    (
        "rtol-negative",
        lambda w: ["verify", str(w.model), str(w.plan), "--rtol", "-1", "--atol", "0"],
        2,
        "--rtol",
    ),
    (
        "atol-nan",
        lambda w: ["verify", str(w.model), str(w.plan), "--rtol", "0", "--atol", "nan"],
        2,
        "--atol",
    ),
    ("seed-beyond-32-bits", lambda w: [str(w.model), *MODEL, "--seed", str(2**32)], 2, "--seed"),
    (
        "microbatches-huge",
        lambda w: [str(w.model), *MODEL, "--microbatches", str(10**20)],
        2,
        "--microbatches",
    ),
    ("top-negative", lambda w: ["analyze", str(w.model), "--top", "-1"], 2, "--top"),
    (
        "plan-nested-deep",
        lambda w: ["validate", _write(w, "deep.json", "[" * 100_000 + "]" * 100_000)],
        2,
        "nested too deeply",
    ),
    (
        "plan-node-out-of-range",
        lambda w: [
            "verify",
            str(w.model),
            _mutated_plan(w, lambda d: d["partitions"][0]["nodes"].append(10**6)),
        ],
        2,
        "does not have",
    ),
    (
        "plan-nan",
        lambda w: [
            "validate",
            _write(
                w, "nan.json", w.plan.read_text().replace('"flops": ', '"flops": NaN, "f": ', 1)
            ),
        ],
        2,
        "NaN",
    ),
    (
        "plan-infinity",
        lambda w: [
            "simulate",
            _write(
                w,
                "inf.json",
                w.plan.read_text().replace('"latency_s": ', '"latency_s": 1e999, "l": ', 1),
            ),
        ],
        2,
        "finite",
    ),
    ("plan-is-folder", lambda w: ["validate", str(w.root)], 2, "is a folder"),
    ("plan-is-fifo", lambda w: ["simulate", str(mkfifo(w.root / "p.fifo"))], 2, "is a FIFO"),
    ("model-is-fifo", lambda w: ["analyze", str(mkfifo(w.root / "m.onnx.fifo"))], 2, "FIFO"),
    ("model-is-dev-zero", lambda w: ["analyze", "/dev/zero"], 2, "/dev/zero"),
    (
        "token-ids-out-of-range",
        lambda w: [
            "verify",
            str(w.embed),
            _embed_plan(w),
            "--inputs",
            _npz(w, ids=np.full((1, 4), 50)),
        ],
        2,
        "outside the 50 rows",
    ),
    (
        "npy-as-inputs",
        lambda w: ["verify", str(w.model), str(w.plan), "--inputs", _npy(w)],
        2,
        "not an .npz",
    ),
    (
        "text-as-npz",
        lambda w: ["verify", str(w.model), str(w.plan), "--inputs", _write(w, "t.npz", "hi")],
        2,
        "not an .npz",
    ),
    (  # each tensor fits a device, but no stage holds a node's input and output at once
        "infeasible-dim-is-proven",
        lambda w: [str(w.embed), *MODEL, "--dim", "batch=200000000", "--dim", "seq=8"],
        2,
        "proven infeasible",
    ),
    (
        "tensor-larger-than-any-device",
        lambda w: [str(w.embed), *MODEL, "--dim", "batch=1000000000000", "--dim", "seq=8"],
        2,
        "alone needs",
    ),
    ("typo-verb", lambda w: ["simulte", str(w.plan)], 2, "did you mean `partition simulate`"),
    (
        "plan-memory-over-capacity",
        lambda w: ["simulate", _mutated_plan(w, _overfill)],
        1,
        "[memory]",
    ),
]


def _npy(w: Workspace) -> str:
    np.save(w.root / "x.npy", np.zeros((2, 96), np.float32))
    return str(w.root / "x.npy")


def _overfill(doc: dict) -> None:
    doc["partitions"][0]["memory_bytes"] = doc["partitions"][0]["capacity_bytes"] + 1


@pytest.mark.parametrize(("case", "argv", "code", "needle"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(ws, case, argv, code, needle) -> None:
    args = argv(ws)
    before = snapshot(ws.root)
    with no_hang():
        result = run_cli(*args)
    assert_clean_error(result, code, needle)
    assert changed_files(before, snapshot(ws.root)) == []


def test_overlapping_wafer_regions_are_flagged(ws) -> None:
    plan = ws.root / "wafer.plan.json"
    result = run_cli(str(ws.model), "--target", "wse2", "--regions", "3", "-o", str(plan), "-q")
    assert result.code == 0, result.err
    doc = json.loads(plan.read_text())
    first, second = doc["partitions"][0]["region"], doc["partitions"][1]["region"]
    second.update(x=first["x"], y=first["y"], wafer=first["wafer"])
    plan.write_text(json.dumps(doc))
    assert_clean_error(run_cli("simulate", str(plan)), 1, "overlap")
    result = run_cli("simulate", str(plan), "--json")
    assert result.code == 1 and json.loads(result.out)["valid"] is False


# ---- reads stay inside the model's folder ---------------------------------------------


def _escaping_model(w: Workspace, location: str) -> Path:
    model = onnx.load(str(w.external), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path = w.root / "escape.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_verify_never_opens_external_data_outside_the_folder(ws, tmp_path, monkeypatch, kind):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(os.urandom(96 * 96 * 4 * 2 + 96 * 4))
    if kind == "symlink":
        (ws.root / "link.bin").symlink_to(secret)
    location = {"absolute": str(secret), "dotdot": "../secret.bin", "symlink": "link.bin"}[kind]
    model = _escaping_model(ws, location)
    plan = ws.root / "escape.plan.json"
    # planning refuses such a model too; make its plan with the library to reach verify
    assert run_cli(str(model), "--target", "h100x2", "-o", str(plan), "-q").code == 2
    graph = load(model)
    plan.write_text(
        plan_pipeline(graph, load_target("h100x2"), GpuOptions(solver="dp")).plan.to_json()
    )
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open
    real_memmap = np.memmap

    def spy(file, *args, **kwargs):
        opened.append(os.path.realpath(file) if isinstance(file, str | Path) else str(file))
        return real_open(file, *args, **kwargs)

    def spy_os(file, *args, **kwargs):
        opened.append(os.path.realpath(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    monkeypatch.setattr(os, "open", spy_os)
    monkeypatch.setattr(np, "memmap", lambda f, *a, **k: spy(f) and real_memmap(f, *a, **k))
    result = run_cli("verify", str(model), str(plan))
    assert_clean_error(result, 2, "confined to the model's folder")
    assert str(secret) not in opened


def test_shape_inference_writes_nothing_to_the_working_directory(ws, tmp_path, monkeypatch):
    """onnxruntime's symbolic fallback used to save sym_shape_infer_temp.onnx in the cwd."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "sym_shape_infer_temp.onnx").write_text("the user's own file")
    monkeypatch.chdir(cwd)
    custom = helper.make_node("Mystery", ["x"], ["y"], domain="com.example", name="m")
    model = save(
        make_model([custom], [vi("x", [2, 4])], [vi("y", [2, 4])], extra_opsets={"com.example": 1}),
        ws.root / "custom.onnx",
    )
    before = snapshot(cwd)
    result = run_cli("analyze", str(model), "--json")
    assert result.code == 0, result.err
    assert changed_files(before, snapshot(cwd)) == []


# ---- the CLI's grammar and messages ---------------------------------------------------


@pytest.mark.parametrize("verb", ["plan", "analyse"])
def test_explicit_plan_verb_and_british_spelling(ws, verb) -> None:
    args = (
        [str(ws.model), *MODEL, "-o", str(ws.root / "v.json")]
        if verb == "plan"
        else [str(ws.model)]
    )
    result = run_cli(verb, *args)
    assert result.code == 0, result.err


def test_validate_finds_the_model_beside_the_plan(ws, tmp_path, monkeypatch) -> None:
    sub = ws.root / "plans"
    sub.mkdir()
    plan = sub / "p.json"
    assert run_cli(str(ws.model), *MODEL, "-o", str(plan)).code == 0
    assert json.loads(plan.read_text())["model"]["path"] == "../model.onnx"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run_cli("validate", str(plan))
    assert result.code == 0 and "against" in result.out, result.err


def test_the_same_plan_in_another_folder_differs_only_in_the_model_path(ws) -> None:
    (ws.root / "sub").mkdir()
    a, b = ws.root / "a.json", ws.root / "sub" / "b.json"
    for out in (a, b):
        assert run_cli(str(ws.model), *MODEL, "-o", str(out)).code == 0
    doc_a, doc_b = json.loads(a.read_text()), json.loads(b.read_text())
    assert doc_a["model"].pop("path") == "model.onnx"
    assert doc_b["model"].pop("path") == "../model.onnx"
    assert doc_a == doc_b


def test_messages_are_not_wrapped_off_a_terminal_and_the_error_comes_last(ws) -> None:
    """A script greps whole lines: progress lines stay whole and the error is the last line."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    dims = ["--dim", "batch=200000000", "--dim", "seq=8"]  # each tensor fits, no stage does
    proc = subprocess.run(
        [sys.executable, "-m", "partitioner", str(ws.embed), "--target", "h100x2", *dims],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), "COLUMNS": "40"},
        timeout=300,
    )
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert lines[-1].startswith("partition: error: proven infeasible")
    assert any(line.startswith("solving with CP-SAT") and "Ctrl-C" in line for line in lines)
    assert all(len(line) > 40 for line in lines)  # nothing was cut at COLUMNS or 80


def test_a_model_that_is_all_constants_has_no_plan(ws) -> None:
    """Every node folds at load time: a clear error, not an infinite throughput in the plan."""
    from tests.modelgen import init

    nodes = [helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    ones = np.ones((2, 4), np.float32)
    model = save(
        make_model(nodes, [], [vi("y", [2, 4])], [init("a", ones), init("b", ones)]),
        ws.root / "constant.onnx",
    )
    for target in ("h100x1", "wse2"):
        out = ws.root / f"constant.{target}.json"
        result = run_cli(str(model), "--target", target, "-o", str(out), "-q")
        assert_clean_error(result, 2, "nothing to run on devices")
        assert not out.exists()


def test_names_that_look_like_markup_are_printed_as_they_are(ws) -> None:
    """ "[/]" is a valid ONNX name; rich must not read it as markup (it raised MarkupError)."""
    nodes = [
        helper.make_node("Relu", ["x"], ["[/]y"], name="[/]"),
        helper.make_node("Relu", ["[/]y"], ["y"], name="[bold]r"),
    ]
    model = save(make_model(nodes, [vi("x", [2, 4])], [vi("y", [2, 4])]), ws.root / "[red].onnx")
    analyzed = run_cli("analyze", str(model))
    assert analyzed.code == 0 and "[/]" in analyzed.out and "[bold]r" in analyzed.out
    plan = ws.root / "[/]plan.json".replace("/", "_")
    assert run_cli(str(model), "--target", "h100x2", "-o", str(plan)).code == 0
    for argv in (("verify", str(model), str(plan)), ("simulate", str(plan))):
        result = run_cli(*argv)
        assert result.code == 0 and "Traceback" not in result.err, result.err
