"""Reading a model: parse, check, apply dims, infer shapes, fold constants.

Planning never loads weights: initializers stored as external data keep their
dims and type, so a 70B-class model is analysed from its graph alone. Only the
commands that execute the model call `require_external_data`, which checks
every external tensor with `passes.external.external_data_ref` (reads stay
inside the model's folder) without opening a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import networkx as nx
import onnx
from google.protobuf.message import DecodeError

from passes.errors import ModelError
from passes.external import (
    ExternalDataRef,
    checked_location,
    external_data_dir,
    external_data_ref,
    file_kind,
    shown,
    weights_as_inputs,
)
from passes.ir import INLINE_MARKER, Graph, build_graph
from passes.model_checks import check_contents, check_sizes
from passes.pass_infra import PassManager
from passes.transforms.dims import ResolveDims
from passes.transforms.fold import FoldConstants
from passes.transforms.shapes import InferShapes

__all__ = [
    "read_model",
    "check_model",
    "load",
    "graph_at_dims",
    "require_external_data",
    "external_data_files",
    "external_data_ref",
    "ExternalDataRef",
    "is_stripped",
    "INLINE_MARKER",
]

logger = logging.getLogger(__name__)

# Planning needs every initializer's dims and type, never a large one's values.
# Inline weights above this size are dropped after parsing and marked as living
# in the model file itself, so passes never copy hundreds of MB around; the
# executor reads them back from the file when it runs the model.
STRIP_ABOVE_BYTES = 16 * 1024


def is_stripped(init: onnx.TensorProto) -> bool:
    """True for an inline weight whose data was dropped after parsing."""
    return any(e.key == INLINE_MARKER for e in init.external_data)


def _strip_inline_weights(model: onnx.ModelProto) -> int:
    stripped = 0
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL or init.ByteSize() <= STRIP_ABOVE_BYTES:
            continue
        for field in (
            "raw_data",
            "float_data",
            "int32_data",
            "int64_data",
            "double_data",
            "uint64_data",
            "string_data",
        ):
            init.ClearField(field)
        init.data_location = onnx.TensorProto.EXTERNAL
        entry = init.external_data.add()
        entry.key, entry.value = INLINE_MARKER, "1"
        stripped += 1
    return stripped


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_regular_file(p: Path) -> bytes:
    """The bytes of ``p``, refusing FIFOs, devices, sockets and directories unopened.

    Reading a FIFO or a terminal blocks forever and /dev/zero never ends, so the
    file type is checked with stat first and again on the open descriptor (the
    path could be swapped in between; O_NONBLOCK keeps that open from blocking).
    """
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise ModelError(f"model file '{p}' does not exist; check the path") from err
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the path
        why = err.strerror if isinstance(err, OSError) else str(err)
        raise ModelError(f"cannot read model file '{shown(str(p))}': {why}") from err
    if stat.S_ISDIR(st.st_mode):
        raise ModelError(f"'{p}' is a directory; give the path of an .onnx file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(
            f"'{p}' is {file_kind(st.st_mode)}, not a regular file; give the path of an .onnx file"
        )
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ModelError(f"'{p}' is {file_kind(mode)}, not a regular file; try again")
            return f.read()
    except OSError as err:
        raise ModelError(f"cannot read model file '{p}': {err.strerror}") from err


def _check_versions(model: onnx.ModelProto, p: Path) -> None:
    """Refuse a model newer than the installed onnx: its ops would be checked and
    inferred against older schemas, silently."""
    fix = "upgrade onnx (pip install -U onnx) or export"
    if model.ir_version > onnx.IR_VERSION:
        raise ModelError(
            f"model '{p}' has IR version {model.ir_version}, newer than the {onnx.IR_VERSION} "
            f"this onnx {onnx.__version__} knows; {fix} with IR version ≤ {onnx.IR_VERSION}"
        )
    known = {
        "": ("the default ONNX domain", onnx.defs.onnx_opset_version()),
        "ai.onnx": ("the default ONNX domain", onnx.defs.onnx_opset_version()),
        "ai.onnx.ml": ("the ai.onnx.ml domain", onnx.defs.onnx_ml_opset_version()),
    }
    for opset in model.opset_import:
        if opset.domain in known and opset.version > known[opset.domain][1]:
            domain, newest = known[opset.domain]
            raise ModelError(
                f"model '{p}' uses opset {opset.version} of {domain}, newer than the {newest} "
                f"this onnx {onnx.__version__} knows; {fix} at opset ≤ {newest}"
            )


def read_model(path: str | Path) -> tuple[onnx.ModelProto, str]:
    """Parse an .onnx file without weights; return it with the file's sha256.

    External data is not read, and large inline weights are dropped after
    parsing (see `is_stripped`): the result holds the graph and every tensor's
    dims and type, plus the values of small constants.

    Raises:
        ModelError: missing, not a regular file, unreadable, not ONNX, truncated,
            or newer (IR version, opset) than the installed onnx.
    """
    p = Path(path)
    data = _read_regular_file(p)
    if not data:
        raise ModelError(f"model file '{p}' is empty; re-export the model")
    # hashlib releases the GIL on large buffers: hash while protobuf parses.
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(_sha256_hex, data)
        model = onnx.ModelProto()
        try:
            model.ParseFromString(data)
        except DecodeError as err:
            raise ModelError(
                f"'{p}' cannot be parsed as an ONNX model (the file is truncated, corrupt, or not "
                "ONNX); re-export it or check the file"
            ) from err
        if model.ir_version <= 0 or not model.HasField("graph") or not model.opset_import:
            raise ModelError(
                f"'{p}' is not an ONNX model (no ir_version, graph or opset); check the file"
            )
        sha = digest.result()
    del data
    _check_versions(model, p)
    _strip_inline_weights(model)
    return model, sha


def _node_label(graph: onnx.GraphProto, index: int) -> str:
    node = graph.node[index]
    name = f"'{shown(node.name)}'" if node.name else f"#{index}"
    return f"{name} ({shown(node.op_type)})"


def _first_unavailable_input(graph: onnx.GraphProto) -> tuple[int, str] | None:
    """(node index, input name) of the first input read before it is available."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    for index, node in enumerate(graph.node):
        missing = next((t for t in node.input if t not in available), None)
        if missing is not None:
            return index, missing
        available.update(node.output)
    return None


