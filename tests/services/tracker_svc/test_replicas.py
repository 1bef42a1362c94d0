"""Two tracker replicas on one database: nothing twice, nothing lost (also on the live
feed of each)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

from grpc import aio

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import config_pb2, tracker_pb2, tracker_pb2_grpc
from tests.services.tracker_svc.builders import (
    agent,
    assigned,
    create_goal,
    ingest,
    message,
    opened,
    read_ids,
    settled,
    visit,
)
from tracker_svc.server import create_server as create_tracker

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


async def subscribe(address: str, key: str, into: list[str]
                    ) -> tuple[aio.Channel, asyncio.Task[None]]:
    """Follow agent B's conversions on ``address``, once the subscription is live."""
    channel = aio.insecure_channel(address)
    call = tracker_pb2_grpc.TrackerServiceStub(channel).SubscribeConversions(
        tracker_pb2.SubscribeConversionsRequest(agent_id="B"),
        metadata=(("authorization", f"Bearer {key}"),))
    await asyncio.wait_for(call.initial_metadata(), 5.0)
    return channel, asyncio.create_task(read_ids(call, into))


async def test_two_replicas_fed_the_same_batches_record_everything_once(stack, make_tenant,
                                                                        clock, tracker_db):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "All", model=config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES)
    await create_goal(stack, tenant, "Last", model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH)
    settings = stack.tracker_settings.model_copy(update={"grpc_port": 0})
    second, port = await create_tracker(settings, clock=clock)
    await second.start()
    # A subscriber on each replica: whichever replica wins a conversion's insert, each
    # gets it once (the loser's own insert found it stored, so its feed has only the
    # change stream's copy).
    feeds: list[list[str]] = [[], []]
    subscriptions = [
        await subscribe(address, tenant.keys[Role.AGENT], into)
        for address, into in zip((stack.tracker_address, f"127.0.0.1:{port}"), feeds,
                                 strict=True)
    ]
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3.0):
                await second.components["goals"].wait_synced()
        batches = []
        for n in range(30):
            conv, user, at = f"c{n}", f"u{n}", T0 + n * MIN
            batches.append([opened(conv, at, user=user), assigned(conv, at, agent("A")),
                            message(conv, at, "A"), assigned(conv, at + MIN, agent("B")),
                            visit("https://x.io/checkout", at + 2 * MIN, user=user)])
        clock.set(T0 + 2 * dt.timedelta(hours=1))
        key = tenant.keys[Role.INGEST]
        second_stub = tracker_pb2_grpc.TrackerServiceStub(
            stack._channel(f"127.0.0.1:{port}", key)
        )
        # The same events through both replicas at once, in opposite orders.
        acks_a, acks_b = await asyncio.gather(
            ingest(stack.tracker(key), *batches), ingest(second_stub, *reversed(batches))
        )
        for received in feeds:
            await settled(tracker_db, tenant.account_id, received, agent_id="B")
    finally:
        for channel, reader in subscriptions:
            await channel.close()
            await asyncio.gather(reader, return_exceptions=True)
        await second.stop(0.5)
    store = stack.tracker_server.components["db"]
    accepted = sum(a.accepted for a in acks_a + acks_b)
    duplicates = sum(a.duplicates for a in acks_a + acks_b)
    assert (accepted, duplicates) == (150, 150)
    assert await store.events.count_documents({"account_id": tenant.account_id}) == 150
    docs = await store.conversions.find(
        {"account_id": tenant.account_id, "goal_id": {"$ne": "marker"}}).to_list()
    assert len(docs) == 60  # 30 conversations x 2 goals, each once
    assert sum(a.conversions for a in acks_a + acks_b) == 60
    for received in feeds:  # agent B is credited by every conversion
        ids = [i for i in received if ":marker:" not in i]  # the other feed's marker
        assert sorted(ids) == sorted(doc["_id"] for doc in docs)
    by_goal = {}
    for doc in docs:
        by_goal.setdefault(doc["goal_name"], []).append(
            sorted(c["agent"]["id"] for c in doc["credits"]))
    assert by_goal["All"] == [["A", "B"]] * 30
    assert by_goal["Last"] == [["B"]] * 30
