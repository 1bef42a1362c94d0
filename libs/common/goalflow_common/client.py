"""Client side: channels that send a bearer key (and a request id) with every call."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc import aio

from goalflow_common.interceptors import REQUEST_ID_KEY
from goalflow_common.settings import read_pem

# Initial metadata a server-streaming subscription (SubscribeConversions) sends once it is
# registered. A refused or failed call also ends with (empty) initial metadata, so the
# client tells "live" from "failed before it started" by this entry.
SUBSCRIBED_KEY = "x-goalflow-subscribed"


# grpcio has no type information: a continuation takes the call details and the request(s).
Continuation = Callable[[aio.ClientCallDetails, Any], Any]


class _BearerAuth:
    """Adds ``authorization: Bearer <key>`` (unless the key is None: each call then brings
    its own, as the edge forwards its caller's) and, unless given, an ``x-request-id``."""

    def __init__(self, api_key: str | None) -> None:
        self._auth = None if api_key is None else ("authorization", f"Bearer {api_key}")

    def _details(self, details: aio.ClientCallDetails) -> aio.ClientCallDetails:
        metadata = aio.Metadata(*(details.metadata or ()))
        if self._auth is not None:
            metadata.add(*self._auth)
        if REQUEST_ID_KEY not in metadata:
            metadata.add(REQUEST_ID_KEY, uuid.uuid4().hex)
        return aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials,
            details.wait_for_ready,
        )


# One class per call kind: grpc.aio files an interceptor under the first of the four
# interfaces it implements only, so a single class would leave streaming calls keyless.
class _UnaryUnaryAuth(_BearerAuth, aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Continuation, details: aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStreamAuth(_BearerAuth, aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Continuation, details: aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnaryAuth(_BearerAuth, aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Continuation, details: aio.ClientCallDetails, requests: Any
    ) -> Any:
        return await continuation(self._details(details), requests)


class _StreamStreamAuth(_BearerAuth, aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Continuation, details: aio.ClientCallDetails, requests: Any
    ) -> Any:
        return await continuation(self._details(details), requests)


_AUTH_KINDS = (_UnaryUnaryAuth, _UnaryStreamAuth, _StreamUnaryAuth, _StreamStreamAuth)


def make_channel(
    address: str,
    api_key: str | None,
    *,
    max_message_bytes: int = 8 * 1024 * 1024,
    max_reconnect_backoff_s: float = 5.0,
    extra_options: Sequence[tuple[str, Any]] = (),
    credentials: grpc.ChannelCredentials | None = None,
) -> aio.Channel:
    """An asyncio channel to ``address`` that authenticates every call with ``api_key``
    (None: with the ``authorization`` metadata each call passes, as the edge forwards it).

    With ``credentials`` (e.g. :func:`tls_credentials` or a settings'
    ``grpc_channel_credentials()``) the channel uses TLS; without, plaintext."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        # Internal peers restart; reconnect within seconds, not gRPC's default 2 minutes.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", int(max_reconnect_backoff_s * 1000)),
        *extra_options,
    ]
    interceptors = [kind(api_key) for kind in _AUTH_KINDS]
    if credentials is not None:
        return aio.secure_channel(address, credentials, options=options,
                                  interceptors=interceptors)
    return aio.insecure_channel(address, options=options, interceptors=interceptors)


def tls_credentials(ca_file: str = "") -> grpc.ChannelCredentials:
    """TLS channel credentials trusting the PEM CA in ``ca_file``, or the system's trusted
    roots when it is empty."""
    if not ca_file:
        return grpc.ssl_channel_credentials()
    return grpc.ssl_channel_credentials(read_pem("tls_ca_file", ca_file))


def is_retryable(error: grpc.RpcError) -> bool:
    """Status codes a caller may retry with backoff."""
    return error.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
