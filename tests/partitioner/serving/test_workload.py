"""Workloads: arrival processes, length distributions, files, traces and their errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from partitioner.errors import UsageError
from partitioner.simulate.serving import (
    Arrivals,
    FixedLength,
    LognormalLength,
    NormalLength,
    Requests,
    UniformLength,
    Workload,
    bundled_workloads,
    load_workload,
    workload_from_args,
)


def workload(
    process: str, rate: float | None = 10.0, burstiness: float = 1.0, count: int = 20_000
) -> Workload:
    arrivals = Arrivals(process, rate, burstiness)
    return Workload("t", "test", count, arrivals, FixedLength(8), FixedLength(4))


def test_gamma_with_burstiness_one_is_the_poisson_process():
    poisson = workload("poisson").sample(3)
    gamma = workload("gamma", burstiness=1.0).sample(3)
    assert np.array_equal(poisson.arrival_s, gamma.arrival_s)
    gaps = np.diff(poisson.arrival_s)
    assert poisson.arrival_s[0] == 0.0  # the first request is sent at once, as bench serve does
    assert 1 / gaps.mean() == pytest.approx(10.0, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)  # exponential: CV 1


def test_burstiness_keeps_the_rate_and_sets_the_spread():
    # gamma gaps with shape k have a coefficient of variation of 1/sqrt(k)
    for k in (0.25, 4.0):
        gaps = np.diff(workload("gamma", burstiness=k).sample(1).arrival_s)
        assert 1 / gaps.mean() == pytest.approx(10.0, rel=0.05)
        assert gaps.std() / gaps.mean() == pytest.approx(1 / math.sqrt(k), rel=0.08)


def test_a_new_rate_rescales_the_same_draws_and_keeps_the_lengths():
    base = load_workload("chat").with_requests(200)
    slow, fast = base.with_rate(2.0).sample(), base.with_rate(8.0).sample()
    assert np.allclose(slow.arrival_s, 4 * fast.arrival_s)
    assert np.array_equal(slow.prompt_tokens, fast.prompt_tokens)
    assert np.array_equal(slow.output_tokens, fast.output_tokens)
    assert not np.array_equal(base.sample(1).prompt_tokens, base.sample(2).prompt_tokens)


def test_offline_puts_everything_at_zero():
    assert not workload("offline", None).sample().arrival_s.any()
    with pytest.raises(UsageError, match="offline workload has no arrival rate"):
        workload("offline", None).with_rate(3.0)


def test_length_distributions_round_clip_and_match_their_parameters():
    rng = np.random.default_rng(0)
    uniform = UniformLength(3, 5).sample(rng, 10_000)
    assert set(uniform.tolist()) == {3, 4, 5}
    lognormal = LognormalLength(100, 0.5).sample(rng, 100_000)
    assert np.median(lognormal) == pytest.approx(100, abs=1)
    assert lognormal.mean() == pytest.approx(100 * math.exp(0.5**2 / 2), rel=0.01)
    clipped = LognormalLength(100, 2.0, min_tokens=10, max_tokens=200).sample(rng, 10_000)
    assert clipped.min() == 10 and clipped.max() == 200
    normal = NormalLength(50, 5, max_tokens=55).sample(rng, 10_000)
    assert normal.dtype == np.int64 and normal.max() == 55
    # E[min(X, c)] = mu - sigma·(phi(z) - z·(1 - Phi(z))), z = (c - mu)/sigma = 1:
    # 50 - 5·(0.24197 - 0.15866) = 49.583
    assert normal.mean() == pytest.approx(49.583, abs=0.15)


def test_workload_from_args():
    cli = workload_from_args(2.5, 100, 512, 64, seed=7)
    reqs = cli.sample()
    assert len(reqs) == 100 and set(reqs.prompt_tokens.tolist()) == {512}
    assert cli.arrivals == Arrivals("poisson", 2.5, 1.0)
    assert workload_from_args(math.inf, 3, 1, 1).sample().arrival_s.tolist() == [0, 0, 0]
    with pytest.raises(UsageError, match="--rate must be a positive number, got 0"):
        workload_from_args(0, 10, 1, 1)
    with pytest.raises(UsageError, match="--output-len must be a positive integer"):
        workload_from_args(1.0, 10, 1, 0)


def test_bundled_workloads_load_and_state_their_sources():
    assert set(bundled_workloads()) >= {
        "chat", "mlperf-llama2-70b-server", "mlperf-llama2-70b-interactive", "offline"
    }  # fmt: skip
    for name in bundled_workloads():
        loaded = load_workload(name)
        assert loaded.name == name and len(loaded.source) > 100
        assert len(loaded.sample()) == loaded.requests
    server = load_workload("mlperf-llama2-70b-server")
    assert (server.slo.ttft_s, server.slo.tpot_s) == (2.0, 0.2)
    interactive = load_workload("mlperf-llama2-70b-interactive")
    assert (interactive.slo.ttft_s, interactive.slo.tpot_s) == (0.45, 0.04)
    chat = load_workload("chat").with_requests(50_000).sample()
    # ShareGPT as vLLM's paper measured it: means 161.31 and 337.99 (within 3 %)
    assert chat.prompt_tokens.mean() == pytest.approx(161.31, rel=0.03)
    assert chat.output_tokens.mean() == pytest.approx(337.99, rel=0.03)
    assert load_workload("offline").sample().arrival_s.max() == 0.0


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_trace_is_read_beside_the_workload_sorted_and_rescalable(tmp_path):
    rows = [(1.0, 10, 3), (0.0, 20, 4), (3.0, 30, 5)]
    lines = [
        json.dumps({"arrival_s": a, "prompt_len": p, "output_len": o, "id": i})
        for i, (a, p, o) in enumerate(rows)
    ]
    write(tmp_path, "t.jsonl", "\n".join(lines) + "\n\n")
    loaded = load_workload(write(tmp_path, "w.yaml", "arrivals: {process: trace, file: t.jsonl}\n"))
    reqs = loaded.sample()
    assert reqs.arrival_s.tolist() == [0.0, 1.0, 3.0]
    assert reqs.prompt_tokens.tolist() == [20, 10, 30] and reqs.output_tokens.tolist() == [4, 3, 5]
    assert loaded.requests == 3 and loaded.name == "w"
    # the trace's own rate is 2 gaps over 3 s; at 2 per second its times shrink by 3
    assert loaded.with_rate(2.0).sample().arrival_s.tolist() == pytest.approx([0.0, 1 / 3, 1.0])
    assert len(loaded.with_requests(2).sample()) == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("arrivals: {process: poisson, rate: -1}\nrequests: 5\nprompt_len: 1\noutput_len: 1\n",
         "workload w.yaml: arrivals.rate must be a positive number, got -1"),
        ("arrivals: {process: poisson, rate: 1}\nrequests: 0\nprompt_len: 1\noutput_len: 1\n",
         "workload w.yaml: requests must be a positive integer, got 0"),
        ("arrivals: {process: poisson, rate: 1}\nrequests: 5\nprompt_len: 1\n",
         "workload w.yaml: output_len is required"),
        ("arrivals: {process: burst}\n", "workload w.yaml: arrivals.process must be one of"),
        ("arrivals: {process: offline, rate: 2}\n", "workload w.yaml: unknown field arrivals.rate"),
        ("arivals: {process: offline}\n", "workload w.yaml: unknown field the document.arivals"),
        ("arrivals: {process: offline}\nrequests: 2\nprompt_len: {distribution: zipf}\noutput_len: 1\n",
         "workload w.yaml: prompt_len must be a positive integer or a mapping with distribution"),
        ("arrivals: {process: offline}\nrequests: 2\nprompt_len: {distribution: uniform, min: 9, max: 3}\noutput_len: 1\n",
         r"workload w.yaml: prompt_len.max \(3\) is below prompt_len.min \(9\)"),
        ("arrivals: {process: offline}\nrequests: 2\nprompt_len: 4\noutput_len: {distribution: lognormal, median: 0, sigma: 1}\n",
         "workload w.yaml: output_len.median must be a positive number, got 0"),
        ("arrivals: {process: offline}\nrequests: 2\nprompt_len: 4\noutput_len: 4\nslo: {ttft_p99_s: fast}\n",
         "workload w.yaml: slo.ttft_p99_s must be a positive number, got 'fast'"),
        ("arrivals: [poisson\n", r"workload w.yaml: not valid YAML"),
        ("arrivals: {process: trace, file: ../t.jsonl}\n",
         "workload w.yaml: arrivals.file '../t.jsonl' lies outside the workload file's folder"),
        ("arrivals: {process: trace, file: t.jsonl}\nprompt_len: 5\n",
         "workload w.yaml: prompt_len does not apply beside a trace"),
    ],
)  # fmt: skip
def test_bad_workload_files_name_the_file_and_the_field(tmp_path, text, message):
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub, "t.jsonl", '{"arrival_s": 0, "prompt_len": 1, "output_len": 1}\n')
    write(tmp_path, "t.jsonl", '{"arrival_s": 0, "prompt_len": 1, "output_len": 1}\n')
    with pytest.raises(UsageError, match=message):
        load_workload(write(sub, "w.yaml", text))


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"arrival_s": 0, "prompt_len": 0, "output_len": 1}', "trace t.jsonl line 2: prompt_len must be a positive integer, got 0"),
        ('{"arrival_s": -1, "prompt_len": 1, "output_len": 1}', "trace t.jsonl line 2: arrival_s must be a non-negative number"),
        ('{"arrival_s": 0, "prompt_len": 1}', "trace t.jsonl line 2: output_len must be a positive integer, got None"),
        ("[1, 2]", "trace t.jsonl line 2: must be a JSON object"),
        ("{oops", "trace t.jsonl line 2: not JSON"),
    ],
)  # fmt: skip
def test_bad_trace_lines_name_the_line(tmp_path, line, message):
    write(tmp_path, "t.jsonl", '{"arrival_s": 0, "prompt_len": 1, "output_len": 1}\n' + line + "\n")
    with pytest.raises(UsageError, match=f"workload w.yaml: {message}"):
        load_workload(write(tmp_path, "w.yaml", "arrivals: {process: trace, file: t.jsonl}\n"))


def test_unknown_names_list_the_bundled_workloads():
    with pytest.raises(UsageError, match="no such file, and not a bundled workload .*chat"):
        load_workload("no-such-workload")


def test_requests_are_validated_and_read_only():
    with pytest.raises(ValueError, match="non-decreasing"):
        Requests(np.array([1.0, 0.0]), np.array([1, 1]), np.array([1, 1]))
    with pytest.raises(ValueError, match="at least one token"):
        Requests(np.array([0.0]), np.array([0]), np.array([1]))
    reqs = Requests([0.0], [3], [2])
    with pytest.raises(ValueError):
        reqs.prompt_tokens[0] = 5
