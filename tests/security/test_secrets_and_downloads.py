"""Secrets at rest and the download endpoint, on the real services and database: API keys
are stored hashed and never logged, secret comparisons are constant-time, download links
are signed and expire, and the HTTP server sends no listing, no stack trace, no file to a
traversal path, and the right headers with a good download."""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import hashlib
import inspect
import io
import re
import textwrap
import uuid
import zipfile
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import structlog
from bson import json_util

from export_svc.domain.links import LINK_TTL, LinkSigner
from goalflow_common.auth import KeyStore, Role
from goalflow_common.pb.goals.v1 import config_pb2, export_pb2
from tests.security.conftest import JUNE_1, World, wait_mailed
from tests.security.rpcs import invoke
from tests.services.config_svc.helpers import goal_request

SAFE_DISPOSITION = re.compile(r'^attachment; filename="[A-Za-z0-9._-]{1,200}"$')
SHORT_BODY = 200
# What a stack trace or an internal detail would look like in a response body.
INTERNALS = re.compile(rb'Traceback|File "|line \d+|\.py\b|Error\(|Exception|mongodb://|/home/|'
                       rb'/usr/|site-packages|root:|\bPK\x03\x04')


# -- keys ------------------------------------------------------------------------------


async def test_api_keys_are_stored_hashed(keys: KeyStore, mongo, db_prefix, make_tenant,
                                          platform_key):
    tenant = await make_tenant()
    issued = [*tenant.keys.values(), platform_key]
    stored = [json_util.dumps(doc) async for doc in mongo[f"{db_prefix}_auth"]["api_keys"].find()]
    assert len(stored) == len(issued)
    everything = "\n".join(stored)
    for key in issued:
        _, key_id, secret = key.split("_", 2)
        assert secret not in everything and key not in everything
        doc = await mongo[f"{db_prefix}_auth"]["api_keys"].find_one({"_id": key_id})
        # A one-way digest of the secret, and nothing else that would give it back.
        assert doc["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
        assert set(doc) == {"_id", "account_id", "role", "secret_sha256", "label",
                            "create_time", "revoked"}
        # And the stored form authenticates: this is the copy the services use.
        assert (await keys.authenticate(key)).key_id == key_id


async def test_keys_never_reach_the_logs(world: World, capsys, json_logs):
    key = world.a.keys[Role.AGENT]
    secret = key.split("_", 2)[2]
    # The services' own JSON logs on stderr, as in production.
    for header in (f"Bearer {key}", f"Bearer {key[:-1]}x"):  # a valid and a wrong one
        await invoke(world, "/goals.v1.ConfigService/ListGoals",
                     config_pb2.ListGoalsRequest(), header)
    written = capsys.readouterr().err
    assert written.count('"event": "rpc"') >= 2, written[-2000:]
    assert secret not in written and secret[:-1] not in written


# -- constant-time comparisons ---------------------------------------------------------


def _function_ast(fn: Callable) -> ast.AST:
    return ast.parse(textwrap.dedent(inspect.getsource(fn)))


def _equality_operands(tree: ast.AST) -> list[str]:
    """The source of every operand of ``==``/``!=`` in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            found += [ast.unparse(operand) for operand in (node.left, *node.comparators)]
    return found


def _digest_comparisons(tree: ast.AST) -> list[list[str]]:
    """The arguments of every ``hmac.compare_digest`` / ``secrets.compare_digest`` call."""
    return [[ast.unparse(arg) for arg in node.args] for node in ast.walk(tree)
            if isinstance(node, ast.Call) and ast.unparse(node.func)
            in ("hmac.compare_digest", "secrets.compare_digest")]


@pytest.mark.parametrize(("fn", "secret_words"), [
    (KeyStore.authenticate, ("presented", "secret_sha256", "hit[1]")),
    (LinkSigner.verify, ("sig", "expected")),
], ids=["api key", "download link"])
def test_secret_comparisons_are_constant_time(fn, secret_words):
    """A code check: the secret (or its digest) is only ever compared with compare_digest,
    never with ``==``, whose time depends on how many leading characters match."""
    tree = _function_ast(fn)
    compared = _digest_comparisons(tree)
    assert compared, f"{fn.__qualname__} compares no digest in constant time"
    assert all(any(w in " ".join(args) for w in secret_words) for args in compared)
    leaky = [o for o in _equality_operands(tree) if any(w in o for w in secret_words)]
    assert not leaky, f"{fn.__qualname__} compares secrets with ==: {leaky}"


# -- download links on the real export service -----------------------------------------


async def _job(world: World, export_id: str) -> export_pb2.Export:
    stub = world.export(world.a.admin)
    return (await stub.GetExport(export_pb2.GetExportRequest(export_id=export_id))).export


async def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, allow_redirects=False) as response:
            return response.status, dict(response.headers), await response.read()


async def test_good_download_has_the_right_headers(world: World):
    job = await _job(world, world.a_ids.export_id)
    status, headers, body = await _get(job.download_url)
    assert status == 200
    assert headers["Content-Type"] == "application/zip"
    assert SAFE_DISPOSITION.match(headers["Content-Disposition"]), headers
    assert headers["Content-Length"] == str(len(body)) == str(job.size_bytes)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert {"private", "no-store"} <= {v.strip() for v in headers["Cache-Control"].split(",")}
    assert headers["Server"] == "goalflow"  # no software versions for an attacker to match
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        assert len(archive.namelist()) == 1


async def test_a_hostile_goal_name_gives_a_safe_file_name(world: World):
    name = '../..\\"evil"; filename=x.exe'
    goal = (await world.config(world.a.admin).CreateGoal(goal_request(name))).goal
    stub = world.export(world.a.admin)
    requested = (await stub.RequestExport(export_pb2.RequestExportRequest(
        goal_id=goal.id, start_date=JUNE_1, end_date=JUNE_1,
        recipient_email="admin@alpha.example"))).export
    job = await wait_mailed(stub, requested.id)
    status, headers, _ = await _get(job.download_url)
    assert status == 200
    disposition = headers["Content-Disposition"]
    assert SAFE_DISPOSITION.match(disposition), disposition
    assert "/" not in disposition and "\\" not in disposition and "x.exe" not in disposition


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def test_links_are_signed_per_account_and_expire(world: World, clock):
    job = await _job(world, world.a_ids.export_id)
    signer: LinkSigner = world.export_server.components["signer"]
    query = _query(job.download_url)
    assert set(query) == {"account", "expires", "sig"}
    assert int(query["expires"]) == int(job.link_expire_time.ToDatetime(dt.UTC).timestamp())
    assert job.link_expire_time.ToDatetime(dt.UTC) - clock.now() == LINK_TTL

    b = world.b.account_id
    expires_at = job.link_expire_time.ToDatetime(dt.UTC)
    for label, url, code in [
        # A's link with B's account put in: the signature no longer matches.
        ("account swapped", job.download_url.replace(f"account={world.a.account_id}",
                                                     f"account={b}"), 403),
        # A link validly signed for B, used on A's export: the owner does not match.
        ("signed for B", signer.url(world.a_ids.export_id, b, expires_at), 403),
        ("expiry pushed back", job.download_url.replace(
            f"expires={query['expires']}", f"expires={int(query['expires']) + 86400}"), 403),
        ("no signature", job.download_url.split("&sig=")[0], 403),
    ]:
        status, headers, body = await _get(url)
        assert status == code, label
        assert len(body) < SHORT_BODY and not INTERNALS.search(body), (label, body)
        assert headers["Content-Type"].startswith("text/plain"), label

    clock.advance(LINK_TTL - dt.timedelta(seconds=1))
    assert (await _get(job.download_url))[0] == 200
    clock.advance(dt.timedelta(seconds=1))
    status, _, body = await _get(job.download_url)
    assert status == 410
    assert b"expired" in body and len(body) < SHORT_BODY and not INTERNALS.search(body)


# -- the HTTP server itself ------------------------------------------------------------


async def _raw_get(port: int, target: str) -> tuple[int, bytes, bytes]:
    """GET ``target`` sent byte for byte (an HTTP client library would normalise ``..``):
    the status, the header block and the body."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Connection: close\r\n\r\n".encode("latin-1"))
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


