"""Over one HTTP/2 connection, calls the edge refuses before reading their body do not take
down the calls beside them (edge_svc.h2_guard: hypercorn 0.18 dropped the connection)."""

from __future__ import annotations

import asyncio

import grpc
from grpc import aio

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
