"""Load-generator worker processes for ``bench.py``.

Each worker is a process pinned to the generator CPUs, running one asyncio
loop and holding its share of agent and guest connections (raw
:mod:`wsclient` sockets). The coordinator drives it through a pipe with
small command dicts (:func:`worker_main`); a command returns one dict.

The frames are the same against cschat and against the bare relay
(``relay.py``): guests log in with 21000 and send 22300, agents log in with
31000 and receive 32399 pushes. Against the relay each connection's path
names its pair (``/ws?agent=ID`` / ``/ws?to=ID&gid=N``) because the relay
does no routing. Guests may log in as a browser would, with a User-Agent and
the widget's visitor context (the features phase), and may be held idle,
apart from the guests the load ops drive (the scale phase).

Times are ``time.monotonic()`` seconds (``CLOCK_MONOTONIC``), the same clock
in every process of the machine, so the coordinator hands out absolute
start and stop times and latencies can be measured across processes: a
guest puts ``monotonic_ns()`` at the head of its message text and the agent
that receives the 32399 push subtracts it from its own clock.
"""

from __future__ import annotations

import array
import asyncio
import json
import os
import resource
import time
import traceback
import zlib

import jwt
from wsclient import connect

HOST = "127.0.0.1"

GUEST_LOGIN = b'{"api_key":21000,"call_type":1,"seq":"login","token":"%s"}'
# The same with the widget's visitor context (docs/protocol.md, 21000).
GUEST_LOGIN_CONTEXT = b'{"api_key":21000,"call_type":1,"seq":"login","token":"%s","context":%s}'
AGENT_LOGIN = b'{"api_key":31000,"call_type":3,"seq":"login","token":"%s"}'
GUEST_SEND = (b'{"api_key":22300,"call_type":1,"seq":%d,"msg":"%d Hello, where is my parcel? '
              b'Order 4711 was sent a week ago.","client_msg_id":"m%d"}')
HISTORY = b'{"api_key":32100,"call_type":3,"seq":%d,"gid":%d,"group_id":%d,"page_index":%d,' \
          b'"page_size":%d}'
ACK = b'{"api_key":22300,"code":200,'
SEND_ERROR = b'{"api_key":22300,"code":-'
PUSH = b'{"api_key":32300,"code":32399,'
MSG_FIELD = b'"msg":"'
TOKEN_TTL = 86400
SECRET_FALLBACK = "relay-does-not-check-tokens-0123456789"
CONNECT_TIMEOUT = 30.0

# Browsers a shop's visitors come with, for the User-Agent of a visitor's upgrade request.
# Several, so that the server's parsing is not always answered from one cache entry.
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/123.0.0.0 Mobile Safari/537.36",
)
LANGUAGES = (("en-US", "America/New_York"), ("zh-CN", "Asia/Shanghai"),
             ("de-DE", "Europe/Berlin"))


def agent_token(admin_id: int, secret: str | None) -> str:
    """An HS256 agent token for ``admin_id``, as the shop would mint it (also for the admin API)."""
    return jwt.encode({"typ": "agent", "admin_id": admin_id, "exp": int(time.time()) + TOKEN_TTL},
                      secret or SECRET_FALLBACK, algorithm="HS256")


def visitor(index: int) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """Guest ``index``'s widget context (JSON) and upgrade headers, as a browser sends them.

    A product page reached from a search engine, in one of a few languages,
    with one of a few browsers' User-Agent.
    """
    language, timezone = LANGUAGES[index % len(LANGUAGES)]
    context = {"url": f"https://shop.example/products/{1000 + index % 500}?utm_source=search",
               "title": f"Trail running shoe, model {index % 500} | Shop",
               "referrer": "https://www.google.com/", "language": language,
               "timezone": timezone}
    headers = (("User-Agent", USER_AGENTS[index % len(USER_AGENTS)]),)
    return json.dumps(context, separators=(",", ":")).encode(), headers


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit towards ``wanted``; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    for new_hard in (max(hard, wanted), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, new_hard), new_hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Counters:
    """What one worker counted during one load run (shared by its connections)."""

    __slots__ = ("sending", "sent", "acks", "errors", "pushes", "first_error", "record_from",
                 "record_to", "samples", "last_ack_at", "last_push_at")

    def __init__(self) -> None:
        self.sending = False
        self.sent = self.acks = self.errors = self.pushes = 0
        self.first_error: str | None = None
        self.record_from = self.record_to = 0
        self.samples = array.array("q")
        # When the last acknowledgement and the last push arrived (monotonic seconds): the
        # closed loop answers in bursts, and a rate taken between two of these moments
        # counts whole bursts over the time they took.
        self.last_ack_at = self.last_push_at = 0.0

    def snapshot(self) -> dict:
        return {"sent": self.sent, "acks": self.acks, "errors": self.errors,
                "pushes": self.pushes, "last_ack_at": self.last_ack_at,
                "last_push_at": self.last_push_at}


