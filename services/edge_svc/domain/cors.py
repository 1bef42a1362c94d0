"""The CORS decision for one request, from an allow-list of exact origins.

Contract of :meth:`CorsPolicy.decide`:

- no ``Origin`` header: not a cross-origin browser request (curl, a server, a same-origin
  page); nothing is added;
- an origin on the list: a preflight (``OPTIONS`` with ``Access-Control-Request-Method``)
  is answered with the methods, request headers and max age; any other request gets
  ``Access-Control-Allow-Origin`` (that one origin, never ``*``) and the headers the
  browser may expose to the page;
- an origin not on the list: REFUSED, and the response carries no CORS header at all, so
  the browser shows the page nothing (the request is refused before it reaches a service).

A page served by this edge (the web console) calls it from its own origin: browsers send
``Origin`` on those POSTs too. :func:`is_same_origin` tells them apart (the origin's host
and port are the request's ``Host``); the edge treats them as not cross-origin when it
serves the console, whatever the allow-list says.

``Access-Control-Allow-Credentials`` is never sent: the credential is a bearer header the
page sets, never a cookie. Every answer varies by ``Origin``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

ALLOWED_METHODS = ("POST", "GET")
ALLOWED_HEADERS = (
    "authorization", "content-type", "connect-protocol-version", "connect-timeout-ms",
    "connect-accept-encoding", "connect-content-encoding", "accept-encoding",
    "content-encoding", "grpc-accept-encoding", "grpc-timeout", "x-grpc-web",
    "x-user-agent", "x-request-id",
)
EXPOSED_HEADERS = (
    "grpc-status", "grpc-message", "grpc-status-details-bin", "grpc-encoding",
    "connect-content-encoding", "content-encoding", "x-request-id",
)
VARY = "Origin"
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


class Verdict(enum.Enum):
    NOT_CORS = "not_cors"
    ALLOWED = "allowed"
    PREFLIGHT = "preflight"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class CorsDecision:
    verdict: Verdict
    headers: tuple[tuple[str, str], ...] = ()


def parse_origins(spec: str) -> frozenset[str]:
    """``https://a.example,http://localhost:5173`` -> the set; ValueError naming a bad entry.

    Origins are compared exactly as browsers send them: scheme, host and port, no path, no
    trailing slash, no wildcard."""
    origins: set[str] = set()
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        if not _ORIGIN_RE.fullmatch(entry):
            raise ValueError(
                f"cors_allowed_origins: {entry!r} is not an origin (scheme://host[:port], "
                "no path, no wildcard)")
        origins.add(entry.lower())
    return frozenset(origins)


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    origins: frozenset[str]
    max_age_s: int = 7200

    def decide(self, origin: str | None, method: str, preflight_method: str | None
               ) -> CorsDecision:
        """The decision for a request with these ``Origin``, HTTP method and
        ``Access-Control-Request-Method`` values (None when absent)."""
        if origin is None:
            return CorsDecision(Verdict.NOT_CORS, (("vary", VARY),))
        if origin.lower() not in self.origins:
            return CorsDecision(Verdict.REFUSED, (("vary", VARY),))
        if method == "OPTIONS" and preflight_method is not None:
            if preflight_method not in ALLOWED_METHODS:
                return CorsDecision(Verdict.REFUSED, (("vary", PREFLIGHT_VARY),))
            return CorsDecision(Verdict.PREFLIGHT, (
                ("access-control-allow-origin", origin),
                ("access-control-allow-methods", ", ".join(ALLOWED_METHODS)),
                ("access-control-allow-headers", ", ".join(ALLOWED_HEADERS)),
                ("access-control-max-age", str(self.max_age_s)),
                ("vary", PREFLIGHT_VARY),
            ))
        return CorsDecision(Verdict.ALLOWED, (
            ("access-control-allow-origin", origin),
            ("access-control-expose-headers", ", ".join(EXPOSED_HEADERS)),
            ("vary", VARY),
        ))


def is_same_origin(origin: str | None, host: str | None) -> bool:
    """Whether ``origin`` (``http://h:p``) names the host and port of ``host`` (the request's
    ``Host`` header): a page of this server. The scheme is not compared: behind a TLS proxy
    the page is ``https://`` while the edge is reached over plain HTTP. A browser sets
    both headers itself; a page of another origin cannot make them agree."""
    if not origin or not host:
        return False
    scheme, sep, rest = origin.partition("://")
    return bool(sep) and scheme in ("http", "https") and rest.lower() == host.lower()
