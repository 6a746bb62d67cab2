"""The transform-pass contract (after onnx_ir's pass infrastructure).

A pass is a small class with ``call(graph) -> PassResult(graph, modified)``.
``requires`` and ``ensures`` check its pre- and post-conditions. A
`PassManager` runs a list of passes; when one fails, the error names the
passes that ran before it, so a failure deep in loading is easy to place.
Our IR is immutable, so every pass returns a new object (``in_place`` is False).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from passes.errors import PassError
from targets.errors import PartitionError

__all__ = ["PassResult", "Pass", "PassManager"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class PassResult(Generic[T]):
    """What a pass produced and whether it changed anything."""

    model: T
    modified: bool


class Pass(abc.ABC, Generic[T, U]):
    """A transform pass from ``T`` to ``U`` (usually Graph -> Graph)."""

    in_place: bool = False

    @property
    def name(self) -> str:
        return type(self).__name__

    def requires(self, model: T) -> None:  # noqa: B027 - optional hook
        """Raise PassError if ``model`` is not a valid input for this pass."""

    def ensures(self, model: U) -> None:  # noqa: B027 - optional hook
        """Raise PassError if the pass's result breaks its post-condition."""

    @abc.abstractmethod
    def call(self, model: T) -> PassResult[U]:
        """Run the pass."""

    def __call__(self, model: T) -> PassResult[U]:
        self.requires(model)
        result = self.call(model)
        self.ensures(result.model)
        return result


class PassManager:
    """Runs passes in order; a failure names the passes that ran before it."""

    def __init__(self, passes: Sequence[Pass]) -> None:
        self.passes = list(passes)

    def __call__(self, model: T) -> PassResult[T]:
        modified = False
        ran: list[str] = []
        for p in self.passes:
            after = f" (after {', '.join(ran)})" if ran else ""
            try:
                result = p(model)
            except PassError as err:
                raise PassError(f"pass {p.name} failed{after}: {err}") from err
            except PartitionError:
                raise  # a user-facing error already says what to fix
            except Exception as err:
                err.add_note(f"in pass {p.name}{after}")
                raise
            logger.debug("pass %s modified=%s", p.name, result.modified)
            model = result.model
            modified = modified or result.modified
            ran.append(p.name)
        return PassResult(model, modified)
