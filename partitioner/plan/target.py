"""The plan's ``target`` section: the full target spec the plan was made for.

A plan carries its target's canonical spec, so it can be simulated, checked and
run without the target file; reading it back rebuilds the spec with the target
loader, which checks every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from targets.errors import TargetError
from targets.loader import target_from_dict

__all__ = ["TargetInfo", "spec_problem"]


@dataclass(frozen=True)
class TargetInfo:
    """The target a plan was made for; ``spec`` is the full canonical target spec.

    Attributes:
        problem: Set when the plan was read from JSON (`Plan.from_dict`) and its
            spec does not rebuild into a target, or rebuilds into another kind or
            sha256; `validate_plan` reports it. Not part of the JSON, nor of equality.
    """

    name: str
    kind: str
    sha256: str
    spec: Mapping[str, Any]
    problem: str | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "sha256": self.sha256, "spec": self.spec}

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> TargetInfo:
        """Read a schema-checked ``target`` section, rebuilding its spec with `targets.loader`."""
        info = TargetInfo(doc["name"], doc["kind"], doc["sha256"], doc["spec"])
        return replace(info, problem=spec_problem(info))


def spec_problem(info: TargetInfo) -> str | None:
    """What is wrong with a plan's target spec, as one line (None when nothing is).

    The spec is rebuilt with `targets.loader.target_from_dict`, which checks
    every field and its bounds, and must describe a target of the plan's kind
    whose canonical sha256 is the plan's ``target.sha256``.
    """
    try:
        target = target_from_dict(info.spec)
    except TargetError as err:
        return f"plan target spec: {err}; re-plan, or restore the spec the planner wrote"
    if target.kind != info.kind:
        return (
            f"plan target kind is '{info.kind}' but its spec describes a '{target.kind}' "
            "target; re-plan, or restore the kind the planner wrote"
        )
    if target.sha256 != info.sha256:
        return (
            f"plan target sha256 {info.sha256[:12]}… does not match its spec "
            f"({target.sha256[:12]}…): the spec changed after planning; re-plan for this target"
        )
    return None
