"""A plan read together with the model it was made for (export, verify, run).

`plan_for_model` reads the plan and refuses a model whose sha256 differs from
the one the plan records; `check_valid` turns the plan's first contract
violation into `InvalidPlanError` (exit 1, as `validate` reports it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from partitioner.errors import UsageError
from partitioner.plan import Plan
from partitioner.plan.io import load_plan
from passes.load import read_model
from targets.errors import PartitionError

__all__ = ["InvalidPlanError", "plan_for_model", "check_valid"]


class InvalidPlanError(PartitionError):
    """The plan breaks its contract for this model: a plan fault, as `validate` reports it."""

    exit_code = 1


def plan_for_model(model: Path, plan_path: Path) -> tuple[Plan, str]:
    """The plan and the model's sha256, once they belong together.

    Raises:
        UsageError: the plan was made for another model.
    """
    plan = load_plan(plan_path)
    _, sha = read_model(model)
    prefill = plan.load_model.prefill if plan.load_model is not None else None
    if prefill is not None and prefill.source and sha == prefill.source.get("sha256"):
        raise UsageError(
            f"'{model}' is this plan's prefill file, which the plan prices for simulate; "
            f"give the decode model it was planned for ({plan.model.path}) instead"
        )
    if sha != plan.model.sha256:
        raise UsageError(
            f"the plan is for another model: plan sha256 {plan.model.sha256[:12]}…, "
            f"'{model}' has {sha[:12]}…; plan this model first"
        )
    return plan, sha


def check_valid(violations: Sequence[object], plan_path: Path, model: Path) -> None:
    """Raise `InvalidPlanError` naming the first of ``violations`` (none: return)."""
    if violations:
        raise InvalidPlanError(
            f"invalid plan: {violations[0]} (`partition validate {plan_path} {model} --all` "
            "lists every violation)"
        )
