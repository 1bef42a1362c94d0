"""Config down: the tracker keeps attributing with the goals it last saw, and once config
is back it catches up with what changed (a goal deactivated, another created)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

from grpc_health.v1 import health_pb2, health_pb2_grpc

from goalflow_common.pb.goals.v1 import config_pb2, tracker_pb2
from tests.faults.conftest import FaultStack, ServiceProcess
from tests.services.config_svc.helpers import date, goal_request, url_condition
from tests.services.tracker_svc.builders import agent, assigned, message, opened, visit

SECOND = dt.timedelta(seconds=1)
SHOP = "https://shop.example.com"


def goal(name: str, path: str, today: dt.date) -> config_pb2.CreateGoalRequest:
    return goal_request(name, active=True, start_date=date(today),
                        conditions=[url_condition(path)])


def conversation(conv: str, at: dt.datetime, *paths: str) -> list[tracker_pb2.Event]:
    """Opened, a sales agent assigned who replies, then a visit to each path."""
    user = f"user-{conv}"
    events = [opened(conv, at, user=user), assigned(conv, at + SECOND, agent("ana", "sales")),
              message(conv, at + 2 * SECOND, "ana")]
    events += [visit(f"{SHOP}{path}", at + (3 + n) * SECOND, user=user, conv=conv)
               for n, path in enumerate(paths)]
    return events


async def send(stack: FaultStack, tracker: ServiceProcess, events: list[tracker_pb2.Event]
               ) -> int:
    """Send ``events`` in one batch; the conversions its acknowledgement reports."""
    async with stack.producer(tracker, batch_size=len(events)) as producer:
        summary = await producer.send(events)
    assert summary.accepted == len(events) and summary.rejected == []
    return summary.conversions


async def test_tracker_attributes_with_cached_goals_and_catches_up(fault_stack):
    stack = fault_stack
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    at = (now + n * dt.timedelta(minutes=5) for n in itertools.count())
    [checkout] = await stack.create_goals([goal("Checkout", "/checkout", now.date())])
    tracker = stack.tracker()
    await tracker.serve()
    assert await send(stack, tracker, conversation("c1", next(at), "/checkout")) == 1

    # Config goes away. The tracker still serves and attributes with its cached goals.
    await asyncio.to_thread(stack.config.stop)
    assert await send(stack, tracker, conversation("c2", next(at), "/checkout")) == 1
    async with stack.health_channel(tracker) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

    # Config comes back (same address and data); the goals change there.
    await stack.config.serve()
    admin = stack.config_stub()
    await admin.DeactivateGoal(config_pb2.DeactivateGoalRequest(goal_id=checkout.id))
    signup = (await admin.CreateGoal(goal("Signup", "/signup", now.date()))).goal

    # Once a throwaway conversation converts on the new goal, the tracker has caught up
    # (config's feed is in order, so the earlier deactivation came first).
    probes = 0
    while True:
        probes += 1
        if await send(stack, tracker, conversation(f"probe-{probes}", next(at), "/signup")):
            break
        assert probes < 100, "the tracker never saw the goal created after config returned"
        await asyncio.sleep(0.2)

    # Conversions follow the new state: the deactivated goal no longer converts.
    assert await send(stack, tracker, conversation("c3", next(at), "/checkout", "/signup")) == 1
    listed = await stack.outcome(tracker)
    recorded = {(c.goal_id, c.conversation_id) for c in listed.conversions}
    assert recorded == {(checkout.id, "c1"), (checkout.id, "c2"), (signup.id, f"probe-{probes}"),
                        (signup.id, "c3")}
    assert listed.report.totals.conversions == 4