def _order_problem(graph: onnx.GraphProto) -> str | None:
    """Why the top-level nodes are not topologically sorted, naming the node; None if they are.

    onnx.checker reports a cycle and a merely unsorted graph alike (over several
    lines); the fix differs, so the producer -> consumer graph tells them apart.
    """
    first = _first_unavailable_input(graph)
    if first is None:
        return None  # the complaint is about a subgraph: the checker's words stand
    index, missing = first
    producer: dict[str, int] = {}
    for i, n in enumerate(graph.node):
        for out in n.output:
            producer.setdefault(out, i)
    reads = f"node {_node_label(graph, index)} reads '{shown(missing)}'"
    if missing not in producer:
        return f"{reads}, which no node, graph input or initializer produces"
    deps = nx.DiGraph()
    deps.add_nodes_from(range(len(graph.node)))
    deps.add_edges_from(
        (producer[t], i) for i, n in enumerate(graph.node) for t in n.input if t in producer
    )
    if nx.has_path(deps, index, producer[missing]):
        loop = [*nx.shortest_path(deps, index, producer[missing]), index]
        why = f"{reads}, which is computed from its own output"
    else:
        try:
            loop = [u for u, _ in nx.find_cycle(deps)]
        except nx.NetworkXNoCycle:
            return (
                f"{reads} before node {_node_label(graph, producer[missing])} produces it: the "
                "nodes are not in topological order; sort them topologically or re-export the model"
            )
        loop.append(loop[0])
        why = f"{reads} too early, and the graph has a cycle elsewhere"
    path = " -> ".join(_node_label(graph, i) for i in loop)
    return f"{why}: a cycle {path}; ONNX graphs must be acyclic, so fix the exporter"


def check_model(model: onnx.ModelProto, path: Path | None = None) -> None:
    """Run onnx.checker on the graph structure (external weights need not exist).

    Raises:
        ModelError: the checker's complaint, on one line.
    """
    try:
        onnx.checker.check_model(weights_as_inputs(model)[0])
    except (onnx.checker.ValidationError, ValueError) as err:
        text = " ".join(str(err).split())  # the checker's message spans lines
        if "topologically sorted" in text:
            text = _order_problem(model.graph) or text
        if len(text) > 400:
            text = text[:399] + "…"
        where = f"'{path}' " if path else ""
        raise ModelError(f"model {where}fails onnx.checker: {text}") from err


def external_data_files(graph: Graph) -> dict[str, list[str]]:
    """External data file (as written in the model) -> names of the tensors stored in it.

    Raises:
        ExternalDataError: a location leaves the model's folder (files need not exist).
    """
    base = external_data_dir(graph)
    files: dict[str, list[str]] = {}
    for init in graph.model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL and not is_stripped(init):
            location = next((e.value for e in init.external_data if e.key == "location"), "")
            checked_location(base, init.name, location)
            files.setdefault(location, []).append(init.name)
    return files


def require_external_data(graph: Graph) -> dict[str, ExternalDataRef]:
    """Check every external weight before a command executes the model; nothing is opened.

    Returns:
        Tensor name -> where its bytes are (see `passes.external.external_data_ref`).

    Raises:
        ExternalDataError: the first tensor whose file is missing, short, not a
            regular file, outside the model's folder, or whose metadata is malformed.
    """
    return {
        init.name: external_data_ref(graph, init)
        for init in graph.model.graph.initializer
        if init.data_location == onnx.TensorProto.EXTERNAL and not is_stripped(init)
    }


def load(path: str | Path, dims: Mapping[str, int] | None = None, *, check: bool = True) -> Graph:
    """Read a model and bring it to the planner's IR.

    Args:
        path: the .onnx file.
        dims: symbolic-dim overrides, name -> value.
        check: run onnx.checker and `passes.model_checks.check_contents` first (names
            that are not UTF-8, unknown element types, mis-sized tensor data).

    Returns:
        A Graph with every resolvable shape inferred and constants folded.

    Raises:
        ModelError, DimError: user-fixable problems, one line each.
    """
    p = Path(path)
    model, sha = read_model(p)
    if check:
        check_contents(model, p)
        check_model(model, p)
    graph = graph_at_dims(model, p, sha, dims or {})
    logger.debug("loaded %s: %d nodes", p, graph.num_nodes)
    return graph


def graph_at_dims(model: onnx.ModelProto, path: Path, sha: str, dims: Mapping[str, int]) -> Graph:
    """The IR of a model `read_model` read, with ``dims`` bound, shapes inferred and
    constants folded (``model`` may be changed: pass a copy to use it again)."""
    graph = build_graph(model, path=path, sha256=sha)
    graph = PassManager([ResolveDims(dims), InferShapes(), FoldConstants()])(graph).model
    check_sizes(graph)  # shapes the passes inferred count too
    return graph
