"""Benchmark cschat: throughput against a bare relay, latency, connections, logins, history.

    python scripts/bench.py                       # the default phases, default sizes (minutes)
    python scripts/bench.py --quick               # tiny sizes, under a minute
    python scripts/bench.py --phases throughput --profile profile.txt
    python scripts/bench.py --features            # also price each feature against plain
    python scripts/bench.py --phases scale        # 20 000 idle guests, then the latency load
    python scripts/bench.py --json results.json

Every phase starts its own cschat process (``python -m cschat run``) on a
fresh temporary database and configuration, pinned to CPU 0, and drives it
from load-generator processes (``loadgen.py``) pinned to the other CPUs. The
server's own CPU use (utime + stime from /proc) is reported for every phase:
near 100 % means the server, not the generator, is the limit. Measurements
that vary from run to run are repeated in rounds, alternating what they
compare, and summed up by their median, spread and (for ratios) a 95 %
interval (``benchstats.py``). See docs/benchmarks.md for what each figure
means.
"""

from __future__ import annotations

import argparse
import array
import datetime
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import pstats
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import benchstats  # noqa: E402
import loadgen  # noqa: E402

SECRET = "cschat-bench-secret-0123456789abcdef"
SERVER_CPU = 0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The CPUs this process may use, read before it pins itself to the generator CPUs.
ALLOWED_CPUS = sorted(os.sched_getaffinity(0))
PHASES = ("throughput", "latency", "connections", "login", "history")   # the default ones
EXTRA_PHASES = ("features", "scale")   # only when asked for
ROUNDED = ("throughput", "latency", "features")   # the phases that run in rounds
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0

# name: (default, quick, help)
SIZES = {
    "workers": (2, 2, "load-generator processes (pinned to the CPUs other than 0)"),
    "connect_concurrency": (100, 50, "connections being opened at once, over all workers"),
    "tp_guests": (200, 20, "throughput: guests sending"),
    "tp_agents": (20, 4, "throughput: agents receiving (guests are spread over them)"),
    "tp_window": (8, 4, "throughput: unacknowledged sends each guest keeps in flight"),
    "tp_duration": (6.0, 1.5, "throughput: measured seconds of each run"),
    "tp_warmup": (2.0, 0.5, "throughput: seconds of load before measuring"),
    "tp_rounds": (5, 1, "throughput: rounds of a cschat run then a relay run; medians, "
                        "spreads and the ratio's 95 %% interval reported"),
    "lat_rounds": (3, 1, "latency: rounds of a cschat run then a relay run; each "
                         "percentile's median reported"),
    "lat_rate": (1000.0, 200.0, "latency: offered messages per second, over all guests"),
    "lat_guests": (1000, 50, "latency: guests connected (they take turns sending)"),
    "lat_agents": (100, 5, "latency: agents receiving"),
    "lat_duration": (10.0, 1.5, "latency: measured seconds"),
    "lat_warmup": (2.0, 0.5, "latency: seconds of load before measuring"),
    "connections": (10000, 200, "connections: idle logged-in guests held"),
    "conn_agents": (100, 5, "connections: agents the guests are assigned to"),
    "logins": (2000, 100, "login: cold guests in each of the two storms"),
    "login_agents": (20, 4, "login: agents the guests are assigned to"),
    "login_concurrency": (100, 50, "login: logins in flight at once, over all workers"),
    "history_messages": (1_000_000, 20_000, "history: messages seeded"),
    "history_conversations": (2000, 100, "history: conversations they are spread over"),
    "history_deep": (100_000, 5_000, "history: messages of the one deep conversation"),
    "history_requests": (2000, 100, "history: requests of each kind (newest, deep)"),
    "history_page_size": (10, 10, "history: page_size of each request"),
    "feat_rounds": (3, 1, "features: rounds, each running every configuration with the "
                          "throughput and the latency load"),
    "scale_idle": (20000, 300, "scale: idle logged-in guests held during the latency load "
                               "(which has the --lat-* sizes)"),
    "scale_agents": (100, 5, "scale: agents the guests are assigned to (also receive the load)"),
    "scale_hold": (5.0, 1.0, "scale: seconds the server's CPU is measured while it holds the "
                             "idle guests"),
}

TARGETS = {
    "throughput_ratio": 0.70,
    "latency_p99_ms": 15.0,
    "latency_p999_ms": 30.0,
    "rss_per_connection_kb": 20.0,
    "history_p99_ms": 3.0,
    "logins_per_s": 1500.0,
}

# The features phase: each configuration and the features it turns on (all off in "plain").
# "held" is no feature: the webhook's receiver never answers, so nothing is delivered during
# the load, and what is left is what the chat itself pays for a webhook.
FEATURES = ("search", "webhooks", "mail", "context")
CONFIGURATIONS = {"plain": (), "search": ("search",), "webhooks": ("webhooks",),
                  "webhooks-held": ("webhooks", "held"), "mail": ("mail",),
                  "context": ("context",), "all": FEATURES}
RATE_LIMIT_NOTE = ("per-identity rate limits ([chat] identity_rate_limit) cannot be switched "
                   "off in the server: they are on in every configuration, plain included "
                   "(raised to 100000 frames/s)")
# The idle guests use at most this share of the ephemeral port range per source address;
# the scale phase leaves the server this many file descriptors besides its connections.
PORT_USE = 0.9
FD_MARGIN = 200


