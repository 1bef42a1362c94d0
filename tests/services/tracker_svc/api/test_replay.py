"""ReplayGoal over real gRPC on the real config + tracker servers: after live ingest, a
replay of each goal gives what live attribution recorded (conversions, per-agent counts,
values), writes nothing, and refuses bad input naming the field."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import config_pb2, tracker_pb2
from goalflow_common.protoconv import timestamp
from tests.services.tracker_svc.builders import (
    agent,
    assigned,
    closed,
    create_goal,
    ingest,
    message,
    opened,
    visit,
)

FIRST = config_pb2.ATTRIBUTION_MODEL_FIRST_TOUCH
LAST = config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH
ALL = config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MIN, HOUR = dt.timedelta(minutes=1), dt.timedelta(hours=1)
DAY_START = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def traffic() -> list[list[tracker_pb2.Event]]:
    """Twelve conversations: various agents and groups, some closed, hits with and without
    values, a conversation hit twice."""
    batches = []
    for n in range(12):
        conv, user, t = f"c{n}", f"u{n}", T0 + n * 10 * MIN
        events = [opened(conv, t, user=user, skill="vip" if n % 4 == 0 else "billing"),
                  assigned(conv, t + MIN, agent(f"A{n % 3}"))]
        if n % 2:
            events += [message(conv, t + 2 * MIN, f"A{n % 3}"),
                       assigned(conv, t + 3 * MIN, agent(f"B{n % 2}",
                                                         "sales" if n % 3 else "support"))]
        if n % 5 == 0:
            events.append(closed(conv, t + 4 * MIN))
        events.append(visit("https://shop.example/checkout", t + 5 * MIN, user=user,
                            amount="20.00" if n % 2 else None))
        events.append(visit("https://shop.example/checkout?again", t + 6 * MIN, user=user,
                            amount="99.00"))
        batches.append(events)
    return batches


async def replay(stub, goal: config_pb2.Goal, start: dt.datetime, end: dt.datetime,
                 account_id: str = "") -> list[tracker_pb2.ReplayGoalResponse]:
    request = tracker_pb2.ReplayGoalRequest(account_id=account_id, goal=goal,
                                            start_time=timestamp(start), end_time=timestamp(end))
    return [update async for update in stub.ReplayGoal(request)]


async def test_replay_gives_what_live_attribution_recorded(stack, make_tenant, clock):
    tenant = await make_tenant()
    goals = {m: await create_goal(stack, tenant, f"Checkout {m}", model=m, period=7,
                                  value=("EUR", "5.00"))
             for m in (FIRST, LAST, ALL)}
    clock.set(T0 + 3 * HOUR)
    await ingest(stack.tracker(tenant.keys[Role.INGEST]), *traffic())
    db = stack.tracker_server.components["db"]
    recorded = await db.conversions.find({"account_id": tenant.account_id}).to_list()
    assert recorded
    before = {name: await db[name].count_documents({}) for name in await db.list_collection_names()}

    service = stack.tracker(tenant.keys[Role.SERVICE])
    for model, live_goal in goals.items():
        updates = await replay(service, live_goal, DAY_START, DAY_START + dt.timedelta(days=2))
        *progress, last = updates
        assert progress and all(u.HasField("progress") for u in progress)
        assert progress[0].progress.events_total == last.result.events_scanned > 0
        assert last.HasField("result")
        result = last.result
        assert [m.attribution_model for m in result.models] == [FIRST, LAST, ALL]
        [same] = [m for m in result.models if m.attribution_model == model]
        live = [d for d in recorded if d["goal_id"] == live_goal.id]
        assert same.conversions == len(live)
        per_agent: dict[str, int] = {}
        for doc in live:
            for credit in doc["credits"]:
                per_agent[credit["agent"]["id"]] = per_agent.get(credit["agent"]["id"], 0) + 1
        assert {row.key: row.conversions for row in same.agents} == per_agent
        totals: dict[str, int] = {}
        for doc in live:
            value = doc["transaction_value"]
            totals[value["currency_code"]] = (totals.get(value["currency_code"], 0)
                                              + int(float(value["amount"]) * 100))
        assert {m.currency_code: int(float(m.amount) * 100)
                for m in same.transaction_values} == totals
        assert result.hits == 24
        assert result.start_time.ToDatetime(dt.UTC) == DAY_START
    after = {name: await db[name].count_documents({}) for name in await db.list_collection_names()}
    assert after == before  # a replay writes nothing


async def test_an_inactive_goal_is_replayed_as_if_tracked(stack, make_tenant, clock):
    tenant = await make_tenant()
    clock.set(T0 + 3 * HOUR)
    await ingest(stack.tracker(tenant.keys[Role.INGEST]), *traffic())
    goal = await create_goal(stack, tenant, "Never active", model=LAST, active=False)
    db = stack.tracker_server.components["db"]
    assert await db.conversions.count_documents({"account_id": tenant.account_id}) == 0
    *_, last = await replay(stack.tracker(tenant.keys[Role.SERVICE]), goal, DAY_START,
                            DAY_START + dt.timedelta(days=1))
    # By hand (period 7, group "sales"): FIRST credits A in the 9 open conversations and
    # in c5, closed but A wrote; LAST credits A (even n) or B1 when in sales (n = 1, 7, 11);
    # ALL as FIRST.
    assert [m.conversions for m in last.result.models] == [10, 7, 10]


async def test_another_accounts_events_are_never_read(stack, make_tenant, clock):
    a, b = await make_tenant(), await make_tenant()
    clock.set(T0 + 3 * HOUR)
    await ingest(stack.tracker(a.keys[Role.INGEST]), *traffic())
    goal = await create_goal(stack, b, "Checkout", model=LAST, active=False)
    # B's service key, even naming A's account, replays B's (empty) history or is refused.
    updates = await replay(stack.tracker(b.keys[Role.SERVICE]), goal, DAY_START,
                           DAY_START + dt.timedelta(days=1))
    assert updates[-1].result.events_scanned == 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await replay(stack.tracker(b.keys[Role.SERVICE]), goal, DAY_START,
                     DAY_START + dt.timedelta(days=1), account_id=a.account_id)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_only_a_service_key_may_replay(stack, make_tenant):
    tenant = await make_tenant()
    goal = await create_goal(stack, tenant, "Checkout", model=LAST, active=False)
    for role in (Role.ADMIN, Role.AGENT, Role.INGEST):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await replay(stack.tracker(tenant.keys[role]), goal, DAY_START,
                         DAY_START + dt.timedelta(days=1))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, role


def _goal(**fields) -> config_pb2.Goal:
    return config_pb2.Goal(
        id="g", name="x", agent_group_ids=["sales"], attribution_model=LAST,
        conditions=[config_pb2.Condition(category=config_pb2.CONDITION_CATEGORY_URL,
                                         operator=config_pb2.CONDITION_OPERATOR_CONTAINS,
                                         value="/checkout")], **fields)


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: r.ClearField("goal"), "goal"),
    (lambda r: r.goal.ClearField("conditions"), "goal.conditions"),
    (lambda r: r.ClearField("start_time"), "start_time"),
    (lambda r: r.ClearField("end_time"), "end_time"),
    (lambda r: r.end_time.CopyFrom(r.start_time), "end_time"),
    (lambda r: r.end_time.CopyFrom(timestamp(DAY_START + dt.timedelta(days=94))), "end_time"),
    (lambda r: setattr(r.start_time, "nanos", 5), "start_time"),
])
async def test_bad_requests_name_the_field(stack, make_tenant, change, field):
    tenant = await make_tenant()
    request = tracker_pb2.ReplayGoalRequest(
        goal=_goal(), start_time=timestamp(DAY_START),
        end_time=timestamp(DAY_START + dt.timedelta(days=1)))
    change(request)
    stub = stack.tracker(tenant.keys[Role.SERVICE])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        _ = [u async for u in stub.ReplayGoal(request)]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field), err.value.details()


async def test_the_range_limit_is_a_setting(stack, make_tenant):
    tenant = await make_tenant()
    stub = stack.tracker(tenant.keys[Role.SERVICE])
    days = stack.tracker_settings.simulation_max_days
    ok = await replay(stub, _goal(), DAY_START, DAY_START + dt.timedelta(days=days + 1))
    assert ok[-1].HasField("result")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await replay(stub, _goal(), DAY_START, DAY_START + dt.timedelta(days=days + 1, seconds=1))
    assert f"at most {days} days" in (err.value.details() or "")
