"""scripts/bench.py runs end to end and reports every figure.

A benchmark is not a test of speed: nothing here looks at how fast cschat
is, only that the tool starts the servers, drives them, stops them and
writes well-formed JSON with every figure present.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "scripts", "bench.py")

TINY = ["--quick", "--workers", "2",
        "--tp-guests", "8", "--tp-agents", "2", "--tp-window", "2",
        "--tp-duration", "0.5", "--tp-warmup", "0.2",
        "--lat-rate", "100", "--lat-guests", "10", "--lat-agents", "2",
        "--lat-duration", "0.5", "--lat-warmup", "0.2",
        "--connections", "40", "--conn-agents", "2",
        "--logins", "30", "--login-agents", "2",
        "--history-messages", "3000", "--history-conversations", "20",
        "--history-deep", "1000", "--history-requests", "20"]


def number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.mark.slow
def test_quick_bench_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, BENCH, *TINY, "--json", str(out)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    figures = json.loads(out.read_text())

    throughput = figures["throughput"]
    for side in ("cschat", "baseline"):
        assert number(throughput[side]["messages_per_s"])
        assert number(throughput[side]["server_cpu_pct"])
    assert number(throughput["ratio"])

    latency = figures["latency"]
    for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms"):
        assert number(latency[key]), key
        assert number(latency["baseline"][key]), key
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
    assert set(figures["targets_met"]) == {"throughput_ratio", "latency_p99",
                                           "rss_per_connection", "logins_per_s", "history_p99"}
    # The table went to standard output too.
    assert "ratio cschat / relay" in result.stdout
