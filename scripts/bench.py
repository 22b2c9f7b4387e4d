"""Benchmark cschat: throughput against a bare relay, latency, connections, logins, history.

    python scripts/bench.py                       # every phase, default sizes (a few minutes)
    python scripts/bench.py --quick               # tiny sizes, under a minute
    python scripts/bench.py --phases throughput --profile profile.txt
    python scripts/bench.py --json results.json

Every phase starts its own cschat process (``python -m cschat run``) on a
fresh temporary database and configuration, pinned to CPU 0, and drives it
from load-generator processes (``loadgen.py``) pinned to the other CPUs. The
server's own CPU use (utime + stime from /proc) is reported for every phase:
near 100 % means the server, not the generator, is the limit. See
docs/benchmarks.md for what each figure means.
"""

from __future__ import annotations

import argparse
import array
import datetime
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
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import loadgen  # noqa: E402

SECRET = "cschat-bench-secret-0123456789abcdef"
SERVER_CPU = 0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The CPUs this process may use, read before it pins itself to the generator CPUs.
ALLOWED_CPUS = sorted(os.sched_getaffinity(0))
PHASES = ("throughput", "latency", "connections", "login", "history")
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
    "tp_rounds": (5, 1, "throughput: cschat and relay runs, alternated; medians reported"),
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
}