async def test_no_listing_and_no_traversal(world: World):
    port = world.export_server.components["http_port"]
    job = await _job(world, world.a_ids.export_id)
    export_id, query = world.a_ids.export_id, urlsplit(job.download_url).query
    targets = [
        "/", "/exports", "/exports/", f"/exports/{export_id}", f"/exports/{export_id}/",
        f"/exports/{export_id}/download/", f"/exports/?{query}", "/exports/../../etc/passwd",
        "/../../../../etc/passwd", "/exports/%2e%2e/%2e%2e/etc/passwd",
        f"/exports/..%2f..%2fetc%2fpasswd/download?{query}",
        f"/exports/{export_id}/download/../../../../etc/passwd?{query}",
        f"/exports/{export_id}/../../etc/passwd", "/static/", "/.git/config",
        f"/exports/{export_id}%00/download?{query}",
    ]
    for target in targets:
        status, head, body = await _raw_get(port, target)
        assert status in (403, 404), (target, status, body)
        assert len(body) < SHORT_BODY, (target, body)
        assert not INTERNALS.search(body), (target, body)
        assert export_id.encode() not in body, target
        assert b"x-content-type-options: nosniff" in head.lower(), target
        assert b"aiohttp" not in head.lower() and b"python" not in head.lower(), target


async def test_an_internal_error_shows_no_stack_trace(world: World, mongo, db_prefix):
    """A job whose file record is corrupt (expiry stored as text) makes the handler fail:
    the client gets a generic 500, the details go to the log."""
    db = mongo[f"{db_prefix}_export"]
    export_id = uuid.uuid4().hex
    await db["exports"].insert_one({"_id": export_id, "account_id": world.a.account_id,
                                    "file_id": export_id})
    await db["export_files"].insert_one({
        "_id": export_id, "account_id": world.a.account_id, "filename": "x.zip", "size": 10,
        "chunks": 1, "expire_at": "mongodb://admin:hunter2@db/never-a-date"})
    signer: LinkSigner = world.export_server.components["signer"]
    url = signer.url(export_id, world.a.account_id, signer.new_expiry())
    with structlog.testing.capture_logs() as logs:
        status, headers, body = await _get(url)
    assert status == 500
    assert body == b"Internal server error.\n"
    assert headers["Content-Type"].startswith("text/plain")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert any(e["event"] == "download_error" and e["log_level"] == "error" for e in logs)


@pytest.mark.parametrize("request_line", [
    "GET /exports/x/download?account=%ff%fe&expires=1&sig=zz HTTP/1.1",
    "GET /exports/%ff/download HTTP/1.1",
    "BREW /exports HTTP/1.1",
    "GET /" + "a" * 20000 + " HTTP/1.1",
    "GET /exports HTTP/9.9",
    "\x00\x01\x02 garbage",
])
async def test_malformed_requests_get_no_internals(world: World, request_line):
    port = world.export_server.components["http_port"]
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request_line.encode("latin-1") + b"\r\nHost: x\r\n"
                         b"Connection: close\r\n\r\n")
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    if data:  # closing the connection without an answer is fine too
        assert int(head.split(b" ", 2)[1]) >= 400, data[:200]
    assert not INTERNALS.search(body), body[:500]
