"""Tenant isolation: account A's admin key can neither read, change nor detect account B's
goals through any config RPC; only a platform service key spans accounts."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from goalflow_common.pb.goals.v1 import config_pb2
from tests.services.config_svc.helpers import date, goal_request

B_ACTIVE_NAME = "Bravo secret launch"
B_IDLE_NAME = "Bravo hidden draft"

# Every config RPC that names a goal, with A's key on B's goal id: NOT_FOUND.
GOAL_RPCS = {
    "GetGoal": lambda stub, goal_id, today: stub.GetGoal(
        config_pb2.GetGoalRequest(goal_id=goal_id)
    ),
    "UpdateGoal": lambda stub, goal_id, today: stub.UpdateGoal(
        config_pb2.UpdateGoalRequest(
            goal_id=goal_id,
            goal=config_pb2.Goal(name="Taken over", description="changed by A"),
            update_mask=FieldMask(paths=["name", "description"]),
        )
    ),
    "ActivateGoal": lambda stub, goal_id, today: stub.ActivateGoal(
        config_pb2.ActivateGoalRequest(goal_id=goal_id, start_date=date(today))
    ),
    "DeactivateGoal": lambda stub, goal_id, today: stub.DeactivateGoal(
        config_pb2.DeactivateGoalRequest(goal_id=goal_id)
    ),
    "DeleteGoal": lambda stub, goal_id, today: stub.DeleteGoal(
        config_pb2.DeleteGoalRequest(goal_id=goal_id)
    ),
}


@pytest.fixture
async def two_accounts(config_stub, make_tenant, clock):
    """Account A with one goal; account B with an active and an inactive goal."""
    a, b = await make_tenant(), await make_tenant()
    today = clock.now().date()
    a_stub, b_stub = config_stub(a.admin), config_stub(b.admin)
    a_goal = (await a_stub.CreateGoal(goal_request("Alpha", active=True,
                                                   start_date=date(today)))).goal
    b_active = (await b_stub.CreateGoal(goal_request(B_ACTIVE_NAME, active=True,
                                                     start_date=date(today)))).goal
    b_idle = (await b_stub.CreateGoal(goal_request(B_IDLE_NAME, start_date=date(today)))).goal
    return a, b, a_stub, b_stub, a_goal, (b_active, b_idle)


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    # make_channel's interceptor does not reach server-streaming calls (see the report on
    # goalflow_common/client.py), so streams carry the key explicitly.
    return (("authorization", f"Bearer {key}"),)


def _assert_no_leak(error: grpc.aio.AioRpcError) -> None:
    for secret in (B_ACTIVE_NAME, B_IDLE_NAME, "Bravo"):
        assert secret not in (error.details() or "")


@pytest.mark.parametrize("rpc", sorted(GOAL_RPCS))
async def test_foreign_goal_is_not_found_and_unchanged(rpc, two_accounts, clock):
    _, b, a_stub, b_stub, _, b_goals = two_accounts
    for b_goal in b_goals:
        with pytest.raises(grpc.RpcError) as err:
            await GOAL_RPCS[rpc](a_stub, b_goal.id, clock.now().date())
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()
        _assert_no_leak(err.value)
        # The refusal looks exactly like a goal id that exists nowhere.
        with pytest.raises(grpc.RpcError) as missing:
            await GOAL_RPCS[rpc](a_stub, "0" * 32, clock.now().date())
        assert missing.value.code() == err.value.code()
        assert missing.value.details() == err.value.details().replace(b_goal.id, "0" * 32)

        after = (await b_stub.GetGoal(config_pb2.GetGoalRequest(goal_id=b_goal.id))).goal
        assert after == b_goal
        assert after.account_id == b.account_id


async def test_lists_never_show_foreign_goals(two_accounts):
    a, _, a_stub, b_stub, a_goal, b_goals = two_accounts
    listing = await a_stub.ListGoals(config_pb2.ListGoalsRequest(page_size=200))
    assert [row.goal.id for row in listing.goals] == [a_goal.id]
    active = await a_stub.ListActiveGoals(config_pb2.ListActiveGoalsRequest())
    assert [g.id for g in active.goals] == [a_goal.id]
    named = await a_stub.ListActiveGoals(
        config_pb2.ListActiveGoalsRequest(account_id=a.account_id)
    )
    assert [g.id for g in named.goals] == [a_goal.id]
    # B sees its own goals, so the absence above is isolation, not an empty database.
    b_listing = await b_stub.ListGoals(config_pb2.ListGoalsRequest(page_size=200))
    assert {row.goal.id for row in b_listing.goals} == {g.id for g in b_goals}


async def test_naming_another_account_is_permission_denied(two_accounts):
    a, b, a_stub, _, _, _ = two_accounts
    with pytest.raises(grpc.RpcError) as err:
        await a_stub.ListActiveGoals(config_pb2.ListActiveGoalsRequest(account_id=b.account_id))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    _assert_no_leak(err.value)

    call = a_stub.WatchGoals(
        config_pb2.WatchGoalsRequest(account_id=b.account_id, send_snapshot=True),
        metadata=bearer(a.admin),
    )
    received = []
    with pytest.raises(grpc.RpcError) as err:
        async with asyncio.timeout(5):
            async for change in call:
                received.append(change)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert received == []  # not even a snapshot of B's goals
    _assert_no_leak(err.value)


async def test_naming_an_unknown_account_is_refused_the_same_way(two_accounts):
    """Whether an account exists is not revealed to other accounts."""
    _, b, a_stub, _, _, _ = two_accounts
    errors = []
    for account_id in (b.account_id, "no-such-account"):
        with pytest.raises(grpc.RpcError) as err:
            await a_stub.ListActiveGoals(config_pb2.ListActiveGoalsRequest(account_id=account_id))
        errors.append((err.value.code(), err.value.details()))
    assert errors[0] == errors[1]


async def test_same_name_in_another_account_is_allowed(two_accounts):
    """Names are unique per account: A may use B's goal name, and learns nothing."""
    _, _, a_stub, _, _, _ = two_accounts
    created = (await a_stub.CreateGoal(goal_request(B_ACTIVE_NAME))).goal
    assert created.name == B_ACTIVE_NAME


async def test_platform_key_sees_every_account(two_accounts, config_stub, platform_key):
    a, b, _, _, a_goal, (b_active, _) = two_accounts
    platform = config_stub(platform_key)
    everything = await platform.ListActiveGoals(config_pb2.ListActiveGoalsRequest())
    assert {(g.account_id, g.id) for g in everything.goals} == {
        (a.account_id, a_goal.id),
        (b.account_id, b_active.id),
    }
    only_b = await platform.ListActiveGoals(
        config_pb2.ListActiveGoalsRequest(account_id=b.account_id)
    )
    assert [(g.account_id, g.id) for g in only_b.goals] == [(b.account_id, b_active.id)]
    assert only_b.goals[0] == b_active


async def test_platform_key_cannot_act_on_goals_without_an_account(two_accounts, config_stub,
                                                                   platform_key):
    """A service key belongs to no account, so account-scoped goal reads are refused."""
    _, _, _, _, _, (b_active, _) = two_accounts
    platform = config_stub(platform_key)
    with pytest.raises(grpc.RpcError) as err:
        await platform.GetGoal(config_pb2.GetGoalRequest(goal_id=b_active.id))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    _assert_no_leak(err.value)
