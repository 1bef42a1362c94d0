"""Server interceptors: authentication, and the one that binds the request id, logs each
RPC and maps domain errors to status codes."""

from __future__ import annotations

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

from goalflow_common.auth import OPEN_PREFIXES, KeyStore, Principal, roles_for, set_principal
from goalflow_common.errors import DomainError, PermissionDenied, Unauthenticated

log = structlog.get_logger("goalflow.rpc")

REQUEST_ID_KEY = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Behavior = Callable[..., Any]


MAX_DETAILS = 1024  # characters of error details sent to the caller


def _metadata(details: grpc.HandlerCallDetails) -> dict[str, str]:
    return {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}


def _rewrap(handler: grpc.RpcMethodHandler, wrap: Callable[[Behavior, bool], Behavior]):
    """A copy of ``handler`` whose behaviour is ``wrap(behaviour, response_streaming)``."""
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
        request_deserializer=handler.request_deserializer,
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

        def wrap(behavior: Behavior, streaming: bool) -> Behavior:
            if streaming:

                async def stream_behavior(request: Any, context: aio.ServicerContext):
                    start = _begin(context)
                    try:
                        async for item in _iterate(behavior(request, context)):
                            yield item
                    except Exception as exc:
                        await _fail(context, method, exc, start)
                    else:
                        _end(context, method, start)

                return stream_behavior

            async def unary_behavior(request: Any, context: aio.ServicerContext):
                start = _begin(context)
                try:
                    response = await behavior(request, context)
                except Exception as exc:
                    await _fail(context, method, exc, start)
                else:
                    _end(context, method, start)
                    return response

            return unary_behavior

        def _begin(context: aio.ServicerContext) -> float:
            structlog.contextvars.bind_contextvars(request_id=request_id, method=method)
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
            return time.perf_counter()

        return _rewrap(handler, wrap)


def _end(context: aio.ServicerContext, method: str, start: float) -> None:
    code = context.code() or grpc.StatusCode.OK
    log.info("rpc", code=_code_name(code), duration_ms=_ms(start))


async def _fail(context: aio.ServicerContext, method: str, exc: Exception, start: float):
    if isinstance(exc, DomainError):
        log.info("rpc", code=exc.code.name, duration_ms=_ms(start), error=exc.message)
        # Details travel in a header, and clients refuse headers over 8 KB (the caller would
        # see RESOURCE_EXHAUSTED instead of the error): cap what an error may echo.
        message = exc.message if len(exc.message) <= MAX_DETAILS else (
            exc.message[:MAX_DETAILS - 1] + "…")
        await context.abort(exc.code, message)
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
    """Checks the bearer key and the role on every RPC but health, and makes the caller
    available to handlers through :func:`goalflow_common.auth.current_principal`."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        roles = roles_for(details.method)
        if handler is None or roles is None:
            return handler
        header = _metadata(details).get("authorization", "")

        def wrap(behavior: Behavior, streaming: bool) -> Behavior:
            async def check(context: aio.ServicerContext) -> Principal:
                scheme, _, key = header.partition(" ")
                if scheme.lower() != "bearer" or not key:
                    raise Unauthenticated("missing 'authorization: Bearer <key>' metadata")
                principal = await self._keys.authenticate(key.strip())
                if principal.role not in roles:
                    raise PermissionDenied(
                        f"role {principal.role.value!r} may not call {details.method}"
                    )
                set_principal(principal)
                structlog.contextvars.bind_contextvars(
                    account_id=principal.account_id, key_id=principal.key_id
                )
                return principal

            if streaming:

                async def stream_behavior(request: Any, context: aio.ServicerContext):
                    await check(context)
                    async for item in _iterate(behavior(request, context)):
                        yield item

                return stream_behavior

            async def unary_behavior(request: Any, context: aio.ServicerContext):
                await check(context)
                return await behavior(request, context)

            return unary_behavior

        return _rewrap(handler, wrap)
