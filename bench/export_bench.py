"""Export benchmark: one goal's credit rows exported end-to-end, against the store's ceiling.

Starts the embedded database (unless ``MONGODB_URI`` is set), creates an account with its
keys, runs the real config service and creates one goal, then writes ``--rows`` credit
rows worth of conversion documents (``--credits`` credits each, in the tracker's stored
shape, ``tracker_svc.store``) straight into the tracker's ``conversions`` collection, spread
over the last ``--days`` days, and the kept ratings of seven in ten of those conversations
(``ratings``). Then it runs the real tracker, export service and SMTP sink,
each its own process. In one run:

1. ``store_read_per_s`` — the store's own read ceiling: the same documents read by one plain
   sorted ``find`` (account and goal, oldest first) straight from the database; rows are
   credits, as in the CSV.
2. ``export_rows_per_s`` — ``RequestExport`` (admin key) for the whole date range, then
   ``GetExport`` polled until the job is MAILED (built, stored and mailed); rows are the
   job's ``row_count``, which must equal the rows written, and the sink must hold a mail.
3. ``export_vs_store_ratio`` — the two rates divided.
4. ``export_rss_mb`` — the export service's peak resident memory (``VmHWM``).

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
from pathlib import Path
from typing import Any

import grpc
from pymongo import ASCENDING

from bench.harness import (
    BenchError,
    BenchRun,
    CpuMeter,
    Service,
    bench_databases,
    bench_stack,
    date,
    run_with_services,
    start_profilers,
    stop_profilers,
)
from goalflow_common.auth import KeyStore, Role
from goalflow_common.db import eq
from goalflow_common.pb.goals.v1 import (
    common_pb2,
    config_pb2,
    config_pb2_grpc,
    export_pb2,
    export_pb2_grpc,
)
from tracker_svc.domain.model import (
    Agent,
    ConversionRecord,
    Money,
    RecordedCredit,
    conversion_key,
    rating_key,
)
from tracker_svc.store.documents import conversion_document
from tracker_svc.store.tracker_store import TrackerStore

INSERT_BATCH = 1000
WRITERS = 4
POLL_S = 0.2
RECIPIENT = "bench@example.com"
GROUPS = ("sales-emea", "sales-amer", "support-t1")


def _log(message: str) -> None:
    print(f"[export_bench] {message}", file=sys.stderr, flush=True)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise BenchError(f"no VmHWM for pid {pid}")



# -- the data ------------------------------------------------------------------------------


def goal_request(today: dt.date) -> config_pb2.CreateGoalRequest:
    return config_pb2.CreateGoalRequest(
        name="Checkout after chat (export bench)",
        active=True,
        start_date=date(today),
        agent_group_ids=list(GROUPS),
        end_date=date(today + dt.timedelta(days=90)),
        attribution_model=config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES,
        attribution_period_days=7,
        transaction_value=common_pb2.Money(currency_code="USD", amount="49.90"),
        goal_type=config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE,
        conditions=[config_pb2.Condition(
            category=config_pb2.CONDITION_CATEGORY_URL,
            operator=config_pb2.CONDITION_OPERATOR_CONTAINS,
            value="/checkout/confirm",
        )],
    )


def conversion_docs(
    account: str, goal_id: str, goal_name: str, count: int, credits: int,
    first: dt.datetime, span: dt.timedelta, now: dt.datetime,
):
    """``count`` conversion documents in the tracker's stored shape (the store's own
    ``conversion_document``), evenly over ``span``
    from ``first`` (whole milliseconds, as BSON keeps them), each with ``credits`` credits."""
    step = span / count
    for n in range(count):
        at = first + step * n
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        conversation = f"conv-{n:08d}"
        agents = [
            Agent(
                id=f"agent-{(n + k) % 60:02d}", name=f"Agent {(n + k) % 60:02d}",
                email=f"agent{(n + k) % 60:02d}@example.com",
                group_id=GROUPS[(n + k) % len(GROUPS)], skill="sales", user_type="HUMAN",
            )
            for k in range(credits)
        ]
        yield conversion_document(ConversionRecord(
            id=conversion_key(account, goal_id, conversation), account_id=account,
            goal_id=goal_id, goal_name=goal_name, goal_type="SELL_PRODUCT_OR_SERVICE",
            attribution_model="ALL_TOUCHES", conversation_id=conversation,
            end_user_id=f"user-{n:08d}", channel="WEB_WIDGET", skill="sales",
            conversion_time=at, conversation_open_time=at - dt.timedelta(minutes=20),
            event_type="PURCHASE", brand_event_id=f"order-{n:08d}",
            url=f"https://shop.example.com/checkout/confirm?order={n}",
            hit_event_id=f"ev-{n:08d}", transaction_value=Money("USD", "49.90"),
            credits=tuple(
                RecordedCredit(agent, at - dt.timedelta(minutes=15 - k), (15 - k) * 60_000)
                for k, agent in enumerate(agents)
            ),
            recorded_at=now,
        ))


def rating_docs(account: str, count: int, first: dt.datetime, span: dt.timedelta):
    """The kept ratings (``tracker_svc.store`` shape) of seven in ten of the conversations
    ``conversion_docs`` makes, so the export looks up ratings as it would in production."""
    step = span / count
    for n in range(count):
        if n % 10 < 7:
            conversation = f"conv-{n:08d}"
            yield {
                "_id": rating_key(account, conversation), "account_id": account,
                "conversation_id": conversation, "rating": ("good", "bad", "5", "4")[n % 4],
                "at": first + step * n + dt.timedelta(minutes=30), "event_id": f"rate-{n:08d}",
            }


async def write_docs(collection: Any, docs: Any) -> int:
    """Insert everything from the generator in batches, ``WRITERS`` batches in flight."""
    written = 0
    pending: set[asyncio.Task[Any]] = set()
    batch: list[dict[str, Any]] = []

    async def flush(part: list[dict[str, Any]]) -> None:
        nonlocal pending
        if len(pending) >= WRITERS:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        pending.add(asyncio.create_task(collection.insert_many(part, ordered=False)))

    for doc in docs:
        batch.append(doc)
        if len(batch) == INSERT_BATCH:
            await flush(batch)
            written += len(batch)
            batch = []
    if batch:
        await flush(batch)
        written += len(batch)
    for task in pending:
        await task
    return written


# -- phases --------------------------------------------------------------------------------


async def store_ceiling(collection: Any, account: str, goal_id: str) -> tuple[int, float]:
    """(credit rows, rows per second) of one plain sorted find over the goal's conversions."""
    t0 = time.perf_counter()
    rows = 0
    cursor = collection.find(
        {"account_id": eq(account), "goal_id": eq(goal_id)}
    ).sort([("conversion_time", ASCENDING), ("_id", ASCENDING)])
    async for doc in cursor:
        rows += len(doc["credits"])
    return rows, rows / (time.perf_counter() - t0)


