"""The security tables over the browser protocols: the edge in front of the world's
services, and one way to call any exposed RPC through it with any credentials, giving the
same comparable :class:`~tests.security.rpcs.Outcome` as a native gRPC call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from connectrpc.client import ConnectClient
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from google.protobuf.message import Message

from edge_svc.api.endpoints import method_info
from edge_svc.domain.routes import ROUTES_BY_PATH
from edge_svc.server import EdgeServer
from edge_svc.settings import EdgeSettings
from tests.security.conftest import World
from tests.security.rpcs import Header, Outcome
from tests.services.edge_svc.helpers import client, wait_until

PROTOCOLS: dict[str, Callable[[str], ConnectClient]] = {
    "connect-json": lambda url: client(url, json=True),
    "connect-proto": lambda url: client(url),
    "grpc-web": lambda url: client(url, protocol=ProtocolType.GRPC_WEB),
    "grpc-h2c": lambda url: client(url, protocol=ProtocolType.GRPC, http2=True),
}
EXPOSED = sorted(ROUTES_BY_PATH)


@dataclass
class EdgeWorld:
    world: World
    server: EdgeServer
    clients: dict[str, ConnectClient] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def client(self, protocol: str) -> ConnectClient:
        if protocol not in self.clients:
            self.clients[protocol] = PROTOCOLS[protocol](self.url)
        return self.clients[protocol]

    def subscribers(self) -> int:
        return int(self.world.stack.tracker_server.components["feed"].subscriber_count)


async def start_edge(world: World, token_keys: str = "") -> EdgeServer:
    server = EdgeServer(EdgeSettings(
        http_port=0, config_address=world.stack.config_address,
        tracker_address=world.stack.tracker_address, export_address=world.export_address,
        token_keys=token_keys, shutdown_grace_s=1.0))
    await server.start()
    return server


def _code(error: ConnectError) -> str:
    return "CANCELLED" if error.code.name == "CANCELED" else error.code.name


async def invoke_edge(
    edge: EdgeWorld, protocol: str, path: str, request: Message, authorization: Header, *,
    until: Callable[[list[Message]], bool] | None = None,
    on_open: Callable[[], Awaitable[Any]] | None = None,
    timeout_s: float = 10.0,
) -> Outcome:
    """Call ``path`` through the edge with ``protocol``, sending ``authorization`` as given.

    A live stream is read until ``until(responses)``; ``on_open`` runs once the tracker has
    registered the subscription (a Connect stream sends its headers with its first message,
    so registration is read from the tracker's feed)."""
    route = ROUTES_BY_PATH[path]
    info = method_info(path, streaming=route.streaming, safe=route.safe)
    headers = {} if authorization is None else {"authorization": authorization}
    connect = edge.client(protocol)
    if not route.streaming:
        try:
            async with asyncio.timeout(timeout_s):
                response = await connect.execute_unary(request=request, method=info,
                                                       headers=headers)
        except ConnectError as error:
            return Outcome(_code(error), error.message)
        except TimeoutError:
            return Outcome("TIMEOUT")
        return Outcome("OK", "", [response])
    return await _stream(edge, connect, info, request, headers, until, on_open, timeout_s)


async def _stream(edge: EdgeWorld, connect: ConnectClient, info: Any, request: Message,
                  headers: dict[str, str], until: Callable[[list[Message]], bool] | None,
                  on_open: Callable[[], Awaitable[Any]] | None, timeout_s: float) -> Outcome:
    responses: list[Message] = []
    # The previous call's subscription is gone first, so a new one is seen registering.
    await wait_until(lambda: edge.subscribers() == 0, what="earlier subscriptions to end")

    async def read() -> Outcome:
        async for response in connect.execute_server_stream(
                request=request, method=info, headers=headers):
            responses.append(response)
            if until is not None and until(responses):
                break
        return Outcome("OK", "", responses)

    reader = asyncio.create_task(read())
    try:
        async with asyncio.timeout(timeout_s):
            if on_open is not None:
                await wait_until(lambda: reader.done() or edge.subscribers() > 0,
                                 within_s=timeout_s, what="the subscription")
                if not reader.done():
                    await on_open()
            return await reader
    except ConnectError as error:
        return Outcome(_code(error), error.message, responses)
    except TimeoutError:
        return Outcome("TIMEOUT", "", responses)
    finally:
        reader.cancel()
