"""The edge's ASGI application against slow and silent clients (I12-A1): a request whose
body never arrives is answered, and its HTTP/1.1 connection closed, within the body timeout
(unknown paths within half a second), on every route and protocol; a live-feed stream,
whose client sends nothing once its request is in, is not cut by it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import pytest

from edge_svc.server import EdgeServer
from tests.services.edge_svc.api.test_live_feed import LAST_TOUCH, MIN, T0, convert, feed
from tests.services.edge_svc.api.test_live_feed import raw_subscription as subscribe
from tests.services.edge_svc.conftest import edge_settings
from tests.services.edge_svc.helpers import wait_until
from tests.services.tracker_svc.builders import create_goal

LIST_GOALS = "/goals.v1.ConfigService/ListGoals"
BODY_TIMEOUT_S = 0.5


@pytest.fixture
async def quick(edge) -> AsyncIterator[EdgeServer]:
    """An edge in front of the same services whose bodies must arrive within 0.5 s."""
    server = EdgeServer(edge_settings(edge.stack, edge.export_address,
                                      body_timeout_s=BODY_TIMEOUT_S))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _headers_only(port: int, path: str, credential: str | None) -> tuple[bytes, float]:
    """HTTP/1.1 headers announcing a 60,000-byte body that never comes: what the edge
    answers, read to the end of the connection, and how long that took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"authorization: Bearer {credential}\r\n" if credential else ""
    writer.write(f"POST {path} HTTP/1.1\r\nhost: edge\r\ncontent-type: application/json\r\n"
                 f"{auth}content-length: 60000\r\n\r\n".encode())
    await writer.drain()
    started = time.perf_counter()
    try:
        answer = await asyncio.wait_for(reader.read(), 5.0)  # to EOF: the edge closed it
    finally:
        writer.close()
    return answer, time.perf_counter() - started


async def test_an_unknown_path_whose_body_never_comes_is_answered_and_closed(edge):
    answer, took = await _headers_only(edge.server.port, "/nope", None)
    assert answer.startswith(b"HTTP/1.1 404"), answer
    assert took < 1.5, took


async def test_a_known_path_whose_body_never_comes_is_refused_and_closed(edge, quick):
    answer, took = await _headers_only(quick.port, LIST_GOALS, edge.tenant.admin)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 504"), answer  # Connect's deadline_exceeded
    assert json.loads(body[body.index(b"{"):body.rindex(b"}") + 1]) == {  # maybe chunked
        "code": "deadline_exceeded",
        "message": "request body not received within 0.5 s"}
    assert BODY_TIMEOUT_S <= took < BODY_TIMEOUT_S + 1.0, took


async def test_a_grpc_call_over_h2c_whose_body_never_comes_is_refused(edge, quick):
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":path", LIST_GOALS), (":scheme", "http"),
                          (":authority", "edge"), ("content-type", "application/grpc"),
                          ("te", "trailers"),
                          ("authorization", f"Bearer {edge.tenant.admin}")])
    writer.write(conn.data_to_send())
    started = time.perf_counter()
    trailers: dict[bytes, bytes] = {}
    try:
        while not trailers:
            data = await asyncio.wait_for(reader.read(65536), 5.0)
            assert data, "connection closed without the call's status"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.TrailersReceived):
                    trailers = dict(event.headers)
            writer.write(conn.data_to_send())
    finally:
        writer.close()
    assert trailers[b"grpc-status"] == b"4", trailers  # DEADLINE_EXCEEDED
    assert unquote(trailers[b"grpc-message"].decode()) == "request body not received within 0.5 s"
    assert time.perf_counter() - started < BODY_TIMEOUT_S + 1.0


async def test_a_live_feed_stream_outlives_the_body_timeout(edge, quick, clock):
    await create_goal(edge.stack, edge.tenant, "Checkout", model=LAST_TOUCH)
    clock.set(T0 + 5 * MIN)
    reader, writer = await subscribe(edge, quick.port, agent_id="agent-7")
    try:
        await wait_until(lambda: feed(edge).subscriber_count == 1, what="subscription")
        await asyncio.sleep(BODY_TIMEOUT_S * 4)
        assert feed(edge).subscriber_count == 1 and quick.upstreams.open_streams == 1
        await convert(edge, "conv-late")
        head = await asyncio.wait_for(reader.readuntil(b"conv-late"), 2.0)
        assert head.startswith(b"HTTP/1.1 200"), head
    finally:
        with contextlib.suppress(Exception):
            writer.transport.abort()
    await wait_until(lambda: feed(edge).subscriber_count == 0, what="upstream cancelled")
