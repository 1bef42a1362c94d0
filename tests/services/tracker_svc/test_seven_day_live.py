"""Config's 7-day column, answered by the real tracker from real conversions."""

from __future__ import annotations

import datetime as dt

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import config_pb2
from tests.services.tracker_svc.builders import agent, assigned, create_goal, ingest, opened, visit

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
ALL = config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES


async def test_list_goals_shows_real_seven_day_counts(stack, make_tenant, clock):
    tenant = await make_tenant()
    checkout = await create_goal(stack, tenant, "Checkout", model=ALL)
    idle = await create_goal(stack, tenant, "Idle", model=ALL, active=False)
    clock.set(T0 + 9 * DAY)
    batches = []
    for n, day in enumerate((0, 1, 5, 8, 9)):  # conversions on June 1, 2, 6, 9 and 10
        at = T0 + day * DAY
        conv, user = f"c{n}", f"u{n}"
        batches.append([opened(conv, at, user=user), assigned(conv, at, agent("A")),
                        assigned(conv, at, agent("B")),
                        visit("https://x.io/checkout", at + dt.timedelta(minutes=5), user=user)])
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]), *batches)
    assert sum(a.conversions for a in acks) == 5
    listing = await stack.config(tenant.admin).ListGoals(config_pb2.ListGoalsRequest())
    assert listing.seven_day_conversions_available
    counts = {row.goal.id: row.seven_day_conversions for row in listing.goals}
    # Today is June 10: the window is June 4-10, so June 6, 9 and 10 count; two agents
    # credited on each still count each conversion once.
    assert counts == {checkout.id: 3, idle.id: 0}
