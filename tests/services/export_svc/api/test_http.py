"""The download endpoint over a real aiohttp server on loopback with a real client.

Files and jobs come from small in-memory stand-ins for the file store and job lookup (the
HTTP layer's own inputs); the signer and clock are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import os
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import structlog

from export_svc.api import http as export_http
from export_svc.api.http import create_app, start_http, stop_http
from export_svc.domain.jobs import JOB_TTL
from export_svc.domain.links import LINK_TTL, LinkSigner
from export_svc.domain.model import ExportJob, ExportState
from export_svc.store.files import MongoFileStore
from export_svc.store.jobs import MongoJobStore

SECRET = b"k" * 32
ONE_SECOND = dt.timedelta(seconds=1)


def _zip_bytes(rows: int = 3000) -> bytes:
    """A real zip holding a CSV with incompressible noise, so it spans many chunks."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        lines = ["Timestamp,Ticket ID"] + [
            f"2026-06-01T12:00:00Z,{os.urandom(8).hex()}" for _ in range(rows)
        ]
        zf.writestr("export.csv", "\n".join(lines) + "\n")
    return buf.getvalue()


@dataclass
class MemFile:
    account_id: str
    filename: str
    data: bytes
    chunk_size: int = 4096
    gate: asyncio.Event | None = None  # if set, the stream pauses after its first chunk
    fail_after_chunks: int | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    async def chunks(self) -> AsyncIterator[bytes]:
        for n, start in enumerate(range(0, len(self.data), self.chunk_size)):
            if self.fail_after_chunks is not None and n == self.fail_after_chunks:
                raise OSError("file store went away")
            yield self.data[start : start + self.chunk_size]
            if n == 0 and self.gate is not None:
                await self.gate.wait()


class MemFiles:
    def __init__(self) -> None:
        self.by_id: dict[str, MemFile] = {}

    async def open(self, file_id: str) -> MemFile | None:
        return self.by_id.get(file_id)


@dataclass
class Job:
    account_id: str
    file_id: str | None


@dataclass
class Env:
    base: str
    signer: LinkSigner
    files: MemFiles
    session: aiohttp.ClientSession
    jobs: dict[str, Job] = field(default_factory=dict)
    lookup_error: Exception | None = None

    def add_export(self, account_id: str, **file_kw) -> tuple[str, MemFile]:
        export_id, file_id = uuid.uuid4().hex, uuid.uuid4().hex
        stored = MemFile(
            account_id=account_id, filename="goal-export.zip", data=_zip_bytes(), **file_kw
        )
        self.files.by_id[file_id] = stored
        self.jobs[export_id] = Job(account_id=account_id, file_id=file_id)
        return export_id, stored

    def link(self, export_id: str, account_id: str) -> str:
        return self.signer.url(export_id, account_id, self.signer.new_expiry())


@pytest.fixture
async def env(clock) -> AsyncIterator[Env]:
    files = MemFiles()
    holder: list[Env] = []

    async def lookup(export_id: str) -> Job | None:
        if holder[0].lookup_error is not None:
            raise holder[0].lookup_error
        return holder[0].jobs.get(export_id)

    # The server's signer never builds URLs, so its base_url is irrelevant to verification.
    app = create_app(LinkSigner(SECRET, "http://unused.invalid", clock), files, lookup)
    runner, port = await start_http(app, "127.0.0.1", 0)
    assert port > 0
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        holder.append(Env(base, LinkSigner(SECRET, base, clock), files, session))
        try:
            yield holder[0]
        finally:
            await stop_http(runner)


def _tamper(url: str, which: str) -> str:
    """Change one character of one part of a link (to another character of its kind)."""
    path, query = url.split("?")
    params = dict(p.split("=") for p in query.split("&"))
    prefix, export_id = path.rsplit("/download", 1)[0].rsplit("/", 1)

    def flip(text: str) -> str:
        last = text[-1]
        new = ("1" if last == "0" else "0") if last.isdigit() else ("b" if last == "a" else "a")
        return text[:-1] + new

    if which == "export":
        export_id = flip(export_id)
    else:
        params[which] = flip(params[which])
    return f"{prefix}/{export_id}/download?" + "&".join(f"{k}={v}" for k, v in params.items())


async def _fetch(env: Env, url: str, method: str = "GET") -> tuple[int, bytes, dict]:
    async with env.session.request(method, url) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


def _no_file_bytes(body: bytes, stored: MemFile) -> None:
    assert len(body) < 200
    assert stored.data[:32] not in body and b"PK" not in body