class Guest:
    """A logged-in guest connection and its send loop state."""

    __slots__ = ("client", "seq", "owed", "counters", "agent")

    def __init__(self, client, agent: int | None):
        self.client = client
        self.agent = agent
        self.seq = 0
        self.owed = 0
        self.counters: Counters | None = None

    def payload(self) -> bytes:
        self.seq = seq = self.seq + 1
        return GUEST_SEND % (seq, time.monotonic_ns(), seq)

    # Closed loop (throughput): every answer to a send frees a slot of the window.
    def on_frame(self, payload: bytes) -> None:
        if payload.startswith(ACK):
            self.counters.acks += 1
            self.counters.last_ack_at = time.monotonic()
            self.owed += 1
        elif payload.startswith(SEND_ERROR):
            counters = self.counters
            counters.errors += 1
            if counters.first_error is None:
                counters.first_error = payload[:300].decode(errors="replace")
            self.owed += 1

    def flush(self) -> None:
        owed = self.owed
        if owed and self.counters.sending:
            self.owed = 0
            self.counters.sent += owed
            self.client.send_many([self.payload() for _ in range(owed)])

    # Open loop (latency): answers are only counted.
    def on_answer(self, payload: bytes) -> None:
        if payload.startswith(ACK):
            self.counters.acks += 1
        elif payload.startswith(SEND_ERROR):
            counters = self.counters
            counters.errors += 1
            if counters.first_error is None:
                counters.first_error = payload[:300].decode(errors="replace")


def agent_counter(counters: Counters):
    def on_frame(payload: bytes) -> None:
        if payload.startswith(PUSH):
            counters.pushes += 1
            counters.last_push_at = time.monotonic()
    return on_frame


def agent_timer(counters: Counters):
    def on_frame(payload: bytes) -> None:
        if payload.startswith(PUSH):
            now = time.monotonic_ns()
            counters.pushes += 1
            start = payload.find(MSG_FIELD) + 7
            sent = int(payload[start:payload.find(b" ", start)])
            if counters.record_from <= sent < counters.record_to:
                counters.samples.append(now - sent)
    return on_frame


