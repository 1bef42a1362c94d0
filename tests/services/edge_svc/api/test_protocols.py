"""The browser RPCs through a real edge in front of real services: Connect JSON (as curl
sends it) and binary, Connect GET for reads, gRPC-Web and gRPC, HTTP/1.1 and h2c, and the
services' errors arriving with their codes and messages."""

from __future__ import annotations

import time

import aiohttp
import grpc
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import config_pb2, config_pb2_grpc, export_pb2, tracker_pb2
from goalflow_common.tokens import TokenAuthority, parse_token_keys
from tests.services.config_svc.helpers import goal_request
from tests.services.edge_svc.conftest import TOKEN_KEYS
from tests.services.edge_svc.helpers import bearer, client, unary

CONFIG = "/goals.v1.ConfigService"


async def post_json(edge, path: str, body: object, headers: dict[str, str]
                    ) -> tuple[int, dict, aiohttp.typedefs.LooseHeaders]:
    async with aiohttp.ClientSession() as session, session.post(
            f"{edge.url}{path}", json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers


async def test_connect_json_unary_round_trip_in_camel_case(edge):
    admin = bearer(edge.tenant.admin)
    status, created, headers = await post_json(edge, f"{CONFIG}/CreateGoal", {
        "name": "Checkout", "agentGroupIds": ["sales"],
        "attribution_model": "ATTRIBUTION_MODEL_LAST_TOUCH",  # proto names are accepted too
        "attributionPeriodDays": 7,
        "conditions": [{"category": "CONDITION_CATEGORY_URL",
                        "operator": "CONDITION_OPERATOR_CONTAINS", "value": "/checkout"}],
    }, {**admin, "x-request-id": "req-edge-1"})
    assert status == 200, created
    goal = created["goal"]
    assert goal["name"] == "Checkout" and goal["accountId"] == edge.tenant.account_id
    assert goal["attributionModel"] == "ATTRIBUTION_MODEL_LAST_TOUCH"
    assert "attribution_model" not in goal  # lowerCamelCase on output, as protojson
    assert headers["x-request-id"] == "req-edge-1"
    status, got, _ = await post_json(edge, f"{CONFIG}/GetGoal", {"goalId": goal["id"]}, admin)
    assert status == 200 and got["goal"]["id"] == goal["id"]


async def test_connect_binary_and_get_for_reads(edge):
    connect = client(edge.url)
    admin = bearer(edge.tenant.admin)
    created = await unary(connect, f"{CONFIG}/CreateGoal", goal_request("Binary"), admin)
    assert created.goal.name == "Binary"
    listed = await unary(connect, f"{CONFIG}/ListGoals", config_pb2.ListGoalsRequest(), admin,
                         use_get=True)
    assert [g.goal.id for g in listed.goals] == [created.goal.id]
    json_get = client(edge.url, json=True)
    got = await unary(json_get, f"{CONFIG}/GetGoal",
                      config_pb2.GetGoalRequest(goal_id=created.goal.id), admin, use_get=True)
    assert got.goal.id == created.goal.id


async def test_get_is_refused_for_rpcs_with_side_effects(edge):
    async with aiohttp.ClientSession() as session, session.get(
            f"{edge.url}{CONFIG}/DeleteGoal", params={"encoding": "json", "message": "{}"},
            headers=bearer(edge.tenant.admin)) as response:
        assert response.status == 405  # Method Not Allowed: POST only


@pytest.mark.parametrize("protocol,http2", [
    (ProtocolType.GRPC_WEB, False), (ProtocolType.GRPC_WEB, True),
    (ProtocolType.CONNECT, True), (ProtocolType.GRPC, True),
])
async def test_grpc_web_grpc_and_h2c(edge, protocol, http2):
    connect = client(edge.url, protocol=protocol, http2=http2)
    admin = bearer(edge.tenant.admin)
    created = await unary(connect, f"{CONFIG}/CreateGoal", goal_request("Framed"), admin)
    got = await unary(connect, f"{CONFIG}/GetGoal",
                      config_pb2.GetGoalRequest(goal_id=created.goal.id), admin)
    assert got.goal.name == "Framed"
    with pytest.raises(ConnectError) as refused:
        await unary(connect, f"{CONFIG}/GetGoal", config_pb2.GetGoalRequest(goal_id="nope"),
                    admin)
    assert refused.value.code is Code.NOT_FOUND


async def test_native_grpc_clients_reach_the_edge_too(edge):
    """The edge speaks gRPC over h2c: a grpcio channel (and so the health probe) works."""
    async with aio.insecure_channel(f"127.0.0.1:{edge.server.port}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        listed = await config_pb2_grpc.ConfigServiceStub(channel).ListGoals(
            config_pb2.ListGoalsRequest(), metadata=tuple(bearer(edge.tenant.admin).items()),
            timeout=5)
        assert list(listed.goals) == []
        with pytest.raises(aio.AioRpcError) as refused:
            await config_pb2_grpc.ConfigServiceStub(channel).WatchGoals(
                config_pb2.WatchGoalsRequest(), timeout=5).read()
        assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED  # not exposed


async def test_errors_keep_their_code_and_message(edge):
    connect = client(edge.url, json=True)
    admin = bearer(edge.tenant.admin)
    cases = [
        (f"{CONFIG}/GetGoal", config_pb2.GetGoalRequest(goal_id="missing"), admin,
         Code.NOT_FOUND, "goal"),
        (f"{CONFIG}/CreateGoal", goal_request(""), admin, Code.INVALID_ARGUMENT, "name:"),
        (f"{CONFIG}/CreateGoal", goal_request("x"), bearer(edge.tenant.keys[Role.AGENT]),
         Code.PERMISSION_DENIED, "agent"),
        (f"{CONFIG}/ListGoals", config_pb2.ListGoalsRequest(), {}, Code.UNAUTHENTICATED,
         "missing 'authorization"),
        (f"{CONFIG}/ListGoals", config_pb2.ListGoalsRequest(), bearer("gf_nonsense"),
         Code.UNAUTHENTICATED, "not an API key"),
        (f"{CONFIG}/ListGoals", config_pb2.ListGoalsRequest(),
         bearer("gf_0123456789abcdef_" + "A" * 43), Code.UNAUTHENTICATED, ""),
        ("/goals.v1.ExportService/GetExport", export_pb2.GetExportRequest(export_id="nope"),
         admin, Code.NOT_FOUND, ""),
        ("/goals.v1.TrackerService/GetReport", tracker_pb2.GetReportRequest(), admin,
         Code.INVALID_ARGUMENT, ""),
    ]
    for path, request, headers, code, text in cases:
        with pytest.raises(ConnectError) as refused:
            await unary(connect, path, request, headers)
        assert refused.value.code is code, (path, refused.value.message)
        assert text in refused.value.message, (path, refused.value.message)


async def test_tokens_are_checked_at_the_edge_before_the_body(edge):
    """An expired or forged token is refused by the edge with a clear message, as is a
    token whose role may not call the method, before any body is read."""
    agent = edge.tokens.mint(edge.tenant.account_id, Role.AGENT, agent_id="agent-7").token
    two_hours_ago = TokenAuthority(parse_token_keys(TOKEN_KEYS), now=lambda: time.time() - 7200)
    expired = two_hours_ago.mint(edge.tenant.account_id, Role.AGENT, agent_id="agent-7").token
    header, claims, signature = agent.split(".")
    forged = f"{header}.{claims}.{signature[:-4]}AAAA"
    connect = client(edge.url, json=True)
    cases = [
        (expired, Code.UNAUTHENTICATED, "expired"),
        (forged, Code.UNAUTHENTICATED, "signature"),
        (agent, Code.PERMISSION_DENIED, "role 'agent' may not call"),
    ]
    for token, code, text in cases:
        with pytest.raises(ConnectError) as refused:
            await unary(connect, f"{CONFIG}/CreateGoal", goal_request("t"), bearer(token))
        assert refused.value.code is code and text in refused.value.message, \
            refused.value.message
    assert (await post_json(edge, f"{CONFIG}/ListGoals", {}, {}))[0] == 401


async def test_health_over_connect_and_healthz(edge):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{edge.url}/healthz") as response:
            assert response.status == 200
        async with session.post(f"{edge.url}/grpc.health.v1.Health/Check", json={}) as r:
            assert (r.status, await r.json()) == (200, {"status": "SERVING"})
        async with session.post(f"{edge.url}/grpc.health.v1.Health/Check",
                                json={"service": "goals.v1.Nope"}) as r:
            assert r.status == 404


async def test_unknown_route_and_unexposed_rpcs_are_404(edge):
    admin = bearer(edge.tenant.admin)
    for path in ("/nothing", "/goals.v1.TrackerService/IngestEvents",
                 "/goals.v1.TrackerService/StreamConversions",
                 "/goals.v1.ConfigService/WatchGoals", "/goals.v1.AccountService/CreateKey"):
        async with aiohttp.ClientSession() as session, session.post(
                f"{edge.url}{path}", json={}, headers=admin) as response:
            assert response.status == 404, path


async def test_oversized_and_malformed_bodies_are_refused(edge):
    admin = bearer(edge.tenant.admin)
    big = {"goalId": "x" * (edge.server.settings.max_body_bytes + 1)}
    status, error, _ = await post_json(edge, f"{CONFIG}/GetGoal", big, admin)
    assert (status, error["code"]) == (429, "resource_exhausted"), error
    assert "larger than configured max" in error["message"]
    # A goal write may be larger: 100 conditions of 2,048 characters pass the edge.
    conditions = [{"category": "CONDITION_CATEGORY_URL",
                   "operator": "CONDITION_OPERATOR_CONTAINS", "value": f"/{n}" + "p" * 2000}
                  for n in range(100)]
    status, created, _ = await post_json(edge, f"{CONFIG}/CreateGoal", {
        "name": "Long", "agentGroupIds": ["sales"],
        "attributionModel": "ATTRIBUTION_MODEL_LAST_TOUCH", "attributionPeriodDays": 1,
        "conditions": conditions}, admin)
    assert status == 200, created
    async with aiohttp.ClientSession() as session:
        for body in (b"{not json", b'{"goalId": 12', b"\xff\xfe", b'{"page_size": "many"}'):
            async with session.post(f"{edge.url}{CONFIG}/ListGoals", data=body, headers={
                    **admin, "content-type": "application/json"}) as response:
                error = await response.json(content_type=None)
                assert (response.status, error["code"]) == (400, "invalid_argument"), error
        async with session.post(f"{edge.url}{CONFIG}/ListGoals", data=b"\x0a\xff\xff",
                                headers={**admin, "content-type": "application/proto"}
                                ) as response:
            assert response.status == 400
    # An oversized body without a key is refused for the key, not read.
    status, error, _ = await post_json(edge, f"{CONFIG}/GetGoal", big, {})
    assert (status, error["code"]) == (401, "unauthenticated")
