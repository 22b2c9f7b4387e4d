"""scripts/bench.py runs end to end and reports every figure; its statistics are right.

A benchmark is not a test of speed: nothing here looks at how fast cschat
is, only that the tool starts the servers, drives them, stops them and
writes well-formed JSON with every figure present.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
BENCH = os.path.join(SCRIPTS, "bench.py")
sys.path.insert(0, SCRIPTS)

import benchstats  # noqa: E402

TINY = ["--quick", "--workers", "2",
        "--tp-guests", "8", "--tp-agents", "2", "--tp-window", "2",
        "--tp-duration", "0.3", "--tp-warmup", "0.1",
        "--lat-rate", "100", "--lat-guests", "10", "--lat-agents", "2",
        "--lat-duration", "0.3", "--lat-warmup", "0.1",
        "--connections", "40", "--conn-agents", "2",
        "--logins", "30", "--login-agents", "2",
        "--history-messages", "3000", "--history-conversations", "20",
        "--history-deep", "1000", "--history-requests", "20",
        "--scale-idle", "300", "--scale-agents", "3", "--scale-hold", "0.5"]
LATENCY = ("p50_ms", "p99_ms", "p999_ms", "max_ms")


def number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def run_bench(tmp_path, *options: str, timeout: float) -> tuple[dict, str]:
    """bench.py at the TINY sizes with ``options``: its JSON figures and its printed table."""
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, BENCH, *TINY, *options, "--json", str(out)],
                            capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    return json.loads(out.read_text()), result.stdout


@pytest.mark.slow
def test_quick_bench_writes_every_figure(tmp_path):
    figures, stdout = run_bench(tmp_path, "--tp-rounds", "2", "--lat-rounds", "2", timeout=150)

    throughput = figures["throughput"]
    for side in ("cschat", "baseline"):
        assert number(throughput[side]["messages_per_s"])
        assert number(throughput[side]["server_cpu_pct"])
        assert len(throughput[side]["rounds_messages_per_s"]) == 2
        assert number(throughput[side]["spread"]["spread_pct"])
    assert number(throughput["ratio"])
    assert len(throughput["ratio_per_round"]) == 2
    assert number(throughput["ratio_spread"]["spread_pct"])
    low, high = throughput["ratio_ci95"]
    assert number(low) and number(high) and low <= high
    assert number(throughput["rounds_for_5pct"])
    assert number(throughput["relay_moved_pct"])
    assert isinstance(throughput["relay_unsteady"], bool)

    latency = figures["latency"]
    for key in LATENCY:
        assert number(latency[key]), key
        assert number(latency["baseline"][key]), key
        assert all(number(r[key]) for r in latency["rounds"] + latency["baseline"]["rounds"])
    assert len(latency["rounds"]) == len(latency["baseline"]["rounds"]) == 2
    assert latency["samples"] > 0

    connections = figures["connections"]
    assert number(connections["rss_per_connection_kb"])
    assert connections["connections"] == 40

    assert number(figures["login"]["logins_per_s"])
    assert number(figures["login"]["connect_and_login_per_s"])

    history = figures["history"]
    for page in ("newest", "deep"):
        assert number(history[page]["p50_ms"]), page
        assert number(history[page]["p99_ms"]), page
        assert history[page]["errors"] == 0
        assert history[page]["short_pages"] == 0

    cpu = figures["server_cpu_pct"]
    for phase in ("throughput", "throughput_baseline", "latency", "latency_baseline",
                  "connections", "login", "history"):
        assert number(cpu[phase]), phase
    assert set(figures["targets_met"]) == {"throughput_ratio", "latency_p99", "latency_p999",
                                           "rss_per_connection", "logins_per_s", "history_p99"}
    # The table went to standard output too, with the rounds and what they would need.
    assert "ratio cschat / relay" in stdout
    assert "throughput rounds (cschat / relay / ratio)" in stdout
    assert "rounds needed to see a 5 % difference in the throughput ratio" in stdout
    assert "feature cost" not in stdout   # features and scale are not default phases


@pytest.mark.slow
def test_quick_bench_prices_features_and_scale(tmp_path):
    figures, stdout = run_bench(tmp_path, "--phases", "scale", "--features", timeout=240)
    assert figures["meta"]["phases"] == ["scale", "features"]
    assert not figures["failed_phases"]

    features = figures["features"]
    assert features["skipped"] == {}   # aiosmtpd is installed for the tests
    configurations = features["configurations"]
    assert list(configurations) == ["plain", "search", "webhooks", "webhooks-held", "mail",
                                    "context", "all"]
    for name, entry in configurations.items():
        assert number(entry["throughput"]["messages_per_s"]), name
        assert number(entry["ratio_to_plain"]), name
        assert number(entry["throughput_cost_pct"]), name
        assert number(entry["p99_change_pct"]), name
        for key in LATENCY:
            assert number(entry["latency"][key]), (name, key)
    assert configurations["all"]["features"] == ["search", "webhooks", "mail", "context"]
    for name in ("webhooks", "all"):
        # Delivered to the receiver: the webhook was set up through the admin API.
        assert configurations[name]["webhook_deliveries"] > 0, name
    for name in ("mail", "all"):
        assert number(configurations[name]["mails"]), name
    assert "identity_rate_limit" in " ".join(features["notes"])

    scale = figures["scale"]
    assert scale["idle_guests"] == 300
    assert number(scale["rss_per_connection_kb"])
    assert number(scale["idle_server_cpu_pct"])
    assert scale["source_addresses"] == ["127.0.0.1"]
    for key in LATENCY:
        assert number(scale["latency"][key]), key
    assert scale["latency"]["samples"] > 0

    assert "feature cost" in stdout
    assert "rounds needed to see a 5 % difference in a feature's cost" in stdout
    assert "scale: latency p50 / p99 / p99.9 / max (ms)" in stdout


def test_configurations_keep_plain_and_their_order_and_reject_unknown_names(capsys):
    import bench
    assert bench.parse_args(["--configurations", "webhooks,search"]).configurations == [
        "plain", "search", "webhooks"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--configurations", "webhook"])
    assert "unknown configuration(s) webhook" in capsys.readouterr().err


def test_t_quantiles():
    assert benchstats.t975(1) == 12.706
    assert benchstats.t975(30) == 2.042
    assert benchstats.t975(31) == pytest.approx(2.040, abs=0.001)
    assert benchstats.t975(120) == pytest.approx(1.980, abs=0.001)
    assert benchstats.t975(10**6) == pytest.approx(1.960, abs=0.001)


def test_describe_and_ratio_interval():
    assert benchstats.describe([10, 30, 20]) == {"median": 20, "min": 10, "max": 30,
                                                 "spread_pct": 100.0}
    assert benchstats.describe([None, 5])["median"] == 5
    assert benchstats.describe([None])["median"] is None
    assert benchstats.ratio_ci95([0.5]) is None
    assert benchstats.ratio_ci95([0.5, 0.5, 0.5]) == [0.5, 0.5]
    # logs of 0.4, 0.5, 0.6: mean -0.7068, sd 0.2030; half width 4.303 * 0.2030 / sqrt(3)
    low, high = benchstats.ratio_ci95([0.4, 0.5, 0.6])
    assert low == pytest.approx(math.exp(-0.7068 - 0.5043), abs=0.002)
    assert high == pytest.approx(math.exp(-0.7068 + 0.5043), abs=0.002)


def test_log_sd_pools_the_series():
    assert benchstats.log_sd([0.5]) is None
    assert benchstats.log_sd([0.5, 0.5]) == 0.0
    single = benchstats.log_sd([0.4, 0.5, 0.6])
    assert benchstats.log_sd([0.4, 0.5, 0.6], [0.8, 1.0, 1.2]) == pytest.approx(single)
    assert benchstats.log_sd([0.4, 0.5, 0.6], [0.7]) == pytest.approx(single)


def test_rounds_needed_is_the_first_that_resolves_5_percent():
    assert benchstats.rounds_needed(None) is None
    assert benchstats.rounds_needed(0.0) == 2
    half = math.log(1.05) / 2
    for sd in (0.01, 0.05, 0.2):
        n = benchstats.rounds_needed(sd)
        assert benchstats.t975(n - 1) * sd / math.sqrt(n) <= half
        assert n == 2 or benchstats.t975(n - 2) * sd / math.sqrt(n - 1) > half
    assert benchstats.rounds_needed(0.05) == 19
