"""CORS through the real edge: an allowed origin gets its headers (never credentials), a
preflight is answered, a disallowed origin gets no CORS header at all and reaches nothing."""

from __future__ import annotations

import aiohttp

from tests.services.edge_svc.conftest import ORIGIN, OTHER_ORIGIN
from tests.services.edge_svc.helpers import bearer

PATH = "/goals.v1.ConfigService/ListGoals"


async def test_allowed_origin_gets_cors_headers(edge):
    async with aiohttp.ClientSession() as session, session.post(
            f"{edge.url}{PATH}", json={},
            headers={**bearer(edge.tenant.admin), "origin": ORIGIN}) as response:
        assert response.status == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        exposed = response.headers["access-control-expose-headers"]
        assert "grpc-status" in exposed and "x-request-id" in exposed
        assert "Origin" in response.headers.getall("vary")
        assert "access-control-allow-credentials" not in response.headers


async def test_preflight_is_answered(edge):
    async with aiohttp.ClientSession() as session, session.options(
            f"{edge.url}{PATH}", headers={
                "origin": ORIGIN, "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,content-type,"
                                                  "connect-protocol-version"}) as response:
        assert response.status == 204
        h = response.headers
        assert h["access-control-allow-origin"] == ORIGIN
        assert set(h["access-control-allow-methods"].split(", ")) == {"POST", "GET"}
        allowed = h["access-control-allow-headers"].split(", ")
        for name in ("authorization", "content-type", "connect-protocol-version",
                     "connect-timeout-ms", "x-grpc-web", "x-user-agent", "grpc-timeout",
                     "x-request-id"):
            assert name in allowed
        assert int(h["access-control-max-age"]) > 0
        assert "access-control-allow-credentials" not in h


async def test_disallowed_origin_gets_no_cors_headers_and_reaches_nothing(edge):
    async with aiohttp.ClientSession() as session:
        async with session.options(f"{edge.url}{PATH}", headers={
                "origin": OTHER_ORIGIN, "access-control-request-method": "POST"}) as response:
            assert response.status == 403
            assert not [k for k in response.headers if k.lower().startswith("access-control")]
        async with session.post(f"{edge.url}{PATH}", json={}, headers={
                **bearer(edge.tenant.admin), "origin": OTHER_ORIGIN}) as response:
            assert response.status == 403
            assert not [k for k in response.headers if k.lower().startswith("access-control")]
        # The same origin but another port or scheme is another origin.
        for origin in ("https://console.example:8443", "http://console.example",
                       "https://console.example.evil.example"):
            async with session.post(f"{edge.url}{PATH}", json={}, headers={
                    **bearer(edge.tenant.admin), "origin": origin}) as response:
                assert response.status == 403, origin


async def test_requests_without_origin_are_not_cors(edge):
    async with aiohttp.ClientSession() as session, session.post(
            f"{edge.url}{PATH}", json={}, headers=bearer(edge.tenant.admin)) as response:
        assert response.status == 200
        assert "access-control-allow-origin" not in response.headers
