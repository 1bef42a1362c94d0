"""Settings of the edge service (env prefix ``GOALFLOW_``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from edge_svc.domain.cors import parse_origins
from edge_svc.domain.routes import BodySize
from goalflow_common.request_guard import KIB
from goalflow_common.settings import ServiceSettings

MIB = 1024 * KIB


class EdgeSettings(ServiceSettings):
    """The edge: Connect, gRPC-Web and gRPC for browsers, in front of the three services."""

    http_port: int = 8080
    """Port of the edge: HTTP/1.1 and HTTP/2 without TLS (h2c) on the same port, bound on
    ``grpc_host`` (it serves gRPC too); 0 picks a free one."""

    config_address: str = "127.0.0.1:50051"
    """Config gRPC address (goal RPCs)."""

    tracker_address: str = "127.0.0.1:50052"
    """Tracker gRPC address (live feed, conversions, reports)."""

    export_address: str = "127.0.0.1:50053"
    """Export gRPC address (exports)."""

    cors_allowed_origins: str = ""
    """Origins whose pages may call the edge, comma separated, exact
    (``https://console.example,http://localhost:5173``). Empty: no cross-origin page may;
    a request from an origin not listed is refused and gets no CORS header."""

    cors_max_age_s: int = Field(default=7200, ge=0)
    """How long a browser may cache a preflight answer."""

    max_body_bytes: int = Field(default=64 * KIB, gt=0)
    """Largest request body of most RPCs (a few ids and a page token)."""

    max_report_body_bytes: int = Field(default=512 * KIB, gt=0)
    """Largest GetReport body (four filter lists of 100 ids)."""

    max_goal_body_bytes: int = Field(default=2 * MIB, gt=0)
    """Largest CreateGoal/UpdateGoal body (100 conditions of 2,048 characters, in JSON)."""

    upstream_timeout_s: float = Field(default=30.0, gt=0)
    """Deadline of a forwarded unary call when the caller gives none (a shorter one the
    caller gives, ``connect-timeout-ms`` or ``grpc-timeout``, is passed on)."""

    upstream_stream_channels: int = Field(default=4, ge=1, le=64)
    """gRPC channels (HTTP/2 connections) per upstream service that carry live-feed
    subscriptions, spread round-robin."""

    h2_max_concurrent_streams: int = Field(default=1000, ge=1)
    """Streams one HTTP/2 client connection may have open at once."""

    max_subscribers: int = Field(default=10_000, ge=1)
    """Live-feed subscriptions held open at once; more are refused RESOURCE_EXHAUSTED."""

    max_subscribers_per_credential: int = Field(default=16, ge=1)
    """Live-feed subscriptions one bearer credential (an API key or a token) may hold open
    on this edge; more are refused RESOURCE_EXHAUSTED naming the limit. Without it one
    token took every slot of ``max_subscribers`` (8,682 streams, edge RSS 647 MB). 16: an
    agent's tabs."""

    body_timeout_s: float = Field(default=10.0, gt=0)
    """Seconds a call's request body may take to arrive after its headers (every route);
    a slower one is refused DEADLINE_EXCEEDED and, over HTTP/1.1, its connection closed.
    Bodies are at most 2 MiB: 10 s is ~1.7 Mbit/s for the largest goal write, and the
    usual body of a few hundred bytes arrives with its headers. Only the body: a live-feed
    response stream is not limited by it."""

    console_dir: str = ""
    """Directory of the built web console (``web/dist/console``, ``make web``) to serve at
    ``/`` on the edge's port, or empty: no console, the edge serves RPCs only. Read once at
    start-up. Its pages call the edge from its own origin, allowed without being listed
    in ``cors_allowed_origins``."""

    @model_validator(mode="after")
    def _origins(self) -> EdgeSettings:
        parse_origins(self.cors_allowed_origins)  # fail at start-up, naming the entry
        return self

    @property
    def allowed_origins(self) -> frozenset[str]:
        return parse_origins(self.cors_allowed_origins)

    def body_limit(self, size: BodySize) -> int:
        return {
            BodySize.SMALL: self.max_body_bytes,
            BodySize.REPORT: self.max_report_body_bytes,
            BodySize.GOAL: self.max_goal_body_bytes,
        }[size]
