"""Where a tensor's external data lives, checked before anything is opened.

A model names its external data files itself (``location``), so a hostile or
careless model could point a reader at ``/etc/shadow``, ``../../key`` or a
symlink out of its folder, or at a FIFO that blocks the reader forever. Every
reader of external data (verify, the executor's `WeightStore`, export, run)
goes through `external_data_ref`, which applies onnx's rule without opening
anything, and then reads through `ExternalDataRef.open`.

The rule is onnx's (``onnx.external_data_helper`` and the checker's
``_open_external_data``): the location is relative, stays inside the model's
folder once every symlink is resolved, and names a regular file. Two
deliberate differences: a ``..`` component is refused even when it would come
back inside (onnx normalises it away), and a symlink whose target is inside
the folder is accepted (onnx refuses every symlink; the target is what is read).
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import BinaryIO

import onnx
from onnx import TensorProto

from passes.dtypes import dtype_bits
from passes.errors import ExternalDataError
from passes.ir import INLINE_MARKER, Graph

__all__ = [
    "ExternalDataRef",
    "external_data_ref",
    "external_data_dir",
    "checked_location",
    "file_kind",
    "weights_as_inputs",
    "shown",
]

# Offsets and lengths are byte counts written as decimal digits; anything else
# ("-5", "1e3", "0x10", " 7") is refused rather than guessed at. Thirty digits
# bound the work int() does on a hostile string; real sizes need at most 20.
_BYTE_COUNT = re.compile(r"[0-9]{1,30}")
_SHOWN_CHARS = 80


def shown(text: str | bytes, limit: int | None = _SHOWN_CHARS) -> str:
    """``text`` for a one-line message: control characters escaped, cut after ``limit``."""
    if isinstance(text, bytes):  # protobuf hands back invalid UTF-8 as bytes
        text = text.decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words, for error messages."""
    for test, kind in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "a special file"


@dataclass(frozen=True)
class ExternalDataRef:
    """A validated slice of an external data file: ``length`` bytes at ``offset`` of ``path``.

    ``path`` is the real path (symlinks resolved) inside the model's folder;
    ``length`` is the number of bytes the tensor's dims and type need.
    """

    tensor: str
    location: str
    path: Path
    offset: int
    length: int
    # (st_dev, st_ino) when checked: `open` refuses a file swapped in since.
    identity: tuple[int, int] = field(repr=False, compare=False)

    def open(self) -> BinaryIO:
        """Open the file for reading, refusing anything but the regular file that was checked.

        O_NOFOLLOW and O_NONBLOCK keep a symlink or FIFO swapped in after the
        check from being followed or from blocking the open.
        """
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags | getattr(os, "O_BINARY", 0))
        except OSError as err:
            raise ExternalDataError(
                f"cannot read external data file '{shown(self.location)}' of tensor "
                f"'{shown(self.tensor)}': {err.strerror}; check the file"
            ) from err
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != self.identity:
            os.close(fd)
            raise ExternalDataError(
                f"external data file '{shown(self.location)}' of tensor '{shown(self.tensor)}' "
                "was replaced after it was checked; run the command again"
            )
        return os.fdopen(fd, "rb")


def external_data_dir(graph_or_dir: Graph | str | os.PathLike[str]) -> Path:
    """The folder external data locations are relative to: the model file's folder."""
    if isinstance(graph_or_dir, Graph):
        return graph_or_dir.path.parent if graph_or_dir.path else Path.cwd()
    return Path(graph_or_dir)


def checked_location(base_dir: str | os.PathLike[str], tensor: str, location: str | bytes) -> Path:
    """The real path of ``location`` under ``base_dir``; nothing is opened or required to exist.

    Raises:
        ExternalDataError: the location is empty, absolute, has a ``..``
            component, or resolves (through symlinks) outside ``base_dir``.
    """
    name = shown(tensor)

    def refuse(why: str) -> ExternalDataError:
        return ExternalDataError(
            f"tensor '{name}' has external data location '{shown(location)}', which {why}; "
            f"reads are confined to the model's folder ({shown(str(base_dir), None)}), so put the "
            "file there and give its location relative to the model"
        )

    if isinstance(location, bytes) or "\0" in location:
        raise refuse("is not a valid file name")
    if not location:
        raise ExternalDataError(
            f"tensor '{name}' is stored as external data but names no file (empty location); "
            "re-export the model"
        )
    if os.path.isabs(location):
        raise refuse("is an absolute path")
    if ".." in PurePath(location).parts:
        raise refuse("has a '..' component")
    root = Path(os.path.realpath(base_dir))
    real = Path(os.path.realpath(Path(base_dir) / location))
    if not real.is_relative_to(root):
        raise refuse("resolves through a symbolic link to a file outside it")
    return real


