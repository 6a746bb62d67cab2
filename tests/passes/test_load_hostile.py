"""Hostile inputs: external data outside the model's folder, bad offsets, special files,
cycles, models newer than onnx, corrupt protobufs. Each gives one line, never a hang."""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import random
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnx.onnx_cpp2py_export.checker as c_checker
import pytest
from onnx import TensorProto, helper

from partitioner.executor.weights import WeightStore
from passes.errors import ExternalDataError, ModelError
from passes.load import (
    check_model,
    external_data_files,
    external_data_ref,
    load,
    read_model,
    require_external_data,
)
from tests.cli import run_cli
from tests.modelgen import external_init, init, make_model, save, vi

SECRET = b"top secret bytes".ljust(64, b"!")


class Hung(BaseException):
    """Raised by `deadline`; not an OSError (TimeoutError is one), so no handler swallows it."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a blocking open() or read()."""

    def expire(signum: int, frame: object) -> None:
        raise Hung(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The model's folder; ``tmp_path/secret.bin`` sits outside it."""
    (tmp_path / "secret.bin").write_bytes(SECRET)
    model_dir = tmp_path / "model_dir"
    model_dir.mkdir()
    return model_dir


def _external_model(
    folder: Path,
    location: str,
    *,
    entries: dict[str, str] | None = None,
    dims: tuple[int, ...] = (4,),
    elem: int = TensorProto.FLOAT,
    data_type: int | None = None,
) -> Path:
    """y = x + w with w external at ``location``; ``entries`` override offset/length/..."""
    w = external_init("w", list(dims), elem, location=location)
    info = {e.key: e.value for e in w.external_data} | (entries or {})
    del w.external_data[:]
    for key, value in info.items():
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    if data_type is not None:
        w.data_type = data_type
    node = helper.make_node("Add", ["x", "w"], ["y"], name="add")
    model = make_model([node], [vi("x", list(dims), elem)], [vi("y", list(dims), elem)], [w])
    return save(model, folder / "m.onnx")


class OpenRecorder:
    """Every path handed to open(), os.open() or numpy.memmap while active."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        for module, name in ((builtins, "open"), (io, "open"), (os, "open"), (np, "memmap")):
            monkeypatch.setattr(module, name, self._wrap(getattr(module, name)))

    def _wrap(self, real):  # noqa: ANN001, ANN202
        def recording(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            self.paths.append(str(getattr(file, "name", file)))
            return real(file, *args, **kwargs)

        return recording

    def outside(self, folder: Path) -> list[str]:
        root = folder.resolve()
        return [p for p in self.paths if not Path(os.path.realpath(p)).is_relative_to(root)]


# (location written in the model, how it escapes) -> the phrase the error uses
ESCAPES = {
    "absolute": ("{secret}", "absolute path"),
    "dotdot": ("../secret.bin", "'..'"),
    "dotdot-back-in-and-out": ("sub/../../secret.bin", "'..'"),
    "symlinked-file": ("link.bin", "symbolic link"),
    "symlinked-folder": ("up/secret.bin", "symbolic link"),
}


def _escaping_model(folder: Path, case: str) -> tuple[Path, str]:
    (folder / "link.bin").symlink_to(folder.parent / "secret.bin")
    (folder / "up").symlink_to(folder.parent)
    location = ESCAPES[case][0].format(secret=folder.parent / "secret.bin")
    return _external_model(folder, location), location


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_external_data_outside_the_folder_is_refused_unopened(folder, monkeypatch, case):
    path, location = _escaping_model(folder, case)
    graph = load(path)
    recorder = OpenRecorder(monkeypatch)
    with pytest.raises(ExternalDataError) as err:
        require_external_data(graph)
    message = str(err.value)
    # long locations are cut in the message (tmp paths under xdist are long)
    assert "'w'" in message and location[:40] in message and ESCAPES[case][1] in message
    assert "confined to the model's folder" in message and "\n" not in message
    assert recorder.outside(folder) == []
    with pytest.raises(ExternalDataError, match="confined"):
        external_data_files(graph)


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_weight_store_refuses_before_reading(folder, monkeypatch, case):
    path, _ = _escaping_model(folder, case)
    graph = load(path)
    recorder = OpenRecorder(monkeypatch)
    with pytest.raises(ExternalDataError, match="confined to the model's folder"):
        WeightStore(graph).get("w")
    assert recorder.paths == []  # not even the model's own folder was needed


@pytest.mark.skipif(
    not hasattr(c_checker, "_open_external_data"), reason="onnx does not expose its opener"
)
@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_refused_like_onnx_refuses(folder, case):
    path, location = _escaping_model(folder, case)
    with pytest.raises(onnx.checker.ValidationError):  # onnx's own opener agrees
        c_checker._open_external_data(str(folder), location, "w", True)
    with pytest.raises(ExternalDataError, match="confined"):
        external_data_ref(folder, load(path).model.graph.initializer[0])


def test_long_location_is_cut_in_the_message(folder):
    graph = load(_external_model(folder, "../" + "a" * 5000))
    with pytest.raises(ExternalDataError, match="…") as err:
        require_external_data(graph)
    assert len(str(err.value)) < 600


# external data entries (or data_type) -> the phrase the error uses; the file holds 16 bytes
BAD_METADATA = {
    "negative offset": ({"offset": "-5"}, None, "'-5'"),
    "word offset": ({"offset": "abc"}, None, "'abc'"),
    "float offset": ({"offset": "1e3"}, None, "'1e3'"),
    "hex offset": ({"offset": "0x10"}, None, "'0x10'"),
    "offset past the end": ({"offset": "99999999999"}, None, "offset 99999999999 + length 16"),
    "negative length": ({"length": "-1"}, None, "'-1'"),
    "length below dims": ({"length": "4"}, None, "need 16 bytes"),
    "length past the end": ({"length": "64"}, None, "offset 0 + length 64"),
    "offset plus data past the end": ({"offset": "8"}, None, "offset 8 + length 16"),
    "unknown data_type": ({}, 999, "data_type 999"),
    "string data_type": ({}, TensorProto.STRING, "data_type 8"),
    "undefined data_type": ({}, TensorProto.UNDEFINED, "data_type 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_bad_offset_length_or_type_is_one_line(folder, case):
    entries, data_type, phrase = BAD_METADATA[case]
    path = _external_model(folder, "weights.bin", entries=entries, data_type=data_type)
    (folder / "weights.bin").write_bytes(b"\0" * 16)
    graph = load(path, check=False)
    with pytest.raises(ExternalDataError) as err:
        require_external_data(graph)
    assert phrase in str(err.value) and "'w'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ExternalDataError):
        WeightStore(graph).get("w")


def test_fifo_as_external_data_file_does_not_hang(folder):
    graph = load(_external_model(folder, "weights.bin"))
    os.mkfifo(folder / "weights.bin")
    with deadline(5):
        with pytest.raises(ExternalDataError, match="FIFO"):
            require_external_data(graph)
        with pytest.raises(ExternalDataError, match="FIFO"):
            WeightStore(graph).get("w")


@pytest.mark.parametrize(
    ("location", "elem", "dims", "offset"),
    [
        ("weights.bin", TensorProto.FLOAT, (2, 3), 8),
        ("sub/weights.bin", TensorProto.FLOAT16, (5,), 0),
        ("inside-link.bin", TensorProto.INT4, (5,), 3),  # a symlink that stays inside is fine
    ],
)
def test_valid_external_data_still_reads(folder, location, elem, dims, offset):
    expected = (np.arange(np.prod(dims)).reshape(dims) - 2).astype(
        helper.tensor_dtype_to_np_dtype(elem)
    )
    stored = onnx.numpy_helper.from_array(expected).raw_data  # INT4 packs two per byte
    target = folder / ("weights.bin" if location == "inside-link.bin" else location)
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(b"\xaa" * offset + stored)
    if location == "inside-link.bin":
        (folder / location).symlink_to("weights.bin")
    entries = {"offset": str(offset), "length": str(len(stored))}
    graph = load(_external_model(folder, location, entries=entries, dims=dims, elem=elem))
    refs = require_external_data(graph)
    assert refs["w"].offset == offset and refs["w"].length == len(stored)
    assert external_data_ref(graph, graph.model.graph.initializer[0]) == refs["w"]
    assert external_data_files(graph) == {location: ["w"]}
    np.testing.assert_array_equal(WeightStore(graph).get("w"), expected)


@pytest.mark.parametrize("swap", ["other file", "fifo", "symlink out"])
def test_file_swapped_after_the_check_is_not_read(folder, swap):
    graph = load(_external_model(folder, "weights.bin"))
    (folder / "weights.bin").write_bytes(b"\0" * 16)
    ref = require_external_data(graph)["w"]
    # made beside it and renamed over it, so the new file cannot reuse the old inode
    if swap == "other file":
        (folder / "new").write_bytes(b"\1" * 16)
    elif swap == "fifo":
        os.mkfifo(folder / "new")
    else:
        (folder / "new").symlink_to(folder.parent / "secret.bin")
    os.replace(folder / "new", folder / "weights.bin")
    with deadline(5), pytest.raises(ExternalDataError, match="'weights.bin'"):
        ref.open()


SPECIAL_MODELS = ["fifo", "character device", "socket"]


def _special_file(tmp_path: Path, kind: str) -> Path:
    if kind == "fifo":
        os.mkfifo(tmp_path / "m.onnx")
        return tmp_path / "m.onnx"
    if kind == "character device":
        return Path(os.devnull)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "m.onnx"))
    sock.close()
    return tmp_path / "m.onnx"


@pytest.mark.parametrize("kind", SPECIAL_MODELS)
def test_special_file_as_model_is_refused_unopened(tmp_path, monkeypatch, kind):
    path = _special_file(tmp_path, kind)
    recorder = OpenRecorder(monkeypatch)
    with deadline(5), pytest.raises(ModelError) as err:
        read_model(path)
    assert kind.split()[0] in str(err.value).lower() and "not a regular file" in str(err.value)
    assert recorder.paths == []


def test_cli_analyze_on_a_fifo_or_folder_exits_2_with_one_line(tmp_path):
    for path in (_special_file(tmp_path, "fifo"), tmp_path):
        with deadline(10):
            result = run_cli("analyze", str(path))
        assert result.code == 2
        assert result.err.count("\n") == 1 and "Traceback" not in result.err
        assert result.err.startswith("partition: error: ")


GRAPH_ORDER = {
    # two nodes feeding each other: a real cycle
    "cycle": (
        [
            helper.make_node("Add", ["x", "b"], ["a"], name="first"),
            helper.make_node("Relu", ["a"], ["b"], name="second"),
        ],
        ["'first' (Add)", "'b'", "cycle", "'second' (Relu)"],
    ),
    # acyclic, but the consumer comes first
    "unsorted": (
        [
            helper.make_node("Relu", ["a"], ["b"], name="late"),
            helper.make_node("Relu", ["x"], ["a"], name="early"),
        ],
        ["'late' (Relu)", "'a'", "not in topological order", "'early' (Relu)"],
    ),
}


@pytest.mark.parametrize("case", sorted(GRAPH_ORDER))
def test_cycle_and_unsorted_graph_messages_name_the_node(tmp_path, case):
    nodes, phrases = GRAPH_ORDER[case]
    outputs = [vi(nodes[-1].output[0] if case == "cycle" else "b", [2])]
    path = save(make_model(nodes, [vi("x", [2])], outputs), tmp_path / "m.onnx")
    with pytest.raises(ModelError) as err:
        load(path)
    message = str(err.value)
    assert "\n" not in message
    assert all(p in message for p in phrases), message
    detail = message.split("fails onnx.checker:")[1]  # tmp_path itself says "cycle"
    assert ("cycle" in detail) == (case == "cycle")


def _relu(opset: int = 18, extra: dict[str, int] | None = None) -> onnx.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"])
    return make_model([node], [vi("x", [2])], [vi("y", [2])], opset=opset, extra_opsets=extra)


@pytest.mark.parametrize("case", ["default opset", "ai.onnx opset", "ml opset", "ir version"])
def test_model_newer_than_installed_onnx(tmp_path, case):
    model = _relu(99) if case == "default opset" else _relu()
    if case == "ai.onnx opset":
        model.opset_import[0].domain = "ai.onnx"
        model.opset_import[0].version = 99
    if case == "ml opset":
        model = _relu(extra={"ai.onnx.ml": 99})
    if case == "ir version":
        model.ir_version = 99
    path = save(model, tmp_path / "new.onnx")
    with pytest.raises(ModelError) as err:
        read_model(path)
    message = str(err.value)
    assert "99" in message and "newer than" in message and onnx.__version__ in message
    assert "pip install -U onnx" in message and "\n" not in message


def _mutants(data: bytes) -> Iterator[bytes]:
    """Every byte set to 0x00, 0x63 (99) and 0xff in turn, then random multi-byte flips."""
    for value in (0x00, 0x63, 0xFF):
        for at in range(len(data)):
            yield data[:at] + bytes([value]) + data[at + 1 :]
    rng = random.Random(7)
    for _ in range(200):
        flipped = bytearray(data)
        for _ in range(rng.randint(2, 6)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        yield bytes(flipped)


def test_byte_flipped_models_only_raise_model_error(tmp_path):
    weights = init("w", np.ones((4, 4), np.float32))
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Relu", ["h"], ["y"], name="act"),
    ]
    good = make_model(nodes, [vi("x", [2, 4])], [vi("y", [2, 4])], [weights], opset=18)
    good.graph.initializer.append(external_init("e", [4], location="weights.bin"))
    path = tmp_path / "flipped.onnx"
    for mutant in _mutants(good.SerializeToString()):
        path.write_bytes(mutant)
        try:
            model, _ = read_model(path)
            check_model(model, path)
        except ModelError as err:
            assert "\n" not in str(err)
            continue
        # what is accepted is within what this onnx knows (a flip can hit a version byte)
        assert model.ir_version <= onnx.IR_VERSION
        assert all(
            o.version <= onnx.defs.onnx_opset_version()
            for o in model.opset_import
            if o.domain in ("", "ai.onnx")
        )
