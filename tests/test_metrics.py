"""GET /metrics ([metrics] settings): who may read it, the Prometheus text it serves, and
what its counters and gauges say after logins, messages, frames, queueing and uploads."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import TIMEOUT, Client, Harness
from prometheus_client.parser import text_string_to_metric_families
from test_uploads import HTML, fetch, upload

from cschat.metrics import CONTENT_TYPE

ENABLED = {"enabled": "true"}


async def scrape(h: Harness) -> dict[str, float]:
    """Every sample of ``GET /metrics``, keyed as the text writes it: ``name{label="value"}``."""
    response = await fetch(h, "/metrics")
    assert response.code == 200, response.body
    samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def settled(h: Harness, key: str, value: float) -> None:
    """Scrape until ``key`` reads ``value``: a client's close reaches the server a bit later."""
    deadline = time.monotonic() + TIMEOUT
    while (samples := await scrape(h))[key] != value:
        assert time.monotonic() < deadline, (key, samples[key])
        await asyncio.sleep(0.02)


# -- who may read it ---------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_metrics_are_not_served_by_default(cschat_server):
    # METRICS: [metrics] enabled is false by default, and /metrics is then 404
    response = await fetch(cschat_server, "/metrics")
    assert response.code == 404
    assert b"cschat_" not in response.body


@pytest.mark.gen_test
async def test_an_address_outside_allow_gets_403(make_server):
    # METRICS: only addresses in [metrics] allow may read; 127.0.0.1 is not in 10.0.0.0/8
    h = await make_server(metrics={**ENABLED, "allow": "10.0.0.0/8"})
    response = await fetch(h, "/metrics")
    assert response.code == 403
    assert response.headers["Content-Type"].startswith("text/plain")
    assert b"cschat_" not in response.body


@pytest.mark.gen_test
async def test_loopback_reads_every_family_at_zero(make_server):
    # METRICS: loopback is allowed by default; a fresh server shows every family, at zero
    h = await make_server(metrics=ENABLED)
    response = await fetch(h, "/metrics")
    assert response.code == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE
    assert response.headers["Cache-Control"] == "no-store"
    # prometheus_client adds a *_created gauge (its start time) to each counter and histogram.
    families = {family.name: family.type
                for family in text_string_to_metric_families(response.body.decode())
                if not family.name.endswith("_created")}
    assert families == {
        "cschat_logins": "counter", "cschat_messages": "counter",
        "cschat_frames_received": "counter", "cschat_frames_sent": "counter",
        "cschat_ack_commit_seconds": "histogram", "cschat_webhook_deliveries": "counter",
        "cschat_webhook_failures": "counter", "cschat_upload_bytes": "counter",
        "cschat_connections": "gauge", "cschat_queue_length": "gauge", "cschat_agents": "gauge"}
    samples = await scrape(h)
    for key in ('cschat_logins_total{role="agent"}', 'cschat_messages_total{sender="system"}',
                'cschat_connections{role="none"}', 'cschat_agents{status="suspended"}'):
        assert key in samples, key
    assert [key for key, value in samples.items() if value and "_created" not in key] == []


# -- counters ----------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_a_guest_login_and_message_are_counted(make_server):
    # METRICS: a login counts by role, a stored message by sender, each send's ack in the
    # histogram; a resend (same client_msg_id) is acked but stores nothing new
    h = await make_server(metrics=ENABLED)
    guest = await h.guest_client("u1", await h.group())
    await guest.ok(22300, msg="hello", client_msg_id="m1")
    await guest.ok(22300, msg="hello", client_msg_id="m1")
    samples = await scrape(h)
    assert samples['cschat_logins_total{role="guest"}'] == 1
    assert samples['cschat_logins_total{role="agent"}'] == 0
    assert samples['cschat_messages_total{sender="guest"}'] == 1
    assert samples["cschat_ack_commit_seconds_count"] == 2
    assert 0 < samples["cschat_ack_commit_seconds_sum"] < TIMEOUT


@pytest.mark.gen_test
async def test_messages_are_counted_by_sender(make_server):
    # METRICS: cschat_messages_total{sender}: the guest's, the agent's, and the system
    # message that ending a conversation writes
    h = await make_server(metrics=ENABLED)
    _, _, agent, guest = await h.pair()
    gid = guest.login_data["gid"]
    await guest.ok(22300, msg="hi")
    await agent.ok(32300, gid=gid, msg="hello")
    await agent.ok(32700, gid=gid)
    samples = await scrape(h)
    assert [samples[f'cschat_messages_total{{sender="{sender}"}}']
            for sender in ("guest", "agent", "system")] == [1, 1, 1]
    assert samples['cschat_logins_total{role="agent"}'] == 1
    assert samples["cschat_ack_commit_seconds_count"] == 2


@pytest.mark.gen_test
async def test_frames_are_counted_both_ways(make_server):
    # METRICS: every frame received counts, one that is not JSON too; so does every frame sent
    h = await make_server(metrics=ENABLED)
    client = await Client.connect(h.port, 1)
    assert (await client.call(0, call_type=0))["code"] == 200
    client.send_raw("not json")
    assert (await client.read())["code"] == -10001
    samples = await scrape(h)
    assert samples["cschat_frames_received_total"] == 2
    assert samples["cschat_frames_sent_total"] == 2


@pytest.mark.gen_test
async def test_accepted_uploads_add_their_bytes(make_server):
    # METRICS: cschat_upload_bytes_total adds the size of each accepted upload, not refused ones
    h = await make_server(metrics=ENABLED)
    token = h.server.tokens.mint_guest("u1", await h.group())
    status, reply = await upload(h, token, b"hello\n", "notes.txt")
    assert status == 200, reply
    assert (await upload(h, token, HTML, "page.html"))[0] == 415
    assert (await scrape(h))["cschat_upload_bytes_total"] == reply["data"]["size"] == 6


# -- gauges ------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_connections_are_counted_by_role(make_server):
    # METRICS: cschat_connections{role} counts open WebSockets; "none" are not logged in yet
    h = await make_server(metrics=ENABLED)
    _, _, agent, guest = await h.pair()
    await Client.connect(h.port, 1)
    samples = await scrape(h)
    assert [samples[f'cschat_connections{{role="{role}"}}']
            for role in ("agent", "guest", "none")] == [1, 1, 1]
    guest.close()
    await settled(h, 'cschat_connections{role="guest"}', 0)


@pytest.mark.gen_test
async def test_queue_and_agents_follow_routing(make_server):
    # METRICS: a guest waits in the queue while no agent is online; the agent's login takes
    # it; a suspended agent counts as suspended, not online
    h = await make_server(metrics=ENABLED)
    group = await h.group()
    admin_id = await h.agent(group)
    await h.guest_client("u1", group)
    samples = await scrape(h)
    assert samples["cschat_queue_length"] == 1
    assert samples['cschat_agents{status="online"}'] == 0
    agent = await h.agent_client(admin_id)
    samples = await scrape(h)
    assert samples["cschat_queue_length"] == 0
    assert samples['cschat_agents{status="online"}'] == 1
    await agent.ok(32500, status=1)
    samples = await scrape(h)
    assert [samples[f'cschat_agents{{status="{status}"}}']
            for status in ("online", "suspended")] == [0, 1]
