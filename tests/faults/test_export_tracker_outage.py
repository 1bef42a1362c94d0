"""A tracker outage while an export is due (issue 10 item 8): the tracker is a real process,
frozen with SIGSTOP (its connections stay open, nothing answers) or stopped. The export is
retried with backoff, QUEUED between tries where any replica may claim it; when the
tracker comes back it is built and mailed once, and when the outage outlasts the retry
deadline it fails with one sentence saying why."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import signal
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from export_svc.domain.lifecycle import WAITING_FOR_TRACKER
from export_svc.server import create_server as create_export
from export_svc.settings import ExportSettings
from goalflow_common.auth import Role
from goalflow_common.client import make_channel
from goalflow_common.pb.goals.v1 import config_pb2, export_pb2, export_pb2_grpc
from goalflow_common.server import GoalflowServer
from goalflow_dev.embedded_mongo import free_port
from tests.faults.conftest import FaultStack, ServiceProcess
from tests.services.config_svc.helpers import date, url_condition
from tests.services.export_svc.conftest import read_outbox, start_sink, stop_sink, wait_listening
from tests.services.tracker_svc.builders import agent, assigned, ingest, opened, visit

CONVERSATIONS = 3
READ_TIMEOUT_S = 1.0  # how long the worker waits on a silent tracker before backing off


async def _seed(stack: FaultStack) -> tuple[config_pb2.Goal, ServiceProcess]:
    """A goal (created before the tracker starts, so its first snapshot has it), a running
    tracker process, and CONVERSATIONS conversions of the goal recorded now."""
    today = dt.datetime.now(dt.UTC).date()
    [goal] = await stack.create_goals([config_pb2.CreateGoalRequest(
        name="Checkout", agent_group_ids=["sales"], active=True, start_date=date(today),
        attribution_model=config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES, attribution_period_days=7,
        conditions=[url_condition("/checkout")],
        goal_type=config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE)])
    tracker = stack.tracker()
    await tracker.serve()
    now = dt.datetime.now(dt.UTC)
    events, hits = [], []
    for n in range(CONVERSATIONS):
        events += [opened(f"c{n}", now, user=f"u{n}"),
                   assigned(f"c{n}", now + dt.timedelta(seconds=1), agent(f"A{n}"))]
        hits.append(visit("https://shop.x/checkout", now + dt.timedelta(seconds=2),
                          user=f"u{n}"))
    acks = await ingest(stack.tracker_stub(tracker, Role.INGEST), events, hits)
    assert acks[1].conversions == CONVERSATIONS
    return goal, tracker


@pytest.fixture
async def export_replica(fault_stack: FaultStack, tmp_path: Path) -> AsyncIterator:
    """Starts the export service in this process (real clock) against the fault stack's
    database and config, with an SMTP sink; yields ``start(tracker, **settings)`` which
    returns the gRPC address, and the outbox."""
    stack = fault_stack
    smtp_port, outbox = free_port(), tmp_path / "outbox"
    sink = await start_sink(smtp_port, outbox)
    started: list[GoalflowServer] = []

    async def start(tracker: ServiceProcess, **overrides: Any) -> str:
        http_port = free_port()
        fields: dict[str, Any] = dict(
            mongodb_uri=stack.db.uri, auth_db_name=f"{stack.prefix}_auth",
            export_db_name=f"{stack.prefix}_export", grpc_port=0, http_port=http_port,
            public_base_url=f"http://127.0.0.1:{http_port}", tracker_address=tracker.address,
            config_address=stack.config.address, smtp_port=smtp_port, link_secret="k" * 40,
            service_api_key=stack.platform_key, lease_s=5.0, shutdown_grace_s=1.0,
            tracker_read_timeout_s=READ_TIMEOUT_S, **overrides,
        )
        server, port = await create_export(ExportSettings(**fields))
        started.append(server)
        await server.start()
        return f"127.0.0.1:{port}"

    try:
        await wait_listening(smtp_port)
        yield start, outbox
    finally:
        for server in started:
            await server.stop(0.5)
        await stop_sink(sink)


async def _request(stack: FaultStack, address: str, goal: config_pb2.Goal) -> str:
    today = dt.datetime.now(dt.UTC).date()
    async with make_channel(address, stack.tenant.admin) as channel:
        return (await export_pb2_grpc.ExportServiceStub(channel).RequestExport(
            export_pb2.RequestExportRequest(
                goal_id=goal.id, start_date=date(today - dt.timedelta(days=1)),
                end_date=date(today + dt.timedelta(days=1)), recipient_email="a@example.com"),
            timeout=10)).export.id


async def _poll(check: Callable[[], Awaitable[Any]], what: str, within_s: float) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not (result := await check()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
    return result


async def test_frozen_tracker_export_is_retried_and_mailed_once_when_it_thaws(
        fault_stack, export_replica):
    stack = fault_stack
    start, outbox = export_replica
    goal, tracker = await _seed(stack)
    address = await start(tracker)
    jobs = stack.client[f"{stack.prefix}_export"]["exports"]

    tracker.signal(signal.SIGSTOP)
    try:
        export_id = await _request(stack, address, goal)

        async def retried_twice():
            doc = await jobs.find_one({"_id": export_id})
            return doc if doc and doc.get("outages", 0) >= 2 else None
        # Each try waits READ_TIMEOUT_S on the silent tracker, then the job goes back to
        # the queue: it does not fail, and it says why it waits.
        doc = await _poll(retried_twice, "two tries against the frozen tracker", 30)
        assert doc["state"] in ("QUEUED", "BUILDING")
        assert doc["error"] == WAITING_FOR_TRACKER and doc["attempts"] == 0
        assert doc["outage_since"] is not None
        assert read_outbox(outbox) == []
    finally:
        tracker.signal(signal.SIGCONT)

    async def finished():
        doc = await jobs.find_one({"_id": export_id})
        return doc if doc and doc["state"] in ("MAILED", "FAILED") else None
    doc = await _poll(finished, "the export to finish after the tracker thawed", 45)
    assert doc["state"] == "MAILED", doc["error"]
    assert doc["row_count"] == CONVERSATIONS and doc["claims"] >= 3
    await asyncio.sleep(1.5)  # longer than the workers' idle poll: a second mail would show
    [mail] = read_outbox(outbox)
    text = mail.get_body(("plain",)).get_content()
    assert doc["download_url"] in text
    async with aiohttp.ClientSession() as http, http.get(doc["download_url"]) as response:
        assert response.status == 200
        body = await response.read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        [name] = archive.namelist()
        rows = list(csv.reader(io.StringIO(archive.read(name).decode("utf-8-sig"))))[1:]
    assert sorted(row[6] for row in rows) == [f"c{n}" for n in range(CONVERSATIONS)]


async def test_tracker_down_past_the_retry_deadline_fails_with_one_sentence(
        fault_stack, export_replica):
    stack = fault_stack
    start, outbox = export_replica
    goal, tracker = await _seed(stack)
    address = await start(tracker, export_retry_deadline_s=2.0)
    await asyncio.to_thread(tracker.stop)

    export_id = await _request(stack, address, goal)
    async with make_channel(address, stack.tenant.admin) as channel:
        stub = export_pb2_grpc.ExportServiceStub(channel)

        async def failed():
            job = (await stub.GetExport(export_pb2.GetExportRequest(export_id=export_id))).export
            assert job.state != export_pb2.EXPORT_STATE_MAILED
            return job if job.state == export_pb2.EXPORT_STATE_FAILED else None
        job = await _poll(failed, "the export to fail", 30)
    assert job.error == ("The tracker service could not be reached for 2 seconds, so the "
                         "export was abandoned; please request it again.")
    doc = await stack.client[f"{stack.prefix}_export"]["exports"].find_one({"_id": export_id})
    assert doc["outages"] >= 2  # retried before giving up
    assert read_outbox(outbox) == []
