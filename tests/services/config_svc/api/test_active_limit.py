"""The 15-active-goal limit (docs/rules.md §2): it holds under concurrency over real gRPC,
ended goals count, deactivating or deleting frees a slot, and leaked slots are reclaimed."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from goalflow_common.pb.goals.v1 import config_pb2
from tests.services.config_svc.helpers import date, goal_request

LIMIT = 15
CONCURRENT = 40
CHANNELS = 8


async def _error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.RpcError) as err:
        await call
    return err.value


def _assert_limit_refusal(error: grpc.aio.AioRpcError) -> None:
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    # A clear message: it names the limit and what to do about it.
    assert "15 active goals" in error.details()
    assert "deactivate or delete" in error.details()


async def _create(stub, name: str, **fields) -> config_pb2.Goal:
    return (await stub.CreateGoal(goal_request(name, **fields))).goal


async def _create_active(stub, count: int, today: dt.date, **fields) -> list[str]:
    return [
        (await _create(stub, f"Active {i}", active=True, start_date=date(today), **fields)).id
        for i in range(count)
    ]


async def _create_inactive(stub, count: int, prefix: str = "Idle") -> list[str]:
    return [(await _create(stub, f"{prefix} {i}")).id for i in range(count)]


async def _active_ids(stub) -> set[str]:
    """Active goal ids, asserting that ListActiveGoals and ListGoals agree."""
    from_active = {g.id for g in (await stub.ListActiveGoals(
        config_pb2.ListActiveGoalsRequest())).goals}
    listing = await stub.ListGoals(config_pb2.ListGoalsRequest(page_size=200))
    assert not listing.next_page_token
    from_list = {row.goal.id for row in listing.goals if row.goal.active}
    assert from_active == from_list
    return from_active


def _slots(mongo, db_prefix: str):
    return mongo[f"{db_prefix}_config"]["active_slots"]


async def _slot_goal_ids(mongo, db_prefix: str, account_id: str) -> list[str]:
    return [
        doc["goal_id"]
        async for doc in _slots(mongo, db_prefix).find({"account_id": account_id})
    ]


async def _insert_slot(mongo, db_prefix: str, account_id: str, goal_id: str, age: dt.timedelta):
    """Write a slot document the way a claim does, as if the claim happened ``age`` ago."""
    taken = {doc["_id"] async for doc in _slots(mongo, db_prefix).find({"account_id": account_id})}
    slot_id = next(f"{account_id}:{k}" for k in range(LIMIT) if f"{account_id}:{k}" not in taken)
    await _slots(mongo, db_prefix).insert_one(
        {"_id": slot_id, "account_id": account_id, "goal_id": goal_id,
         "token": uuid.uuid4().hex, "claimed_at": dt.datetime.now(dt.UTC) - age}
    )


def _split(results: list) -> tuple[list, list[grpc.aio.AioRpcError]]:
    ok = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    unexpected = [r for r in failed if not isinstance(r, grpc.aio.AioRpcError)]
    assert not unexpected, unexpected
    return ok, failed


async def test_concurrent_activations_leave_exactly_fifteen(
    config_stub, make_tenant, clock, mongo, db_prefix
):
    tenant = await make_tenant()
    stub = config_stub(tenant.admin)
    today = clock.now().date()
    active = await _create_active(stub, LIMIT - 1, today)
    candidates = await _create_inactive(stub, CONCURRENT)
    stubs = [config_stub(tenant.admin) for _ in range(CHANNELS)]

    results = await asyncio.gather(
        *(
            stubs[i % CHANNELS].ActivateGoal(
                config_pb2.ActivateGoalRequest(goal_id=goal_id, start_date=date(today))
            )
            for i, goal_id in enumerate(candidates)
        ),
        return_exceptions=True,
    )

    ok, failed = _split(results)
    assert len(ok) == 1
    assert len(failed) == CONCURRENT - 1
    for error in failed:
        _assert_limit_refusal(error)
    winner = ok[0].goal.id
    assert await _active_ids(stub) == {*active, winner}
    assert sorted(await _slot_goal_ids(mongo, db_prefix, tenant.account_id)) == sorted(
        [*active, winner]
    )


async def test_concurrent_active_creates_leave_exactly_fifteen(
    config_stub, make_tenant, clock, mongo, db_prefix
):
    tenant = await make_tenant()
    stub = config_stub(tenant.admin)
    today = clock.now().date()
    active = await _create_active(stub, LIMIT - 1, today)
    stubs = [config_stub(tenant.admin) for _ in range(CHANNELS)]

    results = await asyncio.gather(
        *(
            stubs[i % CHANNELS].CreateGoal(
                goal_request(f"New {i}", active=True, start_date=date(today))
            )
            for i in range(CONCURRENT)
        ),
        return_exceptions=True,
    )

    ok, failed = _split(results)
    assert len(ok) == 1
    assert len(failed) == CONCURRENT - 1
    for error in failed:
        _assert_limit_refusal(error)
    winner = ok[0].goal.id
    assert await _active_ids(stub) == {*active, winner}
    # Refused creations store nothing: only the winner was added.
    listing = await stub.ListGoals(config_pb2.ListGoalsRequest(page_size=200))
    assert len(listing.goals) == LIMIT
    assert sorted(await _slot_goal_ids(mongo, db_prefix, tenant.account_id)) == sorted(
        [*active, winner]
    )


async def test_concurrent_activations_of_one_goal(
    config_stub, make_tenant, clock, mongo, db_prefix
):
    tenant = await make_tenant()
    stub = config_stub(tenant.admin)
    today = clock.now().date()
    active = await _create_active(stub, LIMIT - 1, today)
    target = await _create(stub, "Target", start_date=date(today))
    stubs = [config_stub(tenant.admin) for _ in range(CHANNELS)]

    results = await asyncio.gather(
        *(
            stubs[i % CHANNELS].ActivateGoal(config_pb2.ActivateGoalRequest(goal_id=target.id))
            for i in range(CONCURRENT)
        ),
        return_exceptions=True,
    )

    ok, failed = _split(results)
    assert ok, "at least one activation must succeed"
    assert all(e.code() == grpc.StatusCode.ABORTED for e in failed), [
        (e.code(), e.details()) for e in failed
    ]
    assert all(r.goal.active and r.goal.id == target.id for r in ok)
    assert await _active_ids(stub) == {*active, target.id}
    after = (await stub.GetGoal(config_pb2.GetGoalRequest(goal_id=target.id))).goal
    # Activated once: calls that found it active changed nothing.
    assert after.revision == target.revision + 1
    slots = await _slot_goal_ids(mongo, db_prefix, tenant.account_id)
    assert sorted(slots) == sorted([*active, target.id])


async def test_ended_but_active_goal_still_counts(config_stub, make_tenant, clock):
    tenant = await make_tenant()
    stub = config_stub(tenant.admin)
    today = clock.now().date()
    ending = await _create_active(stub, 1, today, end_date=date(today))
    others = [
        (await _create(stub, f"Open {i}", active=True, start_date=date(today))).id
        for i in range(LIMIT - 1)
    ]

    clock.advance(dt.timedelta(days=3))
    later = today + dt.timedelta(days=3)
    ended = (await stub.GetGoal(config_pb2.GetGoalRequest(goal_id=ending[0]))).goal
    assert ended.status == config_pb2.GOAL_STATUS_ENDED and ended.active
    assert await _active_ids(stub) == {*ending, *others}

    extra = await _create(stub, "Sixteenth")
    _assert_limit_refusal(await _error(stub.ActivateGoal(
        config_pb2.ActivateGoalRequest(goal_id=extra.id, start_date=date(later))
    )))
    _assert_limit_refusal(await _error(stub.CreateGoal(
        goal_request("Seventeenth", active=True, start_date=date(later))
    )))
    assert not (await stub.GetGoal(config_pb2.GetGoalRequest(goal_id=extra.id))).goal.active

    # Deactivating the ended goal is what frees its slot.
    await stub.DeactivateGoal(config_pb2.DeactivateGoalRequest(goal_id=ending[0]))
    activated = await stub.ActivateGoal(
        config_pb2.ActivateGoalRequest(goal_id=extra.id, start_date=date(later))
    )
    assert activated.goal.status == config_pb2.GOAL_STATUS_ACTIVE
    assert await _active_ids(stub) == {*others, extra.id}


async def test_deactivate_and_delete_free_a_slot(config_stub, make_tenant, clock, mongo, db_prefix):
    tenant = await make_tenant()
    stub = config_stub(tenant.admin)
    today = clock.now().date()
    active = await _create_active(stub, LIMIT, today)
    first, second = await _create_inactive(stub, 2, prefix="Waiting")

    def activate(goal_id: str):
        return stub.ActivateGoal(config_pb2.ActivateGoalRequest(goal_id=goal_id))

    await stub.UpdateGoal(config_pb2.UpdateGoalRequest(
        goal_id=first, goal=config_pb2.Goal(start_date=date(today)),
        update_mask=FieldMask(paths=["start_date"]),
    ))
    await stub.UpdateGoal(config_pb2.UpdateGoalRequest(
        goal_id=second, goal=config_pb2.Goal(start_date=date(today)),
        update_mask=FieldMask(paths=["start_date"]),
    ))
    _assert_limit_refusal(await _error(activate(first)))

    await stub.DeactivateGoal(config_pb2.DeactivateGoalRequest(goal_id=active[0]))
    assert (await activate(first)).goal.active
    _assert_limit_refusal(await _error(activate(second)))

    await stub.DeleteGoal(config_pb2.DeleteGoalRequest(goal_id=active[1]))
    assert (await activate(second)).goal.active

    expected = {*active[2:], first, second}
    assert await _active_ids(stub) == expected
    assert set(await _slot_goal_ids(mongo, db_prefix, tenant.account_id)) == expected
    # And the account is full again.
    _assert_limit_refusal(await _error(activate(active[0])))


async def test_leaked_slot_is_reclaimed_when_full(
    config_stub, make_tenant, clock, mongo, db_prefix
):
    tenant = await make_tenant()
    stub = config_stub(tenant.admin)
    today = clock.now().date()
    active = await _create_active(stub, LIMIT - 1, today)
    leaked_for, candidate = await _create_inactive(stub, 2)
    # As if an activation of `leaked_for` crashed after claiming its slot 10 minutes ago.
    await _insert_slot(mongo, db_prefix, tenant.account_id, leaked_for, dt.timedelta(minutes=10))
    assert len(await _slot_goal_ids(mongo, db_prefix, tenant.account_id)) == LIMIT

    activated = await stub.ActivateGoal(
        config_pb2.ActivateGoalRequest(goal_id=candidate, start_date=date(today))
    )

    assert activated.goal.active
    assert await _active_ids(stub) == {*active, candidate}
    assert sorted(await _slot_goal_ids(mongo, db_prefix, tenant.account_id)) == sorted(
        [*active, candidate]
    )


async def test_fresh_slot_of_inactive_goal_is_not_taken(
    config_stub, make_tenant, clock, mongo, db_prefix
):
    """A just-claimed slot may belong to an activation in flight, so it is not reclaimed."""
    tenant = await make_tenant()
    stub = config_stub(tenant.admin)
    today = clock.now().date()
    active = await _create_active(stub, LIMIT - 1, today)
    in_flight, candidate = await _create_inactive(stub, 2)
    await _insert_slot(mongo, db_prefix, tenant.account_id, in_flight, dt.timedelta(seconds=1))

    _assert_limit_refusal(await _error(stub.ActivateGoal(
        config_pb2.ActivateGoalRequest(goal_id=candidate, start_date=date(today))
    )))
    assert await _active_ids(stub) == set(active)


async def test_goal_with_its_own_leaked_slot_can_be_activated(
    config_stub, make_tenant, clock, mongo, db_prefix
):
    """A crash between claiming a slot and setting the flag must not block that goal for
    good: its stale slot is reused or reclaimed."""
    tenant = await make_tenant()
    stub = config_stub(tenant.admin)
    today = clock.now().date()
    active = await _create_active(stub, 3, today)
    crashed = (await _create_inactive(stub, 1))[0]
    await _insert_slot(mongo, db_prefix, tenant.account_id, crashed, dt.timedelta(minutes=10))

    activated = await stub.ActivateGoal(
        config_pb2.ActivateGoalRequest(goal_id=crashed, start_date=date(today))
    )

    assert activated.goal.active
    assert await _active_ids(stub) == {*active, crashed}
    slots = await _slot_goal_ids(mongo, db_prefix, tenant.account_id)
    assert sorted(slots) == sorted([*active, crashed])
