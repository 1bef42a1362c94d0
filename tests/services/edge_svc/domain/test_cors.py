"""The CORS decision, without HTTP."""

from __future__ import annotations

import pytest

from edge_svc.domain.cors import CorsPolicy, Verdict, is_same_origin, parse_origins

POLICY = CorsPolicy(parse_origins("https://console.example, http://localhost:5173"))


def test_no_origin_is_not_cors():
    decision = POLICY.decide(None, "POST", None)
    assert decision.verdict is Verdict.NOT_CORS
    assert dict(decision.headers) == {"vary": "Origin"}


def test_allowed_origin_gets_that_origin_back_never_a_wildcard_or_credentials():
    decision = POLICY.decide("https://console.example", "POST", None)
    headers = dict(decision.headers)
    assert decision.verdict is Verdict.ALLOWED
    assert headers["access-control-allow-origin"] == "https://console.example"
    assert "grpc-status" in headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in headers


def test_preflight():
    decision = POLICY.decide("http://localhost:5173", "OPTIONS", "POST")
    headers = dict(decision.headers)
    assert decision.verdict is Verdict.PREFLIGHT
    assert "connect-protocol-version" in headers["access-control-allow-headers"]
    assert "Origin" in headers["vary"]
    assert POLICY.decide("http://localhost:5173", "OPTIONS", "DELETE").verdict is Verdict.REFUSED


@pytest.mark.parametrize("origin", [
    "https://evil.example", "http://console.example", "https://console.example:444",
    "https://console.example.evil.example", "null", "", "http://localhost:5174",
])
def test_other_origins_are_refused_without_cors_headers(origin):
    for method, preflight in (("POST", None), ("OPTIONS", "POST"), ("GET", None)):
        decision = POLICY.decide(origin, method, preflight)
        assert decision.verdict is Verdict.REFUSED
        assert not [k for k, _ in decision.headers if k.startswith("access-control")]


@pytest.mark.parametrize("spec", ["*", "https://a.example/", "https://a.example/path",
                                  "a.example", "ftp://a.example", "https://*.a.example"])
def test_origins_setting_refuses_what_is_not_an_origin(spec):
    with pytest.raises(ValueError, match="cors_allowed_origins"):
        parse_origins(spec)


def test_origins_setting_parses_a_list():
    assert parse_origins("") == frozenset()
    assert parse_origins(" https://A.example ,http://[::1]:8080,") == {
        "https://a.example", "http://[::1]:8080"}


@pytest.mark.parametrize(("origin", "host"), [
    ("http://127.0.0.1:8080", "127.0.0.1:8080"),
    ("https://console.example", "console.example"),  # behind a TLS proxy: scheme not compared
    ("http://console.example", "console.example"),
    ("http://Console.Example:8080", "console.example:8080"),
    ("http://[::1]:8080", "[::1]:8080"),
])
def test_a_page_of_this_server_is_same_origin(origin, host):
    assert is_same_origin(origin, host)


@pytest.mark.parametrize(("origin", "host"), [
    (None, "127.0.0.1:8080"),
    ("http://127.0.0.1:8080", None),
    ("", "127.0.0.1:8080"),
    ("http://127.0.0.1:8080", ""),
    ("http://127.0.0.1:8081", "127.0.0.1:8080"),  # another port is another origin
    ("http://127.0.0.1", "127.0.0.1:8080"),
    ("http://localhost:8080", "127.0.0.1:8080"),  # names are compared, not resolved
    ("https://evil.example", "console.example"),
    ("https://console.example.evil.example", "console.example"),
    ("https://evil.example/console.example", "console.example"),
    ("null", "null"),  # an opaque origin (sandboxed frame, file:) is nobody's page
    ("null", "127.0.0.1:8080"),
    ("127.0.0.1:8080", "127.0.0.1:8080"),  # no scheme
    ("ftp://127.0.0.1:8080", "127.0.0.1:8080"),
    ("file://127.0.0.1:8080", "127.0.0.1:8080"),
    ("chrome-extension://127.0.0.1:8080", "127.0.0.1:8080"),
])
def test_anything_else_is_not_same_origin(origin, host):
    assert not is_same_origin(origin, host)
