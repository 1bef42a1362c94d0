"""The tracker killed with SIGKILL in the middle of a long ingest, then restarted on the
same address: the producer resends what was not acknowledged, and what is recorded equals
an undisturbed run of the same events: none lost, none doubled; the conversions the
producer's acknowledgements add up to equal those recorded."""

from __future__ import annotations

import asyncio
import time

import pytest
from pymongo import MongoClient

from goalflow_common.pb.goals.v1 import tracker_pb2
from tests.faults.conftest import FaultStack, ServiceProcess, stored_event_count, workload

EVENTS = 3000
BATCH = 500  # the tracker stores a batch in commands of 200 events: a kill can split it
BATCHES = EVENTS // BATCH
WINDOW = 4


def kill_mid_batch(stack: FaultStack, tracker: ServiceProcess, acked_batches: int) -> bool:
    """SIGKILL the tracker while it has stored part, not all, of a batch: True if caught
    so, False if the batches in flight only ever showed up whole (killed then anyway).

    The test's event loop is blocked meanwhile, so the producer reads no acknowledgement;
    a half-stored batch cannot have been acknowledged (the tracker answers once all of it
    is stored), so the producer must resend it and its stored part comes back as
    duplicates."""
    in_flight = min(WINDOW, BATCHES - acked_batches) * BATCH
    with MongoClient(stack.db.uri) as client:
        events = client[f"{stack.prefix}_tracker"]["events"]
        deadline = time.monotonic() + 30
        while True:
            stored = events.count_documents({}) - acked_batches * BATCH
            if stored % BATCH or stored >= in_flight:
                tracker.kill()
                return stored % BATCH != 0
            assert time.monotonic() < deadline, f"the tracker stored {stored} more, no more"
            time.sleep(0.002)


@pytest.mark.parametrize(
    ("kill_after_acks", "mid_batch"),
    [(1, False), (BATCHES // 2, True), (BATCHES - 2, True)],
    ids=["first-ack", "half-mid-batch", "almost-all-mid-batch"],
)
async def test_sigkill_mid_ingest_then_restart_loses_and_doubles_nothing(
    fault_stack, kill_after_acks, mid_batch
):
    stack = fault_stack
    load = workload(EVENTS)
    await stack.create_goals(load.goals)
    reference, tracker = stack.tracker("reference", db="reference"), stack.tracker()
    await asyncio.gather(reference.serve(), tracker.serve())
    expected = await stack.undisturbed(reference, load.events, batch_size=BATCH)

    restarts: list[asyncio.Task[None]] = []
    split: list[bool] = []
    acked = 0

    def on_ack(ack: tracker_pb2.IngestEventsResponse, size: int) -> None:
        nonlocal acked
        acked += 1
        if acked == kill_after_acks:
            # The next batches are on the wire and the tracker is busy with one of them:
            # killed at once, or once it has stored part of a batch, with no chance to
            # finish or clean up.
            if mid_batch:
                split.append(kill_mid_batch(stack, tracker, acked))
            else:
                tracker.kill()
            restarts.append(asyncio.create_task(tracker.serve()))

    async with stack.producer(tracker, batch_size=BATCH, window=WINDOW) as producer:
        summary = await producer.send(load.events, on_ack=on_ack)
    [restart] = restarts
    await restart
    tracker.check_alive()

    assert tracker.starts == 2 and summary.rejected == []
    assert summary.accepted + summary.duplicates == EVENTS
    if not mid_batch:
        assert summary.reconnects >= 1 and summary.resent_batches >= 1
    elif split == [True]:  # the half-stored batch was resent; its stored part was known
        assert summary.reconnects >= 1 and summary.duplicates > 0
    assert await stored_event_count(stack) == EVENTS
    got = await stack.outcome(tracker)
    assert len(got.conversions) == len(expected.conversions), (got.summary(), expected.summary())
    assert summary.conversions == len(got.conversions)  # what the CLI summary reports
    assert got.conversions == expected.conversions
    assert got.report == expected.report


async def test_acks_lost_in_a_kill_still_count_the_conversions_their_batches_recorded(
    fault_stack,
):
    """Killed after the batches in flight were stored and their conversions recorded, but
    before the producer read their acks: the resends are all duplicates, and their acks
    still count those conversions (before, the producer's total fell short: 1,575 reported
    for 1,800 recorded), so the summary equals what is recorded."""
    stack = fault_stack
    load = workload(EVENTS)
    await stack.create_goals(load.goals)
    tracker = stack.tracker()
    await tracker.serve()
    restarts: list[asyncio.Task[None]] = []

    def on_ack(ack: tracker_pb2.IngestEventsResponse, size: int) -> None:
        if restarts:
            return
        # The producer has read one ack; the next WINDOW - 1 batches are on the wire. Let the
        # tracker finish them (this loop is blocked: their acks stay unread), then kill it.
        with MongoClient(stack.db.uri) as client:
            db = client[f"{stack.prefix}_tracker"]
            deadline = time.monotonic() + 30
            while db["events"].count_documents({}) < WINDOW * BATCH:
                assert time.monotonic() < deadline, "the batches in flight were not stored"
                time.sleep(0.01)
            recorded = -1
            while recorded != (recorded := db["conversions"].count_documents({})):
                time.sleep(0.3)  # until conversions stop arriving: the batches are done
        tracker.kill()
        restarts.append(asyncio.create_task(tracker.serve()))

    async with stack.producer(tracker, batch_size=BATCH, window=WINDOW) as producer:
        summary = await producer.send(load.events, on_ack=on_ack)
    [restart] = restarts
    await restart
    tracker.check_alive()

    assert summary.reconnects >= 1 and summary.resent_batches >= WINDOW - 1
    assert summary.duplicates >= (WINDOW - 1) * BATCH  # the resent batches were all stored
    assert await stored_event_count(stack) == EVENTS
    got = await stack.outcome(tracker)
    assert len(got.conversions) >= 20, got.summary()
    assert summary.conversions == len(got.conversions), (got.summary(), summary)
