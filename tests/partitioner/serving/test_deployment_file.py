"""Deployment files, --fail specs and workload class mixes: what they parse to, and one-line
errors naming the file and the field."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import yaml

from partitioner.errors import UsageError
from partitioner.simulate.serving import Slo, load_workload
from partitioner.simulate.serving.deployment import (
    Deployment,
    Fault,
    PoolSpec,
    check_faults,
    load_deployment,
    parse_deployment,
    parse_fault,
)
from partitioner.simulate.serving.routing import (
    OverflowRouting,
    PromptLengthRouting,
    SloClassRouting,
    WeightedRouting,
)
from partitioner.simulate.serving.workload_file import parse_workload

HYBRID = """
name: hybrid
pools:
  wafer: {plan: plans/wafer.json, max_batch: 64, token_budget: 4096}
  gpu: {plan: gpu.json, replicas: 2}
routing: {policy: slo-class, classes: {interactive: wafer, batch: gpu}}
fallback: gpu
slo:
  interactive: {ttft_p99_s: 0.45, tpot_p99_s: 0.04}
  batch: {ttft_p99_s: 2}
recovery_window_s: 5
"""


def parse(text: str, tmp_path) -> Deployment:
    return parse_deployment(yaml.safe_load(textwrap.dedent(text)), "d.yaml", tmp_path, "d")


def test_a_deployment_file_parses_to_pools_routing_fallback_and_class_slos(tmp_path):
    (tmp_path / "hybrid.yaml").write_text(HYBRID)
    d = load_deployment(tmp_path / "hybrid.yaml")
    folder = tmp_path.resolve()
    assert d == Deployment(
        name="hybrid",
        pools=(
            PoolSpec("wafer", folder / "plans" / "wafer.json", 1, 64, 4096),
            PoolSpec("gpu", folder / "gpu.json", 2),
        ),
        routing=SloClassRouting((("interactive", "wafer"), ("batch", "gpu"))),
        fallback="gpu",
        class_slos=(("interactive", Slo(0.45, 0.04)), ("batch", Slo(2.0, None))),
        recovery_window_s=5.0,
    )
    assert d.routing.to_json() == {
        "policy": "slo-class",
        "classes": {"interactive": "wafer", "batch": "gpu"},
    }


def test_every_policy_parses(tmp_path):
    pools = "pools: {a: {plan: a.json}, b: {plan: b.json}}\n"
    policies = {
        "{policy: prompt-length, threshold_tokens: 1024, short: a, long: b}": PromptLengthRouting(
            1024, "a", "b"
        ),
        "{policy: overflow, primary: a, fallback: b, queue_threshold: 8}": OverflowRouting(
            "a", "b", 8
        ),
        "{policy: weighted, weights: {a: 3, b: 0}}": WeightedRouting((("a", 3.0), ("b", 0.0))),
    }
    for text, routing in policies.items():
        d = parse(pools + f"routing: {text}\n", tmp_path)
        assert d.routing == routing and d.fallback is None and d.name == "d"
        assert d.routing.to_json()["policy"] in text


BAD = {
    "routing: {policy: weighted, weights: {a: 1}}": "deployment d.yaml: pools is required",
    "pools: {a: {plan: a.json, replicas: 0}}": "pools.a.replicas must be a positive integer, got 0",
    "pools: {a: {plan: ../a.json}}": "pools.a.plan '../a.json' lies outside the deployment file",
    "pools: {a: {replicas: 2}}": "pools.a.plan is required",
    "pools: {a: {plan: a.json, gpus: 2}}": "unknown field pools.a.gpus",
    "pools: {a b: {plan: a.json}}": "the pool name pools.a b must be a pool name",
    "pools: {a: {plan: a.json}}\nrouting: {policy: random}": "routing.policy must be one of",
    "pools: {a: {plan: a.json}}\nrouting: {policy: prompt-length, short: a, long: a}": (
        "routing.threshold_tokens is required for policy prompt-length"
    ),
    "pools: {a: {plan: a.json}}\nrouting: {policy: overflow, primary: a, fallback: c, "
    "queue_threshold: 1}": "routing.fallback names pool 'c', which is not in pools",
    "pools: {a: {plan: a.json}}\nrouting: {policy: weighted, weights: {a: 0}}": (
        "routing.weights must give some pool a positive weight"
    ),
    "pools: {a: {plan: a.json}}\nrouting: {policy: weighted, weights: {a: -1}}": (
        "routing.weights.a must be a non-negative number, got -1"
    ),
    "pools: {a: {plan: a.json}}\nrouting: {policy: slo-class, classes: {}}": (
        "routing.classes must be a non-empty mapping"
    ),
    "pools: {a: {plan: a.json}}\nrouting: {policy: weighted, weights: {a: 1}}\nfallback: b": (
        "fallback names pool 'b', which is not in pools"
    ),
    "pools: {a: {plan: a.json}}\nrouting: {policy: weighted, weights: {a: 1}}\n"
    "slo: {chat: {ttft_p99_s: -1}}": "slo.chat.ttft_p99_s must be a positive number, got -1",
    "pools: {a: {plan: a.json}}\nrouting: {policy: weighted, weights: {a: 1}}\n"
    "slo: {chat: {}}": "slo.chat must give ttft_p99_s, tpot_p99_s or both",
    "pools: {a: {plan: a.json}}\nrouting: {policy: weighted, weights: {a: 1}}\nfaults: []": (
        "unknown field the document.faults"
    ),
}


@pytest.mark.parametrize("text", sorted(BAD))
def test_a_bad_field_is_one_line_naming_the_file_and_the_field(text, tmp_path):
    with pytest.raises(UsageError) as err:
        parse(text, tmp_path)
    message = str(err.value)
    assert message.startswith("deployment d.yaml: ") and "\n" not in message
    assert BAD[text] in message


def test_unreadable_and_non_yaml_files_are_one_line(tmp_path):
    with pytest.raises(UsageError, match=r"deployment gone.yaml: cannot be read \("):
        load_deployment(tmp_path / "gone.yaml")
    (tmp_path / "bad.yaml").write_text("pools: [\n")
    with pytest.raises(UsageError, match="deployment bad.yaml: not valid YAML"):
        load_deployment(tmp_path / "bad.yaml")


def test_fail_specs_parse_and_bad_ones_say_why(tmp_path):
    d = parse(
        "pools: {wafer: {plan: w.json}}\nrouting: {policy: weighted, weights: {wafer: 1}}", tmp_path
    )
    assert parse_fault("wafer@30", d) == Fault("wafer", 30.0, None)
    assert parse_fault("wafer@2.5:10", d) == Fault("wafer", 2.5, 10.0)
    assert parse_fault("wafer@2.5:10", d).end_s == 12.5
    for spec, message in {
        "wafer": "give POOL@T or POOL@T:DURATION",
        "gpu@1": "the deployment has no pool 'gpu' (pools: wafer)",
        "wafer@-1": "T must be a non-negative number of seconds, got '-1'",
        "wafer@x": "T must be a non-negative number of seconds, got 'x'",
        "wafer@1:0": "DURATION must be a positive number of seconds, got '0'",
        "wafer@1:inf": "DURATION must be a positive number of seconds, got 'inf'",
    }.items():
        with pytest.raises(UsageError, match=f"--fail {spec}: ") as err:
            parse_fault(spec, d)
        assert message in str(err.value)
    check_faults([Fault("wafer", 0.0, 5.0), Fault("wafer", 5.0)])  # back to back is fine
    with pytest.raises(UsageError, match="pool wafer is already down at 4 s"):
        check_faults([Fault("wafer", 0.0, 5.0), Fault("wafer", 4.0)])


WORKLOAD = {
    "arrivals": {"process": "poisson", "rate": 5.0},
    "requests": 2000,
    "prompt_len": {"distribution": "uniform", "min": 1, "max": 100},
    "output_len": 8,
    "seed": 4,
}


def test_a_class_mix_draws_classes_from_its_own_stream(tmp_path):
    plain = parse_workload(WORKLOAD, "w.yaml", tmp_path, "w")
    mixed = parse_workload(
        WORKLOAD | {"classes": {"chat": 0.25, "batch": 0.75}}, "w.yaml", tmp_path, "w"
    )
    assert mixed.classes == (("chat", 0.25), ("batch", 0.75)) and plain.classes is None
    a, b = plain.sample(), mixed.sample()
    assert a.classes is None
    # the other draws are those of the same seed without classes
    for name in ("arrival_s", "prompt_tokens", "output_tokens"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert b.classes is not None and set(b.classes.tolist()) == {"chat", "batch"}
    assert (b.classes == "chat").mean() == pytest.approx(0.25, abs=0.03)
    assert np.array_equal(mixed.sample().classes, b.classes)  # deterministic
    assert not np.array_equal(mixed.sample(5).classes, b.classes)


def test_a_bad_class_mix_is_one_line(tmp_path):
    for mix, message in (
        ({"chat": 0.5, "batch": 0.4}, "classes: the fractions must sum to 1, not 0.9"),
        ({"chat": -1, "batch": 2}, "classes.chat must be a positive number, got -1"),
        ([0.5], "classes must map class names to fractions"),
    ):
        with pytest.raises(UsageError, match=f"workload w.yaml: {message}"):
            parse_workload(WORKLOAD | {"classes": mix}, "w.yaml", tmp_path, "w")
    assert load_workload("chat").classes is None  # the bundled ones have none
