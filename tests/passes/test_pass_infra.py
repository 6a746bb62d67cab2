"""The transform-pass contract: requires/ensures, and failures that name the passes before."""

from __future__ import annotations

import pytest

from passes.errors import PassError
from passes.pass_infra import Pass, PassManager, PassResult


class AddOne(Pass[int, int]):
    def call(self, model: int) -> PassResult[int]:
        return PassResult(model + 1, True)


class NeedsEven(Pass[int, int]):
    def requires(self, model: int) -> None:
        if model % 2:
            raise PassError(f"{model} is odd")

    def call(self, model: int) -> PassResult[int]:
        return PassResult(model, False)


class Breaks(Pass[int, int]):
    def call(self, model: int) -> PassResult[int]:
        raise ZeroDivisionError("boom")


def test_passes_run_in_order_and_report_modification():
    assert PassManager([AddOne(), AddOne()])(0) == PassResult(2, True)
    assert PassManager([NeedsEven()])(2) == PassResult(2, False)


def test_failed_precondition_names_the_passes_that_ran():
    with pytest.raises(PassError, match=r"pass NeedsEven failed \(after AddOne\): 1 is odd"):
        PassManager([AddOne(), NeedsEven()])(0)


def test_a_bug_keeps_its_traceback_with_a_note():
    with pytest.raises(ZeroDivisionError) as err:
        PassManager([AddOne(), Breaks()])(0)
    assert "in pass Breaks (after AddOne)" in err.value.__notes__
