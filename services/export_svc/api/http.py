"""The HTTP server behind download links: ``GET /exports/{export_id}/download``.

Statuses: 200 streams the zip; 403 for a malformed, tampered or foreign link; 410 for an
expired link or a file that is gone; 404 for an unknown export (valid signature only, so a
forged link cannot probe which exports exist); 405 for other methods. Nothing else is
routed (no listing), and errors never show internals.

Hardened against clients that hold connections or send malformed bytes (``start_http``):
a connection must finish each request head within ``header_timeout_s`` (slow-loris), at
most ``max_connections`` are open at once (more get a bare 503 and are closed), every
response says ``Server: goalflow`` (also aiohttp's own parser-error 400s), and a request
the parser refuses gets a fixed ``400 Bad request.`` and one structured log line naming the
error class, never the request's bytes (they can hold a link's signature).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler

from export_svc.domain.links import BadSignature, LinkExpired, LinkSigner

log = structlog.get_logger(__name__)


class StoredFile(Protocol):
    """An opened stored export file (``files.open``); ``chunks()`` streams its bytes."""

    account_id: str
    size: int
    filename: str

    def chunks(self) -> AsyncIterator[bytes]: ...


class FileSource(Protocol):
    async def open(self, file_id: str) -> StoredFile | None:
        """The stored file, or None if it does not exist (never built or deleted)."""
        ...


class ExportRef(Protocol):
    """What the HTTP layer needs from an export job (``ExportJob`` has it)."""

    @property
    def account_id(self) -> str: ...

    @property
    def file_id(self) -> str | None:
        """None when the job has no file (not built yet, or the file was deleted)."""
        ...


JobsLookup = Callable[[str], Awaitable[ExportRef | None]]
"""``await jobs_lookup(export_id)``: the job, or None if no such export."""

SERVER_NAME = "goalflow"
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")
_COMMON_HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


def create_app(signer: LinkSigner, files: FileSource, jobs_lookup: JobsLookup) -> web.Application:
    app = web.Application(middlewares=[_errors])
    app.on_response_prepare.append(_security_headers)

    async def download(request: web.Request) -> web.StreamResponse:
        export_id = request.match_info["export_id"]
        query = request.query
        try:
            signer.verify(
                export_id,
                query.get("account", ""),
                query.get("expires", ""),
                query.get("sig", ""),
            )
        except BadSignature:
            log.info("download_refused", export_id=export_id, reason="bad_signature")
            return _text(403, "Forbidden: this download link is invalid or has been altered.")
        except LinkExpired:
            log.info("download_refused", export_id=export_id, reason="expired")
            return _text(410, "Gone: this download link has expired.")
        account = query["account"]

        job = await jobs_lookup(export_id)
        if job is None:
            return _text(404, "Not found: no such export.")
        if job.account_id != account:
            log.warning("download_refused", export_id=export_id, reason="foreign_account")
            return _text(403, "Forbidden: this link does not grant access to this export.")
        stored = await files.open(job.file_id) if job.file_id else None
        if stored is None:
            return _text(410, "Gone: this export's file is no longer available.")
        if stored.account_id != account:
            # The job says it is this account's, the file disagrees: refuse, never leak.
            log.error("download_refused", export_id=export_id, reason="file_account_mismatch")
            return _text(403, "Forbidden: this link does not grant access to this export.")
        return await _stream(request, export_id, stored)

    # allow_head=False: HEAD gets 405 like every other method but GET.
    app.router.add_get("/exports/{export_id}/download", download, allow_head=False)
    return app


async def _stream(request: web.Request, export_id: str, stored: StoredFile) -> web.StreamResponse:
    filename = _SAFE_FILENAME.sub("_", stored.filename) or "export.zip"
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )
    response.content_length = stored.size
    chunks = stored.chunks()
    sent = 0
    try:
        await response.prepare(request)
        async for chunk in chunks:
            sent += len(chunk)
            if sent > stored.size:
                raise RuntimeError("stored file is longer than its recorded size")
            await response.write(chunk)
        if sent != stored.size:
            raise RuntimeError("stored file is shorter than its recorded size")
        await response.write_eof()
    except ConnectionResetError as exc:
        log.info("download_aborted_by_client", export_id=export_id, sent=sent)
        raise _StreamBroken from exc
    except Exception as exc:
        # Headers are out, so no error status is possible: log, then let aiohttp drop the
        # connection so the client sees a truncated download rather than a wrong file.
        log.exception("download_failed", export_id=export_id, sent=sent, size=stored.size)
        raise _StreamBroken from exc
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    log.info("download_served", export_id=export_id, size=sent)
    return response


class _StreamBroken(Exception):
    """A download failed after its headers were sent (already logged)."""


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (web.HTTPException, _StreamBroken):
        raise
    except Exception:
        log.exception("download_error", path=request.path)
        return _text(500, "Internal server error.")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    # Also on aiohttp's own 404/405 pages.
    _set_headers(response)


def _set_headers(response: web.StreamResponse) -> None:
    for name, value in _COMMON_HEADERS.items():
        response.headers.setdefault(name, value)
    # aiohttp's default names the Python and aiohttp versions: nothing to match exploits to.
    response.headers["Server"] = SERVER_NAME


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n")


async def start_http(
    app: web.Application,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    header_timeout_s: float = 5.0,
    max_connections: int = 256,
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on host:port (0 picks a free port), over HTTPS only when an
    ``ssl_context`` is given; returns the runner and the port. A connection must send each
    request head (and, with TLS, finish the handshake) within ``header_timeout_s`` and is
    closed when idle that long after a response; at most ``max_connections`` are open."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = _GuardedSite(runner, host, port, ssl_context=ssl_context,
                        header_timeout_s=header_timeout_s, max_connections=max_connections)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    return runner, bound_port


async def stop_http(runner: web.AppRunner) -> None:
    await runner.cleanup()


# Sent, then the connection closed, to a client over the connection cap: it has no request
# to answer yet, so this is written before reading anything.
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nServer: " + SERVER_NAME.encode()
         + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
_ERROR_TEXT = {400: "Bad request.", 500: "Internal server error.", 504: "Gateway timeout."}
REFUSAL_LOG_EVERY_S = 10.0  # under a flood, one line per interval with the count


class _ConnectionCap:
    """Open connections of one site, and the refusals since the last log line.

    At most one ``http_connections_refused`` line per ``REFUSAL_LOG_EVERY_S``, each with
    the count of refusals since the line before: refusals inside the quiet interval are
    flushed when it ends (a burst of 44 refusals was once logged as ``refused: 1``, the
    other 43 waiting for a refusal more than 10 s later)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._every_s = REFUSAL_LOG_EVERY_S
        self._refused = 0
        self._logged_at = -self._every_s
        self._flush_timer: asyncio.TimerHandle | None = None

    def refuse(self) -> None:
        self._refused += 1
        wait = self._logged_at + self._every_s - time.monotonic()
        if wait <= 0:
            self.flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(wait, self.flush)

    def flush(self) -> None:
        """Log the refusals not logged yet, if any."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._refused:
            log.warning("http_connections_refused", limit=self.limit, refused=self._refused)
            self._logged_at, self._refused = time.monotonic(), 0


class _Protocol(RequestHandler):
    """aiohttp's per-connection handler, with the connection cap and quiet, fixed answers
    to requests its parser refuses.

    aiohttp answers those itself (``handle_error``): with its default ``Server`` header
    naming the Python and aiohttp versions (the application's response hooks do not run
    for them), a body quoting the offending bytes, and a multi-line stdlib traceback at
    ERROR that also quotes them (a link's query string is a bearer credential)."""

    def __init__(self, manager: web.Server, *, cap: _ConnectionCap, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._cap = cap
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._cap.open >= self._cap.limit:
            self._cap.refuse()
            # A stream server (create_server, with or without TLS) hands a Transport.
            assert isinstance(transport, asyncio.Transport)
            transport.write(_BUSY)
            transport.close()
            return
        self._cap.open += 1
        self._admitted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:  # refused: aiohttp never saw it
            return
        self._admitted = False
        self._cap.open -= 1
        super().connection_lost(exc)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # Parser errors (400) arrive here, and whatever escaped the middleware: only a
        # stream that broke after its headers (_StreamBroken, logged where it happened).
        if not isinstance(exc, _StreamBroken):
            log.info("http_request_refused", status=status,
                     error=type(exc).__name__ if exc else None)
        if request.writer.output_size > 0:  # as aiohttp's: too late for an error response
            raise ConnectionError("the response had started; the connection is dropped")
        response = _text(status, _ERROR_TEXT.get(status, "Error."))
        _set_headers(response)
        response.force_close()
        return response


class _GuardedSite(web.BaseSite):
    """A TCP site serving the runner's application through ``_Protocol``.

    aiohttp has no header timeout of its own, but its keep-alive timer is started when a
    connection opens (and again after each response) and closes the connection if no
    complete request head has arrived when it fires; it is not pushed back by partial
    data, so ``keepalive_timeout`` bounds the time to send a request head (before, 300
    connections that never finished their headers all stayed open: aiohttp's default
    keep-alive is 3,630 s). Idle keep-alive connections close after the same time, which
    suits one-off downloads."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *,
                 ssl_context: ssl.SSLContext | None, header_timeout_s: float,
                 max_connections: int) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host, self._port = host, port
        self._header_timeout_s = header_timeout_s
        self._cap = _ConnectionCap(max_connections)

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        manager = self._runner.server
        assert manager is not None

        def protocol() -> _Protocol:
            # access_log=None: the query string is a bearer credential (the signature).
            return _Protocol(manager, cap=self._cap, loop=loop, access_log=None,
                             keepalive_timeout=self._header_timeout_s)

        self._server = await loop.create_server(
            protocol, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=True,
            # A TLS client is only handed to the protocol once the handshake is done.
            ssl_handshake_timeout=self._header_timeout_s if self._ssl_context else None,
        )

    async def stop(self) -> None:
        self._cap.flush()  # the last refusals, rather than a timer firing after shutdown
        await super().stop()
