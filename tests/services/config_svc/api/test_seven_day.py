"""The goal list's 7-day conversions column: asked of the tracker over gRPC
(CountConversions) with the service key; when the tracker cannot answer the list still
answers and marks the counts unavailable, never a made-up zero."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from config_svc.server import create_server
from goalflow_common.auth import Role
from goalflow_common.client import make_channel
from goalflow_common.pb.goals.v1 import config_pb2, config_pb2_grpc, tracker_pb2, tracker_pb2_grpc
from tests.services.config_svc.helpers import goal_request

UTC = dt.UTC


class FakeTracker(tracker_pb2_grpc.TrackerServiceServicer):
    """Implements CountConversions only, recording every request and its metadata."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.requests: list[tracker_pb2.CountConversionsRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.delay_s = 0.0
        self.fail_with: grpc.StatusCode | None = None

    async def CountConversions(self, request, context):
        self.requests.append(request)
        self.metadata.append({m.key: m.value for m in context.invocation_metadata()})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_with is not None:
            await context.abort(self.fail_with, "tracker trouble")
        return tracker_pb2.CountConversionsResponse(
            counts=[
                tracker_pb2.GoalConversionCount(goal_id=goal_id, count=self.counts[goal_id])
                for goal_id in request.goal_ids
                if self.counts.get(goal_id)  # zero counts are left out, as the tracker does
            ]
        )


@pytest.fixture
async def tracker() -> AsyncIterator[tuple[FakeTracker, str]]:
    fake = FakeTracker()
    server = aio.server()
    tracker_pb2_grpc.add_TrackerServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@pytest.fixture
async def config_for(config_settings, clock, platform_key) -> AsyncIterator:
    """``start(tracker_address)``: start a config server that asks that tracker, calling it
    with the platform service key; returns ``stub(key)`` for it."""
    servers, channels = [], []

    async def start(tracker_address: str):
        settings = config_settings.model_copy(
            update={"tracker_address": tracker_address, "service_api_key": platform_key}
        )
        server, port = await create_server(settings, clock=clock)
        await server.start()
        servers.append(server)

        def stub(key: str) -> config_pb2_grpc.ConfigServiceStub:
            channel = make_channel(f"127.0.0.1:{port}", key)
            channels.append(channel)
            return config_pb2_grpc.ConfigServiceStub(channel)

        return stub

    try:
        yield start
    finally:
        for channel in channels:
            await channel.close()
        for server in servers:
            await server.stop(0.5)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _list(stub, **fields) -> tuple[config_pb2.ListGoalsResponse, float]:
    start = time.perf_counter()
    reply = await stub.ListGoals(config_pb2.ListGoalsRequest(**fields), timeout=10)
    return reply, time.perf_counter() - start


def _assert_unavailable(reply: config_pb2.ListGoalsResponse, goal_ids: set[str]) -> None:
    assert {row.goal.id for row in reply.goals} == goal_ids
    assert not reply.seven_day_conversions_available
    assert not any(row.HasField("seven_day_conversions") for row in reply.goals)


async def test_unreachable_tracker_leaves_counts_unset(config_for, make_tenant, config_settings):
    stub = await config_for(f"127.0.0.1:{_closed_port()}")
    tenant = await make_tenant()
    admin = stub(tenant.admin)
    ids = {(await admin.CreateGoal(goal_request(name))).goal.id for name in ("One", "Two")}

    for key in (tenant.admin, tenant.keys[Role.AGENT]):
        reply, took = await _list(stub(key))
        _assert_unavailable(reply, ids)
        assert took < config_settings.tracker_timeout_s + 1.0


@pytest.mark.parametrize("trouble", ["slow", "error"])
async def test_failing_tracker_leaves_counts_unset(trouble, tracker, config_for, make_tenant,
                                                   config_settings):
    fake, address = tracker
    if trouble == "slow":
        fake.delay_s = config_settings.tracker_timeout_s * 4
    else:
        fake.fail_with = grpc.StatusCode.INTERNAL
    stub = await config_for(address)
    tenant = await make_tenant()
    goal = (await stub(tenant.admin).CreateGoal(goal_request("Only"))).goal
    fake.counts[goal.id] = 5

    reply, took = await _list(stub(tenant.admin))

    assert fake.requests, "the tracker was asked"
    _assert_unavailable(reply, {goal.id})
    # Bounded by the configured deadline, not by the tracker.
    assert took < config_settings.tracker_timeout_s + 1.0


