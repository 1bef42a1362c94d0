"""Calls forwarded to the three services over their native gRPC ports.

Contract:

- every call carries the caller's ``authorization`` (the service authenticates it again:
  defence in depth) and the edge's ``x-request-id``, and the caller's deadline;
- a failed call raises :class:`connectrpc.errors.ConnectError` with the service's status
  code and message (gRPC ``CANCELLED`` is Connect's ``canceled``); every UNAVAILABLE is
  one generic message naming the service, never its address (the real one is logged);
- a live-feed subscription (:meth:`Upstream.stream`) is one upstream call per browser
  subscriber, cancelled as soon as the subscriber's generator is closed (the browser went
  away, or the edge stops), so the tracker drops it at once. Back pressure is per call:
  a subscriber that reads slowly holds only its own HTTP/2 flow-control window here, and the
  tracker drops it when its own queue lags (``subscriber_max_lag_s``), without slowing the
  others.

Unary calls share one channel per service. Subscriptions are spread over
``stream_channels`` channels per service, each its own HTTP/2 connection (a local
subchannel pool: channels with equal arguments would otherwise share one connection).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from grpc import aio

from edge_svc.domain.routes import Route, Upstream
from goalflow_common.auth import VIA_EDGE
from goalflow_common.client import make_channel

log = structlog.get_logger("goalflow.edge")

_CODES: dict[grpc.StatusCode, Code] = {
    status: Code.CANCELED if status is grpc.StatusCode.CANCELLED else Code[status.name]
    for status in grpc.StatusCode if status is not grpc.StatusCode.OK
}


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What the edge passes on with a call."""

    authorization: str
    request_id: str
    timeout_s: float | None


def connect_error(error: grpc.RpcError, upstream: Upstream) -> ConnectError:
    """The Connect error a browser gets for a failed upstream call."""
    code = _CODES.get(error.code(), Code.UNKNOWN)
    message = error.details() or ""
    if code is Code.UNAVAILABLE:
        # gRPC's channel writes the internal address into its messages in many shapes
        # ("errors resolving internal-export.corp:50053: ...", "failed to connect to all
        # addresses; last error: ... ipv4:10.0.3.7:50053"), and the edge forwards a made-up
        # gf_ key before any lookup, so anyone could read them (I12-A2): none is passed on.
        log.warning("upstream_unavailable", upstream=upstream.value, detail=message)
        message = f"the {upstream.value} service is unreachable; retry with backoff"
    return ConnectError(code, message)


class Upstreams:
    """Channels to the three services and the forwarded calls."""

    def __init__(
        self,
        addresses: Mapping[Upstream, str],
        *,
        stream_channels: int = 4,
        max_message_bytes: int = 8 * 1024 * 1024,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        def channel(address: str, *options: tuple[str, Any]) -> aio.Channel:
            return make_channel(address, None, max_message_bytes=max_message_bytes,
                                extra_options=options, credentials=credentials)

        self._unary = {name: channel(address) for name, address in addresses.items()}
        self._streams = {
            name: [channel(address, ("grpc.use_local_subchannel_pool", 1))
                   for _ in range(stream_channels)]
            for name, address in addresses.items()
        }
        self._next = {name: itertools.cycle(pool) for name, pool in self._streams.items()}
        self._callables: dict[tuple[int, str], Any] = {}
        self._open: set[aio.Call] = set()
        self.stopping = False

    @property
    def open_streams(self) -> int:
        return len(self._open)

    def _callable(self, channel: aio.Channel, route: Route, request_type: type[Any],
                  response_type: type[Any]) -> Any:
        key = (id(channel), route.path)
        made = self._callables.get(key)
        if made is None:
            factory: Callable[..., Any] = (
                channel.unary_stream if route.streaming else channel.unary_unary)
            made = self._callables[key] = factory(
                route.path, request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString)
        return made

    async def unary(self, route: Route, request: Any, response_type: type[Any],
                    options: CallOptions) -> Any:
        call = self._callable(self._unary[route.upstream], route, type(request),
                              response_type)
        try:
            return await call(request, metadata=_metadata(options), timeout=options.timeout_s)
        except grpc.RpcError as error:
            raise connect_error(error, route.upstream) from None

    async def stream(self, route: Route, request: Any, response_type: type[Any],
                     options: CallOptions) -> AsyncGenerator[Any, None]:
        """The upstream's messages; the upstream call is cancelled when this generator is
        closed or cancelled, and the stream ends cleanly (no error) when the edge stops."""
        channel = next(self._next[route.upstream])
        call = self._callable(channel, route, type(request), response_type)(
            request, metadata=_metadata(options), timeout=options.timeout_s)
        self._open.add(call)
        try:
            async for message in call:
                yield message
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.stopping and task is not None and task.cancelling() == 0:
                return  # cancelled by close(): the stream ends, the browser reconnects
            raise
        except grpc.RpcError as error:
            if self.stopping and error.code() is grpc.StatusCode.CANCELLED:
                return
            raise connect_error(error, route.upstream) from None
        finally:
            self._open.discard(call)
            call.cancel()

    def end_streams(self) -> None:
        """End every open subscription (shutdown): each browser sees its stream end."""
        self.stopping = True
        for call in list(self._open):
            call.cancel()

    async def close(self) -> None:
        self.end_streams()
        for channel in (*self._unary.values(),
                        *itertools.chain.from_iterable(self._streams.values())):
            await channel.close()


def _metadata(options: CallOptions) -> tuple[tuple[str, str], ...]:
    """What a forwarded call carries: the caller's credential and request id, and always
    the edge's mark (never the caller's headers: a browser cannot remove the mark)."""
    return (("authorization", options.authorization), ("x-request-id", options.request_id),
            VIA_EDGE)
