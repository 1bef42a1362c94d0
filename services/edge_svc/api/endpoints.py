"""connectrpc endpoints built from our descriptors: one per exposed route, forwarding to
its service, and the standard health check.

``MethodInfo`` takes the Google-protobuf request and response classes of the method's
descriptor (the generated ``*_pb2`` modules are imported here, so the classes exist), and
the codecs of :mod:`edge_svc.api.codecs` read and write them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog

# The two kinds an Endpoint factory returns (connectrpc exports only their base).
from connectrpc._server_shared import EndpointServerStream, EndpointUnary
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import RequestContext
from connectrpc.server import Endpoint
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2

from edge_svc.adapters.upstream import CallOptions, Upstreams
from edge_svc.api.interceptors import request_id_var
from edge_svc.domain.routes import Route
from goalflow_common.pb.goals.v1 import accounts_pb2, config_pb2, export_pb2, tracker_pb2

log = structlog.get_logger("goalflow.edge")

_LOADED = (accounts_pb2, config_pb2, tracker_pb2, export_pb2, health_pb2)  # classes by descriptor
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
INTERNAL = "internal error; see the edge's logs"


def method_info(path: str, *, streaming: bool = False, safe: bool = False
                ) -> MethodInfo[Any, Any]:
    """The connectrpc description of the method at ``/package.Service/Method``."""
    method = descriptor_pool.Default().FindMethodByName(path.strip("/").replace("/", "."))
    return MethodInfo(
        name=method.name,
        service_name=method.containing_service.full_name,
        input=message_factory.GetMessageClass(method.input_type),
        output=message_factory.GetMessageClass(method.output_type),
        idempotency_level=(IdempotencyLevel.NO_SIDE_EFFECTS if safe
                           else IdempotencyLevel.UNKNOWN),
        stream_type=StreamType.SERVER_STREAM if streaming else StreamType.UNARY,
    )


def _options(ctx: RequestContext[Any, Any], default_timeout_s: float | None) -> CallOptions:
    remaining_ms = ctx.timeout_ms
    timeout = default_timeout_s if remaining_ms is None else max(remaining_ms, 0) / 1000
    if default_timeout_s is not None and timeout is not None:
        timeout = min(timeout, default_timeout_s)
    return CallOptions(ctx.request_headers.get("authorization", ""), request_id_var.get(""),
                       timeout)


def forwarding_endpoint(route: Route, upstreams: Upstreams, *, unary_timeout_s: float,
                        subscribers: SubscriberLimit
                        ) -> EndpointUnary[Any, Any] | EndpointServerStream[Any, Any]:
    info = method_info(route.path, streaming=route.streaming, safe=route.safe)
    if route.streaming:
        async def stream(request: Any, ctx: RequestContext[Any, Any]) -> AsyncIterator[Any]:
            # aclosing: the upstream call is cancelled when this stream is closed, not
            # when the garbage collector finalizes the inner generator.
            options = _options(ctx, None)
            with subscribers.slot(options.authorization):
                try:
                    async with contextlib.aclosing(upstreams.stream(
                            route, request, info.output, options)) as messages:
                        async for message in messages:
                            yield message
                except (ConnectError, GeneratorExit):
                    raise
                except Exception as exc:
                    log.error("forward_failed", exc_info=exc)
                    raise ConnectError(Code.INTERNAL, INTERNAL) from None

        return Endpoint.server_stream(info, stream)

    async def unary(request: Any, ctx: RequestContext[Any, Any]) -> Any:
        try:
            return await upstreams.unary(route, request, info.output,
                                         _options(ctx, unary_timeout_s))
        except ConnectError:
            raise
        except Exception as exc:
            log.error("forward_failed", exc_info=exc)
            raise ConnectError(Code.INTERNAL, INTERNAL) from None

    return Endpoint.unary(info, unary)


class SubscriberLimit:
    """How many live-feed subscriptions are open, refusing one past ``limit`` on this edge
    or past ``per_credential`` for one bearer credential (key or token).

    Why per credential: the global limit alone let one token take every slot (8,682
    streams, edge RSS 647 MB, I12-A7) and lock out every other tenant's browsers. An
    agent's workspace has a few tabs; 16 leaves room for them."""

    def __init__(self, limit: int, per_credential: int = 16) -> None:
        self.limit = limit
        self.per_credential = per_credential
        self.open = 0
        self._by_credential: dict[str, int] = {}

    def slot(self, credential: str) -> _Slot:
        return _Slot(self, credential)

    def _take(self, credential: str) -> None:
        if self.open >= self.limit:
            raise ConnectError(Code.RESOURCE_EXHAUSTED,
                               f"this edge holds its maximum of {self.limit} "
                               "subscriptions; retry with backoff")
        held = self._by_credential.get(credential, 0)
        if held >= self.per_credential:
            raise ConnectError(Code.RESOURCE_EXHAUSTED,
                               f"this credential holds its maximum of {self.per_credential} "
                               "subscriptions on this edge; close one first")
        self._by_credential[credential] = held + 1
        self.open += 1

    def _release(self, credential: str) -> None:
        self.open -= 1
        held = self._by_credential.pop(credential) - 1
        if held:
            self._by_credential[credential] = held


class _Slot:
    def __init__(self, owner: SubscriberLimit, credential: str) -> None:
        self._owner = owner
        self._credential = credential

    def __enter__(self) -> None:
        self._owner._take(self._credential)

    def __exit__(self, *exc: object) -> None:
        self._owner._release(self._credential)


def health_endpoint(serving: Callable[[], bool]) -> EndpointUnary[Any, Any]:
    """``grpc.health.v1.Health/Check`` for the edge itself (service ``""``), no key needed."""
    info = method_info(HEALTH_CHECK)
    status = health_pb2.HealthCheckResponse

    async def check(request: health_pb2.HealthCheckRequest, ctx: RequestContext[Any, Any]
                    ) -> health_pb2.HealthCheckResponse:
        if request.service:
            raise ConnectError(Code.NOT_FOUND, f"unknown service {request.service!r}")
        return status(status=status.SERVING if serving() else status.NOT_SERVING)

    return Endpoint.unary(info, check)


