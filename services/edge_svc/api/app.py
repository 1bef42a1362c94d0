"""The edge's ASGI application: CORS first, then ``/healthz``, then the connectrpc
application of the request's path.

Routing by path happens before anything is read: an unknown path is 404, a disallowed
origin is 403 with no CORS header, a preflight is answered here. Each route's connectrpc
application has that route's body limit (``read_max_bytes``: a larger body is refused
RESOURCE_EXHAUSTED as soon as the bytes read pass it, before it is parsed) and the
interceptors that check the caller before the body is read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from connectrpc._server_shared import EndpointServerStream, EndpointUnary
from connectrpc.server import ConnectASGIApplication

from edge_svc.api.codecs import CODECS
from edge_svc.api.interceptors import CallerCheck, CallLog
from edge_svc.domain.cors import CorsPolicy, Verdict

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
                 serving: Callable[[], bool]) -> None:
        self._cors = cors
        self._apps = dict(apps)
        self._serving = serving

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable,
                       send: ASGISendCallable) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method = scope["method"]
        decision = self._cors.decide(_header(scope, b"origin"), method,
                                     _header(scope, b"access-control-request-method"))
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
        if app is None:
            await _plain(send, 404, b"not found\n", decision.headers)
            return
        await app(scope, receive, _adding(send, decision.headers))


def _adding(send: ASGISendCallable, headers: Iterable[tuple[str, str]]) -> ASGISendCallable:
    extra = [(k.encode(), v.encode()) for k, v in headers]
    if not extra:
        return send

    async def wrapped(message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], *extra]}
        await send(message)

    return wrapped


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
