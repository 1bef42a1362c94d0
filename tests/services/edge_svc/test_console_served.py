"""The web console as a real edge serves it (``console_dir``): files over HTTP/1.1 with
their caching, compression and security headers; nothing outside the table (no traversal,
no dot-file, no POST answered with a file); and the one CORS exception a served console
brings: a page of the edge's own origin may call it, another origin still may not, and an
edge serving no console makes no exception."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from edge_svc.server import EdgeServer
from edge_svc.settings import EdgeSettings
from goalflow_common.pb.goals.v1 import config_pb2
from tests.services.edge_svc.conftest import OTHER_ORIGIN, TOKEN_KEYS, edge_settings
from tests.services.edge_svc.helpers import bearer
from tests.services.tracker_svc.builders import create_goal

INDEX = b'<!doctype html><title>goalflow</title><div id="console"></div>\n'
SCRIPT = b"document.title = 'goalflow';\n" * 500
STYLE = b"a{}"  # too small for gzip to pay
LIST_GOALS = "/goals.v1.ConfigService/ListGoals"
LAST_TOUCH = config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH


@pytest.fixture
def console_dir(tmp_path: Path) -> Path:
    """A console build beside a file that must stay private."""
    (tmp_path / "secret.txt").write_bytes(b"not for browsers")
    built = tmp_path / "console"
    (built / "embed").mkdir(parents=True)
    (built / "index.html").write_bytes(INDEX)
    (built / "console.js").write_bytes(SCRIPT)
    (built / "console.css").write_bytes(STYLE)
    (built / "embed" / "goalflow-agent.js").write_bytes(b"/* embed */")
    (built / ".hidden").write_bytes(b"dot-file")
    (built / ".env").write_bytes(b"GOALFLOW_SERVICE_API_KEY=gf_nope")
    return built


@pytest.fixture
async def site_edge(console_dir: Path) -> AsyncIterator[str]:
    """An edge serving ``console_dir`` with no service behind it (files need none)."""
    server = EdgeServer(EdgeSettings(
        http_port=0, config_address="127.0.0.1:1", tracker_address="127.0.0.1:1",
        export_address="127.0.0.1:1", token_keys=TOKEN_KEYS, shutdown_grace_s=1.0,
        console_dir=str(console_dir)))
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


@pytest.fixture
async def console_edge(edge, console_dir: Path) -> AsyncIterator[EdgeServer]:
    """An edge serving ``console_dir`` in front of the `edge` fixture's real services."""
    server = EdgeServer(edge_settings(edge.stack, edge.export_address,
                                      console_dir=str(console_dir)))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def session() -> aiohttp.ClientSession:
    """A client that shows the bytes as sent (no transparent gunzip)."""
    return aiohttp.ClientSession(auto_decompress=False)