# -- processes -----------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all its threads) in seconds, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def local_port_range() -> tuple[int, int]:
    """The kernel's ephemeral port range for outgoing connections (Linux's default if unknown).

    Every connection from one source address to one server needs a port of
    its own from it.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            low, high = (int(v) for v in handle.read().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _die_with_parent() -> None:
    """Have the kernel kill this (child) process if the benchmark dies first (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def busy_seconds() -> float:
    """CPU time spent busy by the whole machine (every CPU, every process), from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


class CpuMeter:
    """CPU use from now until :meth:`read`, in % of one core: server, generator, the rest.

    The generator is the load-generator ``workers`` and the ``helpers``
    (the webhook and SMTP receivers of the features phase), which run on the
    same CPUs. ``other_cpu_pct`` is what neither the server nor the
    generator used (the coordinator, the kernel's own threads, anything else
    running on the machine); if it is large the figures of that phase were
    disturbed.
    """

    # Every reading's other_cpu_pct, so a run can tell whether it was disturbed. Only
    # readings of at least JUDGED_S count: /proc counts CPU time in ticks (10 ms), and
    # over the few tens of ms a tiny batch of logins takes, one tick is tens of per cent.
    readings: list[float] = []
    JUDGED_S = 0.5

    def __init__(self, server: ServerProcess, workers: Workers,
                 helpers: tuple[ServerProcess, ...] = ()):
        self.server, self.workers, self.helpers = server, workers, helpers
        self.start = (server.cpu(), self._generator(), busy_seconds(), time.monotonic())

    def _generator(self) -> float:
        return self.workers.cpu() + sum(helper.cpu() for helper in self.helpers)

    def read(self) -> dict:
        server, generator, busy, wall = (self.server.cpu(), self._generator(), busy_seconds(),
                                         time.monotonic())
        s0, g0, b0, w0 = self.start
        elapsed = max(1e-9, wall - w0)
        server_pct = 100 * (server - s0) / elapsed
        generator_pct = 100 * (generator - g0) / elapsed
        other = max(0.0, 100 * (busy - b0) / elapsed - server_pct - generator_pct)
        if elapsed >= self.JUDGED_S:
            CpuMeter.readings.append(other)
        return {"server_cpu_pct": round(server_pct, 1),
                "generator_cpu_pct": round(generator_pct, 1),
                "other_cpu_pct": round(other, 1)}


class ServerProcess:
    """A server (cschat, the relay, a receiver of sinks.py) in its own process.

    Pinned to ``cpus``, by default CPU 0, the server's. It must print
    ``listening on <scheme>://127.0.0.1:<port>`` to its output once bound;
    the output goes to ``<folder>/<name>.log``.
    """

    def __init__(self, argv: list[str], folder: str, nofile: int, name: str,
                 cpus: list[int] | None = None):
        self.name = name
        self.log_path = os.path.join(folder, f"{name}.log")
        self._log = open(self.log_path, "wb")
        if cpus is None:
            cpus = [SERVER_CPU] if SERVER_CPU in ALLOWED_CPUS else []

        def prepare():
            _die_with_parent()
            if cpus:
                os.sched_setaffinity(0, cpus)
            loadgen.raise_nofile(nofile)
        # A session of its own: a Ctrl-C of the benchmark reaches the benchmark
        # only, which then stops the server itself.
        self.process = subprocess.Popen(argv, cwd=folder, stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        preexec_fn=prepare, start_new_session=True)
        self.pid = self.process.pid
        self.port = self._wait_listening()
        self.cpus = sorted(os.sched_getaffinity(self.pid))

    def _wait_listening(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        pattern = re.compile(rb"listening on \w+://127\.0\.0\.1:(\d+)")
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as handle:
                match = pattern.search(handle.read())
            if match:
                return int(match.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        with open(self.log_path, "rb") as handle:
            return b"\n".join(handle.read().splitlines()[-lines:]).decode(errors="replace")

    def problems(self) -> list[str]:
        """The log's warnings and errors, each distinct one once with its count."""
        pattern = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+): (.*)$")
        counts: dict[str, int] = {}
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
        for index, line in enumerate(lines):
            match = pattern.match(line)
            if not match:
                continue
            key = f"{match.group(1)} {match.group(2)}: {match.group(3)}"
            if index + 1 < len(lines) and lines[index + 1].startswith("future: "):
                detail = re.search(r"coro=<(\S+)\(\).*exception=(.*)>$", lines[index + 1])
                if detail:
                    key += f" ({detail.group(1)}: {detail.group(2)})"
            key = re.sub(r"ix=\w+", "ix=…", key)
            counts[key] = counts.get(key, 0) + 1
        return [f"{count} x {key}" for key, count in counts.items()]

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def stop(self, signum: int = signal.SIGTERM) -> int | None:
        """Signal the server and wait for it; kill it if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


# -- load generator workers ---------------------------------------------------------------------

class Workers:
    """The load-generator processes and the pipe to each."""

    def __init__(self, count: int, cpus: list[int], nofile: int):
        context = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=loadgen.worker_main, args=(child, cpus, nofile),
                                      daemon=True)
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)

    def __len__(self) -> int:
        return len(self.pipes)

    def send(self, commands: list[dict | None]) -> None:
        for pipe, command in zip(self.pipes, commands, strict=True):
            if command is not None:
                pipe.send(command)

    def receive(self, commands: list[dict | None], timeout: float) -> list:
        results = []
        deadline = time.monotonic() + timeout
        for pipe, command in zip(self.pipes, commands, strict=True):
            if command is None:
                results.append(None)
                continue
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"load generator did not answer {command['op']} "
                                   f"within {timeout:.0f} s")
            answer = pipe.recv()
            if not answer["ok"]:
                raise RuntimeError(f"load generator failed:\n{answer['error']}")
            results.append(answer["result"])
        return results

    def call(self, commands: list[dict | None], timeout: float = 120.0) -> list:
        self.send(commands)
        return self.receive(commands, timeout)

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.processes)

    def close_all(self) -> None:
        self.call([{"op": "close"}] * len(self), 60)

    def shutdown(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send({"op": "exit"})
            except (OSError, ValueError):
                pass
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)


def split(items: list, parts: int) -> list[list]:
    """Deal ``items`` out round-robin: item i goes to part i % parts."""
    return [items[i::parts] for i in range(parts)]


def unsplit(parts: list[list]) -> list:
    """Inverse of :func:`split`."""
    total = sum(len(p) for p in parts)
    out = [None] * total
    for index, part in enumerate(parts):
        out[index::len(parts)] = part
    return out


# -- cschat instances ----------------------------------------------------------------------------

def _burst_rate(result: dict, count: str, last_at: str, duration: float) -> float:
    """One worker's ``count`` per second in a throughput run, taken from the last arrival
    before the measured period opened to the last before it closed.

    Under the closed loop the server answers in bursts (a batch committed, then all its
    answers): counted over the fixed period, the figure would move in steps of a whole
    burst. Counted between two arrivals it takes whole bursts over the time they took.
    Without two distinct arrivals it falls back on the period.
    """
    before, after = result["from"], result["to"]
    elapsed = after[last_at] - before[last_at]
    if before[last_at] and elapsed > duration / 2:
        return (after[count] - before[count]) / elapsed
    return (after[count] - before[count]) / duration


class Bench:
    """One benchmark: the worker processes, a temporary folder, the servers started."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        scale = args.scale_idle + args.lat_guests + args.scale_agents \
            if "scale" in args.phases else 0
        self.nofile = max(args.connections, args.logins * 2, args.lat_guests, args.tp_guests,
                          scale) * 2 + 1000
        self.runs = 0
        all_cpus = ALLOWED_CPUS
        self.generator_cpus = [c for c in all_cpus if c != SERVER_CPU] or all_cpus
        self.shared_cpu = self.generator_cpus == all_cpus and SERVER_CPU in all_cpus
        os.sched_setaffinity(0, self.generator_cpus)
        # What it could be raised to (root may raise the hard limit; others may not):
        # the servers and workers started from here inherit it.
        self.nofile_limit = loadgen.raise_nofile(self.nofile)
        self.workers = Workers(args.workers, self.generator_cpus, self.nofile)
        self.tmp = tempfile.mkdtemp(prefix="cschat-bench-")
        self.servers: list[ServerProcess] = []
        self.helpers: list[ServerProcess] = []   # the receivers running, a subset of servers
        self.problems: list[str] = []
        self.settled: list[dict] = []
        self.server_cpus: set[int] = set()
        self.pause = 0.5 if args.quick else 2.0   # lets the server's RSS settle before a read

    def settle(self, label: str) -> None:
        """Wait (at most ``--settle`` seconds) until the machine is quiet before measuring.

        Quiet: everything running used less than ``--quiet`` % of one core
        over the last second. Other work on the machine would otherwise
        steal CPU from the server and the generator.
        """
        deadline = time.monotonic() + self.args.settle
        waited_from = time.monotonic()
        while True:
            before, start = busy_seconds(), time.monotonic()
            time.sleep(1.0 if self.args.settle > 0 else 0.2)
            level = 100 * (busy_seconds() - before) / (time.monotonic() - start)
            if level < self.args.quiet or time.monotonic() >= deadline:
                break
        self.settled.append({"before": label, "waited_s": round(time.monotonic() - waited_from, 1),
                             "busy_pct": round(level, 1)})
        if level >= self.args.quiet and self.args.settle > 0:
            print(f"   warning: the machine is busy ({level:.0f} % of a core) before {label}",
                  file=sys.stderr)

    def undisturbed(self, label: str, run):
        """``run()`` again (up to ``--retries`` times) while other processes disturbed it.

        Disturbed: some CPU reading of the run (of at least
        ``CpuMeter.JUDGED_S``) found more than ``--max-other`` % of a core
        used by neither the server nor the load generator.
        Returns ``run()``'s result with ``attempts`` and ``max_other_cpu_pct``
        added.
        """
        for attempt in range(1, self.args.retries + 2):
            first = len(CpuMeter.readings)
            result = run()
            worst = max(CpuMeter.readings[first:], default=0.0)
            if worst <= self.args.max_other or attempt > self.args.retries:
                break
            print(f"   {label}: disturbed ({worst:.0f} % of a core used by other processes), "
                  "running it again", file=sys.stderr, flush=True)
        if worst > self.args.max_other:
            tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
            self.problems.append(f"{label}: other processes used up to {worst:.0f} % of a core "
                                 f"during the measurement ({tries})")
        return result, attempt, round(worst, 1)

    def recover(self) -> None:
        """After a failed phase: kill its servers and start fresh load-generator workers."""
        for server in list(self.servers):
            server.kill()
            self.servers.remove(server)
        self.helpers.clear()
        self.workers.shutdown()
        self.workers = Workers(self.args.workers, self.generator_cpus, self.nofile)

    def close(self) -> None:
        for server in self.servers:
            server.kill()
        self.workers.shutdown()
        if self.args.keep_temp:
            print(f"temporary files kept in {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- setup ---------------------------------------------------------------------

    def cli(self, config: str, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "cschat", "--config", config, *args],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"cschat {' '.join(args)} failed: {result.stderr}")
        return result.stdout.strip()

    def new_folder(self, name: str) -> str:
        """A new folder in the temporary one, numbered in the order of the runs."""
        self.runs += 1
        folder = os.path.join(self.tmp, f"{self.runs:02d}-{name}")
        os.makedirs(folder)
        return folder

    def instance(self, name: str, agents: int, capacity: int,
                 settings: dict[str, dict] | None = None, admin: bool = False) -> dict:
        """A folder with cschat.ini and an initialised database holding one group and agents.

        ``settings`` (section: {key: value}) are added to or override the
        benchmark's configuration. With ``admin``, one more agent of the
        group has the admin role (``admin_id``); it is not among ``agents``
        and never logs in to chat, so routing never gives it a guest. The
        group is added with the CLI; the agents are inserted with SQL (one
        CLI call per agent would take a quarter of a second each).
        """
        folder = self.new_folder(name)
        config = os.path.join(folder, "cschat.ini")
        sections = {
            # Every client comes from loopback: the per-address limits would throttle the load.
            "server": {"host": "127.0.0.1", "port": 0, "max_connections": 1_000_000,
                       "max_connections_per_address": 1_000_000},
            "database": {"path": "chat.db", "synchronous": self.args.synchronous},
            "auth": {"secret": SECRET},
            "chat": {"rate_limit": 100000, "identity_rate_limit": 100000,
                     "address_rate_limit": 10_000_000, "agent_capacity": max(1, capacity),
                     "heartbeat_timeout": 3600, "release_after": 3600, "agent_grace": 3600},
            "uploads": {"dir": "uploads"},
        }
        for section, values in (settings or {}).items():
            sections.setdefault(section, {}).update(values)
        with open(config, "w") as handle:
            for section, values in sections.items():
                handle.write(f"[{section}]\n")
                handle.writelines(f"{key} = {value}\n" for key, value in values.items())
        database = self.cli(config, "init")
        group_id = int(self.cli(config, "group", "add", f"Bench {name}"))
        now = int(time.time() * 1000)
        with sqlite3.connect(database) as conn:
            conn.executemany(
                "INSERT INTO agents (group_id, name, created_at) VALUES (?, ?, ?)",
                [(group_id, f"Agent {i + 1}", now) for i in range(agents)])
            agent_ids = [row[0] for row in conn.execute(
                "SELECT id FROM agents WHERE group_id = ? ORDER BY id", (group_id,))]
            # The role is read from this column on every admin request (cschat/admin).
            admin_id = conn.execute(
                "INSERT INTO agents (group_id, name, created_at, role) "
                "VALUES (?, 'Bench admin', ?, 'admin')", (group_id, now)).lastrowid \
                if admin else None
        conn.close()
        return {"folder": folder, "config": config, "database": database,
                "group_id": group_id, "agents": agent_ids, "admin_id": admin_id, "name": name}

    def start_cschat(self, instance: dict, profile_prefix: str | None = None) -> ServerProcess:
        self.settle(instance["name"])
        if profile_prefix:
            argv = [sys.executable, os.path.join(HERE, "profile_server.py"), profile_prefix,
                    "--config", instance["config"]]
        else:
            argv = [sys.executable, "-m", "cschat", "run", "--config", instance["config"]]
        server = ServerProcess(argv, instance["folder"], self.nofile, "cschat")
        self.servers.append(server)
        self.server_cpus.update(server.cpus)
        return server

    def start_relay(self) -> ServerProcess:
        self.settle("relay")
        server = ServerProcess([sys.executable, os.path.join(HERE, "relay.py"), "--port", "0"],
                               self.new_folder("relay"), self.nofile, "relay")
        self.servers.append(server)
        self.server_cpus.update(server.cpus)
        return server

    def start_sink(self, kind: str, folder: str, hold: bool = False) -> ServerProcess:
        """A receiver of ``sinks.py`` (``webhook`` or ``smtp``; ``hold``: a webhook
        receiver that never answers) on the generator's CPUs.

        On those CPUs it competes with the load generator, not with the
        server; its CPU use is counted as the generator's (:meth:`meter`).
        """
        sink = ServerProcess([sys.executable, os.path.join(HERE, "sinks.py"), kind]
                             + (["--hold"] if hold else []), folder,
                             1024, f"{kind}-sink", self.generator_cpus)
        self.servers.append(sink)
        self.helpers.append(sink)
        return sink

    def stop_sink(self, sink: ServerProcess) -> dict[str, int]:
        """Stop a receiver; what it received, by kind (``{}`` and a problem if unknown)."""
        sink.stop()
        self.servers.remove(sink)
        self.helpers.remove(sink)
        with open(sink.log_path, encoding="utf-8", errors="replace") as handle:
            match = re.search(r"^received (\{.*\})$", handle.read(), re.MULTILINE)
        if match:
            return json.loads(match.group(1))
        self.problems.append(f"{sink.name} did not say what it received:\n{sink.log_tail(8)}")
        return {}

    def meter(self, server: ServerProcess) -> CpuMeter:
        """A :class:`CpuMeter` of ``server`` against the generator and the receivers running."""
        return CpuMeter(server, self.workers, tuple(self.helpers))

    def add_webhook(self, server: ServerProcess, admin_id: int, url: str) -> None:
        """Subscribe ``url`` to every webhook event through the admin API (docs/protocol.md §10)."""
        # The events of the server under test, imported late: only this phase needs cschat.
        from cschat.admin.service import WEBHOOK_EVENTS

        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/api/admin/webhooks", method="POST",
            data=json.dumps({"url": url, "events": list(WEBHOOK_EVENTS)}).encode(),
            headers={"Authorization": f"Bearer {loadgen.agent_token(admin_id, SECRET)}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"adding the webhook failed: HTTP {error.code} "
                               f"{error.read()[:300].decode(errors='replace')}") from None

    def finish(self, server: ServerProcess, signum: int = signal.SIGTERM) -> int | None:
        """Close the generator's connections and stop ``server``.

        Raises if the server had died during the phase: its figures are void.
        """
        died = server.process.poll()
        try:
            self.workers.close_all()
        finally:
            code = server.stop(signum)
            self.servers.remove(server)
        problems = server.problems()
        if code not in (0, None) and server.name == "cschat":
            problems.append(f"{server.name} exited with status {code}")
        self.problems += [f"{server.name} ({os.path.basename(os.path.dirname(server.log_path))})"
                          f": {line}" for line in problems[:10]]
        if died is not None:
            raise RuntimeError(f"{server.name} exited during the phase (status {died}); the end "
                               f"of its log:\n{server.log_tail(8)}")
        return code

    def connect_agents(self, port: int, agent_ids: list[int], relay: bool = False) -> None:
        parts = split(agent_ids, len(self.workers))
        self.workers.call([{"op": "connect_agents", "port": port, "ids": part,
                            "secret": SECRET, "relay": relay} for part in parts])

    def connect_guests(self, server: ServerProcess, uids: list[str], group_id: int,
                       pairs: list[int] | None = None, start_at: float | None = None,
                       concurrency: int | None = None, **options) -> dict:
        """Connect and log in guests over the workers, starting together at ``start_at``.

        ``options`` go to every worker's ``connect_guests`` as they are
        (``visitor_context``, ``idle``, ``sources``: see loadgen.py). Returns
        each guest's agent, the failures, the first start and last end over
        all workers, and the CPU use from ``start_at`` to the end.
        """
        count = len(self.workers)
        concurrency = concurrency or self.args.connect_concurrency
        uid_parts = split(uids, count)
        pair_parts = split(pairs, count) if pairs is not None else [None] * count
        commands = [{"op": "connect_guests", "port": server.port, "uids": part,
                     "group_id": group_id, "secret": SECRET, "pairs": pair_part,
                     "concurrency": max(1, concurrency // count), "start_at": start_at,
                     **options}
                    for part, pair_part in zip(uid_parts, pair_parts, strict=True)]
        self.workers.send(commands)
        if start_at is not None:
            _sleep_until(start_at)
        meter = self.meter(server)
        results = self.workers.receive(commands, timeout=60 + len(uids) * 0.05)
        cpu = meter.read()
        errors = [e for r in results for e in r["errors"]]
        return {"agents": unsplit([r["agents"] for r in results]),
                "failed": sum(r["failed"] for r in results), "errors": errors[:5],
                "start": min(r["start"] for r in results),
                "end": max(r["end"] for r in results), "cpu": cpu}

    def connect_load(self, server: ServerProcess, group_id: int, agent_ids: list[int],
                     pairs: list[int] | None, uids: list[str], visitor_context: bool,
                     agents_connected: bool = False) -> dict:
        """Log in the agents (unless ``agents_connected``), then the guests that will send.

        Raises when a guest could not log in: the load would be smaller than asked.
        """
        if not agents_connected:
            self.connect_agents(server.port, agent_ids, pairs is not None)
        guests = self.connect_guests(server, uids, group_id, pairs,
                                     visitor_context=visitor_context)
        if guests["failed"]:
            raise RuntimeError(f"{guests['failed']} guests could not log in: {guests['errors']}")
        return guests

    # -- rounds --------------------------------------------------------------------

    def rounds(self, label: str, count: int, one_round) -> list[tuple]:
        """``one_round(number)`` for each of ``count`` rounds; each result with its attempts.

        Each round is checked by :meth:`undisturbed` on its own, and run
        again as a whole when disturbed, so that what it compares stays
        side by side in time.
        """
        done = []
        for number in range(count):
            result, attempts, _ = self.undisturbed(f"{label} round {number + 1}",
                                                   lambda number=number: one_round(number))
            done.append((result, attempts))
        return done

    def against_relay(self, name: str, agents: int, guests: int, run, number: int
                      ) -> tuple[dict, dict]:
        """One round of a comparison: ``run`` on a fresh cschat, then on a fresh relay.

        The relay gets the guest → agent pairs cschat's routing chose.
        Returns the figures of both.
        """
        instance = self.instance(name, agents, math.ceil(guests / agents))
        server = self.start_cschat(instance)
        try:
            cschat, pairs = run(server, instance["group_id"], instance["agents"], None,
                                f"c{number}")
        finally:
            self.finish(server)
        relay = self.start_relay()
        try:
            baseline, _ = run(relay, 1, instance["agents"],
                              [a if a is not None else 0 for a in pairs], f"r{number}")
        finally:
            self.finish(relay)
        return cschat, baseline

    # -- phases --------------------------------------------------------------------

    def throughput_run(self, server: ServerProcess, group_id: int, agent_ids: list[int],
                       pairs: list[int] | None, run: str, visitor_context: bool = False
                       ) -> tuple[dict, list[int]]:
        """One closed-loop run against ``server``; returns the figures and the pairs used.

        ``stored`` is every message acknowledged in the run, warm-up and
        drain included (what webhooks were owed for).
        """
        args = self.args
        uids = [f"tp{run}-{i}" for i in range(args.tp_guests)]
        guests = self.connect_load(server, group_id, agent_ids, pairs, uids, visitor_context)
        unassigned = sum(1 for a in guests["agents"] if a is None)
        start_at = time.monotonic() + 0.5
        measure_from = start_at + args.tp_warmup
        measure_to = measure_from + args.tp_duration
        commands = [{"op": "throughput", "window": args.tp_window, "start_at": start_at,
                     "measure_from": measure_from, "measure_to": measure_to, "drain": 10.0}
                    ] * len(self.workers)
        self.workers.send(commands)
        cpu = self._measure(server, measure_from, measure_to)
        results = self.workers.receive(commands, args.tp_warmup + args.tp_duration + 60)
        duration = args.tp_duration
        acks = sum(_burst_rate(r, "acks", "last_ack_at", duration) for r in results)
        pushes = sum(_burst_rate(r, "pushes", "last_push_at", duration) for r in results)
        errors = sum(r["end"]["errors"] for r in results)
        first_error = next((r["first_error"] for r in results if r["first_error"]), None)
        if first_error:
            self.problems.append(f"{server.name} throughput: {errors} sends failed, "
                                 f"first: {first_error}")
        figures = {
            "messages_per_s": round(min(acks, pushes), 1),
            "acks_per_s": round(acks, 1),
            "pushes_per_s": round(pushes, 1),
            "errors": errors,
            "unassigned_guests": unassigned,
            "stored": sum(r["end"]["acks"] for r in results),
            **cpu,
            "guests": args.tp_guests, "agents": len(agent_ids), "window": args.tp_window,
            "duration_s": duration,
        }
        return figures, guests["agents"]

    def _measure(self, server: ServerProcess, start: float, end: float) -> dict:
        """CPU use between two monotonic times (sleeps until the end)."""
        _sleep_until(start)
        meter = self.meter(server)
        _sleep_until(end)
        return meter.read()

    def phase_throughput(self) -> dict:
        """cschat and the relay in turn, ``--tp-rounds`` times; medians, spreads, the ratio.

        Alternating the two, each on a fresh process, keeps a slow spell of
        the machine from landing on one side only. The ratio is taken per
        round (cschat against the relay run right after it) and summed up by
        its median, its spread and its 95 % interval
        (:func:`benchstats.ratio_ci95`); ``rounds_for_5pct`` is how many
        rounds a 5 % difference in it would need at this spread
        (:func:`benchstats.rounds_needed`). The relay does the same work in
        every round: when its throughput moves by more than
        ``--relay-spread`` % (max / min - 1), the machine's speed changed
        during the run, and that is listed as a problem.
        """
        args = self.args
        rounds = self.rounds("throughput", args.tp_rounds, lambda number: self.against_relay(
            "throughput", args.tp_agents, args.tp_guests, self.throughput_run, number))
        sides = {"cschat": [c for (c, _), _ in rounds], "baseline": [b for (_, b), _ in rounds]}
        result = {side: throughput_summary(runs) for side, runs in sides.items()}
        ratios = [ratio(c["messages_per_s"], b["messages_per_s"])
                  for c, b in zip(sides["cschat"], sides["baseline"], strict=True)]
        relay = result["baseline"]["rounds_messages_per_s"]
        moved = round(100 * (max(relay) / min(relay) - 1), 1) if min(relay) > 0 else None
        sd = benchstats.log_sd(ratios)
        spread = benchstats.describe(ratios)
        result.update({
            "ratio": spread["median"], "ratio_per_round": ratios, "ratio_spread": spread,
            "ratio_ci95": benchstats.ratio_ci95(ratios),
            "log_ratio_sd": None if sd is None else round(sd, 4),
            "rounds_for_5pct": benchstats.rounds_needed(sd),
            "relay_moved_pct": moved,
            "relay_unsteady": moved is None or moved > args.relay_spread,
            "attempts_per_round": [attempts for _, attempts in rounds],
        })
        if result["relay_unsteady"]:
            how_much = "without bound" if moved is None else f"by {moved} %"
            self.problems.append(
                f"throughput: the relay's own throughput moved {how_much} between rounds "
                f"({min(relay):.0f}-{max(relay):.0f} msg/s), more than --relay-spread "
                f"{args.relay_spread:g} %: the machine's speed changed during the run")
        if args.profile:
            result["profiled"] = self.profile_throughput()
        return result

    def profile_throughput(self) -> dict:
        """The throughput run again, the server under cProfile; writes the top functions."""
        args = self.args
        instance = self.instance("profile", args.tp_agents,
                                 math.ceil(args.tp_guests / args.tp_agents))
        prefix = os.path.join(instance["folder"], "server")
        server = self.start_cschat(instance, profile_prefix=prefix)
        try:
            figures, _ = self.throughput_run(server, instance["group_id"], instance["agents"],
                                             None, "p")
        finally:
            code = self.finish(server, signal.SIGINT)
        if code != 0:
            raise RuntimeError(f"the profiled server exited with {code}:\n{server.log_tail()}")
        text = profile_report(prefix, figures)
        with open(args.profile, "w") as handle:
            handle.write(text)
        for part in ("main", "threads"):   # the raw statistics, for pstats
            if os.path.exists(f"{prefix}.{part}.prof"):
                shutil.copyfile(f"{prefix}.{part}.prof", f"{args.profile}.{part}.prof")
        print(text)
        return {"messages_per_s": figures["messages_per_s"],
                "server_cpu_pct": figures["server_cpu_pct"], "file": args.profile}

    def latency_run(self, server: ServerProcess, group_id: int, agent_ids: list[int],
                    pairs: list[int] | None, run: str, visitor_context: bool = False,
                    agents_connected: bool = False) -> tuple[dict, list[int]]:
        """One open-loop run against ``server``; returns the figures and the pairs used.

        ``agents_connected``: the agents are logged in already (the scale
        phase's, holding the idle guests too).
        """
        args = self.args
        uids = [f"lat{run}-{i}" for i in range(args.lat_guests)]
        guests = self.connect_load(server, group_id, agent_ids, pairs, uids, visitor_context,
                                   agents_connected)
        shares = [len(part) for part in split(uids, len(self.workers))]
        start_at = time.monotonic() + 0.5
        measure_from = start_at + args.lat_warmup
        measure_to = measure_from + args.lat_duration
        commands = [{"op": "latency", "rate": args.lat_rate * share / len(uids),
                     "start_at": start_at, "measure_from": measure_from,
                     "measure_to": measure_to, "drain": 10.0} for share in shares]
        self.workers.send(commands)
        cpu = self._measure(server, measure_from, measure_to)
        results = self.workers.receive(commands, args.lat_warmup + args.lat_duration + 60)
        samples = array.array("q")
        for result in results:
            samples.frombytes(result["samples"])
        ordered = sorted(samples)
        errors = sum(r["errors"] for r in results)
        first_error = next((r["first_error"] for r in results if r["first_error"]), None)
        if first_error:
            self.problems.append(f"{server.name} latency: {errors} sends failed, "
                                 f"first: {first_error}")
        figures = {
            "p50_ms": _ms(percentile(ordered, 50)),
            "p99_ms": _ms(percentile(ordered, 99)),
            "p999_ms": _ms(percentile(ordered, 99.9)),
            "max_ms": _ms(ordered[-1] if ordered else None),
            "mean_ms": _ms(sum(ordered) / len(ordered) if ordered else None),
            "samples": len(ordered),
            "offered_per_s": args.lat_rate,
            "delivered_per_s": round(len(ordered) / args.lat_duration, 1),
            "sent": sum(r["sent"] for r in results), "errors": errors,
            "stored": sum(r["acks"] for r in results),
            "guests": args.lat_guests, "agents": len(agent_ids),
            "duration_s": args.lat_duration, **cpu,
        }
        return figures, guests["agents"]

    def phase_latency(self) -> dict:
        """cschat and the relay in turn, ``--lat-rounds`` times; the median of each percentile.

        Each percentile (and the CPU) is the median over the rounds of that
        round's figure; ``rounds`` holds every round's.
        """
        args = self.args
        rounds = self.rounds("latency", args.lat_rounds, lambda number: self.against_relay(
            "latency", args.lat_agents, args.lat_guests, self.latency_run, number))
        cschat = [c for (c, _), _ in rounds]
        relay = [b for (_, b), _ in rounds]
        return {**latency_summary(cschat), "baseline": latency_summary(relay, LATENCY_KEYS),
                "attempts_per_round": [attempts for _, attempts in rounds]}

    def feature_run(self, name: str, features: tuple[str, ...], load: str, number: int
                    ) -> dict:
        """``load`` ("throughput" or "latency") on a fresh cschat with ``features`` on.

        Everything else is off: no search index, no webhook, no mail, no
        visitor context. The receivers the features need run from before the
        server starts until after it stopped, so that they count every
        delivery it made (``webhook_deliveries``, ``mails``).
        """
        args = self.args
        sinks = {}
        try:
            kinds = [kind for feature, kind in (("webhooks", "webhook"), ("mail", "smtp"))
                     if feature in features]
            if kinds:
                folder = self.new_folder(f"{name}-receivers")
                sinks = {kind: self.start_sink(kind, folder, hold="held" in features)
                         for kind in kinds}
            settings = {"privacy": {"search_index": "true" if "search" in features else "false"}}
            if "smtp" in sinks:
                settings["email"] = {"smtp_host": "127.0.0.1", "smtp_port": sinks["smtp"].port,
                                     "security": "none", "from": "Shop <help@shop.example>",
                                     "notify": "team@shop.example"}
            guests, agents = ((args.tp_guests, args.tp_agents) if load == "throughput"
                              else (args.lat_guests, args.lat_agents))
            instance = self.instance(f"{name}-{load}", agents, math.ceil(guests / agents),
                                     settings, admin="webhook" in sinks)
            server = self.start_cschat(instance)
            try:
                if "webhook" in sinks:
                    self.add_webhook(server, instance["admin_id"],
                                     f"http://127.0.0.1:{sinks['webhook'].port}/cschat")
                run = self.throughput_run if load == "throughput" else self.latency_run
                figures, _ = run(server, instance["group_id"], instance["agents"], None,
                                 f"{name}{number}", visitor_context="context" in features)
            finally:
                self.finish(server)
        finally:
            received = {kind: self.stop_sink(sink) for kind, sink in sinks.items()}
        if "webhook" in received:
            figures["webhook_deliveries"] = sum(received["webhook"].values())
        if "smtp" in received:
            figures["mails"] = received["smtp"].get("mail", 0)
        return figures

    def phase_features(self) -> dict:
        """Every configuration of CONFIGURATIONS under both loads, ``--feat-rounds`` rounds.

        A round runs the throughput load on every configuration, then the
        latency load on every configuration, each on a fresh cschat and
        database (no backlog of deliveries carries over), starting one
        configuration later each round so that none always runs first. Each
        configuration is compared with plain of the same round: the per-round
        ratios of msg/s and of p99, summed up by their medians; throughput
        cost = 1 - that ratio, p99 change = that p99 ratio - 1.
        ``rounds_for_5pct`` is :func:`benchstats.rounds_needed` for the
        spread of the throughput ratios, pooled over the configurations.
        """
        args = self.args
        skipped = {}
        if importlib.util.find_spec("aiosmtpd") is None:
            skipped["mail"] = "aiosmtpd cannot be imported: there is no SMTP server to mail to"
        # What each configuration turns on, less what cannot run here ("all" runs without it).
        features = {name: tuple(f for f in on if f not in skipped)
                    for name, on in CONFIGURATIONS.items()
                    if name not in skipped and name in args.configurations}
        names = list(features)

        def one_round(number: int) -> dict:
            shift = number % len(names)
            order = names[shift:] + names[:shift]
            return {load: {name: self.feature_run(name, features[name], load, number)
                           for name in order}
                    for load in ("throughput", "latency")}

        rounds = self.rounds("features", args.feat_rounds, one_round)
        plain = {load: [r[load]["plain"] for r, _ in rounds] for load in ("throughput", "latency")}
        configurations = {}
        for name in names:
            throughput = [r["throughput"][name] for r, _ in rounds]
            latency = [r["latency"][name] for r, _ in rounds]
            ratios = [ratio(t["messages_per_s"], p["messages_per_s"])
                      for t, p in zip(throughput, plain["throughput"], strict=True)]
            p99_ratios = [ratio(lat["p99_ms"], p["p99_ms"])
                          for lat, p in zip(latency, plain["latency"], strict=True)]
            middle = benchstats.describe(ratios)["median"]
            p99_middle = benchstats.describe(p99_ratios)["median"]
            entry = {
                "features": list(features[name]),
                "throughput": throughput_summary(throughput),
                "latency": latency_summary(latency),
                "ratio_to_plain": middle, "ratio_to_plain_per_round": ratios,
                "ratio_to_plain_ci95": benchstats.ratio_ci95(ratios),
                "throughput_cost_pct": None if middle is None else round(100 * (1 - middle), 1),
                "p99_change_pct": None if p99_middle is None
                else round(100 * (p99_middle - 1), 1),
                "messages_stored": sum(run["stored"] for run in throughput + latency),
            }
            for key in ("webhook_deliveries", "mails"):
                if key in throughput[0]:
                    entry[key] = sum(run[key] for run in throughput + latency)
            configurations[name] = entry
        sd = benchstats.log_sd(*(entry["ratio_to_plain_per_round"]
                                 for name, entry in configurations.items() if name != "plain"))
        return {"rounds": args.feat_rounds, "configurations": configurations,
                "skipped": skipped, "log_ratio_sd": None if sd is None else round(sd, 4),
                "rounds_for_5pct": benchstats.rounds_needed(sd),
                "attempts_per_round": [attempts for _, attempts in rounds],
                "notes": [RATE_LIMIT_NOTE],
                "server_cpu_pct": configurations["plain"]["throughput"]["server_cpu_pct"]}

    def phase_scale(self) -> dict:
        """Idle guests by the thousand, then the latency load alongside them.

        ``--scale-agents`` agents log in, ``--scale-idle`` guests connect and
        log in and stay idle; the server's RSS is read before and after, and
        its CPU measured over ``--scale-hold`` seconds while it only holds
        them; then the latency phase's load (``--lat-*``) runs, to the same
        agents. What the machine allows is checked first: the open-file
        limit (the idle count is capped to what it leaves, and that is listed
        as a problem) and the ephemeral port range (the idle guests are
        spread over as many loopback source addresses, 127.0.0.1, .2, …, as
        keep each under PORT_USE of it).
        """
        args = self.args
        idle = args.scale_idle
        others = args.lat_guests + args.scale_agents
        room = self.nofile_limit - others - FD_MARGIN
        if idle > room:
            idle = max(0, room)
            self.problems.append(f"scale: the open-file limit could not be raised above "
                                 f"{self.nofile_limit}; idle guests capped at {idle} of "
                                 f"{args.scale_idle}")
        instance = self.instance("scale", args.scale_agents,
                                 math.ceil((idle + args.lat_guests) / args.scale_agents))
        server = self.start_cschat(instance)
        try:
            held = self.hold_idle("scale", server, instance, idle, args.scale_hold,
                                  others=args.lat_guests)
            latency, _ = self.latency_run(server, instance["group_id"], instance["agents"],
                                          None, "s", agents_connected=True)
        finally:
            self.finish(server)
        return {
            "idle_guests": held.pop("held"), "idle_guests_asked": args.scale_idle, **held,
            "hold_s": args.scale_hold, "agents": args.scale_agents,
            "open_file_limit": self.nofile_limit,
            "latency": latency, "server_cpu_pct": latency["server_cpu_pct"],
        }

    def hold_idle(self, label: str, server: ServerProcess, instance: dict, count: int,
                  seconds: float, others: int = 0) -> dict:
        """Log in the instance's agents, then ``count`` idle guests, and watch the server hold them.

        Returns the server's RSS before and after the guests (each read
        ``self.pause`` seconds after the logins, once it settled), what one
        guest added, the connect + login rate with its CPU (``connect_cpu``), and the
        server's CPU over ``seconds`` while it only holds them. ``others``:
        connections still to come to the same server (a later load), counted
        against the ephemeral port range: when all of them would take more
        than PORT_USE of it, the guests are spread over as many loopback
        source addresses (127.0.0.1, .2, …) as keep each under it. Guests
        that failed are listed as a problem under ``label``.
        """
        low, high = local_port_range()
        per_source = int(PORT_USE * (high - low + 1))
        total = count + others + len(instance["agents"])
        sources = [f"127.0.0.{i + 1}" for i in range(math.ceil(total / per_source))]
        self.connect_agents(server.port, instance["agents"])
        time.sleep(self.pause)
        rss_before = server.rss_kb()
        guests = self.connect_guests(server, [f"idle-{i}" for i in range(count)],
                                     instance["group_id"], idle=True,
                                     sources=sources if len(sources) > 1 else None)
        time.sleep(self.pause)
        rss_after = server.rss_kb()
        fds = open_fds(server.pid)
        idle = self._measure(server, time.monotonic(), time.monotonic() + seconds)
        if guests["failed"]:
            self.problems.append(f"{label}: {guests['failed']} guests failed to log in: "
                                 f"{guests['errors']}")
        held = count - guests["failed"]
        return {
            "held": held,
            "rss_before_kb": rss_before, "rss_after_kb": rss_after,
            "rss_per_connection_kb": round((rss_after - rss_before) / held, 2) if held else None,
            "server_open_fds": fds,
            "connect_and_login_per_s": round(held / (guests["end"] - guests["start"]), 1)
            if held else None,
            "connect_cpu": guests["cpu"],
            "idle_server_cpu_pct": idle["server_cpu_pct"],
            "ephemeral_ports": [low, high], "source_addresses": sources,
        }

    def phase_connections(self) -> dict:
        args = self.args
        capacity = math.ceil(args.connections / args.conn_agents)
        instance = self.instance("connections", args.conn_agents, capacity)
        server = self.start_cschat(instance)
        try:
            held = self.hold_idle("connections", server, instance, args.connections, self.pause)
        finally:
            self.finish(server)
        cpu = held.pop("connect_cpu")   # the table's CPU column: while they connect
        return {"connections": held.pop("held"), **held, **cpu, "agents": args.conn_agents}

    def phase_login(self) -> dict:
        args = self.args
        capacity = math.ceil(2 * args.logins / args.login_agents)
        instance = self.instance("login", args.login_agents, capacity)
        server = self.start_cschat(instance)
        count = len(self.workers)
        try:
            self.connect_agents(server.port, instance["agents"])
            # Storm 1: the WebSockets are open already; only the 21000 logins are timed.
            parts = split(list(range(args.logins)), count)
            self.workers.call([{"op": "preconnect", "port": server.port, "count": len(part),
                                "concurrency": max(1, args.connect_concurrency // count)}
                               for part in parts], timeout=60 + args.logins * 0.05)
            uids = [f"cold-a-{i}" for i in range(args.logins)]
            start_at = time.monotonic() + 0.5
            commands = [{"op": "login_pending", "uids": part, "group_id": instance["group_id"],
                         "secret": SECRET,
                         "concurrency": max(1, args.login_concurrency // count),
                         "start_at": start_at} for part in split(uids, count)]
            self.workers.send(commands)
            _sleep_until(start_at)
            meter = self.meter(server)
            results = self.workers.receive(commands, 60 + args.logins * 0.05)
            login_cpu = meter.read()
            # Storm 2: each guest opens its WebSocket and logs in (new uid).
            uids = [f"cold-b-{i}" for i in range(args.logins)]
            storm = self.connect_guests(server, uids, instance["group_id"],
                                        start_at=time.monotonic() + 0.5,
                                        concurrency=args.login_concurrency)
        finally:
            self.finish(server)
        login_ok = sum(r["logged_in"] for r in results)
        login_wall = max(r["end"] for r in results) - min(r["start"] for r in results)
        failed = sum(r["failed"] for r in results)
        if failed:
            self.problems.append(f"login storm (open sockets): {failed} failed: "
                                 f"{[e for r in results for e in r['errors']][:3]}")
        if storm["failed"]:
            self.problems.append(f"login storm (connect + login): {storm['failed']} failed: "
                                 f"{storm['errors']}")
        full_ok = args.logins - storm["failed"]
        return {
            "logins_per_s": round(login_ok / login_wall, 1),
            "connect_and_login_per_s": round(full_ok / (storm["end"] - storm["start"]), 1),
            "logins": args.logins, "failed": storm["failed"] + failed,
            **login_cpu,
            "connect_and_login_server_cpu_pct": storm["cpu"]["server_cpu_pct"],
            "connect_and_login_generator_cpu_pct": storm["cpu"]["generator_cpu_pct"],
            "agents": args.login_agents, "concurrency": args.login_concurrency,
        }

    def phase_history(self) -> dict:
        args = self.args
        instance = self.instance("history", 1, 8)
        started = time.monotonic()
        seeded = seed_history(instance["database"], instance["group_id"], instance["agents"][0],
                              args.history_messages, args.history_conversations,
                              args.history_deep)
        seed_seconds = time.monotonic() - started
        server = self.start_cschat(instance)
        rng = random.Random(7)
        size = args.history_page_size
        deep_pages = max(1, seeded["deep_messages"] // size)
        deep_from = max(1, deep_pages - deep_pages // 10)
        newest = [(rng.choice(seeded["shallow_gids"]), 1) for _ in range(args.history_requests)]
        deep = [(seeded["deep_gid"], rng.randint(deep_from, deep_pages))
                for _ in range(args.history_requests)]
        idle = [None] * (len(self.workers) - 1)

        def query(requests):
            return self.workers.call([{"op": "history", "group_id": instance["group_id"],
                                       "page_size": size, "requests": requests}] + idle,
                                     timeout=60 + len(requests))[0]
        figures = {}
        try:
            self.workers.call([{"op": "connect_agents", "port": server.port,
                                "ids": instance["agents"], "secret": SECRET, "relay": False}]
                              + idle)
            query(newest[:50] + deep[:20])   # warm-up, not counted
            for name, requests in (("newest", newest), ("deep", deep)):
                meter = self.meter(server)
                result = query(requests)
                cpu = meter.read()
                ordered = sorted(array.array("q", result["samples"]))
                if result["errors"]:
                    self.problems.append(f"history {name}: {result['errors']} failed, first: "
                                         f"{result['first_error']}")
                if result["short_pages"]:
                    self.problems.append(f"history {name}: {result['short_pages']} pages held "
                                         f"fewer than {size} messages")
                figures[name] = {"p50_ms": _ms(percentile(ordered, 50)),
                                 "p99_ms": _ms(percentile(ordered, 99)),
                                 "max_ms": _ms(ordered[-1]), "requests": len(ordered),
                                 "errors": result["errors"],
                                 "short_pages": result["short_pages"], **cpu}
            figures["deep"]["page_index_range"] = [deep_from, deep_pages]
        finally:
            self.finish(server)
        return {**figures, "messages": seeded["messages"],
                "conversations": seeded["conversations"],
                "deep_conversation_messages": seeded["deep_messages"], "page_size": size,
                "seed_seconds": round(seed_seconds, 1),
                "database_mb": round(seeded["bytes"] / 2**20, 1),
                "server_cpu_pct": max(figures["newest"]["server_cpu_pct"],
                                      figures["deep"]["server_cpu_pct"])}


# -- history seeding -----------------------------------------------------------------------------

def seed_history(path: str, group_id: int, admin_id: int, messages: int, conversations: int,
                 deep: int) -> dict:
    """Fill the database cschat created with ``messages`` over ``conversations``.

    One conversation (gid 1) holds ``deep`` messages; the rest are spread
    evenly over the others. Messages of all conversations are interleaved in
    time, alternately from the guest and the agent, all read. Each guest's
    ``message_count`` and ``last_message_id`` match its messages, and so does
    each message's ``position`` where the schema has that column.
    """
    conversations = max(2, conversations)
    deep = min(deep, messages - (conversations - 1))
    rng = random.Random(42)
    shallow = messages - deep
    counts = [deep] + [shallow // (conversations - 1) + (1 if i < shallow % (conversations - 1)
                                                         else 0)
                       for i in range(conversations - 1)]
    owners = array.array("i")
    for gid, count in enumerate(counts, start=1):
        owners.extend(array.array("i", [gid]) * count)
    order = list(range(len(owners)))
    rng.shuffle(order)
    base = int(time.time() * 1000) - messages * 10
    last_id = [0] * (conversations + 1)
    position = [0] * (conversations + 1)

    def rows(start: int, stop: int):
        for message_id in range(start, stop):
            gid = owners[order[message_id - 1]]
            last_id[gid] = message_id
            position[gid] += 1
            guest = message_id % 2
            yield (message_id, gid, "guest" if guest else "agent", None if guest else admin_id,
                   0, f"seeded message {message_id}: where is my parcel, order {gid}?",
                   f"s{message_id}", base + message_id * 10, position[gid])

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # A schema with messages.position (1 = a conversation's first message) gets it
        # filled too; an older schema without it gets the same rows without it.
        columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
        with_position = "position" in columns
        insert = ("INSERT INTO messages (id, gid, sender, admin_id, file_type, body, "
                  "client_msg_id, created_at" + (", position" if with_position else "")
                  + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?" + (", ?" if with_position else "") + ")")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO guests (gid, group_id, uid, name, created_at, updated_at, last_aix) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(gid, group_id, f"history-{gid}", f"Guest {gid}", base, base, admin_id)
             for gid in range(1, conversations + 1)])
        chunk = 100_000
        for start in range(1, messages + 1, chunk):
            batch = rows(start, min(messages + 1, start + chunk))
            conn.executemany(insert, batch if with_position else (r[:-1] for r in batch))
        conn.executemany(
            "UPDATE guests SET message_count = ?, last_message_id = ?, updated_at = ?, "
            "agent_read_id = ?, guest_read_id = ? WHERE gid = ?",
            [(counts[gid - 1], last_id[gid], base + last_id[gid] * 10, last_id[gid],
              last_id[gid], gid) for gid in range(1, conversations + 1)])
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return {"messages": messages, "conversations": conversations, "deep_gid": 1,
            "deep_messages": deep, "shallow_gids": list(range(2, conversations + 1)),
            "bytes": os.path.getsize(path)}


# -- profile -------------------------------------------------------------------------------------

def profile_report(prefix: str, figures: dict) -> str:
    """The top 30 functions by cumulative and by own time, event loop and SQLite threads."""
    import io

    parts = [f"cschat throughput phase under cProfile: {figures['messages_per_s']} msg/s "
             f"(server CPU {figures['server_cpu_pct']} %), {figures['guests']} guests, "
             f"{figures['agents']} agents, window {figures['window']}\n"
             "Times are wall-clock seconds per thread; both threads share CPU 0, so time one\n"
             "thread spends waiting (epoll, queue) is partly the other thread running.\n"]
    waits = {"event-loop thread": "<method 'poll' of 'select.epoll' objects>",
             "aiosqlite threads": "<method 'get' of '_queue.SimpleQueue' objects>"}
    for label, path in (("event-loop thread", prefix + ".main.prof"),
                        ("aiosqlite threads", prefix + ".threads.prof")):
        if not os.path.exists(path):
            parts.append(f"\n== {label}: no profile written ==\n")
            continue
        stats = pstats.Stats(path)
        waited = sum(v[2] for k, v in stats.stats.items() if k[2] == waits[label])
        parts.append(f"\n{label}: {stats.total_tt:.2f} s in all, {waited:.2f} s of it waiting "
                     f"for work, {stats.total_tt - waited:.2f} s working\n")
        for key, title in (("cumulative", "cumulative time"), ("tottime", "own (total) time")):
            stream = io.StringIO()
            pstats.Stats(path, stream=stream).strip_dirs().sort_stats(key).print_stats(30)
            text = stream.getvalue()
            text = text[text.find("   ncalls"):] if "   ncalls" in text else text
            parts.append(f"\n== {label}: top 30 by {title} ==\n" + text.rstrip() + "\n")
    return "".join(parts)


# -- output --------------------------------------------------------------------------------------

# The figures of a latency run kept for each round, and for the relay's side.
LATENCY_KEYS = ("p50_ms", "p99_ms", "p999_ms", "max_ms", "server_cpu_pct")
# Counts of a run that are summed over the rounds rather than given by their median.
SUMMED = ("errors", "unassigned_guests", "stored", "webhook_deliveries", "mails")


def combine(runs: list[dict]) -> dict:
    """Several rounds' figures of one measurement as one, with the same keys.

    The counts of SUMMED are summed over the rounds; any other number is its
    median over the rounds that have it; a figure equal in every round, or
    not a number, is as it is in the first round.
    """
    combined = {}
    for key, first in runs[0].items():
        values = [run.get(key) for run in runs]
        known = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if key in SUMMED and known:
            combined[key] = sum(known)
        elif all(v == first for v in values) or not known:
            combined[key] = first
        else:
            combined[key] = round(statistics.median(known), 3)
    return combined


def throughput_summary(runs: list[dict]) -> dict:
    """Throughput rounds as one (:func:`combine`), with every round's msg/s and their spread."""
    per_round = [run["messages_per_s"] for run in runs]
    return {**combine(runs), "rounds_messages_per_s": per_round,
            "spread": benchstats.describe(per_round)}


def latency_summary(runs: list[dict], keys: tuple[str, ...] | None = None) -> dict:
    """Latency rounds as one (:func:`combine`, only ``keys`` if given), with every round's
    percentiles and server CPU (``rounds``)."""
    combined = combine(runs)
    if keys is not None:
        combined = {key: combined[key] for key in keys}
    return {**combined, "rounds": [{key: run[key] for key in LATENCY_KEYS} for run in runs]}


def ratio(value: float | None, reference: float | None) -> float | None:
    """``value / reference`` to 3 places; None when either is unknown or the reference is 0."""
    if value is None or not reference:
        return None
    return round(value / reference, 3)


def percentile(ordered, pct: float):
    if not ordered:
        return None
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


def _ms(ns) -> float | None:
    return None if ns is None else round(ns / 1e6, 3)


def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def fsync_ms(folder: str, count: int) -> dict:
    """How long the disk under ``folder`` takes to make a small append durable (fsync).

    Every commit of cschat waits for one (``synchronous = full``), so this
    bounds how low the delivery latency can go on this machine.
    """
    path = os.path.join(folder, "fsync-probe")
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            start = time.perf_counter_ns()
            os.fsync(fd)
            times.append(time.perf_counter_ns() - start)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return {"p50_ms": _ms(percentile(times, 50)), "p99_ms": _ms(percentile(times, 99)),
            "samples": count}


def versions() -> dict:
    import tornado

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"cschat_commit": git("rev-parse", "--short", "HEAD"),
            "cschat_uncommitted_changes": bool(git("status", "--porcelain", "--", "../cschat")),
            "python": platform.python_version(), "tornado": tornado.version,
            "sqlite": sqlite3.sqlite_version, "platform": platform.platform(),
            "cpus": os.cpu_count()}


def summarise(results: dict) -> dict:
    """The flat per-phase server CPU and the targets met (judged on the medians)."""
    cpu = {}
    targets = {}

    def at_most(value, bound: str) -> bool:
        return value is not None and value <= TARGETS[bound]

    if "throughput" in results:
        t = results["throughput"]
        cpu["throughput"] = t["cschat"]["server_cpu_pct"]
        cpu["throughput_baseline"] = t["baseline"]["server_cpu_pct"]
        targets["throughput_ratio"] = t["ratio"] is not None and \
            t["ratio"] >= TARGETS["throughput_ratio"]
    if "latency" in results:
        lat = results["latency"]
        cpu["latency"] = lat["server_cpu_pct"]
        cpu["latency_baseline"] = lat["baseline"]["server_cpu_pct"]
        targets["latency_p99"] = at_most(lat["p99_ms"], "latency_p99_ms")
        targets["latency_p999"] = at_most(lat["p999_ms"], "latency_p999_ms")
    if "connections" in results:
        cpu["connections"] = results["connections"]["server_cpu_pct"]
        targets["rss_per_connection"] = at_most(results["connections"]["rss_per_connection_kb"],
                                                "rss_per_connection_kb")
    if "login" in results:
        cpu["login"] = results["login"]["server_cpu_pct"]
        targets["logins_per_s"] = results["login"]["logins_per_s"] >= TARGETS["logins_per_s"]
    if "history" in results:
        cpu["history"] = results["history"]["server_cpu_pct"]
        targets["history_p99"] = all(at_most(results["history"][k]["p99_ms"], "history_p99_ms")
                                     for k in ("newest", "deep"))
    if "features" in results:
        cpu["features_plain"] = results["features"]["server_cpu_pct"]
    if "scale" in results:
        cpu["scale"] = results["scale"]["server_cpu_pct"]
        cpu["scale_idle"] = results["scale"]["idle_server_cpu_pct"]
    return {"server_cpu_pct": cpu, "targets_met": targets}


def render(header: tuple[str, ...], rows: list[tuple[str, ...]], numeric: set[int]) -> list[str]:
    """A plain-text table: columns as wide as their widest cell, ``numeric`` ones right-aligned."""
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
              for r in rows]
    return lines


def cpu_cell(cpu: dict) -> str:
    """A reading of :class:`CpuMeter` as the table shows it: server / generator / other."""
    return (f"{cpu['server_cpu_pct']:.0f} / {cpu['generator_cpu_pct']:.0f} / "
            f"{cpu['other_cpu_pct']:.0f}")


def with_spread(spread: dict, places: int) -> str:
    """A median with its rounds' range and spread: ``3078 (2485-3401, 30 %)``; alone for one."""
    middle = f"{spread['median']:.{places}f}"
    if spread["min"] == spread["max"] or spread["spread_pct"] is None:
        return middle
    return (f"{middle} ({spread['min']:.{places}f}-{spread['max']:.{places}f}, "
            f"{spread['spread_pct']:.0f} %)")


def interval(ci: list[float] | None) -> str:
    """A 95 % interval as the tables show it after a ratio ("" when there is none)."""
    return f", 95 % CI {ci[0]:.2f}-{ci[1]:.2f}" if ci else ""


def latency_cells(figures: dict) -> str:
    """``p50 / p99 / p99.9`` of a latency run or its rounds' medians."""
    return " / ".join(str(figures[key]) for key in ("p50_ms", "p99_ms", "p999_ms"))


def rounds_needed_note(what: str, sd: float | None, needed: int | None, rounds: int,
                       option: str) -> str:
    """The "rounds needed" line (see :func:`benchstats.rounds_needed`)."""
    if sd is None:
        return (f"rounds needed to see a 5 % difference in {what}: unknown, one round gives "
                f"no spread to go by ({option} 2 or more)")
    return (f"rounds needed to see a 5 % difference in {what}: "
            f"{needed if needed is not None else 'more than 100000'} at this run's spread "
            f"(sd of ln ratio {sd:.3f}; this run: {rounds})")


def table(results: dict) -> str:
    """The figures as the tool prints them: the main table, then the feature cost table.

    Each table is followed by its notes: every round's figures, the rounds a
    5 % difference would need, what the receivers got.
    """
    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    met = results.get("targets_met", {})

    def row(figure, value, cpu=None, target=""):
        rows.append((figure, value, cpu_cell(cpu) if isinstance(cpu, dict) else cpu or "",
                     target))

    def verdict(bound, ok):
        return f"{bound}: {'met' if ok else 'NOT met'}"

    if "throughput" in results:
        t = results["throughput"]
        c, b = t["cschat"], t["baseline"]
        count = len(t["ratio_per_round"])
        row(f"throughput cschat (msg/s), {c['guests']} guests x window {c['window']}, "
            f"median of {count}", with_spread(c["spread"], 0), c)
        row("throughput bare relay (msg/s)", with_spread(b["spread"], 0), b)
        ratio_text = "-" if t["ratio"] is None else \
            with_spread(t["ratio_spread"], 2) + interval(t["ratio_ci95"])
        row("ratio cschat / relay (median of the rounds' ratios)", ratio_text, None,
            verdict(f">= {TARGETS['throughput_ratio']:.2f}", met["throughput_ratio"]))
        if count > 1:
            notes.append("throughput rounds (cschat / relay / ratio): " + "; ".join(
                f"{cs:.0f} / {rl:.0f} / {ra if ra is not None else '-'}" for cs, rl, ra in zip(
                    c["rounds_messages_per_s"], b["rounds_messages_per_s"],
                    t["ratio_per_round"], strict=True)))
        notes.append(rounds_needed_note("the throughput ratio", t["log_ratio_sd"],
                                        t["rounds_for_5pct"], count, "--tp-rounds"))
        if "profiled" in t:
            row("throughput under cProfile (msg/s)", f"{t['profiled']['messages_per_s']:.0f}",
                f"{t['profiled']['server_cpu_pct']:.0f}")
    if "latency" in results:
        lat = results["latency"]
        row(f"latency p50 (ms) @ {lat['offered_per_s']:.0f} msg/s, {lat['guests']} guests, "
            f"median of {len(lat['rounds'])}", f"{lat['p50_ms']}", lat)
        row("latency p99 (ms)", f"{lat['p99_ms']}", None,
            verdict(f"<= {TARGETS['latency_p99_ms']:.0f}", met["latency_p99"]))
        row("latency p99.9 (ms)", f"{lat['p999_ms']}", None,
            verdict(f"<= {TARGETS['latency_p999_ms']:.0f}", met["latency_p999"]))
        row("latency max (ms)", f"{lat['max_ms']}")
        base = lat["baseline"]
        row("  bare relay, same load: p50 / p99 / p99.9 (ms)", latency_cells(base),
            f"{base['server_cpu_pct']:.0f}")
        if len(lat["rounds"]) > 1:
            notes.append("latency rounds, p50 / p99 / p99.9 / max (ms): " + "; ".join(
                f"cschat {latency_cells(c)} / {c['max_ms']}, relay {latency_cells(r)} / "
                f"{r['max_ms']}" for c, r in zip(lat["rounds"], base["rounds"], strict=True)))
    if "connections" in results:
        con = results["connections"]
        row(f"RSS per idle connection (KiB), {con['connections']} held",
            f"{con['rss_per_connection_kb']}", con,
            verdict(f"<= {TARGETS['rss_per_connection_kb']:.0f}", met["rss_per_connection"]))
        row("  server RSS before / after (MiB)",
            f"{con['rss_before_kb'] / 1024:.1f} / {con['rss_after_kb'] / 1024:.1f}")
        row("  server CPU while they idle (%)", f"{con['idle_server_cpu_pct']}")
    if "login" in results:
        log = results["login"]
        row("logins/s (cold uids, sockets already open)", f"{log['logins_per_s']:.0f}", log,
            verdict(f">= {TARGETS['logins_per_s']:.0f}", met["logins_per_s"]))
        row("connect + login/s (cold uids)", f"{log['connect_and_login_per_s']:.0f}",
            f"{log['connect_and_login_server_cpu_pct']:.0f} / "
            f"{log['connect_and_login_generator_cpu_pct']:.0f}")
    if "history" in results:
        his = results["history"]
        for name in ("newest", "deep"):
            h = his[name]
            row(f"history {name} page p50 / p99 (ms)", f"{h['p50_ms']} / {h['p99_ms']}", h,
                verdict(f"p99 <= {TARGETS['history_p99_ms']:.0f}",
                        h["p99_ms"] <= TARGETS["history_p99_ms"]))
        notes.append(f"history: {his['messages']} messages in {his['conversations']} "
                     f"conversations; the deep one holds {his['deep_conversation_messages']}, "
                     f"deep pages are page_index {his['deep']['page_index_range'][0]}-"
                     f"{his['deep']['page_index_range'][1]} of page_size {his['page_size']}")
    if "scale" in results:
        sc = results["scale"]
        lat = sc["latency"]
        row(f"scale: RSS per idle connection (KiB), {sc['idle_guests']} held",
            f"{sc['rss_per_connection_kb']}", sc["connect_cpu"])
        row("  server RSS before / after (MiB)",
            f"{sc['rss_before_kb'] / 1024:.1f} / {sc['rss_after_kb'] / 1024:.1f}")
        row(f"  server CPU while they idle (%), {sc['hold_s']:g} s", f"{sc['idle_server_cpu_pct']}")
        row(f"scale: latency p50 / p99 / p99.9 / max (ms) @ {lat['offered_per_s']:.0f} msg/s, "
            f"{lat['guests']} guests + the idle ones", f"{latency_cells(lat)} / {lat['max_ms']}",
            lat)
        notes.append(f"scale: {sc['idle_guests']} idle guests ({sc['idle_guests_asked']} asked) "
                     f"and {sc['agents']} agents; connect + login {sc['connect_and_login_per_s']}"
                     f"/s; open-file limit {sc['open_file_limit']}, server fds "
                     f"{sc['server_open_fds']}; ephemeral ports {sc['ephemeral_ports'][0]}-"
                     f"{sc['ephemeral_ports'][1]}, source addresses "
                     f"{', '.join(sc['source_addresses'])}")
    lines = render(("figure", "value", "CPU % server / gen / other", "target"), rows, {1}) \
        if rows else []
    if notes:
        lines += [""] + notes
    if "features" in results:
        lines += ([""] if lines else []) + feature_table(results["features"])
    return "\n".join(lines)


def feature_table(features: dict) -> list[str]:
    """The "feature cost" table of the features phase and its notes."""
    rows = []
    notes = [f"feature cost: each configuration against plain of the same round, medians of "
             f"{features['rounds']} round(s); cost = 1 - msg/s ratio, p99 change = p99 ratio - 1"]
    for name, entry in features["configurations"].items():
        t, lat = entry["throughput"], entry["latency"]
        vs = "-" if entry["ratio_to_plain"] is None else \
            f"{entry['ratio_to_plain']:.3f}{interval(entry['ratio_to_plain_ci95'])}"
        rows.append((name, with_spread(t["spread"], 0), vs,
                     "-" if entry["throughput_cost_pct"] is None
                     else f"{entry['throughput_cost_pct']:+.1f} %",
                     latency_cells(lat),
                     "-" if entry["p99_change_pct"] is None
                     else f"{entry['p99_change_pct']:+.1f} %",
                     f"{t['server_cpu_pct']:.0f} / {lat['server_cpu_pct']:.0f}"))
        if "webhook_deliveries" in entry:
            notes.append(f"{name}: the webhook receiver got {entry['webhook_deliveries']} "
                         f"deliveries; {entry['messages_stored']} messages were stored")
        if "mails" in entry:
            notes.append(f"{name}: the SMTP server got {entry['mails']} mails" + (
                " (this load queues none: guests write, agents never answer; what is priced is "
                "the mail worker being on)" if not entry["mails"] else ""))
    notes += [f"skipped {name}: {why}" for name, why in features["skipped"].items()]
    notes += features["notes"]
    notes.append(rounds_needed_note("a feature's cost", features["log_ratio_sd"],
                                    features["rounds_for_5pct"], features["rounds"],
                                    "--feat-rounds"))
    header = ("configuration", "msg/s", "vs plain", "throughput cost",
              "latency p50 / p99 / p99.9 (ms)", "p99 change", "server CPU % tp / lat")
    return ["feature cost"] + render(header, rows, {1, 2, 3, 5}) + [""] + notes


# -- command line --------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (under a minute); explicit size options still apply")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma list of phases to run, from {', '.join(PHASES + EXTRA_PHASES)}"
                             f" (default: {', '.join(PHASES)})")
    parser.add_argument("--features", action="store_true",
                        help="also run the features phase: the throughput and latency loads "
                             f"with each of {', '.join(CONFIGURATIONS)} (every feature off, "
                             "each one on, all on), priced against plain")
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS), metavar="LIST",
                        help="features: the comma list of configurations to run (plain is "
                             "always run: the others are priced against it); fewer make more "
                             "rounds affordable (default all)")
    parser.add_argument("--relay-spread", type=float, default=10.0, metavar="PCT",
                        help="list it as a problem when the relay's own throughput moved more "
                             "than PCT %% between rounds, max/min - 1 (default 10)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON here")
    parser.add_argument("--profile", metavar="FILE", nargs="?", const="bench-profile.txt",
                        help="also run the throughput phase with the server under cProfile "
                             "and write the top functions to FILE (default bench-profile.txt)")
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full",
                        help="[database] synchronous of the servers under test (default full)")
    parser.add_argument("--settle", type=float, default=None, metavar="S",
                        help="before each server starts, wait up to S seconds for the machine "
                             "to be quiet (default 120, --quick 0)")
    parser.add_argument("--quiet", type=float, default=15.0, metavar="PCT",
                        help="quiet means all processes together use less than PCT %% of a core "
                             "(default 15)")
    parser.add_argument("--max-other", type=float, default=25.0, metavar="PCT",
                        help="a measurement during which other processes used more than PCT %% "
                             "of a core counts as disturbed (default 25)")
    parser.add_argument("--retries", type=int, default=None, metavar="N",
                        help="run a disturbed measurement again up to N times "
                             "(default 3, --quick 0)")
    parser.add_argument("--keep-temp", action="store_true",
                        help="keep the temporary folder (configurations, databases, server logs)")
    for name, (default, quick, help_text) in SIZES.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=None,
                            metavar="N", help=f"{help_text} (default {default}, --quick {quick})")
    args = parser.parse_args(argv)
    if args.settle is None:
        args.settle = 0.0 if args.quick else 120.0
    if args.retries is None:
        args.retries = 0 if args.quick else 3
    for name, (default, quick, _) in SIZES.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else default)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if args.features and "features" not in args.phases:
        args.phases.append("features")
    configurations = {c.strip() for c in args.configurations.split(",") if c.strip()}
    if configurations - set(CONFIGURATIONS):
        parser.error(f"unknown configuration(s) {', '.join(configurations - set(CONFIGURATIONS))}"
                     f"; known: {', '.join(CONFIGURATIONS)}")
    args.configurations = [c for c in CONFIGURATIONS if c in configurations | {"plain"}]
    known = PHASES + EXTRA_PHASES
    unknown = [p for p in args.phases if p not in known]
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if args.profile and "throughput" not in args.phases:
        parser.error("--profile profiles the throughput phase: include it in --phases")
    at_least_one = ("workers", "tp_rounds", "tp_guests", "tp_agents", "tp_window", "lat_rounds",
                    "lat_guests", "lat_agents", "connections", "conn_agents", "logins",
                    "login_agents", "history_requests", "feat_rounds", "scale_idle",
                    "scale_agents")
    for name in at_least_one:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _stop_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)   # unwinds through the finally blocks that stop the servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = time.monotonic()
    bench = Bench(args)
    failed: dict[str, str] = {}
    try:
        results: dict = {"meta": {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            **versions(),
            "server_cpu": SERVER_CPU, "generator_cpus": bench.generator_cpus,
            "server_and_generator_share_cpus": bench.shared_cpu,
            "workers": args.workers, "quick": args.quick, "synchronous": args.synchronous,
            "phases": args.phases, "relay_spread_pct": args.relay_spread,
            "open_file_limit": bench.nofile_limit,
            "sizes": {name: getattr(args, name) for name in SIZES},
            "fsync": fsync_ms(bench.tmp, 20 if args.quick else 300),
        }}
        if bench.shared_cpu:
            print("warning: only one CPU available; server and generator share it",
                  file=sys.stderr)
        for phase in args.phases:
            print(f"-- {phase} ...", file=sys.stderr, flush=True)
            phase_started = time.monotonic()
            run = getattr(bench, "phase_" + phase)
            try:
                if phase in ROUNDED:   # their rounds are checked one by one
                    results[phase] = run()
                else:
                    result, attempts, worst = bench.undisturbed(phase, run)
                    results[phase] = {**result, "attempts": attempts,
                                      "max_other_cpu_pct": worst}
            except Exception as error:  # noqa: BLE001 - reported; the other phases still run
                failed[phase] = f"{type(error).__name__}: {error}"
                print(f"   FAILED: {failed[phase]}", file=sys.stderr, flush=True)
                bench.recover()
                continue
            print(f"   done in {time.monotonic() - phase_started:.1f} s", file=sys.stderr,
                  flush=True)
    finally:
        bench.close()
    results.update(summarise(results))
    results["failed_phases"] = failed
    results["problems"] = bench.problems
    results["meta"]["quiet_before_phases"] = bench.settled
    results["meta"]["server_ran_on_cpus"] = sorted(bench.server_cpus)
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    print(table(results))
    if bench.problems:
        print("\nproblems seen:")
        for line in bench.problems:
            print("  " + line)
    for phase, message in failed.items():
        print(f"\nphase {phase} FAILED: {message}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
            handle.write("\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
