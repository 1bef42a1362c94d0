"""The live feed through the edge: a Connect server stream over HTTP/1.1 receives the
conversion of a batch ingested after it opened; a browser that vanishes has its upstream
subscription cancelled at once; one that stops reading does not hold up the others; the
edge's shutdown ends streams cleanly."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

from connectrpc.errors import ConnectError

from edge_svc.api.endpoints import method_info
from edge_svc.server import EdgeServer
from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import config_pb2, tracker_pb2
from tests.services.edge_svc.conftest import edge_settings
from tests.services.edge_svc.helpers import bearer, client, wait_until
from tests.services.tracker_svc.builders import agent, assigned, create_goal, ingest, opened, visit

SUBSCRIBE = "/goals.v1.TrackerService/SubscribeConversions"
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
LAST_TOUCH = config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH


def feed(edge):
    return edge.stack.tracker_server.components["feed"]


async def convert(edge, conv: str, agent_id: str = "agent-7") -> None:
    acks = await ingest(edge.stack.tracker(edge.tenant.keys[Role.INGEST]), [
        opened(conv, T0, user=f"user-{conv}"),
        assigned(conv, T0 + MIN, agent(agent_id)),
        visit("https://shop.example/checkout", T0 + 2 * MIN, user=f"user-{conv}"),
    ])
    assert acks[0].conversions == 1


async def raw_subscription(edge, port: int | None = None, *, credential: str | None = None,
                           **target: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A Connect streaming call on a bare HTTP/1.1 connection, so a test can stop reading
    or drop the connection as a browser tab does."""
    body = json.dumps(target).encode()
    envelope = b"\x00" + len(body).to_bytes(4, "big") + body
    reader, writer = await asyncio.open_connection("127.0.0.1", port or edge.server.port)
    writer.write(
        f"POST {SUBSCRIBE} HTTP/1.1\r\nhost: edge\r\n"
        "content-type: application/connect+json\r\nconnect-protocol-version: 1\r\n"
        f"authorization: Bearer {credential or edge.tenant.admin}\r\n"
        f"content-length: {len(envelope)}\r\n\r\n".encode() + envelope)
    await writer.drain()
    return reader, writer


async def test_connect_stream_over_http1_receives_a_new_conversion(edge, clock):
    await create_goal(edge.stack, edge.tenant, "Checkout", model=LAST_TOUCH)
    clock.set(T0 + 5 * MIN)
    connect = client(edge.url, json=True)  # HTTP/1.1
    stream = connect.execute_server_stream(
        request=tracker_pb2.SubscribeConversionsRequest(agent_id="agent-7"),
        method=method_info(SUBSCRIBE, streaming=True), headers=bearer(edge.tenant.admin))
    received: asyncio.Queue[tracker_pb2.SubscribeConversionsResponse] = asyncio.Queue()

    async def read() -> None:
        async for message in stream:
            await received.put(message)

    reader = asyncio.create_task(read())
    try:
        await wait_until(lambda: feed(edge).subscriber_count == 1, what="subscription")
        sent = time.perf_counter()
        await convert(edge, "conv-live")
        message = await asyncio.wait_for(received.get(), 1.0)
        assert time.perf_counter() - sent < 1.0
        assert message.conversion.conversation_id == "conv-live"
        assert [c.agent.id for c in message.conversion.credits] == ["agent-7"]
    finally:
        reader.cancel()
    await wait_until(lambda: feed(edge).subscriber_count == 0, what="upstream cancelled")


async def test_a_vanished_browser_cancels_its_upstream_subscription(edge):
    _, writer = await raw_subscription(edge, agent_id="agent-7")
    await wait_until(lambda: feed(edge).subscriber_count == 1, what="subscription")
    assert edge.server.upstreams.open_streams == 1
    writer.transport.abort()  # the tab is closed: the connection drops without a word
    started = time.perf_counter()
    await wait_until(lambda: feed(edge).subscriber_count == 0, within_s=2.0,
                     what="upstream subscription cancelled")
    assert time.perf_counter() - started < 1.0
    await wait_until(lambda: edge.server.upstreams.open_streams == 0, what="edge forgot it")
    assert edge.server.subscribers.open == 0


