"""Hand-written iteration costs for the serving tests (linear in the shape's aggregates)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from partitioner.simulate.serving import IterationShape


@dataclass
class LinearCost:
    """Each stage takes ``base_s + per_row_s·rows + per_context_s·sequence_context_sum``
    (stage ``s`` scaled by ``stage_scale[s]``), and every shape priced is kept in ``shapes``."""

    stages: int = 1
    base_s: float = 1.0
    per_row_s: float = 0.0
    per_context_s: float = 0.0
    stage_scale: tuple[float, ...] = ()
    shapes: list[IterationShape] = field(default_factory=list)

    def stage_seconds(self, shape: IterationShape) -> tuple[float, ...]:
        self.shapes.append(shape)
        one = (
            self.base_s
            + self.per_row_s * shape.rows
            + self.per_context_s * shape.sequence_context_sum
        )
        scale = self.stage_scale or (1.0,) * self.stages
        return tuple(one * k for k in scale)


@dataclass(frozen=True)
class EveryFieldCost:
    """Depends on every aggregate of the shape, differently per stage, so that an
    aggregate counted wrong changes the timeline."""

    stages: int = 1

    def stage_seconds(self, shape: IterationShape) -> tuple[float, ...]:
        one = (
            1e-3
            + 2e-5 * shape.rows
            + 3e-4 * shape.sequences
            + 1e-7 * shape.row_context_sum
            + 5e-8 * shape.sequence_context_sum
            + 1e-6 * shape.max_context
        )
        return tuple(one * (1 + 0.25 * s) for s in range(self.stages))


@dataclass(frozen=True)
class BulkEveryFieldCost(EveryFieldCost):
    """`EveryFieldCost` that also prices a run of decode iterations in one call, as plan
    costs do (`serving.steady`'s bulk path), here by pricing each iteration of the run."""

    def decode_run_seconds(self, first: IterationShape, iterations: int) -> np.ndarray:
        shapes = [first.decode_step(i) for i in range(iterations)]
        return np.array([self.stage_seconds(s) for s in shapes]).T
