"""Soak benchmark: the whole system under steady mixed traffic for a long while.

Starts the embedded database (unless ``MONGODB_URI`` is set), the three services and an
SMTP sink as processes, creates the benchmark's 15 goals, then for ``--minutes``:

- ingest: one ``IngestEvents`` stream sending realistic traffic (``bench.datagen``) at a
  steady ``--rate`` events/s, in batches every ``--tick`` seconds; each batch's ack time is
  measured from its write;
- agent subscriptions: ``--subscribers`` ``SubscribeConversions`` streams, one per agent;
- reports: a ``GetReport`` every ``--report-every`` seconds, cycling through every grouping;
- exports: a ``RequestExport`` every ``--export-every`` seconds, followed to MAILED.

Any failed call, refused event, broken stream or failed export counts as an error. RSS of
each service is read after ``--warmup`` seconds and at the end. Prints ``soak_events_total``,
``soak_errors``, ``soak_rss_growth_mb_<service>``, ``soak_p99_ack_ms`` and counts of the
other traffic, one ``name value`` line each; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio

from bench import datagen
from bench.harness import (
    BenchError,
    BenchRun,
    bench_databases,
    bench_stack,
    date,
    log,
    percentile,
    rss_mb,
    run_with_services,
)
from goalflow_common.auth import KeyStore, Role
from goalflow_common.pb.goals.v1 import (
    config_pb2_grpc,
    export_pb2,
    export_pb2_grpc,
    tracker_pb2,
    tracker_pb2_grpc,
)

GROUPINGS = [v for v in tracker_pb2.ReportGrouping.values() if v]


@dataclass
class Counters:
    events: int = 0
    batches: int = 0
    conversions: int = 0
    delivered: int = 0
    reports: int = 0
    exports: int = 0
    errors: list[str] = field(default_factory=list)
    ack_ms: list[float] = field(default_factory=list)

    def error(self, what: str) -> None:
        if len(self.errors) < 20:
            log(f"error: {what}")
        self.errors.append(what)



# -- the four kinds of traffic -------------------------------------------------------------


async def ingest(stub: Any, events: list[tracker_pb2.Event], args: argparse.Namespace,
                 until: float, counts: Counters) -> None:
    """Batches at a steady pace on one stream; ack latency per batch."""
    per_tick = max(1, round(args.rate * args.tick))
    sent_at: dict[str, float] = {}
    call = stub.IngestEvents()

    async def read_acks() -> None:
        while (ack := await call.read()) is not aio.EOF:
            counts.ack_ms.append((time.perf_counter() - sent_at.pop(ack.batch_id)) * 1000)
            counts.batches += 1
            counts.events += ack.accepted + ack.duplicates
            counts.conversions += ack.conversions
            for refused in ack.rejected:
                counts.error(f"event {refused.event_id} refused: {refused.field}: "
                             f"{refused.reason}")

    reader = asyncio.create_task(read_acks())
    position, n = 0, 0
    next_tick = time.perf_counter()
    try:
        while time.perf_counter() < until and position < len(events) and not reader.done():
            batch = events[position:position + per_tick]
            position += len(batch)
            batch_id = f"soak-{n}"
            n += 1
            sent_at[batch_id] = time.perf_counter()
            await call.write(tracker_pb2.IngestEventsRequest(batch_id=batch_id, events=batch))
            next_tick += args.tick
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
        if position >= len(events):
            log("the generated traffic ran out before the time did; raise --events-margin")
        await call.done_writing()
        await reader
    except grpc.RpcError as exc:
        counts.error(f"IngestEvents: {exc.code()}: {exc.details()}")
    finally:
        reader.cancel()
        call.cancel()


async def subscribe(stub: Any, agent_id: str, counts: Counters) -> None:
    call = stub.SubscribeConversions(
        tracker_pb2.SubscribeConversionsRequest(agent_id=agent_id)
    )
    try:
        async for _ in call:
            counts.delivered += 1
    except asyncio.CancelledError:
        call.cancel()
        raise
    except grpc.RpcError as exc:
        counts.error(f"SubscribeConversions({agent_id}): {exc.code()}: {exc.details()}")


async def reports(stub: Any, today: dt.date, every_s: float, counts: Counters) -> None:
    n = 0
    while True:
        await asyncio.sleep(every_s)
        grouping = GROUPINGS[n % len(GROUPINGS)]
        n += 1
        try:
            await stub.GetReport(tracker_pb2.GetReportRequest(
                start_date=date(today - dt.timedelta(days=1)), end_date=date(today),
                group_by=grouping,
            ), timeout=30)
            counts.reports += 1
        except grpc.RpcError as exc:
            counts.error(f"GetReport: {exc.code()}: {exc.details()}")


async def exports(stub: Any, goal_id: str, today: dt.date, every_s: float,
                  counts: Counters) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            job = (await stub.RequestExport(export_pb2.RequestExportRequest(
                goal_id=goal_id, start_date=date(today), end_date=date(today),
                recipient_email="soak@example.com", request_id=uuid.uuid4().hex,
            ), timeout=30)).export
            while job.state not in (export_pb2.EXPORT_STATE_MAILED,
                                    export_pb2.EXPORT_STATE_FAILED):
                await asyncio.sleep(0.5)
                job = (await stub.GetExport(export_pb2.GetExportRequest(export_id=job.id),
                                            timeout=30)).export
        except grpc.RpcError as exc:
            counts.error(f"export: {exc.code()}: {exc.details()}")
            continue
        if job.state == export_pb2.EXPORT_STATE_FAILED:
            counts.error(f"export {job.id} failed: {job.error}")
        else:
            counts.exports += 1


# -- the run -------------------------------------------------------------------------------


async def run(bench: BenchRun, external_db: bool) -> dict[str, str]:
    async with bench_databases(bench, external_db, uuid.uuid4().hex[:8]) as (client, names):
        return await _soak(bench, client, names)


async def _soak(bench: BenchRun, client: Any, names: dict[str, str]) -> dict[str, str]:
    args = bench.args
    account = f"soak-{uuid.uuid4().hex[:8]}"
    keys = KeyStore(client[names["GOALFLOW_AUTH_DB_NAME"]])
    await keys.create_account(account)
    key = {role: await keys.create_key(account, role, label="soak")
           for role in (Role.ADMIN, Role.INGEST, Role.AGENT)}
    stack = bench_stack(bench.workdir, bench.uri, names,
                        await keys.create_key(None, Role.SERVICE, label="soak"))
    bench.services += stack.services
    address = stack.address

    today = dt.datetime.now(dt.UTC).date()
    seconds = args.minutes * 60
    wanted = int(args.rate * seconds * args.events_margin) + 1
    log(f"generating {wanted} events")
    traffic = datagen.generate(
        args.seed, wanted, dt.datetime.combine(today, dt.time(), tzinfo=dt.UTC)
    )

    stack.config.start()
    await stack.config.wait_serving(address["config"])
    config = config_pb2_grpc.ConfigServiceStub(bench.channel(address["config"], key[Role.ADMIN]))
    goal_ids = [(await config.CreateGoal(request, timeout=30)).goal.id
                for request in datagen.goal_requests(today)]
    await stack.start_rest()
    pids = {"config": stack.config.pid, "tracker": stack.tracker.pid, "export": stack.export.pid}
    log(f"{len(goal_ids)} goals; services {pids}; {args.minutes} min at {args.rate} events/s")

    def tracker(role: Role) -> Any:
        return tracker_pb2_grpc.TrackerServiceStub(bench.channel(address["tracker"], key[role]))

    counts = Counters()
    start = time.perf_counter()
    until = start + seconds
    agents = [a.id for group in datagen.workforce().agents.values() for a in group]
    background = [
        *(asyncio.create_task(subscribe(tracker(Role.AGENT), agent_id, counts))
          for agent_id in agents[:args.subscribers]),
        asyncio.create_task(reports(tracker(Role.ADMIN), today, args.report_every, counts)),
        asyncio.create_task(exports(
            export_pb2_grpc.ExportServiceStub(bench.channel(address["export"], key[Role.ADMIN])),
            goal_ids[0], today, args.export_every, counts,
        )),
    ]
    ingesting = asyncio.create_task(
        ingest(tracker(Role.INGEST), traffic.events, args, until, counts)
    )
    baseline: dict[str, float] = {}
    try:
        while not ingesting.done():
            await asyncio.wait([ingesting], timeout=min(30.0, args.warmup))
            for service in stack.services:
                service.check_alive()
            elapsed = time.perf_counter() - start
            if not baseline and elapsed >= args.warmup:
                baseline = {name: rss_mb(pid) for name, pid in pids.items()}
                log(f"RSS after warm-up: {baseline}")
            log(f"{elapsed:.0f}s: {counts.events} events, {counts.conversions} conversions, "
                f"{counts.delivered} delivered, {counts.reports} reports, {counts.exports} "
                f"exports, {len(counts.errors)} errors")
        await ingesting
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
    if not baseline:
        raise BenchError(f"--warmup ({args.warmup}s) must be shorter than the run")
    if not counts.ack_ms:
        raise BenchError("no batch was acknowledged")
    figures = {
        "soak_events_total": str(counts.events),
        "soak_errors": str(len(counts.errors)),
    }
    for name, pid in pids.items():
        figures[f"soak_rss_growth_mb_{name}"] = f"{rss_mb(pid) - baseline[name]:.1f}"
    figures |= {
        "soak_p99_ack_ms": f"{percentile(counts.ack_ms, 99):.1f}",
        "soak_conversions": str(counts.conversions),
        "soak_deliveries": str(counts.delivered),
        "soak_reports": str(counts.reports),
        "soak_exports": str(counts.exports),
    }
    return figures


# -- entry point ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to soak")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--tick", type=float, default=0.25,
                        help="seconds between ingest batches")
    parser.add_argument("--subscribers", type=int, default=20,
                        help="agents with a live SubscribeConversions stream")
    parser.add_argument("--report-every", type=float, default=2.0, help="seconds")
    parser.add_argument("--export-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--warmup", type=float, default=30.0,
                        help="seconds before the RSS baseline is read")
    parser.add_argument("--events-margin", type=float, default=1.05,
                        help="events generated per event the run should need")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.tick <= 0:
        parser.error("--minutes, --rate and --tick must be positive")
    if args.warmup >= args.minutes * 60:
        parser.error("--warmup must be shorter than the run")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_with_services("soak_bench", lambda ws: BenchRun(args, ws.workdir, ws.uri), run)


if __name__ == "__main__":
    sys.exit(main())