async def test_valid_link_downloads_exact_bytes_with_headers(env):
    export_id, stored = env.add_export("acct-a")
    stored.filename = 'weird "name"\r\n.zip'
    status, body, headers = await _fetch(env, env.link(export_id, "acct-a"))
    assert status == 200
    assert body == stored.data
    assert stored.size > 10 * stored.chunk_size  # really went out in many chunks
    assert headers["Content-Type"] == "application/zip"
    assert headers["Content-Length"] == str(stored.size)
    # Quotes and CR/LF cannot break out of the header.
    assert headers["Content-Disposition"] == 'attachment; filename="weird__name___.zip"'
    assert headers["Cache-Control"] == "private, no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.read("export.csv").startswith(b"Timestamp,Ticket ID\n")


async def test_download_is_streamed_not_buffered(env):
    """The first chunk reaches the client while the file store is still held back."""
    gate = asyncio.Event()
    export_id, stored = env.add_export("acct-a", gate=gate)
    async with env.session.get(env.link(export_id, "acct-a")) as resp:
        assert resp.status == 200
        first = await asyncio.wait_for(resp.content.readexactly(stored.chunk_size), 5)
        assert not gate.is_set()
        gate.set()
        rest = await resp.read()
    assert first + rest == stored.data


@pytest.mark.parametrize("which", ["sig", "export", "account", "expires"])
async def test_one_changed_character_is_forbidden(env, which):
    export_id, stored = env.add_export("acct-a")
    good = env.link(export_id, "acct-a")
    bad = _tamper(good, which)
    assert bad != good
    status, body, headers = await _fetch(env, bad)
    assert status == 403
    assert body.startswith(b"Forbidden")
    assert headers["Content-Type"].startswith("text/plain")
    _no_file_bytes(body, stored)


@pytest.mark.parametrize("query", ["", "?account=acct-a", "?account=acct-a&expires=x&sig=y"])
async def test_missing_or_malformed_parameters_are_forbidden(env, query):
    export_id, stored = env.add_export("acct-a")
    status, body, _ = await _fetch(env, f"{env.base}/exports/{export_id}/download{query}")
    assert status == 403
    _no_file_bytes(body, stored)


async def test_expired_link_is_gone(env, clock):
    export_id, stored = env.add_export("acct-a")
    url = env.link(export_id, "acct-a")
    clock.advance(LINK_TTL - ONE_SECOND)
    assert (await _fetch(env, url))[0] == 200
    clock.advance(ONE_SECOND)
    status, body, _ = await _fetch(env, url)
    assert status == 410
    assert b"expired" in body
    _no_file_bytes(body, stored)
    # Once the file and job are cleaned up after expiry, the answer stays 410.
    env.files.by_id.clear()
    env.jobs.clear()
    status, body, _ = await _fetch(env, url)
    assert status == 410
    _no_file_bytes(body, stored)


async def test_deleted_file_is_gone(env):
    export_id, stored = env.add_export("acct-a")
    env.files.by_id.clear()
    status, body, _ = await _fetch(env, env.link(export_id, "acct-a"))
    assert status == 410
    _no_file_bytes(body, stored)


async def test_another_accounts_link_is_forbidden(env):
    export_a, stored_a = env.add_export("acct-a")
    env.add_export("acct-b")
    # Validly signed, but for account B, used on account A's export.
    status, body, _ = await _fetch(env, env.link(export_a, "acct-b"))
    assert status == 403
    _no_file_bytes(body, stored_a)
    # A job/file disagreement about the owner is refused too.
    stored_a.account_id = "acct-b"
    status, body, _ = await _fetch(env, env.link(export_a, "acct-a"))
    assert status == 403
    _no_file_bytes(body, stored_a)


async def test_unknown_export_with_valid_signature_is_not_found(env):
    status, body, _ = await _fetch(env, env.link(uuid.uuid4().hex, "acct-a"))
    assert status == 404
    assert body.startswith(b"Not found")


async def test_no_listing_anywhere(env):
    export_id, stored = env.add_export("acct-a")
    query = env.link(export_id, "acct-a").split("?")[1]
    for path in [
        "/",
        "/exports",
        "/exports/",
        f"/exports/{export_id}",
        f"/exports/{export_id}/",
        f"/exports/{export_id}/download/",
    ]:
        status, body, headers = await _fetch(env, f"{env.base}{path}?{query}")
        assert status == 404, path
        assert headers["X-Content-Type-Options"] == "nosniff"
        _no_file_bytes(body, stored)
        assert export_id.encode() not in body


@pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_are_not_allowed(env, method):
    export_id, stored = env.add_export("acct-a")
    status, body, headers = await _fetch(env, env.link(export_id, "acct-a"), method)
    assert status == 405
    assert headers["Allow"] == "GET"
    _no_file_bytes(body, stored)


async def test_handler_error_is_generic_500_and_logged(env):
    export_id, _ = env.add_export("acct-a")
    env.lookup_error = RuntimeError("mongodb://admin:hunter2@db failed")
    with structlog.testing.capture_logs() as logs:
        status, body, _ = await _fetch(env, env.link(export_id, "acct-a"))
    assert status == 500
    assert body == b"Internal server error.\n"
    assert any(e["event"] == "download_error" and e["log_level"] == "error" for e in logs)


async def test_store_failure_mid_stream_truncates_the_download(env):
    """Headers are already out: the client must see a broken transfer, not a short file."""
    export_id, _ = env.add_export("acct-a", fail_after_chunks=2)
    with structlog.testing.capture_logs() as logs:
        async with env.session.get(env.link(export_id, "acct-a")) as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
    assert any(e["event"] == "download_failed" for e in logs)


async def test_serves_a_file_from_the_real_file_store(mongo, db_prefix, clock):
    """Wired to the real FileStore and a job in the real job store: the bytes saved
    chunk by chunk come back whole, and a foreign account still gets nothing."""
    db = mongo[f"{db_prefix}_export"]
    store = MongoFileStore(db, clock=clock, chunk_bytes=8 * 1024)
    data = _zip_bytes(rows=4000)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 5000):
            yield data[start : start + 5000]

    expire_at = clock.now() + LINK_TTL
    await store.save("file-1", "acct-a", pieces(), expire_at=expire_at, filename="goal.zip")
    jobs = MongoJobStore(db)
    now = clock.now()
    await jobs.insert(ExportJob(
        id="exp-1", account_id="acct-a", goal_id="goal-1", goal_name="Goal",
        start_date=dt.date(2026, 5, 1), end_date=dt.date(2026, 5, 31),
        recipient_email="admin@example.com", create_time=now, update_time=now,
        available_at=now, expire_at=now + JOB_TTL, state=ExportState.MAILED,
        file_id="file-1",
    ))

    signer = LinkSigner(SECRET, "http://unused.invalid", clock)
    runner, port = await start_http(create_app(signer, store, jobs.get_by_id), "127.0.0.1", 0)
    try:
        links = LinkSigner(SECRET, f"http://127.0.0.1:{port}", clock)
        async with aiohttp.ClientSession() as session:
            async with session.get(links.url("exp-1", "acct-a", expire_at)) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Disposition"] == 'attachment; filename="goal.zip"'
                assert await resp.read() == data
            async with session.get(links.url("exp-1", "acct-b", expire_at)) as resp:
                assert resp.status == 403
                assert data[:32] not in await resp.read()
    finally:
        await stop_http(runner)


# --- connections that hold the server, and requests its parser refuses (issue 10 item 4) ---


@pytest.fixture
async def serve(env, clock) -> AsyncIterator:
    """Starts another download server on the ``env`` exports with the given limits."""
    runners: list = []

    async def start(**limits) -> int:
        app = create_app(LinkSigner(SECRET, "http://unused.invalid", clock), env.files,
                         lambda export_id: _lookup(env, export_id))
        runner, port = await start_http(app, "127.0.0.1", 0, **limits)
        runners.append(runner)
        return port

    try:
        yield start
    finally:
        for runner in runners:
            await stop_http(runner)


async def _lookup(env: Env, export_id: str) -> Job | dict | None:
    return env.jobs.get(export_id)


def _relink(env: Env, export_id: str, port: int) -> str:
    return env.link(export_id, "acct-a").replace(env.base, f"http://127.0.0.1:{port}")


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


async def test_slow_header_connections_are_closed_after_the_header_timeout(env, serve):
    """Slow-loris: connections that trickle a request head byte by byte are closed once the
    header timeout has passed, while a complete request is still served."""
    port = await serve(header_timeout_s=0.5)
    export_id, stored = env.add_export("acct-a")
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]

    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"GET /exports/x/download?")
        with contextlib.suppress(OSError):
            while True:  # one more byte of the query every 50 ms, never the end of it
                await asyncio.sleep(0.05)
                writer.write(b"a")
                await writer.drain()

    tricklers = [asyncio.create_task(trickle(writer)) for _, writer in conns]
    try:
        async with asyncio.timeout(15):  # generous: the timeout is 0.5 s
            answers = await asyncio.gather(*(_closed_by_server(r) for r, _ in conns))
        assert answers == [b""] * len(conns)  # closed without an answer
        status, body, _ = await _fetch(env, _relink(env, export_id, port))
        assert status == 200 and body == stored.data
    finally:
        for task in tricklers:
            task.cancel()
        await asyncio.gather(*tricklers, return_exceptions=True)
        for _, writer in conns:
            writer.close()


