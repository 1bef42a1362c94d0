"""Calling the edge the way browsers and generic clients do: raw Connect over HTTP/1.1
(aiohttp, as curl would), and connectrpc's own client (Connect, gRPC-Web, gRPC; HTTP/1.1
or HTTP/2 without TLS) with the edge's codecs for our Google-protobuf classes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from connectrpc.client import ConnectClient
from connectrpc.protocol import ProtocolType
from google.protobuf.message import Message
from pyqwest import Client, HTTPTransport, HTTPVersion

from edge_svc.api.codecs import GoogleProtoBinaryCodec, GoogleProtoJSONCodec
from edge_svc.api.endpoints import method_info
from edge_svc.domain.routes import ROUTES_BY_PATH


def bearer(credential: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"}


def client(url: str, *, protocol: ProtocolType = ProtocolType.CONNECT, json: bool = False,
           http2: bool = False) -> ConnectClient:
    """connectrpc's client for the edge at ``url``."""
    transport = HTTPTransport(http_version=HTTPVersion.HTTP2 if http2 else HTTPVersion.HTTP1)
    return ConnectClient(url, protocol=protocol,
                         codec=GoogleProtoJSONCodec() if json else GoogleProtoBinaryCodec(),
                         http_client=Client(transport), send_compression=None)


async def unary(connect: ConnectClient, path: str, request: Message,
                headers: Mapping[str, str], *, use_get: bool = False) -> Any:
    route = ROUTES_BY_PATH.get(path)
    info = method_info(path, safe=bool(route and route.safe))
    return await connect.execute_unary(request=request, method=info, headers=dict(headers),
                                       use_get=use_get)


async def wait_until(predicate: Any, within_s: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
