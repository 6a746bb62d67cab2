"""`partition simulate PLAN --workload/--rate` and `partition compare`: the contract's
JSON keys, determinism, prices, and one-line refusals."""

from __future__ import annotations

import json

import pytest

from examples import llama
from tests.cli import run_cli

PERCENTILES = {"p50", "p90", "p95", "p99"}


@pytest.fixture(scope="module")
def decode(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serving")
    model = folder / "tiny-decode.onnx"
    llama.build(model, "tiny", kind="decode")
    plan = folder / "tiny.plan.json"
    made = run_cli(str(model), "--target", "h100x4", "--tp", "1", "--pp", "2",
                   "--dim", "batch=1", "--dim", "past=4095", "-o", str(plan), "-q")  # fmt: skip
    assert made.code == 0, made.err
    return model, plan


def _serve(plan, *flags: str) -> dict:
    result = run_cli("simulate", str(plan), "--json", *flags)
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_simulate_with_a_rate_reports_the_contract_keys(decode):
    _, plan = decode
    doc = _serve(plan, "--rate", "20", "--requests", "60", "--prompt-len", "64",
                 "--output-len", "16", "--seed", "3")  # fmt: skip
    serving = doc["serving"]
    for key in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        assert set(serving[key]) >= PERCENTILES
    assert serving["completed"] == 60 and serving["output_tokens"] == 60 * 16
    assert serving["throughput_tokens_per_s"] > 0 and serving["requests_per_s"] > 0
    # 4 x $2.95 an hour (h100x4 is all planned on: tp1 pp2 uses 2 of them)
    usd_s = serving["usd_per_hour"] / 3600
    tokens_s = serving["throughput_tokens_per_s"] + serving["input_tokens_per_s"]
    assert serving["usd_per_million_tokens"] == pytest.approx(usd_s / tokens_s * 1e6)
    # tokens per dollar: output tokens a second over dollars a second
    per_usd = serving["throughput_tokens_per_s"] / usd_s
    assert serving["output_tokens_per_usd"] == pytest.approx(per_usd)
    # the same seed gives the same bytes; another seed draws other arrivals
    again = _serve(plan, "--rate", "20", "--requests", "60", "--prompt-len", "64",
                   "--output-len", "16", "--seed", "3")  # fmt: skip
    assert again == doc
    other = _serve(plan, "--rate", "20", "--requests", "60", "--prompt-len", "64",
                   "--output-len", "16", "--seed", "4")  # fmt: skip
    assert other["serving"]["e2e_s"] != serving["e2e_s"]


def test_iteration_overhead_lengthens_every_token_by_its_amount(decode):
    _, plan = decode
    flags = ("--rate", "inf", "--requests", "1", "--prompt-len", "8", "--output-len", "5")
    plain = _serve(plan, *flags)["serving"]
    slow = _serve(plan, *flags, "--iteration-overhead", "0.002")["serving"]
    # one request alone: 1 prefill and 4 decode iterations, each 2 ms later
    assert slow["ttft_s"]["p50"] == pytest.approx(plain["ttft_s"]["p50"] + 0.002)
    assert slow["e2e_s"]["p50"] == pytest.approx(plain["e2e_s"]["p50"] + 5 * 0.002)
    # per token: the 8-token prompt's iteration 8 ms later, each decode step 1 ms
    per_token = _serve(plan, *flags, "--token-overhead", "0.001")["serving"]
    assert per_token["ttft_s"]["p50"] == pytest.approx(plain["ttft_s"]["p50"] + 0.008)
    assert per_token["e2e_s"]["p50"] == pytest.approx(plain["e2e_s"]["p50"] + 0.012)


def test_the_dollars_split_between_input_and_output_by_device_time():
    from partitioner.commands.serving import add_prices

    # $36 an hour = $0.01 a second; 100 input and 50 output tokens a second; prompts took
    # 20 % of the device time: $0.002 a second over 100 tokens, $0.008 over 50
    figures = {"throughput_tokens_per_s": 50.0, "input_tokens_per_s": 100.0,
               "prompt_busy_share": 0.2}  # fmt: skip
    add_prices(figures, 36.0, None)
    split = figures["usd_split"]
    assert split["usd_per_million_input_tokens"] == pytest.approx(0.002 / 100 * 1e6)
    assert split["usd_per_million_output_tokens"] == pytest.approx(0.008 / 50 * 1e6)
    assert figures["output_tokens_per_usd"] == pytest.approx(50 / 0.01)
    no_price = {"throughput_tokens_per_s": 50.0, "input_tokens_per_s": 100.0,
                "prompt_busy_share": 0.2}  # fmt: skip
    add_prices(no_price, None, None)
    assert no_price["usd_split"] is None and no_price["output_tokens_per_usd"] is None


def test_stage_overhead_lengthens_every_iteration_on_the_second_stage(decode):
    _, plan = decode  # two stages: the second one's rank pays it every iteration
    flags = ("--rate", "inf", "--requests", "1", "--prompt-len", "8", "--output-len", "5")
    plain = _serve(plan, *flags)["serving"]
    slow = _serve(plan, *flags, "--stage-overhead", "0.002")["serving"]
    assert slow["ttft_s"]["p50"] == pytest.approx(plain["ttft_s"]["p50"] + 0.002)
    assert slow["e2e_s"]["p50"] == pytest.approx(plain["e2e_s"]["p50"] + 5 * 0.002)


def test_a_rate_sweep_finds_the_highest_rate_meeting_the_slo(decode):
    _, plan = decode
    doc = _serve(plan, "--workload", "mlperf-llama2-70b-server", "--requests", "40",
                 "--rate-sweep")  # fmt: skip
    assert "max_rate_per_s" in doc and doc["probes"]
    assert all("ttft_p99_s" in p for p in doc["probes"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--workload", "no-such-workload"], "no-such-workload"),
     (["--workload", "chat", "--rate", "3"], "give --workload or --rate, not both"),
     (["--rate", "-1"], "--rate must be a positive number"),
     (["--rate", "3", "--iteration-overhead", "-0.001"], "iteration_overhead_s must be from 0")],
)  # fmt: skip
def test_bad_serving_flags_are_one_line(decode, flags, message):
    _, plan = decode
    result = run_cli("simulate", str(plan), *flags)
    assert result.code == 2 and message in result.err and "Traceback" not in result.err


def test_a_plan_without_a_load_model_is_refused(tmp_path):
    model = tmp_path / "prefill.onnx"
    llama.build(model, "tiny", kind="prefill")
    plan = tmp_path / "prefill.plan.json"
    run_cli(str(model), "--target", "h100x1", "--dim", "batch=1", "--dim", "seq=8",
            "-o", str(plan), "-q")  # fmt: skip
    result = run_cli("simulate", str(plan), "--rate", "1")
    assert result.code == 2 and "has no load model" in result.err


def test_compare_rows_say_which_targets_fit(decode, tmp_path):
    model, _ = decode
    small = tmp_path / "small.yaml"
    small.write_text("extends: h100x1\nall_devices: {hbm_bytes: 100000}\n")
    result = run_cli("compare", str(model), "--targets", f"h100x2,{small}", "--dim", "batch=1",
                     "--dim", "past=4095", "--rate", "10", "--requests", "20",
                     "--prompt-len", "32", "--output-len", "8", "--json", "--time-limit", "2")  # fmt: skip
    assert result.code == 0, result.err
    rows = {r["target"]: r for r in json.loads(result.out)["rows"]}
    served = rows["h100x2"]["serving"]
    # one replica is simulated at its share of the rate, on all the requests
    assert rows["h100x2"]["fits"] and served["completed"] == 20
    assert not rows[str(small)]["fits"] and "does not fit" in rows[str(small)]["reason"]


def test_compare_refuses_a_model_it_cannot_serve_before_planning(tmp_path, monkeypatch):
    """A graph with no KV-cache input (a prompt pass) gives no plan a load model: compare says
    so in one line before planning any target."""
    import partitioner.commands.compare as compare

    def must_not_plan(*args, **kwargs):
        raise AssertionError("planned a model it cannot serve")

    monkeypatch.setattr(compare, "plan_model", must_not_plan)
    model = tmp_path / "tiny-prefill.onnx"
    llama.build(model, "tiny", kind="prefill")
    result = run_cli("compare", str(model), "--targets", "h100x2", "--dim", "batch=1",
                     "--dim", "seq=8", "--rate", "10")  # fmt: skip
    assert result.code == 2 and result.err.count("\n") == 1
    assert "--dim batch=1 --dim past=4095" in result.err


def test_compare_keeps_the_replica_count_that_serves_best(decode):
    """On four GPUs, compare plans 1, 2 and 4 replicas and keeps the best-scoring one; with
    --parallelism plan it keeps the planner's one replica."""
    model, _ = decode
    flags = ("--dim", "batch=1", "--dim", "past=4095", "--rate", "10", "--requests", "20",
             "--prompt-len", "32", "--output-len", "8", "--json", "--time-limit", "2")  # fmt: skip
    result = run_cli("compare", str(model), "--targets", "h100x4", *flags)
    assert result.code == 0, result.err
    row = json.loads(result.out)["rows"][0]
    tried = row["shapes_tried"]
    assert [t["dp"] for t in tried] == [1, 2, 4] and all(t["fits"] for t in tried)
    assert all(t["tp"] * t["pp"] * t["dp"] == 4 for t in tried)
    assert row["devices"] == 4 and row["serving"]["replicas"] == row["parallelism"]["dp"]
    best = min(tried, key=lambda t: t["e2e_mean_s"])  # no SLO: the lowest mean latency
    assert row["parallelism"]["dp"] == best["dp"]
    assert row["serving"]["e2e_s"]["mean"] == best["e2e_mean_s"]
    single = run_cli("compare", str(model), "--targets", "h100x4", "--parallelism", "plan", *flags)
    assert single.code == 0, single.err
    row = json.loads(single.out)["rows"][0]
    assert row["parallelism"]["dp"] == 1 and "shapes_tried" not in row


def test_shape_score_ranks_rate_at_the_slo_then_tokens():
    from partitioner.commands.compare_shapes import replica_counts, shape_score

    assert replica_counts(8) == [1, 2, 4, 8] and replica_counts(6) == [1, 2, 3, 6]
    swept = [{"max_rate_per_s": r, "serving": {"throughput_tokens_per_s": t}}
             for r, t in ((None, 0.0), (2.0, 90.0), (3.0, 10.0), (3.0, 20.0))]  # fmt: skip
    assert sorted(swept, key=shape_score) == swept
    fixed = [{"serving": {"throughput_tokens_per_s": 5.0, "e2e_s": {"mean": m}}}
             for m in (9.0, 2.0, 1.0)]  # fmt: skip
    assert sorted(fixed, key=shape_score) == fixed
    # offline, every replica serves all the requests: the system's tokens/s rank them
    offline = [{"serving": {"throughput_tokens_per_s": t, "e2e_s": {"mean": m}}}
               for t, m in ((5.0, 1.0), (9.0, 4.0))]  # fmt: skip
    assert sorted(offline, key=lambda d: shape_score(d, offline=True)) == offline


def test_a_terminal_sees_the_simulation_progress_and_a_log_does_not(decode, monkeypatch):
    """On a terminal stderr shows how many requests have finished; captured (a log, a
    script), stderr stays empty and stdout is the JSON alone."""
    import io

    from rich.console import Console

    from partitioner.commands import serving

    _, plan = decode
    flags = ("--rate", "20", "--requests", "300", "--prompt-len", "64", "--output-len", "16")
    quiet = run_cli("simulate", str(plan), "--json", *flags)
    assert quiet.code == 0 and quiet.err == ""
    screen = io.StringIO()
    monkeypatch.setattr(serving, "err_console", Console(file=screen, force_terminal=True))
    seen = run_cli("simulate", str(plan), "--json", *flags)
    assert seen.code == 0 and json.loads(seen.out) == json.loads(quiet.out)
    assert "of 300 requests finished" in screen.getvalue()
