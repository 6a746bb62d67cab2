"""Hostile target files: every one ends as a short one-line `TargetError`, never a hang or crash.

Target files are user input. Each case here writes one into ``tmp_path`` and
checks that `load_target` raises `TargetError` whose message is one line,
bounded in length, names the file and, where there is one, the field.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pytest
import yaml
from onnx import helper

from targets import TargetError, _yaml, get_preset, load_target
from tests.cli import run_cli
from tests.modelgen import init, make_model, save, vi

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Longest message accepted, not counting the temporary folder's path. The longest honest one,
#: an unknown wafer field followed by the 13 known ones, is about 290 characters; a hostile
#: file may add a clipped 60-character field path to that.
MAX_MESSAGE = 360
HUGE_INT = "1" + "0" * 400  # 10**400: too big for a float
LONG = "k" * 10_000

#: About 480 bytes that expand to 9**9 (387 million) strings through aliases.
BILLION_LAUGHS = "extends: wse3\ndescription:\n" + "".join(
    f"  - &{name} [{','.join([item] * 9)}]\n"
    for name, item in zip("abcdefghi", ['"lol"', *(f"*{n}" for n in "abcdefgh")], strict=True)
)


def load_error(path: Path, tmp_path: Path) -> str:
    """The message of the `TargetError` that loading ``path`` raises, checked to be one short line."""
    with pytest.raises(TargetError) as raised:
        load_target(path)
    message = str(raised.value)
    assert message.splitlines() == [message], message
    assert len(message.replace(str(tmp_path), "<tmp>")) < MAX_MESSAGE, message
    return message


# (file name, content, fragments the message must contain). Each case hangs, crashes with
# a traceback, prints several lines, prints an unbounded message, or is silently accepted
# on a loader without the guards in targets/loader.py; the rest are regression guards.
CASES = [
    ("kind_list.yaml", "kind: [gpu]\n", ["field 'kind'", '["gpu"]']),
    ("kind_map.json", '{"kind": {"gpu": 1}}', ["field 'kind'"]),
    ("kind_list_extends.yaml", "extends: wse3\nkind: [wafer]\n", ["field 'kind'"]),
    ("dup_extends.yaml", "extends: wse3\nextends: h100x8\n", ["field 'extends'", "line 2"]),
    (
        "dup_nested.yaml",
        "extends: wse3\nwafer:\n  clock_hz: 1e9\n  clock_hz: 2e9\n",
        ["field 'clock_hz'", "line 4"],
    ),
    ("dup_extends.json", '{"extends": "wse3", "extends": "h100x8"}', ["field 'extends'"]),
    (
        "dup_nested.json",
        '{"extends": "wse3", "wafer": {"clock_hz": 1e9, "clock_hz": 2e9}}',
        ["field 'clock_hz'"],
    ),
    ("name_list.yaml", "extends: wse3\nname: [a, b]\n", ["field 'name'"]),
    ("name_map.json", '{"extends": "wse3", "name": {"a": 1}}', ["field 'name'"]),
    ("name_slash.yaml", "extends: wse3\nname: ../../etc/x\n", ["field 'name'", "'/'"]),
    ("name_newline.json", '{"extends": "wse3", "name": "a\\nb"}', ["field 'name'", "'a\\nb'"]),
    ("name_long.yaml", f"extends: wse3\nname: {LONG}\n", ["field 'name'", "100 characters"]),
    ("extends_list.yaml", "extends: [wse3]\n", ["field 'extends'"]),
    ("extends_long_list.yaml", f"extends: [{', '.join(['wse3'] * 5000)}]\n", ["field 'extends'"]),
    ("extends_long.yaml", f"extends: {LONG}\n", ["field 'extends'", "not a preset"]),
    ("extends_long_path.yaml", f"extends: {LONG}.yaml\n", ["field 'extends'", "does not exist"]),
    ("extends_nul.yaml", 'extends: "base\\0.yaml"\n', ["field 'extends'"]),
    ("number_map.yaml", "extends: wse3\nnum_wafers: {a: 1}\n", ["field 'num_wafers'"]),
    ("number_list.json", '{"extends": "wse3", "num_wafers": [1]}', ["field 'num_wafers'"]),
    ("nan.yaml", "extends: wse3\nwafer: {clock_hz: .nan}\n", ["field 'wafer.clock_hz'", "NaN"]),
    ("inf.yaml", "extends: wse3\nwafer: {clock_hz: -.inf}\n", ["field 'wafer.clock_hz'"]),
    ("nan.json", '{"extends": "wse3", "wafer": {"clock_hz": NaN}}', ["field 'wafer.clock_hz'"]),
    ("inf.json", '{"extends": "wse3", "num_wafers": Infinity}', ["field 'num_wafers'"]),
    ("bool.yaml", "extends: wse3\nnum_wafers: true\n", ["field 'num_wafers'", "true"]),
    ("bool.json", '{"extends": "wse3", "wafer": {"eta_compute": false}}', ["eta_compute'"]),
    ("huge_int.yaml", f"extends: wse3\nnum_wafers: {HUGE_INT}\n", ["field 'num_wafers'"]),
    ("huge_float.yaml", f"extends: wse3\nwafer: {{clock_hz: {HUGE_INT}}}\n", ["clock_hz'"]),
    ("huge_int.json", f'{{"extends": "wse3", "num_wafers": {HUGE_INT}}}', ["'num_wafers'"]),
    ("int_2_64.yaml", f"extends: wse3\nnum_wafers: {2**64}\n", ["field 'num_wafers'"]),
    ("digits.yaml", f"extends: wse3\nnum_wafers: {'9' * 5000}\n", ["digits", "line 2"]),
    ("digits.json", f'{{"extends": "wse3", "num_wafers": {"9" * 5000}}}', ["digits"]),
    ("bad_date.yaml", "extends: wse3\ndescription: 2024-13-45\n", ["invalid YAML at line 2"]),
    ("top_list.yaml", "- wse3\n- h100x8\n", ["the target spec must be a mapping"]),
    ("top_scalar.json", "42", ["the target spec must be a mapping", "42"]),
    ("top_string.yaml", "wse3\n", ["the target spec must be a mapping", "'wse3'"]),
    ("empty.yaml", "", ["the target spec must be a mapping", "null"]),
    ("empty.json", "", ["invalid JSON"]),
    ("binary.yaml", b"\xff\xfe\x00\x81garbage\x00\x00", ["UTF-8"]),
    ("binary.json", bytes(range(256)), ["UTF-8"]),
    ("nul.yaml", "extends: wse3\x00\n", ["invalid YAML"]),
    ("tag.yaml", "!!python/object:os.system {}\n", ["python/object"]),
    ("tag_value.yaml", "extends: wse3\nname: !!python/name:os.system ''\n", ["python/name"]),
    ("tag_long.yaml", f"extends: wse3\nname: !!python/object:{LONG} {{}}\n", ["invalid YAML"]),
    ("deep_list.yaml", "[" * 10_000 + "]" * 10_000, ["nest"]),
    ("deep_map.yaml", "{a: " * 10_000 + "}" * 10_000, ["nest"]),
    ("deep_block.yaml", "".join(f"{' ' * i}a:\n" for i in range(1_000)), ["nest"]),
    ("deep.json", "[" * 10_000 + "]" * 10_000, ["nest"]),
    ("deep_object.json", '{"a": ' * 100 + "1" + "}" * 100, ["nest"]),
    ("alias.yaml", "extends: wse3\nname: &n x\ndescription: *n\n", ["alias", "line 3"]),
    ("merge_key.yaml", "extends: wse3\n<<: {num_wafers: 2}\n", ["merge", "line 2"]),
    ("newline_key.yaml", 'extends: wse3\n"bad\\nkey": 1\n', ["bad\\nkey"]),
    ("long_key.yaml", f"extends: wse3\n? {LONG}\n: 1\n", ["is not a known field"]),
    ("long_key.json", f'{{"extends": "wse3", "{LONG}": 1}}', ["is not a known field"]),
    ("long_nested_key.json", f'{{"extends": "wse3", "wafer": {{"{LONG}": 1}}}}', ["'wafer.kk"]),
    ("long_dtype.yaml", f"extends: wse3\nwafer: {{fmac_lanes_per_cycle: {{? {LONG}\n: 1}}}}\n", []),
    ("long_value.yaml", f"extends: wse3\nnum_wafers: {LONG}\n", ["field 'num_wafers'"]),
    (
        "newline_dtype.yaml",
        'extends: h100x8\nall_devices: {fallback_peak_dtype: "x\\ny"}\n',
        ["fallback_peak_dtype'"],
    ),
    ("unhashable_key.yaml", "extends: wse3\n? [a, b]\n: 1\n", ["invalid YAML", "unhashable"]),
]


#: The loader parses YAML with libyaml when PyYAML has it, else with PyYAML's own parser.
YAML_PARSERS = ["libyaml", "pure"]
CASES_BY_PARSER = [
    pytest.param(*case, parser, id=f"{case[0]}-{parser}" if parser else case[0])
    for case in CASES
    for parser in ([None] if case[0].endswith(".json") else YAML_PARSERS)
]


def use_yaml_parser(parser: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if parser == "pure":
        monkeypatch.setattr(_yaml, "_YamlLoader", _yaml._PurePythonYamlLoader)
    elif parser == "libyaml" and not yaml.__with_libyaml__:
        pytest.skip("PyYAML is built without libyaml")


@pytest.mark.parametrize(("name", "content", "fragments", "parser"), CASES_BY_PARSER)
def test_hostile_file_is_one_short_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    content: str | bytes,
    fragments: list[str],
    parser: str | None,
) -> None:
    use_yaml_parser(parser, monkeypatch)
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    message = load_error(path, tmp_path)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("parser", YAML_PARSERS)
def test_many_values_are_refused_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parser: str
) -> None:
    """800 KB holding 400,000 numbers: loading them all with PyYAML's parser takes minutes."""
    use_yaml_parser(parser, monkeypatch)
    path = tmp_path / "many.yaml"
    path.write_text("extends: wse3\ndescription: [" + "1," * 400_000 + "1]\n")
    start = time.perf_counter()
    message = load_error(path, tmp_path)
    assert time.perf_counter() - start < 20
    assert "invalid YAML at line 2" in message and "more than 50000 values" in message