def _byte_count(tensor: TensorProto, key: str, text: str | bytes) -> int:
    if isinstance(text, str) and _BYTE_COUNT.fullmatch(text):
        return int(text)
    raise ExternalDataError(
        f"tensor '{shown(tensor.name)}' has external data {key} '{shown(text)}', which is not "
        "a non-negative decimal byte count; re-export the model"
    )


def _entries(tensor: TensorProto) -> dict[str, str | bytes]:
    info: dict[str, str | bytes] = {}
    for entry in tensor.external_data:
        if entry.key in info and entry.key in ("location", "offset", "length"):
            # Two readers could pick different entries; refuse to guess which is meant.
            raise ExternalDataError(
                f"tensor '{shown(tensor.name)}' gives its external data {entry.key} twice; "
                "re-export the model"
            )
        info[entry.key] = entry.value
    return info


def _data_bytes(tensor: TensorProto) -> int:
    """Bytes the tensor's dims and type need (sub-byte types packed, rounded up)."""
    name = shown(tensor.name)
    try:
        bits = dtype_bits(tensor.data_type)
    except (KeyError, ValueError, TypeError):
        bits = 0  # onnx does not know this element type
    if bits == 0 or tensor.data_type == TensorProto.STRING:
        raise ExternalDataError(
            f"tensor '{name}' is stored as external data with data_type {tensor.data_type}, "
            "which is not a fixed-size ONNX element type; re-export the model"
        )
    if any(d < 0 for d in tensor.dims):
        raise ExternalDataError(
            f"tensor '{name}' has negative dims {list(tensor.dims)}; re-export the model"
        )
    return math.ceil(math.prod(tensor.dims) * bits / 8)


def external_data_ref(
    graph_or_dir: Graph | str | os.PathLike[str], tensor: TensorProto
) -> ExternalDataRef:
    """Check where ``tensor``'s external data lives without opening anything.

    Args:
        graph_or_dir: the model's Graph, or the folder its locations are relative to.
        tensor: an initializer stored as external data (not one `passes.load` stripped).

    Raises:
        ExternalDataError: the location leaves the model's folder, the file is
            missing or not a regular file, offset or length is malformed or
            inconsistent with dims and type, or the file is too short.
    """
    if tensor.data_location != TensorProto.EXTERNAL or any(
        e.key == INLINE_MARKER for e in tensor.external_data
    ):
        raise ValueError(f"tensor '{shown(tensor.name)}' is not stored as external data")
    base = external_data_dir(graph_or_dir)
    info = _entries(tensor)
    location = info.get("location", "")
    path = checked_location(base, tensor.name, location)
    assert isinstance(location, str)  # checked_location refuses bytes
    where = f"external data file '{shown(location)}' of tensor '{shown(tensor.name)}'"
    try:
        st = os.stat(path)  # stat, not open: a FIFO must not block us
    except FileNotFoundError as err:
        raise ExternalDataError(
            f"weights of tensor '{shown(tensor.name)}' are stored in external file "
            f"'{shown(location)}', which is missing next to the model (looked in {base}); copy "
            "it there, or use a model with weights (planning and `analyze` do not need them)"
        ) from err
    except OSError as err:
        raise ExternalDataError(f"cannot read {where}: {err.strerror}; check the file") from err
    if not stat.S_ISREG(st.st_mode):
        raise ExternalDataError(
            f"{where} is {file_kind(st.st_mode)}, not a regular file; put the weights file there"
        )
    offset = _byte_count(tensor, "offset", info.get("offset", "0"))
    need = _data_bytes(tensor)
    length = need
    if "length" in info:
        length = _byte_count(tensor, "length", info["length"])
        if length < need:
            raise ExternalDataError(
                f"tensor '{shown(tensor.name)}' declares external data length {length}, but its "
                f"dims and type need {need} bytes; re-export the model"
            )
    if st.st_size < offset + length:
        raise ExternalDataError(
            f"{where} is too short: needs {offset + length} bytes (offset {offset} + length "
            f"{length}), has {st.st_size}; the file is truncated or the offset is wrong"
        )
    return ExternalDataRef(tensor.name, location, path, offset, need, (st.st_dev, st.st_ino))


def weights_as_inputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, frozenset[str]]:
    """A copy whose weights stored outside the proto are graph inputs instead, and their names.

    External data (and inline data passes.load dropped, which looks like external
    data with no location) makes onnx.checker and onnxruntime's symbolic inference
    look for files, relative to the working directory for an in-memory model.
    Neither needs the values (only their type and dims), so they become inputs.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    g = copy.graph
    external = [t for t in g.initializer if t.data_location == TensorProto.EXTERNAL]
    declared = {i.name for i in g.input}
    added = frozenset(t.name for t in external if t.name not in declared)
    if external:
        names = {t.name for t in external}
        keep = [t for t in g.initializer if t.name not in names]
        del g.initializer[:]
        g.initializer.extend(keep)
        g.input.extend(
            onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
            for t in external
            if t.name in added
        )
    return copy, added
