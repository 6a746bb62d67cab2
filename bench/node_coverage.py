"""ONNX backend node-test coverage of the NumPy executor, as a per-op table.

Usage::

    python bench/node_coverage.py                  # every op, then the totals
    python bench/node_coverage.py --op Slice --failures
    python bench/node_coverage.py --claimed --json > coverage.json

"claimed" ops are those with a registered kernel; the pass rate is passed /
supported, where a case is unsupported when its model needs an op (or an opset
of it) without a kernel. ``Op (expanded)`` rows are the function-body variants
of the same cases, made of primitive ops.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from partitioner.executor.conformance import (  # noqa: E402
    EXPANDED,
    CaseResult,
    OpCoverage,
    agrees_with_onnxruntime,
    kernel_ops,
    load_node_cases,
    run_cases,
    summarize,
)

__all__ = ["main"]


def _rate(passed: int, total: int) -> str:
    return f"{100 * passed / total:6.1f}%" if total else "     -"


def _print_table(rows: Sequence[OpCoverage], claimed: set[str]) -> None:
    print(f"{'op':<44} {'cases':>5} {'supp':>5} {'pass':>5} {'fail':>5} {'rate':>7}  kernel")
    for row in rows:
        has_kernel = row.op.removesuffix(EXPANDED) in claimed
        print(
            f"{row.op:<44} {row.cases:>5} {row.supported:>5} {row.passed:>5} {row.failed:>5} "
            f"{_rate(row.passed, row.supported):>7}  {'yes' if has_kernel else '-'}"
        )


def _totals(rows: Sequence[OpCoverage], claimed: set[str]) -> dict[str, dict[str, int]]:
    def tally(selected: Sequence[OpCoverage]) -> dict[str, int]:
        return {
            "ops": len(selected),
            "cases": sum(r.cases for r in selected),
            "supported": sum(r.supported for r in selected),
            "passed": sum(r.passed for r in selected),
        }

    mine = [r for r in rows if EXPANDED not in r.op and r.op in claimed]
    return {"all": tally(rows), "claimed": tally(mine)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--op", action="append", help="only this op (repeatable)")
    parser.add_argument("--claimed", action="store_true", help="only ops with a kernel")
    parser.add_argument("--failures", action="store_true", help="list failing cases")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per case")
    args = parser.parse_args(argv)

    claimed = kernel_ops()
    cases = load_node_cases()
    ops = set(args.op) if args.op else (claimed if args.claimed else None)
    start = time.perf_counter()
    results: list[CaseResult] = run_cases(cases, ops=ops, timeout_s=args.timeout)
    wall_s = time.perf_counter() - start
    rows = summarize(results)
    totals = _totals(rows, claimed)
    failures = [r for r in results if r.status == "failed"]
    by_name = {c.name: c for c in cases}
    arbiter = {r.name: agrees_with_onnxruntime(by_name[r.name]) for r in failures}

    if args.json:
        print(
            json.dumps(
                {
                    "ops": [
                        {"op": r.op, "cases": r.cases, "supported": r.supported, "passed": r.passed}
                        for r in rows
                    ],
                    "totals": totals,
                    "failures": [
                        {
                            "case": r.name,
                            "op": r.op,
                            "error": r.error,
                            "matches_onnxruntime": arbiter[r.name],
                        }
                        for r in failures
                    ],
                    "wall_s": round(wall_s, 2),
                },
                indent=1,
            )
        )
        return 0

    _print_table(rows, claimed)
    print()
    for label, tally in totals.items():
        print(
            f"{label:<8} ops {tally['ops']:>4}  cases {tally['cases']:>5}  supported "
            f"{tally['supported']:>5}  passed {tally['passed']:>5}  "
            f"({_rate(tally['passed'], tally['supported']).strip()} of supported, "
            f"{_rate(tally['passed'], tally['cases']).strip()} of all)"
        )
    print(f"ran {len(results)} cases in {wall_s:.1f} s")
    agreeing = [r for r in failures if arbiter[r.name]]
    if agreeing:
        print(
            f"{len(agreeing)} of the {len(failures)} failing cases match onnxruntime, which disagrees "
            f"with the stored expectation: {', '.join(r.name for r in agreeing)}"
        )
    if args.failures:
        print()
        for r in failures:
            verdict = {
                True: "matches onnxruntime",
                False: "differs from onnxruntime",
                None: "onnxruntime cannot run it",
            }
            print(f"FAIL {r.name} [{r.op}]: {r.error} ({verdict[arbiter[r.name]]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
