"""A real config gRPC server on a loopback port, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from grpc import aio

from config_svc.server import create_server
from goalflow_common.client import make_channel
from goalflow_common.pb.goals.v1 import config_pb2_grpc


@pytest.fixture
async def config_server(config_settings, clock) -> AsyncIterator[str]:
    """Address of a started config server using the test's manual clock."""
    server, port = await create_server(config_settings, clock=clock)
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0.5)


@pytest.fixture
async def config_stub(config_server) -> AsyncIterator[Callable[[str], object]]:
    """``stub(key)``: a ConfigService stub authenticating with ``key``."""
    channels: list[aio.Channel] = []

    def stub(key: str) -> config_pb2_grpc.ConfigServiceStub:
        channel = make_channel(config_server, key)
        channels.append(channel)
        return config_pb2_grpc.ConfigServiceStub(channel)

    try:
        yield stub
    finally:
        for channel in channels:
            await channel.close()
