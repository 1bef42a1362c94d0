"""The database stopped for a few seconds in the middle of an ingest, then restarted on
the same port and data: the tracker stays up, producers see a retryable status or a late
acknowledgement (never a refusal to give up on), and the totals come out exact."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from goalflow_common.auth import Role
from goalflow_common.client import is_retryable
from goalflow_common.pb.goals.v1 import tracker_pb2
from tests.faults.conftest import FaultStack, ServiceProcess, stored_event_count, workload

EVENTS = 3000
BATCH = 100
OUTAGE_AFTER_ACKS = 5
OUTAGE_S = 4.0


async def probe_while_down(stack: FaultStack, tracker: ServiceProcess,
                           batch: list[tracker_pb2.Event]) -> str:
    """One batch (already stored before the outage) on a stream of its own: how the
    tracker answers it, as "ack" or the status name. Anything else than an acknowledgement
    of the whole batch or a status a client retries after fails the test."""
    stub = stack.tracker_stub(tracker, Role.INGEST)
    call = stub.IngestEvents(timeout=60)
    try:
        await call.write(tracker_pb2.IngestEventsRequest(batch_id="probe", events=batch))
        ack = await call.read()
        assert ack.batch_id == "probe" and ack.duplicates == len(batch), ack
        return "ack"
    except grpc.RpcError as exc:
        assert is_retryable(exc), f"{exc.code().name}: {exc.details()}"
        return exc.code().name
    finally:
        call.cancel()


async def test_database_outage_mid_ingest_is_survived_and_totals_are_exact(fault_stack):
    stack = fault_stack
    load = workload(EVENTS, seed=11)
    await stack.create_goals(load.goals)
    reference, tracker = stack.tracker("reference", db="reference"), stack.tracker()
    await asyncio.gather(reference.serve(), tracker.serve())
    expected = await stack.undisturbed(reference, load.events, batch_size=BATCH)

    probes: list[str] = []

    async def outage() -> None:
        await asyncio.to_thread(stack.db.stop)  # SIGTERM: the server closes every connection
        probe = asyncio.create_task(probe_while_down(stack, tracker, load.events[:BATCH]))
        await asyncio.sleep(OUTAGE_S)
        tracker.check_alive()
        await asyncio.to_thread(stack.db.start)  # same port, same data directory
        probes.append(await probe)

    outages: list[asyncio.Task[None]] = []
    acked = 0

    def on_ack(ack: tracker_pb2.IngestEventsResponse, size: int) -> None:
        nonlocal acked
        acked += 1
        if acked == OUTAGE_AFTER_ACKS:
            outages.append(asyncio.create_task(outage()))

    async with stack.producer(tracker, batch_size=BATCH) as producer:
        summary = await producer.send(load.events, on_ack=on_ack)
    [outage_task] = outages
    await outage_task

    # The same tracker process throughout, serving again.
    tracker.check_alive()
    assert tracker.starts == 1
    async with stack.health_channel(tracker) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert len(probes) == 1  # an acknowledgement or a retryable status: checked in the probe

    assert summary.rejected == []
    assert summary.accepted + summary.duplicates == EVENTS
    assert await stored_event_count(stack) == EVENTS
    got = await stack.outcome(tracker)
    assert got.conversions == expected.conversions, (got.summary(), expected.summary())
    assert got.report == expected.report
