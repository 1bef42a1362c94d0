"""The exposed RPCs: exactly the browser ones, each existing in the protos with the right
kind, and none a browser must never reach."""

from __future__ import annotations

from edge_svc.domain.routes import (
    ROUTES,
    ROUTES_BY_PATH,
    BodySize,
    Upstream,
)
from tests.security.rpcs import METHODS

BROWSER_RPCS = {
    "/goals.v1.ConfigService/" + m for m in (
        "CreateGoal", "GetGoal", "UpdateGoal", "ListGoals", "ActivateGoal", "DeactivateGoal",
        "DeleteGoal", "ListActiveGoals", "SimulateGoal")
} | {
    "/goals.v1.TrackerService/" + m for m in (
        "SubscribeConversions", "ListConversions", "GetReport")
} | {"/goals.v1.ExportService/" + m for m in ("RequestExport", "GetExport", "ListExports")
} | {"/goals.v1.AccountService/MintToken"}  # the console's sign-in: a key for a token


def test_exactly_the_browser_rpcs_are_routed():
    assert set(ROUTES_BY_PATH) == BROWSER_RPCS
    assert len(ROUTES) == len(BROWSER_RPCS)
    for never in ("IngestEvents", "StreamConversions", "CountConversions", "WatchGoals",
                  "ReplayGoal"):
        assert not [p for p in ROUTES_BY_PATH if p.endswith(f"/{never}")]
    assert [p for p in ROUTES_BY_PATH if "AccountService" in p] == [
        "/goals.v1.AccountService/MintToken"]


def test_routes_match_the_protos():
    for route in ROUTES:
        method = METHODS[route.path]
        assert method.server_streaming == route.streaming, route.path
        assert not method.client_streaming
        # AccountService is served in the config process.
        service = method.containing_service.name.removesuffix("Service").lower()
        assert route.upstream is Upstream({"account": "config"}.get(service, service))


def test_only_goal_writes_and_reports_take_large_bodies():
    large = {r.method: r.body for r in ROUTES if r.body is not BodySize.SMALL}
    assert large == {"CreateGoal": BodySize.GOAL, "UpdateGoal": BodySize.GOAL,
                     "SimulateGoal": BodySize.GOAL, "GetReport": BodySize.REPORT}
    assert all(r.method.startswith(("Get", "List")) for r in ROUTES if r.safe)
