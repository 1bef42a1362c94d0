"""The edge's ASGI application: CORS first, then ``/healthz``, then the connectrpc
application of the request's path.

Routing by path happens before anything is read: an unknown path is 404, a disallowed
origin is 403 with no CORS header, a preflight is answered here. Each route's connectrpc
application has that route's body limit (``read_max_bytes``: a larger body is refused
RESOURCE_EXHAUSTED as soon as the bytes read pass it, before it is parsed) and the
interceptors that check the caller before the body is read.

The request body must arrive within ``body_timeout_s`` of the request's headers (every
route; the call is refused DEADLINE_EXCEEDED naming the limit, and over HTTP/1.1 the
connection is closed, as its body was not read to the end). Only the body: once it is in, a
live-feed stream's response runs as long as it likes. An unknown path's body is drained for
at most :data:`UNKNOWN_PATH_DRAIN_S` before its 404."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from connectrpc._server_shared import EndpointServerStream, EndpointUnary
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.server import ConnectASGIApplication

from edge_svc.api.codecs import CODECS
from edge_svc.api.interceptors import CallerCheck, CallLog
from edge_svc.api.site import CACHE_CONTROL, SECURITY_HEADERS, Asset, Site, accepts_gzip
from edge_svc.domain.cors import CorsDecision, CorsPolicy, Verdict, is_same_origin

# ASGI's shapes, loosely (asgiref's TypedDicts are not installed).
Scope = dict[str, Any]
ASGISendEvent = dict[str, Any]
ASGIReceiveCallable = Callable[[], Awaitable[dict[str, Any]]]
ASGISendCallable = Callable[[ASGISendEvent], Awaitable[None]]
RouteEndpoint = EndpointUnary[Any, Any] | EndpointServerStream[Any, Any]

HEALTHZ = "/healthz"


class _Routes(ConnectASGIApplication[None]):
    """A connectrpc application over a fixed set of endpoints."""

    @property
    def path(self) -> str:
        return "/"


def connect_app(endpoints: Mapping[str, RouteEndpoint], *, read_max_bytes: int,
                caller_check: CallerCheck | None) -> ConnectASGIApplication[None]:
    """One connectrpc application for ``endpoints`` (by path), with our codecs; calls are
    logged, and checked by ``caller_check`` (None: open, as health is)."""
    interceptors: list[Any] = [CallLog()]
    if caller_check is not None:
        interceptors.append(caller_check)
    table: dict[str, Any] = dict(endpoints)
    return _Routes(service=None, endpoints=lambda _: table, interceptors=interceptors,
                   read_max_bytes=read_max_bytes, codecs=CODECS)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class EdgeApp:
    """The ASGI callable hypercorn serves."""

    def __init__(self, cors: CorsPolicy, apps: Mapping[str, ConnectASGIApplication[None]],
                 serving: Callable[[], bool], *, body_timeout_s: float = 10.0,
                 site: Site | None = None) -> None:
        self._cors = cors
        self._apps = dict(apps)
        self._serving = serving
        self._body_timeout_s = body_timeout_s
        self._site = site

    def _cors_decision(self, scope: Scope) -> CorsDecision:
        origin = _header(scope, b"origin")
        if self._site is not None and is_same_origin(origin, _header(scope, b"host")):
            return CorsDecision(Verdict.NOT_CORS)  # the console, calling its own edge
        return self._cors.decide(origin, scope["method"],
                                 _header(scope, b"access-control-request-method"))

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method = scope["method"]
        decision = self._cors_decision(scope)
        if decision.verdict is Verdict.REFUSED:
            await _plain(send, 403, b"origin not allowed\n", decision.headers)
            return
        if decision.verdict is Verdict.PREFLIGHT:
            await _plain(send, 204, b"", decision.headers)
            return
        path = scope["path"]
        if path == HEALTHZ and method in ("GET", "HEAD"):
            ok = self._serving()
            await _plain(send, 200 if ok else 503,
                         b"serving\n" if ok else b"shutting down\n", decision.headers)
            return
        app = self._apps.get(path)
        if app is None and self._site is not None and method in ("GET", "HEAD"):
            asset = self._site.find(path)
            if asset is not None:
                await _asset(scope, send, asset, method == "HEAD")
                return
        if app is None:
            # A gRPC client still sending its request reads an answer that ends the stream
            # first as a broken stream (UNKNOWN, 2 runs in 6) instead of 404 (UNIMPLEMENTED):
            # let a small request finish first, for a short while only.
            await _drain(receive, UNKNOWN_PATH_DRAIN_BYTES, UNKNOWN_PATH_DRAIN_S)
            if _speaks_grpc(scope):
                await _grpc_unimplemented(send, decision.headers)
            else:
                await _plain(send, 404, b"not found\n", decision.headers)
            return
        await app(scope, BodyDeadline(receive, self._body_timeout_s),
                  _adding(send, decision.headers))


UNKNOWN_PATH_DRAIN_BYTES = 64 * 1024
# A gRPC client's small request is in within a millisecond on loopback; a client that sends
# headers announcing a body and then nothing held its connection (and a descriptor) forever
# here: 20,000 of them, without any credential, exhausted the edge's descriptors (I12-A1).
UNKNOWN_PATH_DRAIN_S = 0.5


async def _drain(receive: ASGIReceiveCallable, limit: int, within_s: float) -> None:
    """Read and drop the request body, up to ``limit`` bytes and ``within_s`` seconds."""
    seen = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            while seen <= limit:
                message = await receive()
                if message["type"] != "http.request":
                    return
                seen += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


class BodyDeadline:
    """``receive`` for one call, bounded until the request body is complete.

    The deadline runs from the request's headers, over every chunk of the body; it raises
    DEADLINE_EXCEEDED naming the limit (connectrpc answers the call with it). Once the last
    chunk is in, ``receive`` is the server's own again: connectrpc then waits on it for the
    client's disconnect for as long as a live-feed stream lasts.

    Why: a client that announced a body (``content-length: 60000``) and sent none held the
    call, its connection and a descriptor for ever, on a known path with a valid
    credential too (I12-A1; hypercorn's ``read_timeout`` cannot help, it would also cut the
    live feed, whose client sends nothing after its request)."""

    def __init__(self, receive: ASGIReceiveCallable, timeout_s: float) -> None:
        self._receive = receive
        self._timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s
        self._complete = False

    async def __call__(self) -> dict[str, Any]:
        if self._complete:
            return await self._receive()
        try:
            async with asyncio.timeout(max(self._deadline - time.monotonic(), 0.0)):
                message = await self._receive()
        except TimeoutError:
            raise ConnectError(
                Code.DEADLINE_EXCEEDED,
                f"request body not received within {self._timeout_s:g} s") from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._complete = True
        return message


def _adding(send: ASGISendCallable, headers: Iterable[tuple[str, str]]) -> ASGISendCallable:
    extra = [(k.encode(), v.encode()) for k, v in headers]
    if not extra:
        return send

    async def wrapped(message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], *extra]}
        await send(message)

    return wrapped


def _speaks_grpc(scope: Scope) -> bool:
    """A native gRPC call (not gRPC-Web) on a connection that can send trailers (HTTP/2)."""
    content_type = _header(scope, b"content-type") or ""
    return (content_type.startswith("application/grpc")
            and not content_type.startswith("application/grpc-web")
            and "http.response.trailers" in scope.get("extensions", {}))


async def _grpc_unimplemented(send: ASGISendCallable,
                              headers: Iterable[tuple[str, str]]) -> None:
    """UNIMPLEMENTED as gRPC says it (status in the trailers). Drained or not, a bare 404
    still reached a gRPC client now and then as "Stream removed" (UNKNOWN, 1 full run in 3)."""
    await send({
        "type": "http.response.start", "status": 200, "trailers": True,
        "headers": [(b"content-type", b"application/grpc"),
                    *((k.encode(), v.encode()) for k, v in headers)],
    })
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    await send({"type": "http.response.trailers", "more_trailers": False,
                "headers": [(b"grpc-status", b"12"), (b"grpc-message", b"unknown method")]})


async def _asset(scope: Scope, send: ASGISendCallable, asset: Asset, head: bool) -> None:
    """One console file: 304 when the browser's copy is current, gzip when it takes it."""
    headers = [(b"cache-control", CACHE_CONTROL.encode()), (b"etag", asset.etag.encode()),
               (b"vary", b"Accept-Encoding"),
               *((k.encode(), v.encode()) for k, v in SECURITY_HEADERS)]
    if _header(scope, b"if-none-match") == asset.etag:
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    body = asset.body
    if asset.gzipped is not None and accepts_gzip(_header(scope, b"accept-encoding")):
        body = asset.gzipped
        headers.append((b"content-encoding", b"gzip"))
    headers += [(b"content-type", asset.content_type.encode()),
                (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body,
                "more_body": False})


async def _plain(send: ASGISendCallable, status: int, body: bytes,
                 headers: Iterable[tuple[str, str]]) -> None:
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    *((k.encode(), v.encode()) for k, v in headers)],
        "trailers": False,
    })
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