# (account time zone, clock, the instant the 7-day window starts): the start of the day six
# days before the account's today, in the account's zone.
WINDOWS = {
    "utc": ("UTC", dt.datetime(2026, 6, 1, 12, tzinfo=UTC), dt.datetime(2026, 5, 26, tzinfo=UTC)),
    # Already 2 June at UTC+14.
    "ahead_of_utc": ("Pacific/Kiritimati", dt.datetime(2026, 6, 1, 12, tzinfo=UTC),
                     dt.datetime(2026, 5, 26, 10, tzinfo=UTC)),
    # Still 31 May in Los Angeles (UTC-7).
    "behind_utc": ("America/Los_Angeles", dt.datetime(2026, 6, 1, 3, tzinfo=UTC),
                   dt.datetime(2026, 5, 25, 7, tzinfo=UTC)),
    # DST began on 8 March: today is at UTC-4, the window opens at UTC-5.
    "across_dst": ("America/New_York", dt.datetime(2026, 3, 10, 12, tzinfo=UTC),
                   dt.datetime(2026, 3, 4, 5, tzinfo=UTC)),
}


@pytest.mark.parametrize("case", sorted(WINDOWS))
async def test_counts_come_from_the_tracker(case, tracker, config_for, make_tenant, clock,
                                            platform_key):
    time_zone, now, since = WINDOWS[case]
    clock.set(now)
    fake, address = tracker
    stub = await config_for(address)
    tenant = await make_tenant(time_zone=time_zone)
    admin = stub(tenant.admin)
    goals = {
        name: (await admin.CreateGoal(goal_request(name))).goal
        for name in ("Alpha", "Bravo", "Charlie")
    }
    fake.counts = {goals["Alpha"].id: 7, goals["Charlie"].id: 3}

    reply, _ = await _list(admin)

    assert reply.seven_day_conversions_available
    assert [(row.goal.name, row.seven_day_conversions) for row in reply.goals] == [
        ("Alpha", 7), ("Bravo", 0), ("Charlie", 3)
    ]
    assert all(row.HasField("seven_day_conversions") for row in reply.goals)
    [request] = fake.requests
    assert request.account_id == tenant.account_id
    assert sorted(request.goal_ids) == sorted(g.id for g in goals.values())
    assert request.since.ToDatetime(tzinfo=UTC) == since
    # The config service authenticates as itself, never with the caller's key.
    assert fake.metadata[0]["authorization"] == f"Bearer {platform_key}"


async def test_each_page_asks_for_its_own_goals(tracker, config_for, make_tenant):
    fake, address = tracker
    stub = await config_for(address)
    tenant = await make_tenant()
    admin = stub(tenant.admin)
    ids = [(await admin.CreateGoal(goal_request(f"Goal {i}"))).goal.id for i in range(3)]
    fake.counts = {goal_id: i + 1 for i, goal_id in enumerate(ids)}

    first, _ = await _list(admin, page_size=2)
    second, _ = await _list(admin, page_size=2, page_token=first.next_page_token)

    assert [list(r.goal_ids) for r in fake.requests] == [ids[:2], ids[2:]]
    rows = [*first.goals, *second.goals]
    assert [(r.goal.id, r.seven_day_conversions) for r in rows] == list(fake.counts.items())


async def test_an_agent_token_gets_no_account_wide_counts(tracker, config_for, make_tenant,
                                                         tokens):
    """I12-A9 / D22: an agent token sees only its agent's conversions, and the 7-day counts
    are account-wide (other agents' conversions included), so with an agent token the list
    carries none and the tracker is not asked. Supervisor tokens and every key, the agent
    key included, keep the account-wide view."""
    fake, address = tracker
    stub = await config_for(address)
    tenant = await make_tenant()
    goal = (await stub(tenant.admin).CreateGoal(goal_request("Shared"))).goal
    fake.counts[goal.id] = 9

    agent_token = tokens.mint(tenant.account_id, Role.AGENT, agent_id="agent-7").token
    reply, _ = await _list(stub(agent_token))
    _assert_unavailable(reply, {goal.id})
    assert not fake.requests, "the tracker was asked for counts the caller may not see"

    supervisor = tokens.mint(tenant.account_id, Role.SUPERVISOR).token
    for credential in (supervisor, tenant.keys[Role.AGENT], tenant.admin):
        reply, _ = await _list(stub(credential))
        assert reply.seven_day_conversions_available
        assert [row.seven_day_conversions for row in reply.goals] == [9]
