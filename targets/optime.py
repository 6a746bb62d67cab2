"""One op's time by the roofline: its compute, memory and launch terms (`targets.cost`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OpTime"]


@dataclass(frozen=True)
class OpTime:
    """One op's roofline terms; it takes ``max(compute_s, memory_s) + launch_s``, or, on a
    device whose compute does not hide its memory traffic (``overlap`` false: one CPU
    thread), ``compute_s + memory_s + launch_s``."""

    compute_s: float
    memory_s: float
    launch_s: float
    overlap: bool = True

    @property
    def total_s(self) -> float:
        both = (
            max(self.compute_s, self.memory_s) if self.overlap else self.compute_s + self.memory_s
        )
        return both + self.launch_s

    @property
    def bound(self) -> str:
        """What limits it: ``"compute"`` or ``"memory"`` (launches aside)."""
        return "compute" if self.compute_s >= self.memory_s else "memory"
