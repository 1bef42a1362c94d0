"""SubscribeConversions: each new conversion reaches the workspaces watching its
conversation or its agents within a second, and nobody else; slow subscribers are cut off
without holding up the rest; shutdown and database restarts are survived as they should."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio
from pymongo import AsyncMongoClient

from goalflow_common.auth import KeyStore, Role
from goalflow_common.lifecycle import Lifecycle
from goalflow_common.pb.goals.v1 import config_pb2, tracker_pb2, tracker_pb2_grpc
from goalflow_common.server import Registration, build_server
from goalflow_dev.embedded_mongo import EmbeddedMongo
from tests.services.tracker_svc.builders import (
    agent,
    assigned,
    create_goal,
    ingest,
    opened,
    read_ids,
    settled,
    visit,
)
from tests.services.tracker_svc.documents import T0, conversion_doc
from tests.services.tracker_svc.feeds import MAX_LATENCY_S, receive
from tracker_svc.api.servicer import TrackerServicer, feed_message
from tracker_svc.domain.feed import ConversionFeed
from tracker_svc.server import create_server as create_tracker
from tracker_svc.settings import TrackerSettings
from tracker_svc.store.tracker_store import TrackerStore

SECOND = dt.timedelta(seconds=1)


async def test_subscriber_of_a_conversation_gets_its_conversions_only(
    stack, make_tenant, tracker_db, subs
):
    tenant = await make_tenant()
    acct = tenant.account_id
    call = await subs.open(stack.tracker_address, tenant.keys[Role.AGENT],
                           conversation_id="conv-1")
    try:
        doc = conversion_doc(acct, "goal-a", "conv-1", T0, agents=("a1", "a2"),
                             model="ALL_TOUCHES")
        await tracker_db.conversions.insert_one(doc)
        inserted = time.perf_counter()
        got = await receive(call)
        assert time.perf_counter() - inserted < MAX_LATENCY_S
        assert (got.id, got.goal_id, got.conversation_id) == (doc["_id"], "goal-a", "conv-1")
        assert [c.agent.id for c in got.credits] == ["a1", "a2"]
        assert got.conversion_time.ToDatetime(tzinfo=dt.UTC) == T0
        # Other conversations (even crediting the same agents) are not sent; the feed
        # delivers in insertion order, so the next message proves nothing came between.
        await tracker_db.conversions.insert_many([
            conversion_doc(acct, "goal-a", "conv-2", T0, agents=("a1",)),
            conversion_doc(acct, "goal-b", "conv-10", T0),
        ])
        last = conversion_doc(acct, "goal-b", "conv-1", T0 + SECOND)
        await tracker_db.conversions.insert_one(last)
        assert (await receive(call)).id == last["_id"]
    finally:
        call.cancel()


async def test_subscriber_of_an_agent_gets_conversions_crediting_it(
    stack, make_tenant, tracker_db, subs
):
    tenant = await make_tenant()
    acct = tenant.account_id
    call = await subs.open(stack.tracker_address, tenant.admin, agent_id="agent-7")
    try:
        await tracker_db.conversions.insert_many([
            conversion_doc(acct, "goal", "c1", T0, agents=("agent-1",)),  # not credited
            conversion_doc(acct, "goal", "c2", T0, agents=("agent-1", "agent-7", "agent-9")),
            conversion_doc(acct, "goal", "c3", T0, agents=("agent-70",)),
            conversion_doc(acct, "goal", "c4", T0 + SECOND, agents=("agent-7",)),
        ])
        first, second = await receive(call), await receive(call)
        assert [first.conversation_id, second.conversation_id] == ["c2", "c4"]
        assert "agent-7" in [c.agent.id for c in first.credits]
    finally:
        call.cancel()


async def test_subscriptions_never_cross_accounts(stack, make_tenant, tracker_db, subs):
    owner, other = await make_tenant(), await make_tenant()
    by_conversation = await subs.open(stack.tracker_address, other.admin,
                                      conversation_id="conv-1")
    by_agent = await subs.open(stack.tracker_address, other.keys[Role.AGENT],
                               agent_id="agent-1")
    try:
        # The owner's conversions use the very ids the other account watches.
        await tracker_db.conversions.insert_many([
            conversion_doc(owner.account_id, "goal", "conv-1", T0, agents=("agent-1",)),
            conversion_doc(owner.account_id, "goal-2", "conv-1", T0, agents=("agent-1",)),
        ])
        own = conversion_doc(other.account_id, "goal", "conv-1", T0, agents=("agent-1",))
        await tracker_db.conversions.insert_one(own)
        for call in (by_conversation, by_agent):
            got = await receive(call)
            assert (got.id, got.account_id) == (own["_id"], other.account_id)
    finally:
        by_conversation.cancel()
        by_agent.cancel()


async def test_subscriber_sees_a_conversion_made_by_another_clients_ingest_stream(
    stack, make_tenant, subs
):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH)
    call = await subs.open(stack.tracker_address, tenant.keys[Role.AGENT], agent_id="A")
    try:
        at = dt.datetime(2026, 6, 1, 12, 5, tzinfo=dt.UTC)
        acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]), [
            opened("conv-9", at, user="u9"),
            assigned("conv-9", at + SECOND, agent("A")),
            visit("https://shop.example/checkout", at + 2 * SECOND, user="u9"),
        ])
        sent = time.perf_counter()
        assert acks[0].conversions == 1
        got = await receive(call)
        assert time.perf_counter() - sent < MAX_LATENCY_S
        assert (got.conversation_id, got.goal_name) == ("conv-9", "Checkout")
        assert [c.agent.id for c in got.credits] == ["A"]
    finally:
        call.cancel()


async def test_subscribe_needs_exactly_one_valid_target(stack, make_tenant):
    tenant = await make_tenant()
    stub = stack.tracker(tenant.admin)
    for request, field in [
        (tracker_pb2.SubscribeConversionsRequest(), "target"),
        (tracker_pb2.SubscribeConversionsRequest(conversation_id=""), "conversation_id"),
        (tracker_pb2.SubscribeConversionsRequest(agent_id="x" * 129), "agent_id"),
        (tracker_pb2.SubscribeConversionsRequest(agent_id="a", heartbeat_seconds=-1),
         "heartbeat_seconds"),
        (tracker_pb2.SubscribeConversionsRequest(agent_id="a", heartbeat_seconds=301),
         "heartbeat_seconds"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            async for _ in stub.SubscribeConversions(request):
                pass
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith(f"{field}:"), err.value.details()


async def test_announce_and_heartbeats_are_notices_without_a_conversion(
    stack, make_tenant, tracker_db, subs
):
    """Browsers see no headers before the first message: ``announce`` makes that message
    the live signal; ``heartbeat_seconds`` keeps an idle stream busy for proxies."""
    tenant = await make_tenant()
    call = await subs.open(stack.tracker_address, tenant.admin, agent_id="agent-7",
                           announce=True, heartbeat_seconds=1)
    try:
        first = await asyncio.wait_for(call.read(), 1.0)
        assert first.subscribed and not first.heartbeat and not first.HasField("conversion")
        waited = time.perf_counter()
        beat = await asyncio.wait_for(call.read(), 3.0)
        assert beat.heartbeat and not beat.HasField("conversion")
        assert 0.8 < time.perf_counter() - waited < 2.5
        doc = conversion_doc(tenant.account_id, "goal", "c1", T0, agents=("agent-7",))
        await tracker_db.conversions.insert_one(doc)
        message = await asyncio.wait_for(call.read(), 2.0)
        while message.heartbeat:  # a beat may fall between the insert and its delivery
            message = await asyncio.wait_for(call.read(), 2.0)
        assert message.conversion.id == doc["_id"] and not message.subscribed
    finally:
        call.cancel()


GOALS = 10  # goals matching the same page: each checkout visit makes GOALS conversions


async def converting_goals(stack, tenant) -> None:
    for n in range(GOALS):
        await create_goal(stack, tenant, f"Checkout {n}",
                          model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH)


def converting_batch(first: int, conversations: int, agent_id: str = "A"
                     ) -> list[tracker_pb2.Event]:
    """Conversations ``first``.. each assigned to ``agent_id`` and then visiting the checkout
    page: ``conversations`` x GOALS conversions crediting that agent, from one batch."""
    at = dt.datetime(2026, 6, 1, 12, 1, tzinfo=dt.UTC)
    events = []
    for n in range(first, first + conversations):
        conv, user = f"conv-{n}", f"user-{n}"
        events += [opened(conv, at, user=user), assigned(conv, at, agent(agent_id)),
                   visit("https://shop.example/checkout", at + SECOND, user=user, conv=conv)]
    return events


async def test_each_conversion_reaches_a_subscriber_exactly_once(
    stack, make_tenant, tracker_db, subs
):
    """Batches of 300 conversions are inserted in concurrent chunks of 200: the change
    stream could deliver the first chunk before the insert returned and ``publish`` ran,
    and both sent it (101-404 of 18,000 twice before the fix)."""
    tenant = await make_tenant()
    await converting_goals(stack, tenant)
    call = await subs.open(stack.tracker_address, tenant.keys[Role.AGENT], agent_id="A")
    received: list[str] = []
    reader = asyncio.create_task(read_ids(call, received))
    try:
        batches = [converting_batch(30 * n, 30) for n in range(20)]  # 20 x 300 conversions
        acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]), *batches)
        assert [a.conversions for a in acks] == [30 * GOALS] * len(batches)
        await settled(tracker_db, tenant.account_id, received)
        recorded = [doc["_id"] async for doc in tracker_db.conversions.find(
            {"account_id": tenant.account_id, "goal_id": {"$ne": "marker"}}, {"_id": 1})]
        twice = len(received) - len(set(received))
        assert twice == 0, f"{twice} of {len(received)} conversions delivered twice"
        assert sorted(received) == sorted(recorded) and len(recorded) == 20 * 30 * GOALS
    finally:
        call.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_a_burst_reaches_a_subscriber_that_keeps_up(stack, make_tenant, tracker_db, subs):
    """One batch credits the agent with 1,200 conversions at once: queued whole and
    delivered (before, the 1,000-conversion queue dropped the subscriber after 0-101)."""
    tenant = await make_tenant()
    await converting_goals(stack, tenant)
    call = await subs.open(stack.tracker_address, tenant.keys[Role.AGENT], agent_id="A")
    received: list[str] = []
    reader = asyncio.create_task(read_ids(call, received))
    try:
        [ack] = await ingest(stack.tracker(tenant.keys[Role.INGEST]), converting_batch(0, 120))
        assert ack.conversions == 1200
        assert await settled(tracker_db, tenant.account_id, received) == 1200
        assert len(set(received)) == 1200
        assert not reader.done(), "the subscription ended"
    finally:
        call.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_a_subscriber_that_stops_reading_is_dropped_after_the_time_limit(
    stack, make_tenant, clock, subs
):
    """Two subscribers of one agent on a real tracker: the one that stops reading is
    dropped once its oldest undelivered conversion is ``subscriber_max_lag_s`` old, and
    gets RESOURCE_EXHAUSTED; the other gets everything and stays subscribed."""
    max_lag_s = 2.0
    settings = stack.tracker_settings.model_copy(
        update={"grpc_port": 0, "subscriber_max_lag_s": max_lag_s})
    tracker, port = await create_tracker(settings, clock=clock)
    await tracker.start()
    address, feed = f"127.0.0.1:{port}", tracker.components["feed"]
    try:
        tenant = await make_tenant()
        await converting_goals(stack, tenant)
        goals, deadline = tracker.components["goals"], time.monotonic() + 5.0
        while len(goals.matching(tenant.account_id, "https://shop.example/checkout")) < GOALS:
            assert time.monotonic() < deadline, "this tracker did not see every goal"
            await asyncio.sleep(0.01)
        stalled = await subs.open(address, tenant.keys[Role.AGENT], agent_id="A")
        reading = await subs.open(address, tenant.keys[Role.AGENT], agent_id="A")
        received: list[str] = []
        reader = asyncio.create_task(read_ids(reading, received))
        started = time.monotonic()
        # More than the stalled client's flow-control window takes: the rest waits queued.
        ingest_stub = tracker_pb2_grpc.TrackerServiceStub(
            stack._channel(address, tenant.keys[Role.INGEST]))
        [ack] = await ingest(ingest_stub, converting_batch(0, 120))
        assert ack.conversions == 1200
        deadline = time.monotonic() + 20.0
        while feed.subscriber_count > 1 or len(received) < 1200:
            assert time.monotonic() < deadline, (feed.subscriber_count, len(received))
            await asyncio.sleep(0.02)
        dropped_after = time.monotonic() - started
        assert dropped_after > max_lag_s  # by time, not by the size of the burst
        assert len(set(received)) == 1200 and not reader.done()
        # The stalled client, once it reads, gets what was in flight, then the reason.
        got = 0
        with pytest.raises(grpc.RpcError) as err:
            async for _ in stalled:
                got += 1
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "behind" in err.value.details() and got < 1200
        assert feed.subscriber_count == 1
        reading.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    finally:
        await tracker.stop(0.5)


# --- a tracker of our own: a small subscriber queue, shutdown, a database restart ------


class FeedServer:
    """A tracker gRPC server that serves only the feed, on a store of our choosing."""

    def __init__(self, store: TrackerStore, keys: KeyStore, mongo_uri: str, **feed_options):
        self.lifecycle = Lifecycle()
        self.feed = ConversionFeed(store.watch_conversions(), self.lifecycle, feed_message,
                                   **feed_options)
        settings = TrackerSettings(mongodb_uri=mongo_uri, grpc_port=0, shutdown_grace_s=1.0)
        servicer = TrackerServicer(None, self.feed, None, None, None)  # type: ignore[arg-type]
        self.server, port = build_server(
            settings, port=0, keys=keys, lifecycle=self.lifecycle, on_stop=[self.feed.stop],
            registrations=[Registration(
                tracker_pb2_grpc.add_TrackerServiceServicer_to_server, servicer,
                tracker_pb2.DESCRIPTOR.services_by_name["TrackerService"].full_name,
            )],
        )
        self.address = f"127.0.0.1:{port}"

    async def start(self) -> None:
        await self.feed.start()
        await self.server.start()

    async def close(self) -> None:
        await self.server.stop(0)


@contextlib.asynccontextmanager
async def feed_server(store, keys, mongo_uri, **options) -> AsyncIterator[FeedServer]:
    server = FeedServer(store, keys, mongo_uri, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.mark.parametrize("limits", [
    {"max_lag_s": 2.0},  # by time: the oldest undelivered conversion waited 2 s
    {"max_lag_s": 60.0, "max_queued": 300},  # by the hard cap, long before the time limit
], ids=["time-limit", "hard-cap"])
async def test_a_slow_subscriber_is_cut_off_without_holding_up_others(
    mongo_uri, tracker_db, keys, make_tenant, subs, limits
):
    tenant = await make_tenant()
    count = 3000
    async with feed_server(tracker_db.store, keys, mongo_uri, **limits) as server:
        slow = await subs.open(server.address, tenant.admin, agent_id="agent-1")
        fast = await subs.open(server.address, tenant.admin, agent_id="agent-1")
        assert server.feed.subscriber_count == 2
        received: list[str] = []

        async def read_fast() -> None:
            while len(received) < count:
                received.append((await receive(fast, 10.0)).id)

        reader = asyncio.create_task(read_fast())
        docs = [conversion_doc(tenant.account_id, "goal", f"c{k:04d}", T0 + k * SECOND)
                for k in range(count)]
        for k in range(0, count, 100):
            await tracker_db.conversions.insert_many(docs[k : k + 100])
            # A reader that keeps up: the next burst comes once it has this one (the
            # server, the feed and both clients share this test's one event loop).
            deadline = time.monotonic() + 10.0
            while len(received) < k + 100 and not reader.done():
                assert time.monotonic() < deadline, "the fast subscriber fell behind"
                await asyncio.sleep(0.005)
        await asyncio.wait_for(reader, 30.0)
        assert received == [d["_id"] for d in docs]
        # The slow one was dropped from the fan-out while still connected...
        deadline = time.monotonic() + 10.0
        while server.feed.subscriber_count > 1:
            assert time.monotonic() < deadline, "the slow subscriber was never dropped"
            await asyncio.sleep(0.02)
        # ...and, once it reads, gets what was in flight, then RESOURCE_EXHAUSTED.
        got = 0
        with pytest.raises(grpc.RpcError) as err:
            async for _ in slow:
                got += 1
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert got < count
        fast.cancel()


async def test_stopping_the_server_ends_subscriptions_cleanly(
    mongo_uri, tracker_db, keys, make_tenant, subs
):
    tenant = await make_tenant()
    async with feed_server(tracker_db.store, keys, mongo_uri) as server:
        call = await subs.open(server.address, tenant.admin, conversation_id="c1")
        started = time.perf_counter()
        await server.server.stop(grace_s=5.0)
        # The stream ends with OK as soon as shutdown begins, not when the grace runs out.
        assert await asyncio.wait_for(call.read(), 5.0) is aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        assert time.perf_counter() - started < 2.0
        assert server.feed.subscriber_count == 0


async def test_the_feed_survives_a_database_restart(tmp_path: Path, subs):
    database = EmbeddedMongo(tmp_path / "mongo")
    await database.astart()
    client: AsyncMongoClient = AsyncMongoClient(
        database.uri, tz_aware=True, serverSelectionTimeoutMS=1000
    )
    try:
        keys = KeyStore(client["auth"], cache_ttl_s=300)
        await keys.create_account("acct-restart")
        key = await keys.create_key("acct-restart", Role.AGENT)
        store = TrackerStore(client["tracker"])
        conversions = client["tracker"]["conversions"]  # written straight into the database
        async with feed_server(store, keys, database.uri, max_backoff_s=0.5) as server:
            call = await subs.open(server.address, key, conversation_id="conv-1")
            await conversions.insert_one(conversion_doc("acct-restart", "g1", "conv-1", T0))
            assert (await receive(call)).goal_id == "g1"

            await database.astop()
            await asyncio.sleep(1.0)  # the feed fails to read and backs off meanwhile
            await database.astart()
            for attempt in range(50):  # the test's own client reconnects too
                try:
                    await conversions.insert_one(
                        conversion_doc("acct-restart", "g2", "conv-1", T0 + SECOND)
                    )
                    break
                except Exception:
                    if attempt == 49:
                        raise
                    await asyncio.sleep(0.1)
            # The same subscription, never dropped, gets the conversion made after it.
            assert (await receive(call, 10.0)).goal_id == "g2"
            call.cancel()
    finally:
        await client.close()
        await database.astop()
