"""hypercorn 0.18 on HTTP/2, as the edge uses it: calls refused before their body is read do
not take down the calls beside them on the same connection (edge_svc.h2_guard), and one
connection carries any number of calls (no 1,000-request cap)."""

from __future__ import annotations

import asyncio

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from goalflow_common.pb.goals.v1 import config_pb2, config_pb2_grpc


async def test_refused_calls_leave_the_connection_to_the_others(edge):
    async with aio.insecure_channel(f"127.0.0.1:{edge.server.port}") as channel:
        stub = config_pb2_grpc.ConfigServiceStub(channel)
        good = (("authorization", f"Bearer {edge.tenant.admin}"),)
        request = config_pb2.GetGoalRequest(goal_id="g" * 100)

        async def refused() -> grpc.StatusCode:
            try:
                await stub.GetGoal(request, timeout=5)
            except aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        async def allowed() -> grpc.StatusCode:
            try:
                await stub.GetGoal(request, metadata=good, timeout=5)
            except aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        for _ in range(10):
            codes = await asyncio.gather(*(refused() for _ in range(20)),
                                         *(allowed() for _ in range(20)))
            assert set(codes[:20]) == {grpc.StatusCode.UNAUTHENTICATED}, codes
            assert set(codes[20:]) == {grpc.StatusCode.NOT_FOUND}, codes


async def test_many_calls_on_one_http2_connection(edge):
    """hypercorn's default of 1,000 requests per connection broke call 1,001 of a gRPC
    channel (GOAWAY with PROTOCOL_ERROR); the edge lifts it."""
    async with aio.insecure_channel(f"127.0.0.1:{edge.server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(1100):
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