@pytest.mark.parametrize("parser", YAML_PARSERS)
def test_a_full_spec_in_yaml_loads_on_either_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parser: str
) -> None:
    use_yaml_parser(parser, monkeypatch)
    target = get_preset("h100x16")
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump(target.to_dict()))
    assert load_target(path) == target
    path.write_text("extends: wse3\nwafer: {clock_hz: 1e9}\n")
    assert load_target(path).wafer.clock_hz == 1e9


def test_billion_laughs_is_refused_fast_in_bounded_memory(tmp_path: Path) -> None:
    """Run in a child with 1 GiB of address space, so a loader that expands the aliases
    fails this test (MemoryError or timeout) rather than taking the machine down."""
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 600
    child = textwrap.dedent(
        """
        import json, resource, sys, time, tracemalloc
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from targets import TargetError, load_target
        tracemalloc.start()
        start = time.perf_counter()
        try:
            load_target(sys.argv[1])
            message = None
        except TargetError as error:
            message = str(error)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        print(json.dumps({"message": message, "elapsed": elapsed, "peak": peak}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OPENBLAS_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", child, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=REPO_ROOT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("loading a billion-laughs YAML did not finish in 60 s")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    message = result["message"]
    assert message is not None and message.splitlines() == [message]
    assert len(message.replace(str(tmp_path), "<tmp>")) < MAX_MESSAGE, message
    assert str(path) in message and "alias" in message
    assert result["elapsed"] < 2.0
    assert result["peak"] < 16 << 20  # bytes traced while loading


@contextmanager
def fifo_at(path: Path) -> Iterator[Path]:
    """A FIFO at ``path``. Opening one to read waits for a writer, so if the loader
    opens it, a timer opens and closes the write end: the test fails, it does not hang."""
    os.mkfifo(path)

    def unblock() -> None:
        with suppress(OSError):  # ENXIO: no reader, the loader did not open the FIFO
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(2.0, unblock)
    timer.daemon = True
    timer.start()
    try:
        yield path
    finally:
        timer.cancel()


def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    with fifo_at(tmp_path / "pipe.yaml") as fifo:
        message = load_error(fifo, tmp_path)
    assert message == f"cannot read target file {fifo}: not a regular file"


def test_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    assert load_error(folder, tmp_path) == f"cannot read target file {folder}: it is a directory"


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("extends: wse3\n" + ("# padding\n" * 200_000))
    message = load_error(path, tmp_path)
    assert message.startswith(f"cannot read target file {path}: it is 2000014 bytes")
    assert "1 MiB" in message


def test_extends_a_missing_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "child.yaml"
    path.write_text("extends: base.yaml\n")
    message = load_error(path, tmp_path)
    assert message.startswith(f"target file {path}: field 'extends' names {tmp_path / 'base.yaml'}")


def test_extends_a_directory_or_fifo(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").mkdir()
    path = tmp_path / "child.yaml"
    path.write_text("extends: base.yaml\n")
    assert "it is a directory" in load_error(path, tmp_path)
    with fifo_at(tmp_path / "pipe.yaml"):
        path.write_text("extends: pipe.yaml\n")
        assert "not a regular file" in load_error(path, tmp_path)


def test_extends_loop_to_itself(tmp_path: Path) -> None:
    path = tmp_path / "self.yaml"
    path.write_text("extends: self.yaml\n")
    assert "'extends' loops" in load_error(path, tmp_path)


def test_long_extends_chain_is_refused(tmp_path: Path) -> None:
    """400 files deep: more than Python's recursion limit allows without a cap."""
    (tmp_path / "f400.yaml").write_text("extends: wse3\n")
    for index in range(400):
        (tmp_path / f"f{index}.yaml").write_text(f"extends: f{index + 1}.yaml\n")
    message = load_error(tmp_path / "f0.yaml", tmp_path)
    assert "field 'extends'" in message and "deep" in message


def test_a_short_extends_chain_still_loads(tmp_path: Path) -> None:
    (tmp_path / "f8.yaml").write_text("extends: wse3\nnum_wafers: 3\n")
    for index in range(8):
        (tmp_path / f"f{index}.yaml").write_text(f"extends: f{index + 1}.yaml\n")
    assert load_target(tmp_path / "f0.yaml").num_devices == 3


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "loop.yaml"
    link.symlink_to(link)
    assert load_error(link, tmp_path).startswith(f"cannot read target file {link}: ")


@pytest.mark.parametrize(
    "content",
    [
        "kind: [gpu]\n",
        "[" * 10_000,
        "extends: wse3\nextends: wse3\n",
        f"extends: wse3\n? {LONG}\n: 1\n",
        "extends: h100x2\nname: a/b\n",
    ],
    ids=["kind_list", "deep", "duplicate", "long_key", "name_slash"],
)
def test_cli_prints_one_line_and_exits_2(tmp_path: Path, content: str) -> None:
    """No -o: the plan's default file name holds the target's name ("a/b" crashed it)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")]
    inits = [init("w", np.ones((8, 4), np.float32))]
    model = save(
        make_model(nodes, [vi("x", [2, 8])], [vi("y", [2, 4])], inits), tmp_path / "m.onnx"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    result = run_cli(str(model), "--target", str(bad))
    assert result.code == 2
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"partition: error: target file {bad}")
    assert len(lines[0].replace(str(tmp_path), "<tmp>")) < MAX_MESSAGE
    assert not list(tmp_path.rglob("*.plan.json"))