async def test_connections_over_the_cap_get_503_and_are_closed(env, serve, monkeypatch):
    monkeypatch.setattr(export_http, "REFUSAL_LOG_EVERY_S", 2.0)
    port = await serve(max_connections=4, header_timeout_s=30)
    export_id, stored = env.add_export("acct-a")
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
    for _, writer in held:
        writer.write(b"GET /exports/")  # an unfinished request head holds its slot
    try:
        with structlog.testing.capture_logs() as logs:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            async with asyncio.timeout(10):
                answer = await _closed_by_server(reader)
            writer.close()
        head = answer.split(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 503 ")
        assert b"Server: goalflow" in head and b"aiohttp" not in head
        assert [e["event"] for e in logs] == ["http_connections_refused"]
        assert logs[0]["limit"] == 4 and logs[0]["refused"] == 1

        # A burst inside the quiet interval is logged once it ends, with its count.
        with structlog.testing.capture_logs() as logs:
            for _ in range(5):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                async with asyncio.timeout(10):
                    assert (await _closed_by_server(reader)).startswith(b"HTTP/1.1 503 ")
                writer.close()
            assert logs == []
            for _ in range(200):  # the flush is due within 2 s; wait up to 10 s
                if logs:
                    break
                await asyncio.sleep(0.05)
        assert [(e["event"], e["refused"]) for e in logs] == [("http_connections_refused", 5)]

        held[0][1].close()
        # The freed slot is taken by the next client (once the server saw the close).
        async with asyncio.timeout(10):
            while True:
                try:
                    status, body, _ = await _fetch(env, _relink(env, export_id, port))
                except aiohttp.ClientError:  # still refused: the close is on its way
                    status = 503
                if status != 503:
                    break
                await asyncio.sleep(0.05)
        assert status == 200 and body == stored.data
    finally:
        for _, writer in held:
            writer.close()

SIG = "5ec7e75161abcdef"  # stands for a link signature: must never reach a log line
MALFORMED = {
    "http version 7.0": f"GET /exports/x/download?account=a&expires=1&sig={SIG} HTTP/7.0\r\n"
                        "Host: x\r\n\r\n",
    "20 KB request line": f"GET /exports/x/download?sig={SIG}{'S' * 20000} HTTP/1.1\r\n"
                          "Host: x\r\n\r\n",
    "20 KB header": f"GET /?sig={SIG} HTTP/1.1\r\nHost: x\r\nX-Pad: {SIG}{'a' * 20000}\r\n\r\n",
    "300 headers": f"GET /?sig={SIG} HTTP/1.1\r\nHost: x\r\n"
                   + "".join(f"X-{n}: {SIG}\r\n" for n in range(300)) + "\r\n",
    "content-length and chunked": f"POST /exports/x/download?sig={SIG} HTTP/1.1\r\nHost: x\r\n"
                                  "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "0\r\n\r\n",
    "bad chunk": f"GET /exports/x/download?sig={SIG} HTTP/1.1\r\nHost: x\r\n"
                 f"Transfer-Encoding: chunked\r\n\r\nZZ{SIG}\r\nhello\r\n0\r\n\r\n",
    "not http": f"\x00\x01{SIG} garbage\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_request_the_parser_refuses_gets_a_plain_400_and_one_json_log_line(
        env, raw, capsys, caplog, json_logs):
    port = int(env.base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw.encode("latin-1"))
    async with asyncio.timeout(10):
        answer = await _closed_by_server(reader)
    writer.close()
    written = capsys.readouterr().err
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and head.split(b" ", 2)[1] == b"400", answer[:300]
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    assert headers[b"Server"] == b"goalflow"  # not Python/3.11 aiohttp/3.x
    assert headers[b"X-Content-Type-Options"] == b"nosniff"
    assert body == b"Bad request.\n"  # aiohttp's own body quotes the offending bytes
    [line] = written.splitlines()
    logged = json.loads(line)
    assert (logged["event"], logged["status"], logged["level"]) == (
        "http_request_refused", 400, "info")
    assert logged["error"]  # the parser's error class, e.g. LineTooLong
    assert SIG not in line and "garbage" not in line and "Host" not in line
    # Nothing through the standard library either (aiohttp's traceback at ERROR).
    assert [r for r in caplog.records if r.name.startswith("aiohttp")] == []
