"""The config service end to end: create, read, list, activate over real gRPC."""

from __future__ import annotations

import grpc
import pytest

from goalflow_common.pb.goals.v1 import config_pb2
from tests.services.config_svc.helpers import date, goal_request, url_condition


async def test_create_get_list_activate(config_stub, make_tenant, clock):
    tenant = await make_tenant()
    stub = config_stub(tenant.admin)
    today = clock.now().date()
    created = (await stub.CreateGoal(goal_request("Checkout"))).goal
    assert created.status == config_pb2.GOAL_STATUS_INACTIVE
    assert created.account_id == tenant.account_id
    fetched = (await stub.GetGoal(config_pb2.GetGoalRequest(goal_id=created.id))).goal
    assert fetched == created
    activated = (
        await stub.ActivateGoal(
            config_pb2.ActivateGoalRequest(goal_id=created.id, start_date=date(today))
        )
    ).goal
    assert activated.active and activated.status == config_pb2.GOAL_STATUS_ACTIVE
    assert activated.revision == created.revision + 1
    listing = await stub.ListGoals(config_pb2.ListGoalsRequest())
    assert [g.goal.id for g in listing.goals] == [created.id]
    assert not listing.seven_day_conversions_available
    assert not listing.goals[0].HasField("seven_day_conversions")


async def test_missing_key_is_unauthenticated(config_stub):
    stub = config_stub("gf_0000000000000000_" + "a" * 43)
    with pytest.raises(grpc.RpcError) as err:
        await stub.ListGoals(config_pb2.ListGoalsRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_list_pages_by_size_when_goals_are_huge(config_stub, make_tenant):
    """50 goals of the largest allowed size (~200 KB each) exceed one 8 MiB message: the
    list ends pages early and pages on, losing none."""
    tenant = await make_tenant()
    stub = config_stub(tenant.admin)
    conditions = [url_condition(f"/{i:04d}" + "x" * 2043) for i in range(100)]
    for i in range(50):
        await stub.CreateGoal(goal_request(f"Huge {i:02d}", conditions=conditions))
    seen, token, pages = [], "", 0
    while True:
        page = await stub.ListGoals(config_pb2.ListGoalsRequest(page_size=50, page_token=token))
        seen += [row.goal.name for row in page.goals]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"Huge {i:02d}" for i in range(50)]
    assert pages > 1
