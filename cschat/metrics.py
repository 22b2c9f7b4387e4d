"""Prometheus metrics of one server, served as ``GET /metrics`` (``[metrics]`` settings).

Counters and the commit-latency histogram are bumped by the server as things
happen (:class:`Metrics`' methods); the gauges (connections, queue, agents)
are read from the server's state when a scrape asks, so nothing has to keep
them up to date.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import prometheus_client
import tornado.web
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cschat.routing import ONLINE, SUSPENDED

if TYPE_CHECKING:
    from cschat.app import Server

# What generate_latest writes. Not prometheus_client's CONTENT_TYPE_LATEST, which
# newer versions give as version=1.0.0 although this function's format is 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# From a commit the OS cache absorbs (well under a millisecond) to one waiting on
# a slow fsync; anything slower than 2 s is counted in +Inf.
ACK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
CONNECTION_ROLES = ("agent", "guest", "none")  # "none": open but not logged in


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The server's state that the gauges show, taken at scrape time."""

    connections: dict[str, int]  # role (CONNECTION_ROLES) → open WebSocket connections
    queue_length: int  # conversations waiting in their group's queue
    agents_online: int
    agents_suspended: int


def snapshot_of(server: Server) -> Snapshot:
    """The :class:`Snapshot` of a started :class:`~cschat.app.Server`.

    Agents count as routing reports their status: one within its grace
    period after disconnecting is still online (or suspended).
    """
    connections = dict.fromkeys(CONNECTION_ROLES, 0)
    for socket in server.sockets:
        connections["none" if socket.session is None else socket.session.role] += 1
    routing = server.chat.routing
    statuses = [agent.status for agent in routing.agents.values()]
    return Snapshot(connections, sum(len(queue) for queue in routing.queues.values()),
                    statuses.count(ONLINE), statuses.count(SUSPENDED))


class _StateCollector(Collector):
    """The gauges, computed from a fresh snapshot at each scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]):
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self._snapshot()
        connections = GaugeMetricFamily(
            "cschat_connections", "Open WebSocket connections by role (none: not logged in).",
            labels=["role"])
        for role in CONNECTION_ROLES:
            connections.add_metric([role], state.connections.get(role, 0))
        yield connections
        yield GaugeMetricFamily("cschat_queue_length",
                                "Conversations waiting in a queue for an agent.",
                                value=state.queue_length)
        agents = GaugeMetricFamily("cschat_agents", "Agents present, by status.",
                                   labels=["status"])
        agents.add_metric([ONLINE], state.agents_online)
        agents.add_metric([SUSPENDED], state.agents_suspended)
        yield agents


class Metrics:
    """The metrics of one server, in a registry of its own.

    Never the global default registry: several servers may run in one
    process (the tests do), and each must count only its own traffic.
    ``snapshot`` is called at every scrape, on the event loop. When not
    ``enabled`` (``[metrics] enabled = false``) nothing is counted: the
    counters would cost every frame a few lock round trips for nobody.
    """

    def __init__(self, snapshot: Callable[[], Snapshot], enabled: bool = True):
        self.enabled = enabled
        self.registry = prometheus_client.CollectorRegistry()
        registry = self.registry
        self._logins = prometheus_client.Counter(
            "cschat_logins", "Successful WebSocket logins, by role.", ["role"], registry=registry)
        self._messages = prometheus_client.Counter(
            "cschat_messages", "Chat messages stored, by sender.", ["sender"], registry=registry)
        # Every known label value is exported from the start: a series that appears only
        # with its first event makes rate() miss that event.
        self._logins_of = {role: self._logins.labels(role) for role in ("agent", "guest")}
        self._messages_of = {sender: self._messages.labels(sender)
                             for sender in ("guest", "agent", "system")}
        self._frames_in = prometheus_client.Counter(
            "cschat_frames_received", "WebSocket frames received.", registry=registry)
        self._frames_out = prometheus_client.Counter(
            "cschat_frames_sent", "WebSocket frames sent.", registry=registry)
        self._ack = prometheus_client.Histogram(
            "cschat_ack_commit_seconds",
            "Seconds from a send frame's arrival to its acknowledgement after commit.",
            buckets=ACK_BUCKETS, registry=registry)
        self._deliveries = prometheus_client.Counter(
            "cschat_webhook_deliveries", "Webhook delivery attempts.", registry=registry)
        self._failures = prometheus_client.Counter(
            "cschat_webhook_failures", "Webhook delivery attempts that failed.",
            registry=registry)
        self._upload_bytes = prometheus_client.Counter(
            "cschat_upload_bytes", "Bytes of accepted uploads.", registry=registry)
        registry.register(_StateCollector(snapshot))

    def login(self, role: str) -> None:
        """A WebSocket login succeeded; ``role`` is "agent" or "guest"."""
        if self.enabled:
            self._logins_of[role].inc()

    def message(self, sender: str) -> None:
        """A chat message was stored; ``sender`` is "guest", "agent" or "system"."""
        if self.enabled:
            self._messages_of[sender].inc()

    def frame_in(self) -> None:
        """A WebSocket frame was received."""
        if self.enabled:
            self._frames_in.inc()

    def frame_out(self) -> None:
        """A WebSocket frame was sent."""
        if self.enabled:
            self._frames_out.inc()

    def ack_latency(self, seconds: float) -> None:
        """A send frame was acknowledged ``seconds`` after it arrived, its message committed."""
        if self.enabled:
            self._ack.observe(seconds)

    def webhook_delivery(self, ok: bool) -> None:
        """One webhook delivery attempt ended, successfully or not."""
        if not self.enabled:
            return
        self._deliveries.inc()
        if not ok:
            self._failures.inc()

    def upload(self, size: int) -> None:
        """An upload of ``size`` bytes was accepted."""
        if self.enabled:
            self._upload_bytes.inc(size)

    def render(self) -> bytes:
        """Every metric in Prometheus text format (:data:`CONTENT_TYPE`)."""
        return prometheus_client.generate_latest(self.registry)


def _allowed(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        # Behind a proxy Tornado takes X-Real-IP as getaddrinfo reads it, so "127.1" gets
        # here; refused like any address outside the networks, not answered with a 500.
        return False
    return any(ip in network for network in networks)


class MetricsHandler(tornado.web.RequestHandler):
    """``GET /metrics``: the server's metrics in Prometheus text format.

    404 while ``[metrics] enabled`` is false, as if there were no such page;
    403 for a client address (``[server] behind_proxy`` decides which) outside
    ``[metrics] allow``.
    """

    def initialize(self, server: Server) -> None:
        self.server = server

    def get(self) -> None:
        settings = self.server.settings.metrics
        if not settings["enabled"]:
            raise tornado.web.HTTPError(404)
        if not _allowed(self.request.remote_ip, settings["allow"]):
            self.set_status(403)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("metrics are not served to this address\n")
            return
        self.set_header("Content-Type", CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.server.metrics.render())