async def test_a_reader_that_stalls_does_not_hold_up_the_others(edge, clock):
    await create_goal(edge.stack, edge.tenant, "Checkout", model=LAST_TOUCH)
    clock.set(T0 + 5 * MIN)
    stalled = [await raw_subscription(edge, agent_id="agent-7") for _ in range(3)]
    reader, writer = await raw_subscription(edge, agent_id="agent-7")
    await wait_until(lambda: feed(edge).subscriber_count == 4, what="subscriptions")
    try:
        for n in range(3):
            await convert(edge, f"conv-{n}")
            head = await asyncio.wait_for(reader.readuntil(b"conv-" + str(n).encode()), 1.0)
            assert head.startswith(b"HTTP/1.1 200") or n > 0
    finally:
        for _, w in (*stalled, (reader, writer)):
            w.transport.abort()
    await wait_until(lambda: feed(edge).subscriber_count == 0, what="all cancelled")


async def test_stopping_the_edge_ends_streams_cleanly(edge):
    reader, writer = await raw_subscription(edge, agent_id="agent-7")
    await wait_until(lambda: feed(edge).subscriber_count == 1, what="subscription")
    stopping = asyncio.create_task(edge.server.stop())
    try:
        rest = await asyncio.wait_for(reader.read(), 5.0)
        await asyncio.wait_for(stopping, 5.0)
    finally:
        writer.close()
    # The stream ends with Connect's end-of-stream message and no error in it.
    assert b"\x02" in rest and b"error" not in rest.split(b"\x02", 1)[-1], rest
    await wait_until(lambda: feed(edge).subscriber_count == 0, what="upstream cancelled")


async def test_refused_subscription_reports_the_upstream_error(edge):
    connect = client(edge.url)
    stream = connect.execute_server_stream(
        request=tracker_pb2.SubscribeConversionsRequest(),
        method=method_info(SUBSCRIBE, streaming=True), headers=bearer(edge.tenant.admin))
    try:
        async for _ in stream:
            raise AssertionError("no message expected")
    except ConnectError as error:
        assert error.code.name == "INVALID_ARGUMENT" and "target" in error.message
    else:
        raise AssertionError("the call should fail")


async def test_subscriptions_past_the_limit_are_refused(edge):
    limited = EdgeServer(edge_settings(edge.stack, edge.export_address, max_subscribers=1))
    await limited.start()
    try:
        _, first = await raw_subscription(edge, limited.port, agent_id="agent-7")
        await wait_until(lambda: feed(edge).subscriber_count == 1, what="subscription")
        connect = client(f"http://127.0.0.1:{limited.port}")
        refused = None
        try:
            async for _ in connect.execute_server_stream(
                    request=tracker_pb2.SubscribeConversionsRequest(agent_id="agent-8"),
                    method=method_info(SUBSCRIBE, streaming=True),
                    headers=bearer(edge.tenant.admin)):
                pass
        except ConnectError as error:
            refused = error
        assert refused is not None and refused.code.name == "RESOURCE_EXHAUSTED"
        assert "maximum of 1 subscriptions" in refused.message
        assert feed(edge).subscriber_count == 1
        first.transport.abort()
        await wait_until(lambda: limited.subscribers.open == 0, what="slot freed")
    finally:
        await limited.stop()


async def test_one_credential_cannot_take_every_subscription(edge):
    """The global limit alone let one token open 8,682 streams (I12-A7): each credential
    holds at most ``max_subscribers_per_credential``; another credential still subscribes."""
    limited = EdgeServer(edge_settings(edge.stack, edge.export_address,
                                       max_subscribers_per_credential=2))
    await limited.start()
    try:
        held = [await raw_subscription(edge, limited.port, agent_id="agent-7")
                for _ in range(2)]
        await wait_until(lambda: limited.subscribers.open == 2, what="two subscriptions")
        connect = client(f"http://127.0.0.1:{limited.port}")
        method = method_info(SUBSCRIBE, streaming=True)
        request = tracker_pb2.SubscribeConversionsRequest(agent_id="agent-8")
        refused = None
        try:
            async for _ in connect.execute_server_stream(
                    request=request, method=method, headers=bearer(edge.tenant.admin)):
                pass
        except ConnectError as error:
            refused = error
        assert refused is not None and refused.code.name == "RESOURCE_EXHAUSTED"
        assert "this credential holds its maximum of 2 subscriptions" in refused.message
        held.append(await raw_subscription(edge, limited.port, agent_id="agent-7",
                                           credential=edge.tenant.keys[Role.AGENT]))
        await wait_until(lambda: limited.subscribers.open == 3, what="another credential")
        for _, writer in held:
            writer.transport.abort()
        await wait_until(lambda: limited.subscribers.open == 0, what="slots freed")
    finally:
        await limited.stop()
