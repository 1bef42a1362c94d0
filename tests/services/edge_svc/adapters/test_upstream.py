"""Forwarded calls: status codes map one to one, an unreachable service is UNAVAILABLE
without its address, deadlines are passed on."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from edge_svc.adapters.upstream import CallOptions, Upstreams, connect_error
from edge_svc.domain.routes import ROUTES_BY_PATH, Upstream
from edge_svc.server import EdgeServer
from goalflow_common.pb.goals.v1 import config_pb2, tracker_pb2
from goalflow_dev.embedded_mongo import free_port
from tests.services.edge_svc.conftest import edge_settings
from tests.services.edge_svc.helpers import bearer

KEY = "gf_0123456789abcdef_" + "A" * 43


class _Failed(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize("status", [s for s in grpc.StatusCode if s is not grpc.StatusCode.OK])
def test_every_status_maps_to_the_connect_code_of_the_same_name(status):
    error = connect_error(_Failed(status, "goal_id: not found"), Upstream.CONFIG)
    expected = "CANCELED" if status is grpc.StatusCode.CANCELLED else status.name
    assert error.code is Code[expected]
    if status is not grpc.StatusCode.UNAVAILABLE:
        assert error.message == "goal_id: not found"


async def test_an_unreachable_service_is_unavailable_without_its_address():
    port = free_port()
    upstreams = Upstreams({u: f"127.0.0.1:{port}" for u in Upstream}, stream_channels=1)
    try:
        route = ROUTES_BY_PATH["/goals.v1.ConfigService/ListGoals"]
        with pytest.raises(ConnectError) as refused:
            await upstreams.unary(route, config_pb2.ListGoalsRequest(),
                                  config_pb2.ListGoalsResponse,
                                  CallOptions(f"Bearer {KEY}", "r1", 2.0))
        assert refused.value.code is Code.UNAVAILABLE
        assert refused.value.message == "the config service is unreachable; retry with backoff"
        assert str(port) not in refused.value.message
        stream = ROUTES_BY_PATH["/goals.v1.TrackerService/SubscribeConversions"]
        with pytest.raises(ConnectError) as refused:
            async for _ in upstreams.stream(stream, tracker_pb2.SubscribeConversionsRequest(),
                                            tracker_pb2.SubscribeConversionsResponse,
                                            CallOptions(f"Bearer {KEY}", "r2", 2.0)):
                pass
        assert refused.value.code is Code.UNAVAILABLE
        assert upstreams.open_streams == 0
    finally:
        await upstreams.close()


async def test_an_unresolvable_service_name_is_not_passed_on(edge):
    """A name that does not resolve came back verbatim, to a made-up key too (I12-A2):
    "errors resolving internal-export.corp:50053: ...". Through the real edge, over HTTP."""
    hidden = "internal-export.invalid:50053"
    server = EdgeServer(edge_settings(edge.stack, hidden))
    await server.start()
    try:
        async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{server.port}/goals.v1.ExportService/ListExports",
                json={}, headers=bearer(KEY)) as response:
            body = await response.json()
    finally:
        await server.stop()
    assert body == {"code": "unavailable",
                    "message": "the export service is unreachable; retry with backoff"}


async def test_the_callers_deadline_is_passed_on(edge):
    """A deadline shorter than the call takes ends it DEADLINE_EXCEEDED at the service."""
    route = ROUTES_BY_PATH["/goals.v1.TrackerService/SubscribeConversions"]
    started = asyncio.get_running_loop().time()
    with pytest.raises(ConnectError) as ended:
        async for _ in edge.server.upstreams.stream(
                route, tracker_pb2.SubscribeConversionsRequest(agent_id="a"),
                tracker_pb2.SubscribeConversionsResponse,
                CallOptions(f"Bearer {edge.tenant.admin}", "r3", 0.3)):
            pass
    assert ended.value.code is Code.DEADLINE_EXCEEDED
    assert asyncio.get_running_loop().time() - started < 2
