"""Simulation benchmark: a what-if over stored history against a plain scan of the same events.

Starts the embedded database (unless ``MONGODB_URI`` is set), creates an account and keys,
runs the real config service and tracker (each its own process), then stores ``--events``
generated events (:func:`bench.datagen.generate`, spread over ``--days`` days up to today)
with the tracker store's own insert methods (``TrackerStore.insert_new_events`` and
``insert_openings``, the writes ingest makes), in the tracker's stored shape
(``tracker_svc.api.events.parse_event``). Then, in one run:

1. ``scan_events_per_s`` — the store's ceiling for this read: every event document of the
   account in the range read window by window (``TrackerStore.scan_events``: the queries the
   simulation makes, nothing done with the documents), from the benchmark's process. Run
   before and after the simulation; the faster of the two counts.
2. ``simulate_events_per_s`` — ``ReplayGoal`` (the tracker's RPC behind config's
   SimulateGoal) of the first datagen goal (100 URL conditions) over the whole range, three
   models at once: events the result says it read, divided by the time from the call to
   the result. The result must have read every stored event of the range and found
   conversions.
3. ``simulate_vs_scan_ratio`` — the two rates divided (target: at least 0.5).
4. ``simulate_rss_growth_mb`` — the tracker's resident memory, sampled every 50 ms during
   the simulation, at its highest, less what it was just before.

Prints one ``name value`` line per figure on stdout; progress, CPU use per process and
checks go to stderr. Everything it started is stopped, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
import uuid
from typing import Any

import grpc

from bench import datagen
from bench.harness import (
    BenchError,
    BenchRun,
    CpuMeter,
    bench_databases,
    bench_stack,
    log,
    rss_mb,
    run_with_services,
)
from goalflow_common.auth import KeyStore, Role
from goalflow_common.pb.goals.v1 import config_pb2, config_pb2_grpc, tracker_pb2, tracker_pb2_grpc
from goalflow_common.protoconv import timestamp
from tracker_svc.api.events import parse_event
from tracker_svc.domain.model import Opening
from tracker_svc.store.tracker_store import TrackerStore

INSERT_BATCH = 1000
WRITERS = 4
SCAN_CHUNK = 4000  # as the tracker's replay reads (tracker_svc.domain.replay.CHUNK_EVENTS)


async def store_events(store: TrackerStore, account: str, traffic: datagen.Traffic) -> int:
    """The traffic's events stored as ingest stores them (events, then the "opened"
    records), ``WRITERS`` batches in flight."""
    now = dt.datetime.now(dt.UTC)
    stored = 0
    pending: set[asyncio.Task[Any]] = set()
    events = traffic.events
    for i in range(0, len(events), INSERT_BATCH):
        batch = [parse_event(e, account, now) for e in events[i:i + INSERT_BATCH]]

        async def write(part: list[Any] = batch) -> None:
            duplicates = await store.insert_new_events(part)
            if duplicates:
                raise BenchError(f"{len(duplicates)} generated events were duplicates")
            await store.insert_openings([Opening.of(e) for e in part if e.kind == "opened"])

        if len(pending) >= WRITERS:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        pending.add(asyncio.create_task(write()))
        stored += len(batch)
    for task in pending:
        await task
    return stored


async def plain_scan(store: TrackerStore, account: str, start: dt.datetime,
                     end: dt.datetime) -> tuple[int, float]:
    """(documents, per second) of the range read window by window, nothing done with them."""
    t0 = time.perf_counter()
    read = 0
    async for count in store.scan_events(account, start, end, SCAN_CHUNK):
        read += count
    return read, read / (time.perf_counter() - t0)


async def replay(
    stub: tracker_pb2_grpc.TrackerServiceStub, request: tracker_pb2.ReplayGoalRequest,
    tracker_pid: int,
) -> tuple[config_pb2.SimulationResult, float, float, int]:
    """(result, seconds, peak RSS growth in MB, progress messages) of one ReplayGoal."""
    base = rss_mb(tracker_pid)
    peak = base
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(tracker_pid))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    result: config_pb2.SimulationResult | None = None
    progress = 0
    t0 = time.perf_counter()
    try:
        async for update in stub.ReplayGoal(request, timeout=3600):
            if update.HasField("progress"):
                progress += 1
            else:
                result = update.result
    except grpc.RpcError as exc:
        raise BenchError(f"ReplayGoal: {exc.code()}: {exc.details()}") from exc
    finally:
        elapsed = time.perf_counter() - t0
        done.set()
        await sampler
    peak = max(peak, rss_mb(tracker_pid))
    if result is None:
        raise BenchError("ReplayGoal ended without a result")
    return result, elapsed, peak - base, progress


async def run(bench: BenchRun, external_db: bool) -> dict[str, str]:
    run_id = uuid.uuid4().hex[:8]
    async with bench_databases(bench, external_db, run_id) as (client, names):
        return await _measure(bench, client, names, f"bench-{run_id}")


async def _measure(
    bench: BenchRun, client: Any, names: dict[str, str], account: str
) -> dict[str, str]:
    args = bench.args
    keys = KeyStore(client[names["GOALFLOW_AUTH_DB_NAME"]])
    await keys.create_account(account)
    admin_key = await keys.create_key(account, Role.ADMIN, label="bench")
    service_key = await keys.create_key(None, Role.SERVICE, label="bench")

    stack = bench_stack(bench.workdir, bench.uri, names, service_key)
    config, tracker = stack.config, stack.tracker
    bench.services += [config, tracker]
    config.start()
    await config.wait_serving(stack.address["config"])
    tracker.start()
    await tracker.wait_serving(stack.address["tracker"])

    today = dt.datetime.now(dt.UTC).date()
    first_day = today - dt.timedelta(days=args.days - 1)
    start = dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    # The goal as config sends it: validated and converted by CreateGoal (inactive).
    definition = datagen.goal_requests(first_day)[0]
    definition.active = False  # a goal that was never active, undated
    definition.ClearField("start_date")
    definition.ClearField("end_date")
    config_stub = config_pb2_grpc.ConfigServiceStub(bench.channel(stack.address["config"],
                                                                  admin_key))
    try:
        goal = (await config_stub.CreateGoal(definition, timeout=30)).goal
    except grpc.RpcError as exc:
        raise BenchError(f"CreateGoal: {exc.code()}: {exc.details()}") from exc

    t0 = time.perf_counter()
    # Conversations open over all but the last day's last half, so follow-ups stay in range.
    traffic = datagen.generate(args.seed, args.events, start,
                               duration=dt.timedelta(days=args.days) - dt.timedelta(hours=12))
    log(f"generated {len(traffic.events)} events in {time.perf_counter() - t0:.1f}s")
    store = TrackerStore(client[names["GOALFLOW_TRACKER_DB_NAME"]])
    await store.ensure_indexes()
    t0 = time.perf_counter()
    stored = await store_events(store, account, traffic)
    log(f"stored {stored} events over {args.days} days in {time.perf_counter() - t0:.1f}s")
    total = await store.count_events(account, start, end)
    log(f"{total} of them in the simulated range {first_day} to {today}")
    if total < args.events * 0.99:
        raise BenchError(f"only {total} events in the range, {stored} stored")

    pids = {"tracker": tracker.pid, "bench": os.getpid()}
    if bench.mongo_pid is not None:
        pids["db"] = bench.mongo_pid
    cpu = CpuMeter(pids)

    cpu.start()
    scanned, scan_rate = await plain_scan(store, account, start, end)
    cpu.report("plain scan")
    if scanned != total:
        raise BenchError(f"the scan read {scanned} of {total} events")

    stub = tracker_pb2_grpc.TrackerServiceStub(bench.channel(stack.address["tracker"],
                                                             service_key))
    request = tracker_pb2.ReplayGoalRequest(account_id=account, goal=goal,
                                            start_time=timestamp(start),
                                            end_time=timestamp(end))
    cpu.start()
    result, elapsed, growth, progress = await replay(stub, request, tracker.pid)
    cpu.report("simulation")
    tracker.check_alive()
    if result.events_scanned != total:
        raise BenchError(f"the simulation read {result.events_scanned} of {total} events")
    converted = [m.conversions for m in result.models]
    if not any(converted):
        raise BenchError("the simulation found no conversion: the goal matches nothing")
    log(f"simulation: {result.hits} hits, conversions first/last/all {converted}, "
        f"{progress} progress messages, {elapsed:.1f}s")

    cpu.start()
    _, scan_again = await plain_scan(store, account, start, end)
    cpu.report("plain scan again")
    scan_rate = max(scan_rate, scan_again)
    simulate_rate = result.events_scanned / elapsed
    return {
        "scan_events_per_s": f"{scan_rate:.0f}",
        "simulate_events_per_s": f"{simulate_rate:.0f}",
        "simulate_vs_scan_ratio": f"{simulate_rate / scan_rate:.3f}",
        "simulate_rss_growth_mb": f"{growth:.1f}",
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="events stored")
    parser.add_argument("--days", type=int, default=30,
                        help="days (up to today) the events are spread over")
    parser.add_argument("--seed", type=int, default=14, help="traffic generator seed")
    args = parser.parse_args(argv)
    if args.events < 1000 or not 2 <= args.days <= 92:
        parser.error("--events must be at least 1000, --days 2 to 92")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_with_services(
        "simulate_bench", lambda ws: BenchRun(args, ws.workdir, ws.uri, ws.mongo_pid), run)


if __name__ == "__main__":
    sys.exit(main())
