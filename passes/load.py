"""Reading a model: parse, check, apply dims, infer shapes, fold constants.

Planning never loads weights: initializers stored as external data keep their
dims and type, so a 70B-class model is analysed from its graph alone. Only the
commands that execute the model call `require_external_data`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from passes.errors import ExternalDataError, ModelError
from passes.ir import INLINE_MARKER, Graph, build_graph
from passes.pass_infra import PassManager
from passes.transforms.dims import ResolveDims
from passes.transforms.fold import FoldConstants
from passes.transforms.shapes import InferShapes

__all__ = [
    "read_model",
    "check_model",
    "load",
    "require_external_data",
    "external_data_files",
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


def read_model(path: str | Path) -> tuple[onnx.ModelProto, str]:
    """Parse an .onnx file without weights; return it with the file's sha256.

    External data is not read, and large inline weights are dropped after
    parsing (see `is_stripped`): the result holds the graph and every tensor's
    dims and type, plus the values of small constants.

    Raises:
        ModelError: missing, unreadable, not ONNX, or truncated.
    """
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model file '{p}' does not exist; check the path")
    if p.is_dir():
        raise ModelError(f"'{p}' is a directory; give the path of an .onnx file")
    try:
        data = p.read_bytes()
    except OSError as err:
        raise ModelError(f"cannot read model file '{p}': {err.strerror}") from err
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
    _strip_inline_weights(model)
    return model, sha


def _without_external_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose external-data initializers are graph inputs instead.

    onnx.checker insists that external files exist (relative to the working
    directory for an in-memory model); planning never needs them, so the
    structural check runs on this copy.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    g = copy.graph
    external = [t for t in g.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if not external:
        return copy
    names = {t.name for t in external}
    declared = {i.name for i in g.input}
    keep = [t for t in g.initializer if t.name not in names]
    del g.initializer[:]
    g.initializer.extend(keep)
    for t in external:
        if t.name not in declared:
            g.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return copy


def check_model(model: onnx.ModelProto, path: Path | None = None) -> None:
    """Run onnx.checker on the graph structure (external weights need not exist).

    Raises:
        ModelError: the checker's first complaint, on one line.
    """
    try:
        onnx.checker.check_model(_without_external_initializers(model))
    except (onnx.checker.ValidationError, ValueError) as err:
        first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), str(err))
        where = f"'{path}' " if path else ""
        raise ModelError(f"model {where}fails onnx.checker: {first}") from err


def external_data_files(graph: Graph) -> dict[str, list[str]]:
    """External data file (as written in the model) -> names of the tensors stored in it."""
    files: dict[str, list[str]] = {}
    for init in graph.model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL and not is_stripped(init):
            info = {e.key: e.value for e in init.external_data}
            files.setdefault(info.get("location", ""), []).append(init.name)
    return files


def require_external_data(graph: Graph) -> None:
    """Check that every external weight is on disk, for commands that execute the model.

    Raises:
        ExternalDataError: names the missing or short file and a tensor stored in it.
    """
    base = graph.path.parent if graph.path else Path.cwd()
    for init in graph.model.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL or is_stripped(init):
            continue
        info = {e.key: e.value for e in init.external_data}
        location = info.get("location", "")
        file = base / location
        if not location or not file.is_file():
            raise ExternalDataError(
                f"weights of tensor '{init.name}' are stored in external file '{location}', "
                f"which is missing next to the model (looked in {base}); copy it there, or use "
                "a model with weights (planning and `analyze` do not need them)"
            )
        end = int(info.get("offset", 0)) + int(info.get("length", 0))
        if file.stat().st_size < end:
            raise ExternalDataError(
                f"external file '{location}' is too short for tensor '{init.name}' "
                f"(needs {end} bytes, has {file.stat().st_size}); the file is truncated"
            )


def load(path: str | Path, dims: Mapping[str, int] | None = None, *, check: bool = True) -> Graph:
    """Read a model and bring it to the planner's IR.

    Args:
        path: the .onnx file.
        dims: symbolic-dim overrides, name -> value.
        check: run onnx.checker first.

    Returns:
        A Graph with every resolvable shape inferred and constants folded.

    Raises:
        ModelError, DimError: user-fixable problems, one line each.
    """
    p = Path(path)
    model, sha = read_model(p)
    if check:
        check_model(model, p)
    graph = build_graph(model, path=p, sha256=sha)
    pipeline = PassManager([ResolveDims(dims or {}), InferShapes(), FoldConstants()])
    graph = pipeline(graph).model
    logger.debug("loaded %s: %d nodes", p, graph.num_nodes)
    return graph
