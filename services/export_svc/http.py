"""The HTTP server behind download links: ``GET /exports/{export_id}/download``.

Statuses: 200 streams the zip; 403 for a malformed, tampered or foreign link; 410 for an
expired link or a file that is gone; 404 for an unknown export (valid signature only, so a
forged link cannot probe which exports exist); 405 for other methods. Nothing else is
routed (no listing), and errors never show internals.
"""

from __future__ import annotations

import inspect
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import structlog
from aiohttp import web

from export_svc.links import BadSignature, LinkExpired, LinkSigner

log = structlog.get_logger(__name__)


class StoredFile(Protocol):
    """An opened stored export file (``files.open``). ``chunks`` is either a method
    returning an async iterator of bytes or the async iterator itself."""

    account_id: str
    size: int
    filename: str

    def chunks(self) -> AsyncIterator[bytes]: ...


class FileSource(Protocol):
    async def open(self, file_id: str) -> StoredFile | None:
        """The stored file, or None if it does not exist (never built or deleted)."""
        ...


class ExportRef(Protocol):
    """What the HTTP layer needs from an export job."""

    account_id: str
    file_id: str | None
    """None when the job has no file (not built yet, or the file was deleted)."""


JobsLookup = Callable[[str], Awaitable[ExportRef | Mapping[str, Any] | None]]
"""``await jobs_lookup(export_id)``: the job (an ``ExportRef`` or a job document with
``account_id`` and ``file_id`` keys), or None if no such export."""

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
        owner, file_id = _job_fields(job)
        if owner != account:
            log.warning("download_refused", export_id=export_id, reason="foreign_account")
            return _text(403, "Forbidden: this link does not grant access to this export.")
        stored = await files.open(file_id) if file_id else None
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


def _job_fields(job: ExportRef | Mapping[str, Any]) -> tuple[Any, Any]:
    if isinstance(job, Mapping):
        return job.get("account_id"), job.get("file_id")
    return job.account_id, job.file_id


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
    source = stored.chunks
    chunks = source() if callable(source) else source
    if inspect.isawaitable(chunks):
        chunks = await chunks
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
async def _errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except (web.HTTPException, _StreamBroken):
        raise
    except Exception:
        log.exception("download_error", path=request.path)
        return _text(500, "Internal server error.")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    # Also on aiohttp's own 404/405 pages.
    for name, value in _COMMON_HEADERS.items():
        response.headers.setdefault(name, value)
    # aiohttp's default names the Python and aiohttp versions: nothing to match exploits to.
    response.headers["Server"] = "goalflow"


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n")


async def start_http(
    app: web.Application, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on host:port (0 picks a free port), over HTTPS only when an
    ``ssl_context`` is given; returns the runner and the port."""
    # No access log: the query string is a bearer credential (the signature).
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    return runner, bound_port


async def stop_http(runner: web.AppRunner) -> None:
    await runner.cleanup()