TARGETS = {
    "throughput_ratio": 0.60,
    "latency_p99_ms": 15.0,
    "rss_per_connection_kb": 30.0,
    "history_p99_ms": 5.0,
    "logins_per_s": 1000.0,
}


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

    ``other_cpu_pct`` is what neither the server nor the load generator used
    (the coordinator, the kernel's own threads, anything else running on the
    machine); if it is large the figures of that phase were disturbed.
    """

    # Every reading's other_cpu_pct, so a run can tell whether it was disturbed.
    readings: list[float] = []

    def __init__(self, server: ServerProcess, workers: Workers):
        self.server, self.workers = server, workers
        self.start = (server.cpu(), workers.cpu(), busy_seconds(), time.monotonic())

    def read(self) -> dict:
        server, generator, busy, wall = (self.server.cpu(), self.workers.cpu(), busy_seconds(),
                                         time.monotonic())
        s0, g0, b0, w0 = self.start
        elapsed = max(1e-9, wall - w0)
        server_pct = 100 * (server - s0) / elapsed
        generator_pct = 100 * (generator - g0) / elapsed
        other = max(0.0, 100 * (busy - b0) / elapsed - server_pct - generator_pct)
        CpuMeter.readings.append(other)
        return {"server_cpu_pct": round(server_pct, 1),
                "generator_cpu_pct": round(generator_pct, 1),
                "other_cpu_pct": round(other, 1)}


class ServerProcess:
    """A server (cschat or the relay) in its own process, pinned to CPU 0."""

    def __init__(self, argv: list[str], folder: str, nofile: int, name: str):
        self.name = name
        self.log_path = os.path.join(folder, f"{name}.log")
        self._log = open(self.log_path, "wb")
        cpus = {SERVER_CPU} if SERVER_CPU in ALLOWED_CPUS else None

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
        pattern = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
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

class Bench:
    """One benchmark: the worker processes, a temporary folder, the servers started."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.nofile = max(args.connections, args.logins * 2, args.lat_guests, args.tp_guests) \
            * 2 + 1000
        self.runs = 0
        all_cpus = ALLOWED_CPUS
        self.generator_cpus = [c for c in all_cpus if c != SERVER_CPU] or all_cpus
        self.shared_cpu = self.generator_cpus == all_cpus and SERVER_CPU in all_cpus
        os.sched_setaffinity(0, self.generator_cpus)
        loadgen.raise_nofile(self.nofile)
        self.workers = Workers(args.workers, self.generator_cpus, self.nofile)
        self.tmp = tempfile.mkdtemp(prefix="cschat-bench-")
        self.servers: list[ServerProcess] = []
        self.problems: list[str] = []
        self.settled: list[dict] = []
        self.server_cpus: set[int] = set()

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

        Disturbed: some CPU reading of the run found more than ``--max-other``
        % of a core used by neither the server nor the load generator.
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

    def instance(self, name: str, agents: int, capacity: int) -> dict:
        """A folder with cschat.ini and an initialised database holding one group and agents.

        The group is added with the CLI; the agents are inserted with SQL
        (one CLI call per agent would take a quarter of a second each).
        """
        self.runs += 1
        folder = os.path.join(self.tmp, f"{self.runs:02d}-{name}")
        os.makedirs(folder)
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
        conn.close()
        return {"folder": folder, "config": config, "database": database,
                "group_id": group_id, "agents": agent_ids, "name": name}

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
        self.runs += 1
        folder = os.path.join(self.tmp, f"{self.runs:02d}-relay")
        os.makedirs(folder)
        server = ServerProcess([sys.executable, os.path.join(HERE, "relay.py"), "--port", "0"],
                               folder, self.nofile, "relay")
        self.servers.append(server)
        self.server_cpus.update(server.cpus)
        return server

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
                       concurrency: int | None = None) -> dict:
        """Connect and log in guests over the workers, starting together at ``start_at``.

        Returns each guest's agent, the failures, the first start and last
        end over all workers, and the CPU use from ``start_at`` to the end.
        """
        count = len(self.workers)
        concurrency = concurrency or self.args.connect_concurrency
        uid_parts = split(uids, count)
        pair_parts = split(pairs, count) if pairs is not None else [None] * count
        commands = [{"op": "connect_guests", "port": server.port, "uids": part,
                     "group_id": group_id, "secret": SECRET, "pairs": pair_part,
                     "concurrency": max(1, concurrency // count), "start_at": start_at}
                    for part, pair_part in zip(uid_parts, pair_parts, strict=True)]
        self.workers.send(commands)
        if start_at is not None:
            _sleep_until(start_at)
        meter = CpuMeter(server, self.workers)
        results = self.workers.receive(commands, timeout=60 + len(uids) * 0.05)
        cpu = meter.read()
        errors = [e for r in results for e in r["errors"]]
        return {"agents": unsplit([r["agents"] for r in results]),
                "failed": sum(r["failed"] for r in results), "errors": errors[:5],
                "start": min(r["start"] for r in results),
                "end": max(r["end"] for r in results), "cpu": cpu}

    # -- phases --------------------------------------------------------------------

    def throughput_run(self, server: ServerProcess, group_id: int, agent_ids: list[int],
                       pairs: list[int] | None, run: str) -> tuple[dict, list[int]]:
        """One closed-loop run against ``server``; returns the figures and the pairs used."""
        args = self.args
        relay = pairs is not None
        self.connect_agents(server.port, agent_ids, relay)
        uids = [f"tp{run}-{i}" for i in range(args.tp_guests)]
        guests = self.connect_guests(server, uids, group_id, pairs)
        if guests["failed"]:
            raise RuntimeError(f"{guests['failed']} guests could not log in: {guests['errors']}")
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
        acks = sum(r["to"]["acks"] - r["from"]["acks"] for r in results)
        pushes = sum(r["to"]["pushes"] - r["from"]["pushes"] for r in results)
        errors = sum(r["end"]["errors"] for r in results)
        first_error = next((r["first_error"] for r in results if r["first_error"]), None)
        if first_error:
            self.problems.append(f"{server.name} throughput: {errors} sends failed, "
                                 f"first: {first_error}")
        duration = args.tp_duration
        figures = {
            "messages_per_s": round(min(acks, pushes) / duration, 1),
            "acks_per_s": round(acks / duration, 1),
            "pushes_per_s": round(pushes / duration, 1),
            "errors": errors,
            "unassigned_guests": unassigned,
            **cpu,
            "guests": args.tp_guests, "agents": len(agent_ids), "window": args.tp_window,
            "duration_s": duration,
        }
        return figures, guests["agents"]

    def _measure(self, server: ServerProcess, start: float, end: float) -> dict:
        """CPU use between two monotonic times (sleeps until the end)."""
        _sleep_until(start)
        meter = CpuMeter(server, self.workers)
        _sleep_until(end)
        return meter.read()

    def phase_throughput(self) -> dict:
        """cschat and the relay in turn, ``--tp-rounds`` times; the medians are reported.

        Alternating the two, each on a fresh process, keeps a slow spell of
        the machine from landing on one side only.
        """
        args = self.args
        capacity = math.ceil(args.tp_guests / args.tp_agents)
        rounds: dict[str, list[dict]] = {"cschat": [], "baseline": []}
        def one_round(number: int) -> tuple[dict, dict]:
            instance = self.instance("throughput", args.tp_agents, capacity)
            server = self.start_cschat(instance)
            try:
                cschat, pairs = self.throughput_run(server, instance["group_id"],
                                                    instance["agents"], None, f"c{number}")
            finally:
                self.finish(server)
            relay = self.start_relay()
            try:
                baseline, _ = self.throughput_run(relay, 1, instance["agents"],
                                                  [a if a is not None else 0 for a in pairs],
                                                  f"r{number}")
            finally:
                self.finish(relay)
            return cschat, baseline

        for number in range(args.tp_rounds):
            (cschat, baseline), attempts, _ = self.undisturbed(
                f"throughput round {number + 1}", lambda number=number: one_round(number))
            cschat["attempts"] = baseline["attempts"] = attempts
            rounds["cschat"].append(cschat)
            rounds["baseline"].append(baseline)
        result = {}
        for side, runs in rounds.items():
            ordered = sorted(runs, key=lambda r: r["messages_per_s"])
            result[side] = {**ordered[(len(ordered) - 1) // 2],
                            "rounds_messages_per_s": [r["messages_per_s"] for r in runs]}
        median_baseline = result["baseline"]["messages_per_s"]
        result["ratio"] = round(result["cschat"]["messages_per_s"] / median_baseline, 3) \
            if median_baseline else 0.0
        result["ratio_per_round"] = [
            round(c["messages_per_s"] / b["messages_per_s"], 3) if b["messages_per_s"] else 0.0
            for c, b in zip(rounds["cschat"], rounds["baseline"], strict=True)]
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
                    pairs: list[int] | None, run: str) -> tuple[dict, list[int]]:
        """One open-loop run against ``server``; returns the figures and the pairs used."""
        args = self.args
        self.connect_agents(server.port, agent_ids, pairs is not None)
        uids = [f"lat{run}-{i}" for i in range(args.lat_guests)]
        guests = self.connect_guests(server, uids, group_id, pairs)
        if guests["failed"]:
            raise RuntimeError(f"{guests['failed']} guests could not log in: {guests['errors']}")
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
            "guests": args.lat_guests, "agents": len(agent_ids),
            "duration_s": args.lat_duration, **cpu,
        }
        return figures, guests["agents"]

    def phase_latency(self) -> dict:
        args = self.args
        capacity = math.ceil(args.lat_guests / args.lat_agents)
        instance = self.instance("latency", args.lat_agents, capacity)
        server = self.start_cschat(instance)
        try:
            figures, pairs = self.latency_run(server, instance["group_id"], instance["agents"],
                                              None, "c")
        finally:
            self.finish(server)
        relay = self.start_relay()
        try:
            baseline, _ = self.latency_run(relay, 1, instance["agents"],
                                           [a if a is not None else 0 for a in pairs], "r")
        finally:
            self.finish(relay)
        keys = ("p50_ms", "p99_ms", "p999_ms", "max_ms", "server_cpu_pct")
        return {**figures, "baseline": {k: baseline[k] for k in keys}}

    def phase_connections(self) -> dict:
        args = self.args
        capacity = math.ceil(args.connections / args.conn_agents)
        instance = self.instance("connections", args.conn_agents, capacity)
        server = self.start_cschat(instance)
        try:
            pause = 0.5 if args.quick else 2.0
            self.connect_agents(server.port, instance["agents"])
            time.sleep(pause)
            rss_before = server.rss_kb()
            uids = [f"idle-{i}" for i in range(args.connections)]
            guests = self.connect_guests(server, uids, instance["group_id"])
            time.sleep(pause)
            rss_after = server.rss_kb()
            fds = open_fds(server.pid)
            idle = self._measure(server, time.monotonic(), time.monotonic() + pause)
        finally:
            self.finish(server)
        held = args.connections - guests["failed"]
        if guests["failed"]:
            self.problems.append(f"connections: {guests['failed']} guests failed to log in: "
                                 f"{guests['errors']}")
        return {
            "connections": held,
            "rss_before_kb": rss_before, "rss_after_kb": rss_after,
            "rss_per_connection_kb": round((rss_after - rss_before) / held, 2) if held else None,
            "server_open_fds": fds,
            "connect_and_login_per_s": round(held / (guests["end"] - guests["start"]), 1),
            **guests["cpu"],
            "idle_server_cpu_pct": idle["server_cpu_pct"],
            "agents": args.conn_agents,
        }

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
            meter = CpuMeter(server, self.workers)
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
                meter = CpuMeter(server, self.workers)
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
    """The flat per-phase server CPU and the targets met."""
    cpu = {}
    targets = {}
    if "throughput" in results:
        t = results["throughput"]
        cpu["throughput"] = t["cschat"]["server_cpu_pct"]
        cpu["throughput_baseline"] = t["baseline"]["server_cpu_pct"]
        targets["throughput_ratio"] = t["ratio"] >= TARGETS["throughput_ratio"]
    if "latency" in results:
        cpu["latency"] = results["latency"]["server_cpu_pct"]
        cpu["latency_baseline"] = results["latency"]["baseline"]["server_cpu_pct"]
        p99 = results["latency"]["p99_ms"]
        targets["latency_p99"] = p99 is not None and p99 <= TARGETS["latency_p99_ms"]
    if "connections" in results:
        cpu["connections"] = results["connections"]["server_cpu_pct"]
        per = results["connections"]["rss_per_connection_kb"]
        targets["rss_per_connection"] = per is not None and per <= \
            TARGETS["rss_per_connection_kb"]
    if "login" in results:
        cpu["login"] = results["login"]["server_cpu_pct"]
        targets["logins_per_s"] = results["login"]["logins_per_s"] >= TARGETS["logins_per_s"]
    if "history" in results:
        cpu["history"] = results["history"]["server_cpu_pct"]
        targets["history_p99"] = all(results["history"][k]["p99_ms"] <= TARGETS["history_p99_ms"]
                                     for k in ("newest", "deep"))
    return {"server_cpu_pct": cpu, "targets_met": targets}


def table(results: dict) -> str:
    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    met = results.get("targets_met", {})

    def row(figure, value, cpu=None, target=""):
        if isinstance(cpu, dict):
            cpu = (f"{cpu['server_cpu_pct']:.0f} / {cpu['generator_cpu_pct']:.0f} / "
                   f"{cpu['other_cpu_pct']:.0f}")
        rows.append((figure, value, cpu or "", target))

    def verdict(bound, ok):
        return f"{bound}: {'met' if ok else 'NOT met'}"

    if "throughput" in results:
        t = results["throughput"]
        c, b = t["cschat"], t["baseline"]
        row(f"throughput cschat (msg/s), {c['guests']} guests x window {c['window']}",
            f"{c['messages_per_s']:.0f}", c)
        row("throughput bare relay (msg/s)", f"{b['messages_per_s']:.0f}", b)
        row("ratio cschat / relay", f"{t['ratio']:.2f}", None,
            verdict(f">= {TARGETS['throughput_ratio']:.2f}", met["throughput_ratio"]))
        if len(t["ratio_per_round"]) > 1:
            notes.append("throughput rounds (cschat / relay / ratio): " + "; ".join(
                f"{cs:.0f} / {rl:.0f} / {ra:.2f}" for cs, rl, ra in zip(
                    c["rounds_messages_per_s"], b["rounds_messages_per_s"],
                    t["ratio_per_round"], strict=True)))
        if "profiled" in t:
            row("throughput under cProfile (msg/s)", f"{t['profiled']['messages_per_s']:.0f}",
                f"{t['profiled']['server_cpu_pct']:.0f}")
    if "latency" in results:
        lat = results["latency"]
        row(f"latency p50 (ms) @ {lat['offered_per_s']:.0f} msg/s, {lat['guests']} guests",
            f"{lat['p50_ms']}", lat)
        row("latency p99 (ms)", f"{lat['p99_ms']}", None,
            verdict(f"<= {TARGETS['latency_p99_ms']:.0f}", met["latency_p99"]))
        row("latency p99.9 / max (ms)", f"{lat['p999_ms']} / {lat['max_ms']}")
        base = lat["baseline"]
        row("  bare relay, same load: p50 / p99 / p99.9 (ms)",
            f"{base['p50_ms']} / {base['p99_ms']} / {base['p999_ms']}",
            f"{base['server_cpu_pct']:.0f}")
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
    header = ("figure", "value", "CPU % server / gen / other", "target")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) if i == 1 else c.ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
              for r in rows]
    return "\n".join(lines + [""] + notes if notes else lines)


# -- command line --------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (under a minute); explicit size options still apply")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma list of phases to run, from {', '.join(PHASES)}")
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
    unknown = [p for p in args.phases if p not in PHASES]
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; known: {', '.join(PHASES)}")
    if args.profile and "throughput" not in args.phases:
        parser.error("--profile profiles the throughput phase: include it in --phases")
    at_least_one = ("workers", "tp_rounds", "tp_guests", "tp_agents", "tp_window", "lat_guests",
                    "lat_agents", "connections", "conn_agents", "logins", "login_agents",
                    "history_requests")
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
            "phases": args.phases,
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
                if phase == "throughput":   # its rounds are checked one by one
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
