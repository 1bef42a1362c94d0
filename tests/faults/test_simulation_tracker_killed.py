"""The tracker killed with SIGKILL in the middle of a simulation (config's SimulateGoal,
relayed from the tracker's ReplayGoal), real processes: the caller gets UNAVAILABLE with a
message that names no address, nothing is written to any collection, and once the tracker
is back the same simulation gives the same answer as before the kill."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest

from bench import datagen
from goalflow_common.pb.goals.v1 import config_pb2
from goalflow_common.protoconv import date_message
from tests.faults.conftest import FaultStack, ServiceProcess
from tracker_svc.api.events import parse_event
from tracker_svc.domain.model import Opening
from tracker_svc.store.tracker_store import TrackerStore

EVENTS = 60_000  # a simulation of several seconds: time to kill it mid-way


async def store_traffic(stack: FaultStack, start: dt.datetime) -> int:
    """Today's traffic stored with the tracker store's own inserts (as ingest writes it)."""
    store = TrackerStore(stack.client[f"{stack.prefix}_tracker"])
    await store.ensure_indexes()
    traffic = datagen.generate(21, EVENTS, start, duration=dt.timedelta(hours=8))
    now = dt.datetime.now(dt.UTC)
    events = [parse_event(e, stack.tenant.account_id, now) for e in traffic.events]
    for i in range(0, len(events), 2000):
        part = events[i:i + 2000]
        assert not await store.insert_new_events(part)
        await store.insert_openings([Opening.of(e) for e in part if e.kind == "opened"])
    return len(events)


async def counts(stack: FaultStack) -> dict[str, int]:
    """Documents per collection of every database of the test."""
    found = {}
    for name in await stack.client.list_database_names():
        if name.startswith(stack.prefix):
            database = stack.client[name]
            for collection in await database.list_collection_names():
                found[f"{name}.{collection}"] = await database[collection].count_documents({})
    return found


async def simulate(stack: FaultStack, request: config_pb2.SimulateGoalRequest,
                   tracker: ServiceProcess | None = None) -> config_pb2.SimulationResult:
    """The simulation's result; with ``tracker``, that tracker is killed once the stream
    has reported progress past its first message (the replay is reading)."""
    progress = 0
    async for update in stack.config_stub().SimulateGoal(request, timeout=120):
        if update.HasField("result"):
            return update.result
        progress += 1
        if tracker is not None and progress == 2:
            assert update.progress.events_scanned < update.progress.events_total
            tracker.kill()
    raise AssertionError("the stream ended without a result")


async def test_tracker_killed_mid_simulation(fault_stack):
    stack = fault_stack
    tracker = stack.tracker()
    # Config must know the tracker: restarted with its address.
    await _restart_config_with(stack, tracker)
    await tracker.serve()
    today = dt.datetime.now(dt.UTC).date()
    start = dt.datetime.combine(today, dt.time(), tzinfo=dt.UTC)
    stored = await store_traffic(stack, start)
    definition = datagen.goal_requests(today)[0]
    definition.active = False
    definition.ClearField("start_date")
    definition.ClearField("end_date")
    request = config_pb2.SimulateGoalRequest(
        definition=definition, start_date=date_message(today), end_date=date_message(today))

    before = await simulate(stack, request)
    assert before.events_scanned > 0.9 * stored and any(m.conversions for m in before.models)
    written = await counts(stack)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await simulate(stack, request, tracker)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    details = err.value.details() or ""
    assert "try again" in details
    assert tracker.address not in details and str(tracker.port) not in details
    assert await counts(stack) == written  # nothing written, partial or otherwise

    await tracker.serve()
    assert tracker.starts == 2
    after = await simulate(stack, request)
    assert after == before
    assert await counts(stack) == written


async def _restart_config_with(stack: FaultStack, tracker: ServiceProcess) -> None:
    stack.config.stop()
    stack.config.env["GOALFLOW_TRACKER_ADDRESS"] = tracker.address
    await stack.config.serve()
