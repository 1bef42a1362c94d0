"""SIGTERM to the tracker in the middle of an ingest: health turns NOT_SERVING before
anything is refused, every batch is either applied and acknowledged or refused as
retryable without being applied (never half), open streams are ended promptly with a
retryable status, and after a restart the resent batches complete the same result as an
undisturbed run."""

from __future__ import annotations

import asyncio
import signal

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import tracker_pb2
from tests.faults.conftest import FaultStack, ServiceProcess, stored_event_count, workload

EVENTS = 2000
BATCH = 100
TERM_AFTER_ACKS = 6
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthLog:
    """What observers saw, in the order they saw it: ("watch" | "check", status name)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.both_serving = asyncio.Event()

    def record(self, source: str, status: str) -> None:
        self.seen.append((source, status))
        if self.statuses("watch") == ["SERVING"] and self.statuses("check") == ["SERVING"]:
            self.both_serving.set()

    def statuses(self, source: str) -> list[str]:
        """The observer's statuses with repeats folded: ["SERVING", "NOT_SERVING", ...]."""
        out: list[str] = []
        for who, what in self.seen:
            if who == source and (not out or out[-1] != what):
                out.append(what)
        return out

    async def watch(self, address: str) -> None:
        """The health Watch stream: the server pushes every change until it goes away."""
        async with aio.insecure_channel(address) as channel:
            call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            try:
                async for reply in call:
                    self.record("watch", _name(reply.status))
            except grpc.RpcError as exc:
                self.record("watch", f"error {exc.code().name}")

    async def poll(self, address: str, tracker: ServiceProcess) -> None:
        """Health Check every 10 ms, as an orchestrator's probe, until the process is gone."""
        async with aio.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while tracker.running:
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    status = _name(reply.status)
                except grpc.RpcError as exc:
                    status = f"error {exc.code().name}"
                self.record("check", status)
                await asyncio.sleep(0.01)


def _name(status: int) -> str:
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status)


async def stored_ids(stack: FaultStack) -> set[str]:
    events = stack.client[f"{stack.prefix}_tracker"]["events"]
    return {doc["event_id"] async for doc in events.find({}, {"event_id": 1})}


async def test_sigterm_mid_ingest_is_clean_and_health_says_so_first(fault_stack):
    stack = fault_stack
    load = workload(EVENTS)
    await stack.create_goals(load.goals)
    # A grace far longer than the test may take: the tracker must not wait it out.
    reference = stack.tracker("reference", db="reference")
    tracker = stack.tracker(GOALFLOW_SHUTDOWN_GRACE_S="120")
    await asyncio.gather(reference.serve(), tracker.serve())
    expected = await stack.undisturbed(reference, load.events, batch_size=BATCH)

    # A second producer's stream, idle between batches (a real-time source at night).
    idle = stack.tracker_stub(tracker, Role.INGEST).IngestEvents()
    await idle.write(tracker_pb2.IngestEventsRequest(batch_id="idle-0"))
    assert (await idle.read()).batch_id == "idle-0"

    health = HealthLog()
    observers = [asyncio.create_task(health.watch(tracker.address)),
                 asyncio.create_task(health.poll(tracker.address, tracker))]
    await health.both_serving.wait()

    at_exit: dict[str, object] = {}

    async def after_sigterm() -> None:
        at_exit["code"] = await tracker.wait_exit()
        at_exit["stored"] = await stored_ids(stack)
        at_exit["health"] = list(health.seen)
        await asyncio.gather(*observers)
        await tracker.serve()  # same address: the producer's reconnects find it

    follow_up: list[asyncio.Task[None]] = []
    acked = 0

    def on_ack(ack: tracker_pb2.IngestEventsResponse, size: int) -> None:
        nonlocal acked
        acked += 1
        if acked == TERM_AFTER_ACKS:  # the next batches are on the wire, one in the works
            tracker.signal(signal.SIGTERM)
            follow_up.append(asyncio.create_task(after_sigterm()))

    async with stack.producer(tracker, batch_size=BATCH) as producer:
        summary = await producer.send(load.events, on_ack=on_ack)
    [restart] = follow_up
    await restart
    tracker.check_alive()

    # A clean exit, without waiting out the grace period for the idle stream: it was ended
    # with a status a producer retries after.
    assert at_exit["code"] == 0, tracker.log_tail()
    assert idle.done()
    assert await idle.code() == grpc.StatusCode.UNAVAILABLE, await idle.details()

    # Health said NOT_SERVING before the process exited and before anything was refused:
    # the Watch stream got the change pushed, and the polling probe saw it before the port
    # stopped answering.
    before_exit = at_exit["health"]
    assert isinstance(before_exit, list)
    assert ("watch", "NOT_SERVING") in before_exit and ("check", "NOT_SERVING") in before_exit
    assert health.statuses("watch")[:2] == ["SERVING", "NOT_SERVING"], health.seen
    polled = health.statuses("check")
    assert polled[:2] == ["SERVING", "NOT_SERVING"], polled

    # Never half-applied: at the exit, what was stored is a run of whole batches from the
    # start; and nothing stored went unacknowledged, since no resent event was a duplicate.
    stored = at_exit["stored"]
    assert isinstance(stored, set) and len(stored) % BATCH == 0
    assert stored == {e.event_id for e in load.events[:len(stored)]}
    assert len(stored) >= TERM_AFTER_ACKS * BATCH
    assert len(stored) < EVENTS  # the SIGTERM came mid-ingest
    assert summary.duplicates == 0 and summary.rejected == []
    assert summary.accepted == EVENTS and summary.reconnects >= 1

    assert await stored_event_count(stack) == EVENTS
    got = await stack.outcome(tracker)
    assert got.conversions == expected.conversions, (got.summary(), expected.summary())
    assert got.report == expected.report
