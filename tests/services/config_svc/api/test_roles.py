"""Authentication and roles on the config service: every RPC against every role, bad keys,
revocation, and the two open-ish services (health without a key, reflection with any)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import config_pb2, config_pb2_grpc
from tests.conftest import TENANT_ROLES
from tests.services.config_svc.helpers import date, goal_request

KEY_TTL_S = 0.2
SERVICE_NAME = "goals.v1.ConfigService"

# The roles each RPC admits, as the proto documents them.
ALLOWED: dict[str, set[Role]] = {
    "CreateGoal": {Role.ADMIN},
    "GetGoal": {Role.ADMIN, Role.AGENT, Role.SERVICE},
    "UpdateGoal": {Role.ADMIN},
    "ListGoals": {Role.ADMIN, Role.AGENT},
    "ActivateGoal": {Role.ADMIN},
    "DeactivateGoal": {Role.ADMIN},
    "DeleteGoal": {Role.ADMIN},
    "ListActiveGoals": {Role.ADMIN, Role.SERVICE},
    "WatchGoals": {Role.ADMIN, Role.SERVICE},
    "SimulateGoal": {Role.ADMIN},
}
REFUSED = [(rpc, role) for rpc in ALLOWED for role in TENANT_ROLES
           if role not in ALLOWED[rpc]]
ALLOWED_READS = [
    (rpc, role)
    for rpc in ("GetGoal", "ListGoals", "ListActiveGoals", "WatchGoals")
    for role in sorted(ALLOWED[rpc])
]


def _request(rpc: str, goal: config_pb2.Goal, today):
    """A request that would succeed for an allowed role."""
    return {
        "CreateGoal": lambda: goal_request("Another"),
        "GetGoal": lambda: config_pb2.GetGoalRequest(goal_id=goal.id),
        "UpdateGoal": lambda: config_pb2.UpdateGoalRequest(
            goal_id=goal.id, goal=config_pb2.Goal(description="changed"),
            update_mask=FieldMask(paths=["description"]),
        ),
        "ListGoals": lambda: config_pb2.ListGoalsRequest(),
        "ActivateGoal": lambda: config_pb2.ActivateGoalRequest(
            goal_id=goal.id, start_date=date(today)
        ),
        "DeactivateGoal": lambda: config_pb2.DeactivateGoalRequest(goal_id=goal.id),
        "DeleteGoal": lambda: config_pb2.DeleteGoalRequest(goal_id=goal.id),
        "ListActiveGoals": lambda: config_pb2.ListActiveGoalsRequest(),
        "WatchGoals": lambda: config_pb2.WatchGoalsRequest(send_snapshot=True),
        "SimulateGoal": lambda: config_pb2.SimulateGoalRequest(
            goal_id=goal.id, start_date=date(today), end_date=date(today)),
    }[rpc]()


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def _call(stub, rpc: str, request, metadata=None):
    """Unary: the response. WatchGoals: the messages up to SNAPSHOT_COMPLETE. SimulateGoal:
    every message."""
    if rpc == "SimulateGoal":
        return [m async for m in stub.SimulateGoal(request, metadata=metadata)]
    if rpc != "WatchGoals":
        return await getattr(stub, rpc)(request, metadata=metadata)
    call = stub.WatchGoals(request, metadata=metadata)
    received = []
    try:
        async with asyncio.timeout(5):
            async for change in call:
                received.append(change)
                if change.type == config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT_COMPLETE:
                    return received
    finally:
        call.cancel()
    return received


@pytest.fixture
def config_settings(config_settings):
    # A short key cache, so the test can see a revocation take effect.
    return config_settings.model_copy(update={"key_cache_ttl_s": KEY_TTL_S})


@pytest.fixture
async def plain_channel(config_server) -> AsyncIterator[aio.Channel]:
    """A channel that adds no key: each call says what it sends."""
    channel = aio.insecure_channel(config_server)
    try:
        yield channel
    finally:
        await channel.close()


@pytest.fixture
async def tenant_with_goal(make_tenant, config_stub, clock):
    tenant = await make_tenant()
    goal = (await config_stub(tenant.admin).CreateGoal(goal_request("Checkout"))).goal
    return tenant, goal


def test_table_covers_every_rpc():
    methods = config_pb2.DESCRIPTOR.services_by_name["ConfigService"].methods_by_name
    assert set(methods) == set(ALLOWED)


@pytest.mark.parametrize(("rpc", "role"), REFUSED, ids=[f"{r}-{k}" for r, k in REFUSED])
async def test_wrong_role_is_permission_denied(rpc, role, tenant_with_goal, plain_channel,
                                               config_stub, clock):
    tenant, goal = tenant_with_goal
    stub = config_pb2_grpc.ConfigServiceStub(plain_channel)
    request = _request(rpc, goal, clock.now().date())
    with pytest.raises(grpc.RpcError) as err:
        await _call(stub, rpc, request, metadata=bearer(tenant.keys[role]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert role.value in err.value.details() and rpc in err.value.details()
    # Nothing happened: the goal is as created and no other goal appeared.
    admin = config_stub(tenant.admin)
    assert (await admin.GetGoal(config_pb2.GetGoalRequest(goal_id=goal.id))).goal == goal
    listing = await admin.ListGoals(config_pb2.ListGoalsRequest())
    assert [row.goal.id for row in listing.goals] == [goal.id]


@pytest.mark.parametrize(
    ("rpc", "role"), ALLOWED_READS, ids=[f"{r}-{k}" for r, k in ALLOWED_READS]
)
async def test_allowed_role_reads(rpc, role, tenant_with_goal, plain_channel, clock):
    tenant, goal = tenant_with_goal
    stub = config_pb2_grpc.ConfigServiceStub(plain_channel)
    result = await _call(stub, rpc, _request(rpc, goal, clock.now().date()),
                         metadata=bearer(tenant.keys[role]))
    if rpc == "GetGoal":
        assert result.goal == goal
    elif rpc == "ListGoals":
        assert [row.goal.id for row in result.goals] == [goal.id]
    elif rpc == "ListActiveGoals":
        assert list(result.goals) == []  # the goal is inactive
    else:
        assert [(m.type, m.goal.id) for m in result] == [
            (config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT, goal.id),
            (config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT_COMPLETE, ""),
        ]


BAD_AUTH = {
    "no key": None,
    "malformed key": "Bearer not-a-goalflow-key",
    "key with trailing junk": "Bearer gf_0123456789abcdef_" + "a" * 43 + "x",
    "unknown key id": "Bearer gf_0123456789abcdef_" + "a" * 43,
    "wrong scheme": "Basic gf_0123456789abcdef_" + "a" * 43,
    "empty bearer": "Bearer ",
}


@pytest.mark.parametrize("case", sorted(BAD_AUTH))
@pytest.mark.parametrize("rpc", ["ListGoals", "WatchGoals"])
async def test_bad_credentials_are_unauthenticated(case, rpc, tenant_with_goal, plain_channel,
                                                   clock):
    _, goal = tenant_with_goal
    header = BAD_AUTH[case]
    metadata = None if header is None else (("authorization", header),)
    stub = config_pb2_grpc.ConfigServiceStub(plain_channel)
    with pytest.raises(grpc.RpcError) as err:
        await _call(stub, rpc, _request(rpc, goal, clock.now().date()), metadata=metadata)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_wrong_secret_for_a_real_key_id(tenant_with_goal, plain_channel):
    tenant, _ = tenant_with_goal
    key_id = tenant.admin.split("_")[1]
    forged = f"gf_{key_id}_" + "b" * 43
    stub = config_pb2_grpc.ConfigServiceStub(plain_channel)
    # Once before the real key was ever used, once after it sits in the server's cache.
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as err:
            await stub.ListGoals(config_pb2.ListGoalsRequest(), metadata=bearer(forged))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await stub.ListGoals(config_pb2.ListGoalsRequest(), metadata=bearer(tenant.admin))


async def test_revoked_key_is_unauthenticated(make_tenant, keys, plain_channel):
    tenant = await make_tenant()
    stub = config_pb2_grpc.ConfigServiceStub(plain_channel)
    used, unused = tenant.keys[Role.ADMIN], tenant.keys[Role.AGENT]
    await stub.ListGoals(config_pb2.ListGoalsRequest(), metadata=bearer(used))

    for key in (used, unused):
        await keys.revoke_key(key.split("_")[1])
    # A key never seen by the server is refused at once; a cached one within the TTL.
    with pytest.raises(grpc.RpcError) as err:
        await stub.ListGoals(config_pb2.ListGoalsRequest(), metadata=bearer(unused))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await asyncio.sleep(KEY_TTL_S + 0.1)
    for rpc in ("ListGoals", "WatchGoals"):
        with pytest.raises(grpc.RpcError) as err:
            await _call(stub, rpc, _request(rpc, config_pb2.Goal(), None), metadata=bearer(used))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Only the revoked keys stop working, not the account's others.
    still = await stub.ListActiveGoals(
        config_pb2.ListActiveGoalsRequest(), metadata=bearer(tenant.keys[Role.SERVICE])
    )
    assert list(still.goals) == []


async def test_health_needs_no_key(plain_channel):
    health = health_pb2_grpc.HealthStub(plain_channel)
    for service in ("", SERVICE_NAME):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as err:
        await health.Check(health_pb2.HealthCheckRequest(service="goals.v1.NoSuchService"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def _list_services(channel: aio.Channel, metadata) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME),
    ]
    replies = [r async for r in stub.ServerReflectionInfo(iter(requests), metadata=metadata)]
    assert replies[1].file_descriptor_response.file_descriptor_proto
    return [s.name for s in replies[0].list_services_response.service]


@pytest.mark.parametrize("role", TENANT_ROLES)
async def test_reflection_works_with_any_valid_key(role, make_tenant, plain_channel):
    tenant = await make_tenant()
    names = await _list_services(plain_channel, bearer(tenant.keys[role]))
    assert SERVICE_NAME in names
    assert "grpc.health.v1.Health" in names


async def test_reflection_needs_a_key(plain_channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(plain_channel)
    for metadata in (None, (("authorization", "Bearer not-a-key"),)):
        # Nothing is written: sending on a call the server already refused races with the
        # refusal on the client side and would be reported as a client INTERNAL error.
        call = stub.ServerReflectionInfo(metadata=metadata)
        with pytest.raises(grpc.RpcError) as err:
            await call.read()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
