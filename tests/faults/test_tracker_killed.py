"""The tracker killed with SIGKILL in the middle of a long ingest, then restarted on the
same address: the producer resends what was not acknowledged, and what is recorded equals
an undisturbed run of the same events: none lost, none doubled."""

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
    assert got.conversions == expected.conversions
    assert got.report == expected.report
