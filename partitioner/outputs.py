"""Files a command reads and writes, under the promise that the user's data is never lost.

Every output a command writes (``-o``, ``--png``, later ``--trace`` and
``export --out``) goes through one `Outputs` set:

- before any work, each destination is checked: it is not one of the command's
  inputs (compared by resolved path and by inode, so hard links and symlinks
  count), not another output, not a folder, device, FIFO or socket, not under
  /dev, /proc or /sys, and its folder accepts a new file (probed by creating one);
- at the end, every file is first written in full to a temporary file beside
  its destination, and only when all are written are they renamed into place,
  so a failure leaves the old files as they were and no partial new ones;
- new files get the permissions the user's umask gives (a replaced file keeps
  its own), not the 0600 of a temporary file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from partitioner.plan.io import regular_file_problem
from targets.errors import PartitionError

__all__ = ["OutputError", "Outputs"]

_SPECIAL_ROOTS = (Path("/dev"), Path("/proc"), Path("/sys"))


class OutputError(PartitionError):
    """An output path would destroy an input or a special file, or cannot be written."""


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def _umask() -> int:
    # os.umask can only be read by setting it; the CLI is single-threaded here.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _symlink_hops(path: Path) -> Iterator[Path]:
    """``path`` made absolute, then each place its symlinks lead to, then the resolved path.

    /dev/stdout resolves through /proc/self/fd/1 to whatever file the shell
    redirected stdout to; only the hops show that it is a special path.
    """
    current = Path(os.path.abspath(path))
    yield current
    for _ in range(40):  # the kernel's own limit on symlink hops
        if not current.is_symlink():
            break
        current = Path(os.path.abspath(current.parent / os.readlink(current)))
        yield current
    yield current.resolve()


@dataclass(frozen=True)
class _Output:
    flag: str
    given: Path
    resolved: Path


class Outputs:
    """The files one command writes: checked before the work, written all or none after it."""

    def __init__(self, inputs: Iterable[Path] = ()) -> None:
        self._inputs: list[Path] = []
        self._outputs: list[_Output] = []
        self._staged: dict[Path, Path] = {}
        self.add_inputs(inputs)

    def add_inputs(self, paths: Iterable[Path]) -> None:
        """Files the command reads; outputs declared before or after must differ from them."""
        new = [Path(p) for p in paths]
        self._inputs.extend(new)
        for out in self._outputs:
            self._check_not_input(out, new)

    def add(self, flag: str, path: Path) -> None:
        """Declare an output; refuses it at once if it cannot be written safely."""
        given = Path(path)
        resolved = given.resolve()
        out = _Output(flag, given, resolved)
        for other in self._outputs:
            if other.resolved == resolved:
                raise OutputError(
                    f"{flag} {given} is also given to {other.flag}; give each output its own file"
                )
        self._check_not_input(out, self._inputs)
        self._check_destination(out)
        self._outputs.append(out)

    def _check_not_input(self, out: _Output, inputs: Iterable[Path]) -> None:
        out_id = _identity(out.resolved)
        for src in inputs:
            same_inode = out_id is not None and out_id == _identity(src)
            if same_inode or Path(src).resolve() == out.resolved:
                raise OutputError(
                    f"{out.flag} {out.given} would overwrite the input '{src}'; "
                    "write the output to another file"
                )

    def _check_destination(self, out: _Output) -> None:
        where = f"{out.flag} {out.given}"
        for hop in _symlink_hops(out.given):
            if any(hop.is_relative_to(root) for root in _SPECIAL_ROOTS):
                raise OutputError(
                    f"{where}: cannot write under {hop.parts[1]!r} (it leads to {hop}); "
                    "give a file path"
                )
        if out.resolved.exists():
            problem = regular_file_problem(out.resolved)
            if problem is not None:
                raise OutputError(f"{where} {problem}; give the path of a file to write")
        folder = out.resolved.parent
        if not folder.is_dir():
            raise OutputError(f"cannot write {where}: folder {folder} does not exist")
        try:  # the only reliable test of writability (root, read-only mounts, ACLs)
            fd, probe = tempfile.mkstemp(
                prefix=f".{out.resolved.name}.", suffix=".probe", dir=folder
            )
        except OSError as err:
            raise OutputError(
                f"cannot write {where}: folder {folder} is not writable ({err.strerror or err})"
            ) from None
        os.close(fd)
        os.unlink(probe)

    def stage(self, path: Path, data: str | bytes) -> None:
        """Write the whole content of a declared output to a temporary file beside it."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        self.stage_stream(path, lambda f: f.write(payload))

    def stage_stream(self, path: Path, write: Callable[[BinaryIO], object]) -> None:
        """Let ``write`` fill a declared output's temporary file piece by piece.

        For outputs too large to hold whole (an exported stage's weights): the
        file is committed or discarded with the others, all or none.
        """
        resolved = Path(path).resolve()
        if resolved not in {o.resolved for o in self._outputs}:
            raise AssertionError(f"{path} was not declared as an output")
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{resolved.name}.", suffix=".tmp", dir=resolved.parent
            )
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
        self._staged[resolved] = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                os.fchmod(f.fileno(), self._mode_for(resolved))
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err.strerror or err}") from None

    @staticmethod
    def _mode_for(destination: Path) -> int:
        try:
            return stat.S_IMODE(destination.stat().st_mode)  # a replaced file keeps its mode
        except OSError:
            return 0o666 & ~_umask()

    def commit(self) -> None:
        """Rename every staged file into place (all are already written in full)."""
        for destination, tmp in list(self._staged.items()):
            try:
                os.replace(tmp, destination)
            except OSError as err:
                raise OutputError(f"cannot write {destination}: {err.strerror or err}") from None
            del self._staged[destination]

    def discard(self) -> None:
        """Remove staged temporary files (after a failure or an interruption)."""
        for tmp in self._staged.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._staged.clear()

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()
