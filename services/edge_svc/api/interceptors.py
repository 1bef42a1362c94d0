"""connectrpc interceptors of the edge. Both are metadata interceptors placed first, so
connectrpc runs them before it reads or parses the request body.

- :class:`CallLog` binds a request id (the caller's valid ``x-request-id`` or a new one)
  for the call's log lines and its forwarded metadata, echoes it in the response headers,
  and logs one JSON line per call with its code and duration;
- :class:`CallerCheck` refuses a missing or malformed credential and a bad token
  (:mod:`edge_svc.domain.caller`) before the body costs anything.
"""

from __future__ import annotations

import contextvars
import re
import time
import uuid
from typing import Any

import structlog
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from edge_svc.domain.caller import check_caller
from goalflow_common.errors import DomainError
from goalflow_common.tokens import TokenAuthority

log = structlog.get_logger("goalflow.edge")

REQUEST_ID = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("edge_request_id")


def method_path(ctx: RequestContext[Any, Any]) -> str:
    return f"/{ctx.method.service_name}/{ctx.method.name}"


def to_connect(error: DomainError) -> ConnectError:
    return ConnectError(Code[error.code], error.message)


class CallLog:
    async def on_start(self, ctx: RequestContext[Any, Any]) -> float:
        given = ctx.request_headers.get(REQUEST_ID, "")
        request_id = given if _REQUEST_ID_RE.fullmatch(given) else uuid.uuid4().hex
        request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id, method=method_path(ctx))
        ctx.response_headers[REQUEST_ID] = request_id
        return time.perf_counter()

    async def on_end(self, token: float, ctx: RequestContext[Any, Any],
                     error: Exception | None) -> None:
        code = "OK" if error is None else (
            error.code.name if isinstance(error, ConnectError) else "UNKNOWN")
        duration_ms = round((time.perf_counter() - token) * 1000, 3)
        if error is None or isinstance(error, ConnectError):
            log.info("rpc", code=code, duration_ms=duration_ms,
                     error=None if error is None else error.message)
        else:
            log.error("rpc_failed", duration_ms=duration_ms, exc_info=error)


class CallerCheck:
    def __init__(self, tokens: TokenAuthority) -> None:
        self._tokens = tokens

    async def on_start(self, ctx: RequestContext[Any, Any]) -> None:
        try:
            principal = check_caller(ctx.request_headers.get("authorization"),
                                     method_path(ctx), self._tokens)
        except DomainError as refused:
            raise to_connect(refused) from None
        if principal is not None:
            structlog.contextvars.bind_contextvars(account_id=principal.account_id,
                                                   key_id=principal.key_id)
            if principal.agent_id is not None:  # an agent token: whose tab made the call
                structlog.contextvars.bind_contextvars(agent_id=principal.agent_id)

    async def on_end(self, token: None, ctx: RequestContext[Any, Any],
                     error: Exception | None) -> None:
        return None
