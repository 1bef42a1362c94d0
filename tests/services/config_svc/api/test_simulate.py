"""SimulateGoal end to end on the real config and tracker servers and database: a
definition or an existing goal with overrides, validated as CreateGoal/UpdateGoal validate,
over a range of days in the account's time zone, relayed from the tracker's replay."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2
from tests.services.config_svc.helpers import date, goal_request, url_condition
from tests.services.tracker_svc.api.test_replay import T0, traffic
from tests.services.tracker_svc.builders import agent, assigned, ingest, opened, visit
from tests.services.tracker_svc.conftest import stack  # noqa: F401

JUNE_1 = dt.date(2026, 6, 1)
FIRST = config_pb2.ATTRIBUTION_MODEL_FIRST_TOUCH
LAST = config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH
ALL = config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES


def simulate_request(first: dt.date = JUNE_1, last: dt.date = JUNE_1, **goal):
    request = config_pb2.SimulateGoalRequest(**goal)
    request.start_date.CopyFrom(date(first))
    request.end_date.CopyFrom(date(last))
    return request


async def simulate(stub, request) -> list[config_pb2.SimulateGoalResponse]:
    return [update async for update in stub.SimulateGoal(request)]


def counts(updates) -> list[int]:
    result = updates[-1].result
    assert [m.attribution_model for m in result.models] == [FIRST, LAST, ALL]
    return [m.conversions for m in result.models]


@pytest.fixture
async def with_traffic(stack, make_tenant, clock):  # noqa: F811
    tenant = await make_tenant()
    clock.set(T0 + 3 * dt.timedelta(hours=1))
    await ingest(stack.tracker(tenant.keys[Role.INGEST]), *traffic())
    return tenant


async def test_a_definition_is_simulated_and_nothing_is_created(stack, with_traffic):  # noqa: F811
    tenant = with_traffic
    admin = stack.config(tenant.admin)
    # The name of an existing goal, active with a start date in the past: neither name
    # uniqueness nor the date rules apply to a goal that is not created.
    await admin.CreateGoal(goal_request("Checkout"))
    definition = goal_request("Checkout", active=True, start_date=date(JUNE_1 - dt.timedelta(3)))
    updates = await simulate(admin, simulate_request(definition=definition))
    *progress, last = updates
    assert progress and all(u.HasField("progress") for u in progress)
    assert progress[0].progress.events_total == last.result.events_scanned == 63
    # As tests/services/tracker_svc/api/test_replay.py works out by hand.
    assert counts(updates) == [10, 7, 10]
    every = last.result.models[2]
    assert {row.key: row.conversions for row in every.groups} == {"sales": 10}
    assert every.agents[0].label.startswith("Agent ")
    listed = await admin.ListGoals(config_pb2.ListGoalsRequest())
    assert [g.goal.name for g in listed.goals] == ["Checkout"]
    db = stack.tracker_server.components["db"]
    assert await db.conversions.count_documents({}) == 0


async def test_an_existing_goal_with_overrides(stack, with_traffic):  # noqa: F811
    tenant = with_traffic
    admin = stack.config(tenant.admin)
    stored = (await admin.CreateGoal(goal_request(
        "Elsewhere", agent_group_ids=["support"], conditions=[url_condition("/nowhere")]))).goal
    unchanged = await simulate(admin, simulate_request(goal_id=stored.id))
    assert counts(unchanged) == [0, 0, 0] and unchanged[-1].result.hits == 0
    overrides = goal_request("", agent_group_ids=["sales"], conditions=[url_condition()])
    updates = await simulate(admin, simulate_request(
        goal_id=stored.id, overrides=overrides,
        override_mask=FieldMask(paths=["agent_group_ids", "conditions"])))
    assert counts(updates) == [10, 7, 10]
    again = (await admin.GetGoal(config_pb2.GetGoalRequest(goal_id=stored.id))).goal
    assert again == stored  # not saved


async def test_the_range_is_read_in_the_accounts_time_zone(stack, make_tenant, clock):  # noqa: F811
    tenant = await make_tenant(time_zone="America/New_York")
    clock.set(dt.datetime(2026, 6, 2, 12, tzinfo=dt.UTC))
    a = agent("A")
    # 02:00 UTC on June 1 is still May 31 in New York; 23:00 UTC on June 1 is June 1 there.
    early, late = dt.datetime(2026, 6, 1, 2, tzinfo=dt.UTC), dt.datetime(2026, 6, 1, 23,
                                                                         tzinfo=dt.UTC)
    await ingest(stack.tracker(tenant.keys[Role.INGEST]), [
        opened("c1", early, user="u1"), assigned("c1", early, a), visit("/checkout", early),
        opened("c2", late, user="u2"), assigned("c2", late, a),
        visit("/checkout", late, user="u2")])
    updates = await simulate(stack.config(tenant.admin),
                             simulate_request(definition=goal_request()))
    result = updates[-1].result
    assert result.start_time.ToDatetime(dt.UTC) == dt.datetime(2026, 6, 1, 4, tzinfo=dt.UTC)
    assert result.end_time.ToDatetime(dt.UTC) == dt.datetime(2026, 6, 2, 4, tzinfo=dt.UTC)
    assert result.hits == 1 and counts(updates) == [1, 1, 1]


BAD = [
    (lambda r: r.ClearField("definition"), "goal"),
    (lambda r: r.definition.ClearField("name"), "definition.name"),
    (lambda r: r.definition.conditions[0].ClearField("value"), "definition.conditions[0].value"),
    (lambda r: r.definition.ClearField("attribution_period_days"),
     "definition.attribution_period_days"),
    (lambda r: r.overrides.CopyFrom(goal_request()), "overrides"),
    (lambda r: r.ClearField("start_date"), "start_date"),
    (lambda r: r.ClearField("end_date"), "end_date"),
    (lambda r: r.start_date.CopyFrom(common_pb2.Date(year=2026, month=2, day=30)), "start_date"),
    (lambda r: r.start_date.CopyFrom(date(JUNE_1 + dt.timedelta(1))), "end_date"),
    (lambda r: r.end_date.CopyFrom(date(JUNE_1 + dt.timedelta(1))), "end_date"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
async def test_bad_requests_name_the_field(stack, make_tenant, clock, change, field):  # noqa: F811
    tenant = await make_tenant()
    request = simulate_request(definition=goal_request())
    change(request)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await simulate(stack.config(tenant.admin), request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}:"), err.value.details()


async def test_bad_overrides_name_the_field(stack, make_tenant):  # noqa: F811
    tenant = await make_tenant()
    admin = stack.config(tenant.admin)
    stored = (await admin.CreateGoal(goal_request())).goal
    for mask, overrides, field in (
        (["active"], goal_request(), "override_mask"),
        (["conditions"], goal_request(conditions=[]), "overrides.conditions"),
        (["attribution_period_days"], config_pb2.CreateGoalRequest(),
         "overrides.attribution_period_days"),
        ([], config_pb2.CreateGoalRequest(name="x"), "overrides.agent_group_ids"),
    ):
        request = simulate_request(goal_id=stored.id, overrides=overrides,
                                   override_mask=FieldMask(paths=mask))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await simulate(admin, request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith(f"{field}:"), err.value.details()


async def test_a_range_longer_than_the_limit_names_it(stack, make_tenant, clock):  # noqa: F811
    tenant = await make_tenant()
    clock.set(dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    admin = stack.config(tenant.admin)
    ok = await simulate(admin, simulate_request(JUNE_1, JUNE_1 + dt.timedelta(91),
                                                definition=goal_request()))
    assert ok[-1].HasField("result")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await simulate(admin, simulate_request(JUNE_1, JUNE_1 + dt.timedelta(92),
                                               definition=goal_request()))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 92 days (GOALFLOW_SIMULATION_MAX_DAYS)" in err.value.details()


async def test_another_accounts_goal_is_not_found(stack, make_tenant):  # noqa: F811
    a, b = await make_tenant(), await make_tenant()
    theirs = (await stack.config(a.admin).CreateGoal(goal_request())).goal
    for goal_id in (theirs.id, "no-such-goal"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await simulate(stack.config(b.admin), simulate_request(goal_id=goal_id))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_only_an_admin_simulates(stack, make_tenant):  # noqa: F811
    tenant = await make_tenant()
    for role in (Role.AGENT, Role.INGEST, Role.SERVICE):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await simulate(stack.config(tenant.keys[role]),
                           simulate_request(definition=goal_request()))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, role


async def test_without_a_tracker_the_caller_is_told_to_retry(config_stub, make_tenant):
    tenant = await make_tenant()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await simulate(config_stub(tenant.admin), simulate_request(definition=goal_request()))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "127.0.0.1" not in (err.value.details() or "")