async def run_export(
    stub: export_pb2_grpc.ExportServiceStub, goal_id: str, first: dt.date, last: dt.date,
    export: Service, timeout_s: float,
) -> tuple[export_pb2.Export, float]:
    """The job at MAILED, and the seconds from the request to it."""
    t0 = time.perf_counter()
    try:
        reply = await stub.RequestExport(export_pb2.RequestExportRequest(
            goal_id=goal_id, start_date=date(first), end_date=date(last),
            recipient_email=RECIPIENT, request_id=uuid.uuid4().hex,
        ), timeout=30)
    except grpc.RpcError as exc:
        raise BenchError(f"RequestExport: {exc.code()}: {exc.details()}") from exc
    job_id = reply.export.id
    state = reply.export.state
    deadline = t0 + timeout_s
    while True:
        export.check_alive()
        job = (await stub.GetExport(export_pb2.GetExportRequest(export_id=job_id),
                                    timeout=30)).export
        if job.state != state:
            state = job.state
            _log(f"job {job_id}: {export_pb2.ExportState.Name(state)} after "
                 f"{time.perf_counter() - t0:.1f}s")
        if job.state == export_pb2.EXPORT_STATE_MAILED:
            return job, time.perf_counter() - t0
        if job.state == export_pb2.EXPORT_STATE_FAILED:
            raise BenchError(f"export failed: {job.error}")
        if time.perf_counter() > deadline:
            raise BenchError(f"export not MAILED within {timeout_s:.0f}s "
                             f"(state {export_pb2.ExportState.Name(job.state)}, {job.error})")
        await asyncio.sleep(POLL_S)