async def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """``GET target`` sent byte for byte (HTTP clients normalise ``/../`` away): the
    status and the body."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nhost: {host}:{port}\r\n"
                     "connection: close\r\n\r\n".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_root_and_files_are_served_with_type_etag_and_security_headers(site_edge):
    async with session() as client:
        async with client.get(f"{site_edge}/", headers={"accept-encoding": "identity"}) as r:
            assert r.status == 200
            assert await r.read() == INDEX
            assert r.headers["content-type"] == "text/html; charset=utf-8"
            csp = r.headers["content-security-policy"]
            for directive in ("default-src 'self'", "script-src 'self'",
                              "connect-src 'self'", "frame-ancestors 'none'"):
                assert directive in csp
            assert "unsafe-eval" not in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert r.headers["cache-control"] == "no-cache"
            assert "Accept-Encoding" in r.headers.getall("vary")
            root_etag = r.headers["etag"]
        async with client.get(f"{site_edge}/index.html",
                              headers={"accept-encoding": "identity"}) as r:
            assert await r.read() == INDEX and r.headers["etag"] == root_etag
        async with client.get(f"{site_edge}/embed/goalflow-agent.js") as r:
            assert r.status == 200
            assert r.headers["content-type"] == "text/javascript; charset=utf-8"
            assert await r.read() == b"/* embed */"


async def test_head_answers_the_headers_of_get_without_a_body(site_edge):
    async with session() as client:
        async with client.head(f"{site_edge}/console.js",
                               headers={"accept-encoding": "identity"}) as r:
            assert r.status == 200
            assert int(r.headers["content-length"]) == len(SCRIPT)
            assert r.headers["etag"]
            assert r.headers["x-content-type-options"] == "nosniff"
            assert await r.read() == b""


async def test_a_current_copy_is_answered_304_without_a_body(site_edge):
    async with session() as client:
        async with client.get(f"{site_edge}/console.js") as r:
            etag = r.headers["etag"]
        async with client.get(f"{site_edge}/console.js",
                              headers={"if-none-match": etag}) as r:
            assert r.status == 304
            assert await r.read() == b""
            assert r.headers["etag"] == etag
            assert "content-security-policy" in r.headers
        async with client.get(f"{site_edge}/console.js",
                              headers={"if-none-match": '"stale"'}) as r:
            assert r.status == 200
            assert r.headers["etag"] == etag


async def test_gzip_only_when_the_browser_takes_it_and_it_is_smaller(site_edge):
    async with session() as client:
        async with client.get(f"{site_edge}/console.js",
                              headers={"accept-encoding": "gzip, deflate, br"}) as r:
            assert r.headers["content-encoding"] == "gzip"
            body = await r.read()
            assert int(r.headers["content-length"]) == len(body) < len(SCRIPT)
            assert gzip.decompress(body) == SCRIPT
        for refusing in ("identity", "br", "gzip;q=0"):
            async with client.get(f"{site_edge}/console.js",
                                  headers={"accept-encoding": refusing}) as r:
                assert "content-encoding" not in r.headers, refusing
                assert await r.read() == SCRIPT
        async with client.get(f"{site_edge}/console.css",
                              headers={"accept-encoding": "gzip"}) as r:
            assert "content-encoding" not in r.headers  # 3 bytes: gzip would be larger
            assert await r.read() == STYLE


@pytest.mark.parametrize("target", [
    "/../secret.txt", "/embed/../../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt",
    "/.hidden", "/.env", "/embed/", "/nope.js", "//secret.txt",
])
async def test_nothing_outside_the_build_and_no_dot_file_is_served(site_edge, target):
    status, body = await raw_get(site_edge, target)
    assert status == 404, target
    assert b"not for browsers" not in body and b"dot-file" not in body
    assert b"gf_nope" not in body


async def test_a_post_to_a_console_path_is_not_answered_with_the_file(site_edge):
    async with session() as client:
        for path in ("/", "/index.html", "/console.js"):
            async with client.post(f"{site_edge}{path}", data=b"{}",
                                   headers={"content-type": "application/json"}) as r:
                assert r.status == 404, path
                assert await r.read() == b"not found\n"
                assert "content-security-policy" not in r.headers


async def test_the_console_calls_its_own_edge_and_other_origins_are_still_refused(
        console_edge, edge):
    """A page served by the edge posts with ``Origin`` = its own host: not CORS, so the call
    goes through although the origin is on no allow-list; a page elsewhere is refused as
    before, and a name for the same address is another origin."""
    await create_goal(edge.stack, edge.tenant, "Checkout", model=LAST_TOUCH)
    url = f"http://127.0.0.1:{console_edge.port}"
    async with aiohttp.ClientSession() as client:
        async with client.post(f"{url}{LIST_GOALS}", json={}, headers={
                **bearer(edge.tenant.admin), "origin": url}) as r:
            assert r.status == 200, await r.text()
            assert [g["goal"]["name"] for g in (await r.json())["goals"]] == ["Checkout"]
            assert "access-control-allow-origin" not in r.headers
        for origin in (OTHER_ORIGIN, f"http://127.0.0.1:{console_edge.port + 1}",
                       f"http://localhost:{console_edge.port}", "null"):
            async with client.post(f"{url}{LIST_GOALS}", json={}, headers={
                    **bearer(edge.tenant.admin), "origin": origin}) as r:
                assert r.status == 403, origin
                assert not [k for k in r.headers if k.lower().startswith("access-control")]
        # A cross-origin preflight for the console's own host is not needed and not answered
        # as one: the browser sends none for same-origin calls.
        async with client.options(f"{url}{LIST_GOALS}", headers={
                "origin": OTHER_ORIGIN, "access-control-request-method": "POST"}) as r:
            assert r.status == 403


async def test_without_a_console_the_edge_makes_no_same_origin_exception(edge):
    url = edge.url
    async with aiohttp.ClientSession() as client:
        async with client.post(f"{url}{LIST_GOALS}", json={}, headers={
                **bearer(edge.tenant.admin), "origin": url}) as r:
            assert r.status == 403
        async with client.get(f"{url}/") as r:
            assert r.status == 404
        async with client.get(f"{url}/index.html") as r:
            assert r.status == 404
