"""Server interceptors: authentication, and the one that binds the request id, logs each
RPC and maps domain errors to status codes."""

from __future__ import annotations

import dataclasses
import inspect
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from grpc import aio
from pymongo.errors import ConnectionFailure

from goalflow_common.auth import (
    OPEN_PREFIXES,
    VIA_EDGE,
    KeyStore,
    Principal,
    Role,
    roles_for,
    set_principal,
)
from goalflow_common.errors import DomainError, PermissionDenied, Unauthenticated
from goalflow_common.request_guard import Refusal, RequestGuard
from goalflow_common.tokens import TokenAuthority, looks_like_token

log = structlog.get_logger("goalflow.rpc")

REQUEST_ID_KEY = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Behavior = Callable[..., Any]


MAX_DETAILS = 1024  # characters of error details sent to the caller


def _metadata(details: grpc.HandlerCallDetails) -> dict[str, str]:
    return {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}


def _rewrap(
    handler: grpc.RpcMethodHandler,
    wrap: Callable[[Behavior, bool], Behavior],
    deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """A copy of ``handler`` whose behaviour is ``wrap(behaviour, response_streaming)``, and
    whose request deserializer is ``deserializer`` if given."""
    if handler.unary_unary:
        factory, behavior, streaming = (
            grpc.unary_unary_rpc_method_handler,
            handler.unary_unary,
            False,
        )
    elif handler.unary_stream:
        factory, behavior, streaming = (
            grpc.unary_stream_rpc_method_handler,
            handler.unary_stream,
            True,
        )
    elif handler.stream_unary:
        factory, behavior, streaming = (
            grpc.stream_unary_rpc_method_handler,
            handler.stream_unary,
            False,
        )
    else:
        factory, behavior, streaming = (
            grpc.stream_stream_rpc_method_handler,
            handler.stream_stream,
            True,
        )
    return factory(
        wrap(behavior, streaming),
        request_deserializer=deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


async def _iterate(result: Any) -> AsyncIterator[Any]:
    """Responses of a streaming behaviour, whether it yields or writes via the context."""
    if inspect.isasyncgen(result):
        async for item in result:
            yield item
    elif inspect.isawaitable(result):
        await result


class ContextInterceptor(aio.ServerInterceptor):
    """Binds a request id (the caller's ``x-request-id`` or a new one) into structlog's
    context, logs one line per RPC, and turns :class:`DomainError` into its status code.
    Anything else is logged with its traceback and reported as INTERNAL without details."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler  # health checks are neither logged nor wrapped
        given = _metadata(details).get(REQUEST_ID_KEY, "")
        request_id = given if _REQUEST_ID_RE.match(given) else uuid.uuid4().hex
        return _rewrap(handler, _logged(method, request_id))


def _logged(method: str, request_id: str) -> Callable[[Behavior, bool], Behavior]:
    """A behaviour wrapper that binds ``request_id`` and ``method`` into structlog's context
    and the trailers, logs the call's end and maps its failure (:func:`_fail`)."""

    def wrap(behavior: Behavior, streaming: bool) -> Behavior:
        if streaming:
            return _logged_stream(behavior, method, request_id)
        return _logged_unary(behavior, method, request_id)

    return wrap


def _logged_stream(behavior: Behavior, method: str, request_id: str) -> Behavior:
    async def stream_behavior(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        start = _begin(context, method, request_id)
        try:
            async for item in _iterate(behavior(request, context)):
                yield item
        except Exception as exc:
            await _fail(context, method, exc, start)
        else:
            _end(context, method, start)

    return stream_behavior


def _logged_unary(behavior: Behavior, method: str, request_id: str) -> Behavior:
    async def unary_behavior(request: Any, context: aio.ServicerContext) -> Any:
        start = _begin(context, method, request_id)
        try:
            response = await behavior(request, context)
        except Exception as exc:
            await _fail(context, method, exc, start)
        else:
            _end(context, method, start)
            return response

    return unary_behavior


def _begin(context: aio.ServicerContext, method: str, request_id: str) -> float:
    """Bind the call's request id and method for logging, echo the id in the trailers;
    returns the start time."""
    structlog.contextvars.bind_contextvars(request_id=request_id, method=method)
    context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
    return time.perf_counter()


def _end(context: aio.ServicerContext, method: str, start: float) -> None:
    code = context.code() or grpc.StatusCode.OK
    log.info("rpc", code=_code_name(code), duration_ms=_ms(start))


async def _fail(
    context: aio.ServicerContext, method: str, exc: Exception, start: float
) -> None:
    """Log ``exc`` and end the call with its status (``context.abort`` raises)."""
    if isinstance(exc, DomainError):
        log.info("rpc", code=exc.code, duration_ms=_ms(start), error=exc.message)
        # Details travel in a header, and clients refuse headers over 8 KB (the caller would
        # see RESOURCE_EXHAUSTED instead of the error): cap what an error may echo.
        message = exc.message if len(exc.message) <= MAX_DETAILS else (
            exc.message[:MAX_DETAILS - 1] + "…")
        await context.abort(grpc.StatusCode[exc.code], message)
    if isinstance(exc, aio.AbortError):
        log.info("rpc", code=_code_name(context.code()), duration_ms=_ms(start))
        raise exc
    # PyMongo raises ConnectionFailure while the database is down or restarting (refused or
    # dropped connections, no server in time, a replica set changing hands) and reconnects
    # by itself: callers should retry with backoff, and ingestion being idempotent, a batch
    # cut short is completed by its resend.
    if isinstance(exc, ConnectionFailure):
        log.warning("rpc", code="UNAVAILABLE", duration_ms=_ms(start), error=str(exc)[:300])
        await context.abort(grpc.StatusCode.UNAVAILABLE,
                            "the database is unreachable for now; retry with backoff")
    log.error("rpc_failed", duration_ms=_ms(start), exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; see server logs")


def _code_name(code: Any) -> str:
    return getattr(code, "name", str(code)) if code is not None else "OK"


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


class AuthInterceptor(aio.ServerInterceptor):
    """Checks the bearer credential and the role on every RPC but health, before the
    request is parsed, then guards the parse (:mod:`goalflow_common.request_guard`), and
    makes the caller available to handlers through
    :func:`goalflow_common.auth.current_principal`.

    The credential is an API key (looked up in the :class:`KeyStore`, cached) or a signed
    token (:mod:`goalflow_common.tokens`: it has a JWT's shape, which a key never has),
    verified by ``tokens`` from its signature alone, without a database round trip. Both
    give a :class:`Principal` and meet the same role table; what an agent token may see
    within its account (its own agent's conversions) is the services' rule, not this one.

    ``intercept_service`` runs once the call's metadata has arrived and before any request
    message is deserialized, so the key is checked there: a refused call gets a handler
    that never parses its body (an 8 MiB body of tiny entries used to be parsed, ~200 ms and
    hundreds of MB, before it was refused) and whose behaviour raises the refusal, for
    :class:`ContextInterceptor` to map and log."""

    def __init__(
        self, keys: KeyStore, guard: RequestGuard | None = None,
        tokens: TokenAuthority | None = None,
    ) -> None:
        self._keys = keys
        self._guard = guard or RequestGuard({})
        # Without signing keys every token is refused, saying that tokens are not accepted.
        self._tokens = tokens if tokens is not None else TokenAuthority(())

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        roles = roles_for(details.method)
        if handler is None or roles is None:
            return handler
        try:
            principal = await self._authenticate(details, roles)
        except Exception as exc:  # raised again by the handler, to be mapped and logged there
            return _rewrap(handler, _failing(exc), deserializer=_unread)
        reader = self._guard.deserializer(details.method, handler.request_deserializer)
        return _rewrap(
            handler, _admitting(principal, handler.request_streaming), deserializer=reader
        )

    async def _authenticate(
        self, details: grpc.HandlerCallDetails, roles: frozenset[Role]
    ) -> Principal:
        scheme, _, credential = _metadata(details).get("authorization", "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthenticated("missing 'authorization: Bearer <key or token>' metadata")
        if looks_like_token(credential):
            principal = self._tokens.verify(credential)
        else:
            principal = await self._keys.authenticate(credential)
        if principal.role not in roles:
            raise PermissionDenied(f"role {principal.role.value!r} may not call {details.method}")
        if _metadata(details).get(VIA_EDGE[0]) == VIA_EDGE[1]:
            principal = dataclasses.replace(principal, via_edge=True)
        return principal


def _unread(raw: bytes) -> None:
    """The deserializer of a refused call: its bytes are never parsed."""
    return None


def _admitting(
    principal: Principal, request_streaming: bool
) -> Callable[[Behavior, bool], Behavior]:
    """A behaviour wrapper that makes ``principal`` the caller and hands the behaviour its
    request(s), raising the error of a request the guard refused."""

    def admit(request: Any) -> Any:
        # Set here rather than in intercept_service so that it does not depend on gRPC
        # running the behaviour in the interceptor's context (it does, in grpcio 1.85).
        set_principal(principal)
        structlog.contextvars.bind_contextvars(
            account_id=principal.account_id, key_id=principal.key_id
        )
        if principal.agent_id is not None:  # an agent token ("token:<jti>" is its key_id)
            structlog.contextvars.bind_contextvars(agent_id=principal.agent_id)
        if request_streaming:
            return _admitted(request)
        if isinstance(request, Refusal):
            raise request.error
        return request

    def wrap(behavior: Behavior, streaming: bool) -> Behavior:
        if streaming:

            async def stream_behavior(
                request: Any, context: aio.ServicerContext
            ) -> AsyncIterator[Any]:
                async for item in _iterate(behavior(admit(request), context)):
                    yield item

            return stream_behavior

        async def unary_behavior(request: Any, context: aio.ServicerContext) -> Any:
            return await behavior(admit(request), context)

        return unary_behavior

    return wrap


def _failing(error: Exception) -> Callable[[Behavior, bool], Behavior]:
    """A behaviour wrapper that raises ``error`` without calling the behaviour."""

    def wrap(behavior: Behavior, streaming: bool) -> Behavior:
        if streaming:

            async def stream_behavior(
                request: Any, context: aio.ServicerContext
            ) -> AsyncIterator[Any]:
                raise error
                yield  # an async generator, as gRPC expects of a streaming behaviour

            return stream_behavior

        async def unary_behavior(request: Any, context: aio.ServicerContext) -> Any:
            raise error

        return unary_behavior

    return wrap


async def _admitted(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A request stream that raises the error of the first refused message."""
    async for request in requests:
        if isinstance(request, Refusal):
            raise request.error
        yield request