# -- the run -------------------------------------------------------------------------------


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
    address, outbox = stack.address, stack.outbox
    config, tracker, export = stack.config, stack.tracker, stack.export
    bench.services += stack.services

    config.start()
    await config.wait_serving(address["config"])
    today = dt.datetime.now(dt.UTC).date()
    config_stub = config_pb2_grpc.ConfigServiceStub(bench.channel(address["config"], admin_key))
    try:
        goal = (await config_stub.CreateGoal(goal_request(today), timeout=30)).goal
    except grpc.RpcError as exc:
        raise BenchError(f"CreateGoal: {exc.code()}: {exc.details()}") from exc

    tracker_db = client[names["GOALFLOW_TRACKER_DB_NAME"]]
    await TrackerStore(tracker_db).ensure_indexes()
    conversions = -(-args.rows // args.credits)
    first_day = today - dt.timedelta(days=args.days)
    first = dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC)
    t0 = time.perf_counter()
    span = dt.timedelta(days=args.days)
    written = await write_docs(tracker_db["conversions"], conversion_docs(
        account, goal.id, goal.name, conversions, args.credits, first, span,
        dt.datetime.now(dt.UTC),
    ))
    rated = await write_docs(tracker_db["ratings"], rating_docs(account, conversions, first, span))
    rows_written = conversions * args.credits
    _log(f"wrote {written} conversions ({rows_written} credit rows, {rated} rated) over "
         f"{args.days} days in {time.perf_counter() - t0:.1f}s")

    await stack.start_rest()
    _log(f"config {config.pid}, tracker {tracker.pid}, export {export.pid}, sink {stack.sink.pid}, "
         f"database {bench.uri}")

    pids = {"export": export.pid, "tracker": tracker.pid, "bench": os.getpid()}
    if bench.mongo_pid is not None:
        pids["db"] = bench.mongo_pid
    cpu = CpuMeter(pids)

    cpu.start()
    store_rows, store_rate = await store_ceiling(tracker_db["conversions"], account, goal.id)
    cpu.report("store read")
    if store_rows != rows_written:
        raise BenchError(f"the sorted find read {store_rows} rows of {rows_written} written")

    stub = export_pb2_grpc.ExportServiceStub(bench.channel(address["export"], admin_key))
    profilers = start_profilers(args.profile, {k: v for k, v in pids.items() if k != "db"})
    try:
        cpu.start()
        job, elapsed = await run_export(stub, goal.id, first_day, today, export, args.timeout)
        cpu.report("export")
    finally:
        stop_profilers(profilers)
    export.check_alive()
    peak = peak_rss_mb(export.pid)
    if job.row_count != rows_written:
        raise BenchError(f"the export holds {job.row_count} rows, {rows_written} were written")
    mails = list(outbox.glob("*.eml")) if outbox.exists() else []
    if not mails:
        raise BenchError("the job is MAILED but the SMTP sink holds no message")
    _log(f"zip {job.size_bytes / 1e6:.1f} MB, {len(mails)} mail(s) in the sink, "
         f"{elapsed:.1f}s from request to MAILED")
    export_rate = job.row_count / elapsed
    return {
        "export_rows_per_s": f"{export_rate:.0f}",
        "store_read_per_s": f"{store_rate:.0f}",
        "export_vs_store_ratio": f"{export_rate / store_rate:.3f}",
        "export_rss_mb": f"{peak:.1f}",
    }


# -- entry point ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.export_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="credit rows to export")
    parser.add_argument("--credits", type=int, default=2, help="credits per conversion")
    parser.add_argument("--days", type=int, default=30,
                        help="days (up to today) the conversions are spread over")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds the export may take before the run fails")
    parser.add_argument("--profile", metavar="DIR",
                        help="record export and tracker with py-spy during the export, as "
                        "folded stacks in DIR/<name>.folded")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.credits < 1 or not 1 <= args.days <= 365:
        parser.error("--rows and --credits must be at least 1, --days 1 to 365")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_with_services(
        "export_bench", lambda ws: BenchRun(args, ws.workdir, ws.uri, ws.mongo_pid,
                                            max_message_bytes=64 * 1024 * 1024), run
    )


if __name__ == "__main__":
    sys.exit(main())