class Worker:
    """The connections of one worker process; each ``op_*`` method is a command."""

    def __init__(self) -> None:
        self.agents: list = []
        self.guests: list[Guest] = []   # the guests the load ops make send
        self.idle: list = []            # logged-in guests that only stay connected
        self.pending: list = []

    # -- connections --------------------------------------------------------------------

    async def _login(self, client, frame: bytes, api_key: int) -> dict:
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        prefix = b'{"api_key":%d,' % api_key

        def on_frame(payload: bytes) -> None:
            if not answer.done() and payload.startswith(prefix) and b'"seq":"login"' in payload:
                answer.set_result(payload)

        def on_lost() -> None:
            if not answer.done():
                answer.set_exception(ConnectionError("connection closed before the login answer"))
        client.on_frame = on_frame
        client.on_lost = on_lost
        if client.closed:
            on_lost()
        client.send(frame)
        try:
            payload = await asyncio.wait_for(answer, CONNECT_TIMEOUT)
        finally:
            client.on_frame = _ignore
            client.on_lost = None
        response = json.loads(payload)
        if response.get("code") != 200:
            raise RuntimeError(f"login {api_key} failed: {payload[:300].decode()}")
        return response["data"]

    async def op_connect_agents(self, port: int, ids: list[int], secret: str | None,
                                relay: bool) -> dict:
        for admin_id in ids:
            path = f"/ws?agent={admin_id}" if relay else "/ws"
            client = await connect(HOST, port, path, CONNECT_TIMEOUT)
            token = agent_token(admin_id, secret)
            await self._login(client, AGENT_LOGIN % token.encode(), 31000)
            client.tag = admin_id
            self.agents.append(client)
        return {"agents": len(self.agents)}

    def _guest_tokens(self, uids: list[str], group_id: int, secret: str | None) -> list[bytes]:
        expires = int(time.time()) + TOKEN_TTL
        return [jwt.encode({"typ": "guest", "uid": uid, "group_id": group_id, "exp": expires},
                           secret or SECRET_FALLBACK, algorithm="HS256").encode() for uid in uids]

    async def op_connect_guests(self, port: int, uids: list[str], group_id: int,
                                secret: str | None, pairs: list[int] | None, concurrency: int,
                                start_at: float | None = None, visitor_context: bool = False,
                                idle: bool = False, sources: list[str] | None = None) -> dict:
        """Connect and log in one guest per uid, ``concurrency`` at a time.

        ``pairs`` (relay only) names each guest's agent. With
        ``visitor_context`` each guest sends a browser's User-Agent and the
        widget's context (:func:`visitor`, picked by a hash of its uid).
        ``idle`` guests are held apart: the load ops never make them send.
        ``sources``: guest i connects from ``sources[i % len(sources)]``.
        Returns each guest's agent (from the login answer), the failures, and
        the first start and last end of the whole batch.
        """
        tokens = self._guest_tokens(uids, group_id, secret)
        profiles = [visitor(zlib.crc32(uid.encode())) if visitor_context else (None, ())
                    for uid in uids]
        held = self.idle if idle else self.guests
        await _sleep_until(start_at)
        gate = asyncio.Semaphore(concurrency)
        errors: list[str] = []

        async def one(index: int):
            async with gate:
                client = None
                try:
                    path = (f"/ws?to={pairs[index]}&gid={index + 1}" if pairs is not None
                            else "/ws")
                    context, headers = profiles[index]
                    client = await connect(HOST, port, path, CONNECT_TIMEOUT, headers,
                                           sources[index % len(sources)] if sources else None)
                    frame = (GUEST_LOGIN_CONTEXT % (tokens[index], context) if context
                             else GUEST_LOGIN % tokens[index])
                    data = await self._login(client, frame, 21000)
                except Exception as error:  # noqa: BLE001 - counted and reported
                    errors.append(f"{type(error).__name__}: {error}")
                    if client is not None:
                        client.abort()
                    return None
                agent = (data.get("agent") or {}).get("admin_id")
                held.append(client if idle else Guest(client, agent))
                return agent

        start = time.monotonic()
        agents = await asyncio.gather(*(one(i) for i in range(len(uids))))
        end = time.monotonic()
        return {"agents": agents, "failed": len(errors), "errors": errors[:5], "start": start,
                "end": end}

    async def op_preconnect(self, port: int, count: int, concurrency: int) -> dict:
        """Open ``count`` upgraded connections that do not log in yet."""
        gate = asyncio.Semaphore(concurrency)
        errors: list[str] = []

        async def one():
            async with gate:
                try:
                    self.pending.append(await connect(HOST, port, "/ws", CONNECT_TIMEOUT))
                except Exception as error:  # noqa: BLE001
                    errors.append(f"{type(error).__name__}: {error}")
        await asyncio.gather(*(one() for _ in range(count)))
        return {"connected": len(self.pending), "failed": len(errors), "errors": errors[:5]}

    async def op_login_pending(self, uids: list[str], group_id: int, secret: str,
                               concurrency: int, start_at: float) -> dict:
        """Log a guest in on each pre-opened connection, ``concurrency`` at a time."""
        clients, self.pending = self.pending[:len(uids)], self.pending[len(uids):]
        tokens = self._guest_tokens(uids[:len(clients)], group_id, secret)
        await _sleep_until(start_at)
        gate = asyncio.Semaphore(concurrency)
        errors: list[str] = []

        async def one(client, token):
            async with gate:
                try:
                    data = await self._login(client, GUEST_LOGIN % token, 21000)
                except Exception as error:  # noqa: BLE001
                    errors.append(f"{type(error).__name__}: {error}")
                    client.abort()
                    return
                self.guests.append(Guest(client, (data.get("agent") or {}).get("admin_id")))

        start = time.monotonic()
        await asyncio.gather(*(one(c, t) for c, t in zip(clients, tokens, strict=True)))
        end = time.monotonic()
        return {"logged_in": len(clients) - len(errors), "failed": len(errors),
                "errors": errors[:5], "start": start, "end": end}

    # -- load ---------------------------------------------------------------------------

    async def op_throughput(self, window: int, start_at: float, measure_from: float,
                            measure_to: float, drain: float) -> dict:
        """Every guest keeps ``window`` unanswered sends until ``measure_to``."""
        loop = asyncio.get_running_loop()
        counters = Counters()
        for agent in self.agents:
            agent.on_frame = agent_counter(counters)
        for guest in self.guests:
            guest.counters = counters
            guest.owed = window
            guest.client.on_frame = guest.on_frame
            guest.client.after_frames = guest.flush
        marks: dict[str, dict] = {}

        def mark(name: str) -> None:
            marks[name] = counters.snapshot()
            if name == "to":
                counters.sending = False

        offset = time.monotonic() - loop.time()   # loop.time() is monotonic too
        loop.call_at(measure_from - offset, mark, "from")
        loop.call_at(measure_to - offset, mark, "to")
        await _sleep_until(start_at)
        counters.sending = True
        for guest in self.guests:
            guest.flush()
        await _sleep_until(measure_to)
        await asyncio.sleep(0)
        deadline = time.monotonic() + drain
        while counters.acks + counters.errors < counters.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)   # pushes to agents held by other workers
        for guest in self.guests:
            guest.client.after_frames = None
            guest.client.on_frame = _ignore
        for agent in self.agents:
            agent.on_frame = _ignore
        return {"from": marks.get("from"), "to": marks.get("to"), "end": counters.snapshot(),
                "first_error": counters.first_error}

    async def op_latency(self, rate: float, start_at: float, measure_from: float,
                         measure_to: float, drain: float) -> dict:
        """Open loop: this worker's guests send ``rate`` messages a second in turn."""
        counters = Counters()
        counters.record_from = int(measure_from * 1e9)
        counters.record_to = int(measure_to * 1e9)
        for agent in self.agents:
            agent.on_frame = agent_timer(counters)
        guests = self.guests
        for guest in guests:
            guest.counters = counters
            guest.client.on_frame = guest.on_answer
        await _sleep_until(start_at)
        sent = 0
        next_guest = 0
        while guests:
            now = time.monotonic()
            if now >= measure_to:
                break
            due = int((now - start_at) * rate) + 1
            while sent < due:
                guest = guests[next_guest]
                next_guest = (next_guest + 1) % len(guests)
                guest.client.send(guest.payload())
                sent += 1
            counters.sent = sent
            await asyncio.sleep(max(0.0, start_at + due / rate - time.monotonic()))
        deadline = time.monotonic() + drain
        while counters.acks + counters.errors < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)   # pushes to agents held by other workers
        for guest in guests:
            guest.client.on_frame = _ignore
        for agent in self.agents:
            agent.on_frame = _ignore
        return {"sent": sent, "acks": counters.acks, "errors": counters.errors,
                "pushes": counters.pushes, "first_error": counters.first_error,
                "samples": counters.samples.tobytes()}

    async def op_history(self, requests: list[tuple[int, int]], group_id: int,
                         page_size: int) -> dict:
        """One request at a time on the first agent connection; each one's latency in ns.

        Also counts the answers holding fewer than ``page_size`` messages, which
        would mean the seeded data and the server disagree.
        """
        client = self.agents[0]
        loop = asyncio.get_running_loop()
        waiting: dict[int, asyncio.Future] = {}
        errors: list[str] = []
        times = array.array("q")
        short = 0

        def on_frame(payload: bytes) -> None:
            if payload.startswith(b'{"api_key":32100,'):
                response = json.loads(payload)
                future = waiting.pop(response.get("seq"), None)
                if future is not None:
                    future.set_result((payload, response))
        client.on_frame = on_frame
        for seq, (gid, page_index) in enumerate(requests, start=1):
            future = waiting[seq] = loop.create_future()
            start = time.monotonic_ns()
            client.send(HISTORY % (seq, gid, group_id, page_index, page_size))
            payload, response = await asyncio.wait_for(future, CONNECT_TIMEOUT)
            times.append(time.monotonic_ns() - start)
            if response.get("code") != 200:
                errors.append(payload[:300].decode(errors="replace"))
            elif len(response["data"]["list"]) < page_size:
                short += 1
        client.on_frame = _ignore
        return {"samples": times.tobytes(), "errors": len(errors), "first_error":
                errors[0] if errors else None, "short_pages": short}

    async def op_close(self, timeout: float = 10.0) -> dict:
        """Close every connection the polite way: guests first, then agents.

        Each sends a close frame and waits for the server's; what has not
        closed after ``timeout`` seconds is dropped.
        """
        closed = 0
        for group in ([g.client for g in self.guests] + self.idle + self.pending, self.agents):
            for client in group:
                client.start_close()
            deadline = time.monotonic() + timeout
            while any(not c.closed for c in group) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            for client in group:
                if not client.closed:
                    client.abort()
                closed += 1
        self.guests, self.idle, self.agents, self.pending = [], [], [], []
        await asyncio.sleep(0.05)
        return {"closed": closed}


def _ignore(payload: bytes) -> None:
    pass


async def _sleep_until(when: float | None) -> None:
    if when is not None:
        delay = when - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def _serve(pipe) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue = asyncio.Queue()

    def readable() -> None:
        while pipe.poll():
            try:
                commands.put_nowait(pipe.recv())
            except EOFError:
                commands.put_nowait({"op": "exit"})
                loop.remove_reader(pipe.fileno())
                return
    loop.add_reader(pipe.fileno(), readable)
    worker = Worker()
    while True:
        command = await commands.get()
        op = command.pop("op")
        if op == "exit":
            await worker.op_close()
            pipe.send({"ok": True})
            return
        try:
            result = await getattr(worker, "op_" + op)(**command)
            pipe.send({"ok": True, "result": result})
        except Exception:  # noqa: BLE001 - handed to the coordinator
            pipe.send({"ok": False, "error": traceback.format_exc()})


def worker_main(pipe, cpus: list[int], nofile: int) -> None:
    """Entry point of a worker process."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    raise_nofile(nofile)
    asyncio.run(_serve(pipe))
