"""The RPCs a browser may call through the edge, and the service each one goes to.

Contract: :data:`ROUTES` lists every exposed RPC by its full path; nothing else is routed.
Left out on purpose: ``IngestEvents`` (producers are servers with ingest keys), the
service-to-service RPCs (``WatchGoals``, ``StreamConversions``, ``CountConversions``,
``ReplayGoal``) and
``AccountService`` but ``MintToken`` (platform keys never belong in a browser). ``MintToken``
is how the web console turns the key a person types into a short-lived token it keeps
instead. Every forwarded call says it came through the edge (:data:`VIA_EDGE`), and config
refuses a platform key's MintToken that did: a platform key mints nothing from a browser.

Each route carries how large a request body may be (:class:`BodySize`): goal writes (and a
simulation's goal definition) carry
up to 100 conditions of 2,048 characters (config's own budget is ~880 KB binary, JSON
spells the same in more bytes), a report's four filter lists of 100 ids of 128 characters
reach ~206 KB in the worst UTF-8, everything else is a few ids and a page token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Upstream(enum.StrEnum):
    CONFIG = "config"
    TRACKER = "tracker"
    EXPORT = "export"


class BodySize(enum.StrEnum):
    SMALL = "small"
    REPORT = "report"
    GOAL = "goal"


@dataclass(frozen=True, slots=True)
class Route:
    service: str
    """Full name of the service, e.g. ``goals.v1.ConfigService``."""
    method: str
    upstream: Upstream
    streaming: bool = False
    """Server streaming (the live feed, a simulation's progress); otherwise unary."""
    safe: bool = False
    """No side effects: also callable with Connect's HTTP GET."""
    body: BodySize = BodySize.SMALL

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"


_CONFIG, _TRACKER, _EXPORT, _ACCOUNTS = (
    "goals.v1.ConfigService", "goals.v1.TrackerService", "goals.v1.ExportService",
    "goals.v1.AccountService")

ROUTES: tuple[Route, ...] = (
    Route(_CONFIG, "CreateGoal", Upstream.CONFIG, body=BodySize.GOAL),
    Route(_CONFIG, "GetGoal", Upstream.CONFIG, safe=True),
    Route(_CONFIG, "UpdateGoal", Upstream.CONFIG, body=BodySize.GOAL),
    Route(_CONFIG, "ListGoals", Upstream.CONFIG, safe=True),
    Route(_CONFIG, "ActivateGoal", Upstream.CONFIG),
    Route(_CONFIG, "DeactivateGoal", Upstream.CONFIG),
    Route(_CONFIG, "DeleteGoal", Upstream.CONFIG),
    Route(_CONFIG, "ListActiveGoals", Upstream.CONFIG, safe=True),
    # The what-if before activating a goal: progress messages, then the result.
    Route(_CONFIG, "SimulateGoal", Upstream.CONFIG, streaming=True, body=BodySize.GOAL),
    Route(_TRACKER, "SubscribeConversions", Upstream.TRACKER, streaming=True),
    Route(_TRACKER, "ListConversions", Upstream.TRACKER, safe=True),
    Route(_TRACKER, "GetReport", Upstream.TRACKER, safe=True, body=BodySize.REPORT),
    Route(_EXPORT, "RequestExport", Upstream.EXPORT),
    Route(_EXPORT, "GetExport", Upstream.EXPORT, safe=True),
    Route(_EXPORT, "ListExports", Upstream.EXPORT, safe=True),
    Route(_ACCOUNTS, "MintToken", Upstream.CONFIG),
)

ROUTES_BY_PATH: dict[str, Route] = {route.path: route for route in ROUTES}

