"""Issue 4's fault cases against real servers: two replicas on one job, the SMTP server
down when the mail is due, and a replica stopped in the middle of a build."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from export_svc.domain.jobs import ExportRequest
from export_svc.server import create_server as create_export
from export_svc.settings import ExportSettings
from goalflow_common.auth import Role
from goalflow_common.client import make_channel
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, export_pb2, export_pb2_grpc
from goalflow_common.server import GoalflowServer
from goalflow_dev.embedded_mongo import free_port
from tests.services.export_svc.conftest import read_outbox, start_sink, stop_sink, wait_listening
from tests.services.tracker_svc.builders import agent, assigned, create_goal, ingest, opened, visit

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
JUNE_1 = common_pb2.Date(year=2026, month=6, day=1)
LINK_RE = re.compile(r"http://127\.0\.0\.1:\d+/exports/[0-9a-f]+/download\?\S+")
MAILED = export_pb2.EXPORT_STATE_MAILED

StartExporter = Callable[..., Awaitable[tuple[GoalflowServer, str]]]


@pytest.fixture
async def exporters(stack, mongo_uri, db_prefix, clock, platform_key) -> AsyncIterator:
    """Starts export replicas on this test's export database (same link secret); all are
    stopped at the end. Keyword arguments override settings (smtp_port is required)."""
    started: list[GoalflowServer] = []

    async def start(**overrides: Any) -> tuple[GoalflowServer, str]:
        http_port = free_port()
        fields: dict[str, Any] = dict(
            mongodb_uri=mongo_uri, auth_db_name=f"{db_prefix}_auth",
            export_db_name=f"{db_prefix}_export", grpc_port=0, http_port=http_port,
            public_base_url=f"http://127.0.0.1:{http_port}",
            tracker_address=stack.tracker_address, config_address=stack.config_address,
            link_secret="k" * 40, service_api_key=platform_key, lease_s=5.0,
            shutdown_grace_s=1.0,
        )
        fields.update(overrides)
        server, port = await create_export(ExportSettings(**fields), clock=clock,
                                           ttl_indexes=False)
        started.append(server)
        await server.start()
        return server, f"127.0.0.1:{port}"

    try:
        yield start
    finally:
        for server in started:
            await server.stop(0.5)


@pytest.fixture
def exports(mongo, db_prefix):
    """The job collection itself, to look at what the replicas recorded."""
    return mongo[f"{db_prefix}_export"]["exports"]


async def seed(stack, tenant, clock, conversations: int) -> config_pb2.Goal:
    """A goal and ``conversations`` conversions with one human agent each: one CSV row each."""
    goal = await create_goal(stack, tenant, "Checkout",
                             model=config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES)
    events, hits = [], []
    for n in range(conversations):
        conv, user = f"c{n}", f"u{n}"
        events += [opened(conv, T0, user=user), assigned(conv, T0 + MIN, agent(f"A{n}"))]
        hits.append(visit("https://shop.x/checkout", T0 + 10 * MIN, user=user))
    clock.set(T0 + 30 * MIN)
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, hits)
    assert acks[1].conversions == conversations
    return goal


async def request(address: str, tenant, goal) -> str:
    async with make_channel(address, tenant.admin) as channel:
        job = (await export_pb2_grpc.ExportServiceStub(channel).RequestExport(
            export_pb2.RequestExportRequest(goal_id=goal.id, start_date=JUNE_1,
                                            end_date=JUNE_1, recipient_email="a@example.com")
        )).export
    return job.id


async def get(address: str, tenant, export_id: str) -> export_pb2.Export:
    async with make_channel(address, tenant.admin) as channel:
        return (await export_pb2_grpc.ExportServiceStub(channel).GetExport(
            export_pb2.GetExportRequest(export_id=export_id))).export


async def poll(check: Callable[[], Awaitable[Any]], what: str, within_s: float = 20.0) -> Any:
    """The first truthy result of ``check``, polled until ``within_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_mailed(address: str, tenant, export_id: str) -> export_pb2.Export:
    async def mailed():
        job = await get(address, tenant, export_id)
        assert job.state != export_pb2.EXPORT_STATE_FAILED, job.error
        return job if job.state == MAILED else None
    return await poll(mailed, f"export {export_id} MAILED")


def mails_for(outbox: Path, export_id: str) -> list[str]:
    """The download links of the e-mails in the outbox that are about ``export_id``."""
    links = [link for mail in read_outbox(outbox)
             for link in LINK_RE.findall(mail.get_body(("plain",)).get_content())]
    return [link for link in links if f"/exports/{export_id}/" in link]


async def download_rows(link: str) -> list[list[str]]:
    async with aiohttp.ClientSession() as http, http.get(link) as response:
        assert response.status == 200
        body = await response.read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        [name] = archive.namelist()
        return list(csv.reader(io.StringIO(archive.read(name).decode("utf-8-sig"))))[1:]


JOBS = 6
QUIET_S = 1.5  # longer than the workers' idle poll: a second sender would have shown up


async def test_two_replicas_build_and_mail_each_job_once(stack, exporters, exports, sink,
                                                        make_tenant, clock):
    smtp_port, outbox = sink
    tenant = await make_tenant()
    goal = await seed(stack, tenant, clock, 3)
    first, first_address = await exporters(smtp_port=smtp_port)
    second, second_address = await exporters(smtp_port=smtp_port)
    addresses = (first_address, second_address)

    # Several jobs at once, through both replicas, so the four workers really contend for
    # the same queue (one job alone is simply taken by the replica that received it).
    export_ids = await asyncio.gather(*(
        request(addresses[n % 2], tenant, goal) for n in range(JOBS)))
    for server in (first, second):
        server.components["worker"].wake()
    jobs = [await wait_mailed(addresses[n % 2 - 1], tenant, export_id)
            for n, export_id in enumerate(export_ids)]
    await asyncio.sleep(QUIET_S)

    assert len(read_outbox(outbox)) == JOBS
    for export_id, job in zip(export_ids, jobs, strict=True):
        [link] = mails_for(outbox, export_id)
        for address in addresses:  # either replica reports the same finished job
            seen = await get(address, tenant, export_id)
            assert (seen.state, seen.row_count, seen.download_url) == (MAILED, 3, link)
        doc = await exports.find_one({"_id": export_id})
        assert doc["claims"] == 1 and doc["attempts"] == 0  # one worker, one build
        assert job.row_count == 3
    # Same link secret: either replica's download server honours any replica's link.
    link = jobs[0].download_url
    for server in (first, second):
        relinked = re.sub(r"127\.0\.0\.1:\d+",
                          f"127.0.0.1:{server.components['http_port']}", link)
        assert len(await download_rows(relinked)) == 3


async def test_smtp_down_at_first_then_up_mails_once(stack, exporters, exports, make_tenant,
                                                     clock, tmp_path):
    smtp_port, outbox = free_port(), tmp_path / "outbox"
    tenant = await make_tenant()
    goal = await seed(stack, tenant, clock, 2)
    _, address = await exporters(smtp_port=smtp_port)

    export_id = await request(address, tenant, goal)

    async def sending():
        doc = await exports.find_one({"_id": export_id})
        return doc if doc and doc.get("mail_attempted_at") else None
    # Built, and the mailer is already knocking on a closed port.
    doc = await poll(sending, "the first mail attempt")
    assert doc["state"] == "BUILDING" and doc["row_count"] == 2
    await asyncio.sleep(2.0)
    smtp = await start_sink(smtp_port, outbox)
    try:
        await wait_listening(smtp_port)
        job = await wait_mailed(address, tenant, export_id)
        await asyncio.sleep(QUIET_S)
        assert len(read_outbox(outbox)) == 1
        assert mails_for(outbox, export_id) == [job.download_url]
        doc = await exports.find_one({"_id": export_id})
        # The mailer's own bounded retries got it through within the same claim.
        assert doc["claims"] == 1 and job.row_count == 2
    finally:
        await stop_sink(smtp)


async def test_smtp_down_past_mailer_retries_job_is_released_and_mailed_once(
        stack, exporters, exports, make_tenant, clock, tmp_path):
    smtp_port, outbox = free_port(), tmp_path / "outbox"
    tenant = await make_tenant()
    goal = await seed(stack, tenant, clock, 2)
    server, address = await exporters(smtp_port=smtp_port)

    export_id = await request(address, tenant, goal)

    async def released():
        doc = await exports.find_one({"_id": export_id})
        return doc if doc and doc["state"] == "QUEUED" and doc["attempts"] == 1 else None
    # The mailer gives up after its bounded backoff (about 8 s); nothing can have been sent.
    doc = await poll(released, "the job released for retry", within_s=30.0)
    assert doc["error"].startswith("mail:") and doc["mail_attempted_at"] is None
    built_link = doc["download_url"]
    assert built_link and doc["row_count"] == 2

    smtp = await start_sink(smtp_port, outbox)
    try:
        await wait_listening(smtp_port)
        # The retry is due after the worker's backoff on the service clock.
        clock.advance(dt.timedelta(seconds=5))
        server.components["worker"].wake()
        job = await wait_mailed(address, tenant, export_id)
        await asyncio.sleep(QUIET_S)
        assert len(read_outbox(outbox)) == 1
        # Mailed on the second claim from the stored file: same link, not rebuilt.
        assert mails_for(outbox, export_id) == [built_link] == [job.download_url]
        doc = await exports.find_one({"_id": export_id})
        assert doc["claims"] == 2 and doc["attempts"] == 1
    finally:
        await stop_sink(smtp)


class StallingProxy:
    """A loopback TCP relay to ``upstream`` whose upstream-to-client direction can be held:
    with it stalled, a streaming call's request goes through but no response comes back,
    so a build waits on the tracker for as long as the test wants."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def stall(self) -> None:
        self._flowing.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers += [writer, up_writer]
        for task in (self._pump(reader, up_writer, hold=False),
                     self._pump(up_reader, writer, hold=True)):
            self._tasks.add(asyncio.create_task(task))

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    hold: bool) -> None:
        try:
            while data := await src.read(65536):
                if hold:
                    await self._flowing.wait()
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            dst.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        await self._server.wait_closed()


async def test_replica_stopped_while_building_is_finished_by_a_restart(
        stack, exporters, exports, sink, make_tenant, clock):
    smtp_port, outbox = sink
    tenant = await make_tenant()
    goal = await seed(stack, tenant, clock, 4)
    proxy = StallingProxy(stack.tracker_address)
    await proxy.start()
    try:
        first, first_address = await exporters(
            smtp_port=smtp_port, tracker_address=proxy.address, lease_s=5.0, workers=1)
        # A first export opens the replica's tracker connection through the relay.
        warm_id = await request(first_address, tenant, goal)
        await wait_mailed(first_address, tenant, warm_id)

        proxy.stall()
        export_id = await request(first_address, tenant, goal)
        doc = await poll(lambda: exports.find_one({"_id": export_id, "state": "BUILDING"}),
                         "the build to start")
        assert (await get(first_address, tenant, export_id)).state == (
            export_pb2.EXPORT_STATE_BUILDING)
        await asyncio.sleep(0.5)  # it is stuck in the build, not about to finish
        doc = await exports.find_one({"_id": export_id})
        assert doc["state"] == "BUILDING" and doc["file_id"] is None
        await first.stop(0)
    finally:
        await proxy.close()

    stranded = await exports.find_one({"_id": export_id})
    assert stranded["state"] == "BUILDING" and stranded["lease_owner"]
    # The dead replica's lease runs out on the service clock.
    clock.advance(dt.timedelta(seconds=6))
    _, second_address = await exporters(smtp_port=smtp_port, lease_s=2.0)
    job = await wait_mailed(second_address, tenant, export_id)
    await asyncio.sleep(QUIET_S)

    assert job.row_count == 4
    [link] = mails_for(outbox, export_id)
    assert len(read_outbox(outbox)) == 2  # the warm-up export's and this one's
    assert len(await download_rows(link)) == 4
    doc = await exports.find_one({"_id": export_id})
    assert doc["claims"] == 2 and doc["lease_owner"] is None


async def test_a_refused_tracker_request_fails_after_its_attempts_with_one_line(
        stack, exporters, exports, make_tenant, clock, tmp_path):
    """Not an outage: the tracker refuses the request itself (a job whose goal id it does
    not accept). Retried MAX_ATTEMPTS times, then FAILED with one readable line, never
    the gRPC error's multi-line dump."""
    tenant = await make_tenant()
    server, address = await exporters(smtp_port=free_port())
    job = await server.components["jobs"].create(ExportRequest(
        account_id=tenant.account_id, goal_id="g" * 200, goal_name="Checkout",
        start_date=dt.date(2026, 6, 1), end_date=dt.date(2026, 6, 1),
        recipient_email="a@example.com"))

    async def failed():
        doc = await exports.find_one({"_id": job.id})
        if doc["state"] == "QUEUED":  # the retry is due after the backoff, on this clock
            clock.advance(dt.timedelta(seconds=61))
            server.components["worker"].wake()
        return doc if doc["state"] == "FAILED" else None
    doc = await poll(failed, "the job to fail", within_s=30)
    assert doc["attempts"] == 4  # the fifth failure ends it
    assert (await get(address, tenant, job.id)).error == (
        "Gave up after 5 attempts: the tracker refused the request "
        "(INVALID_ARGUMENT: goal_id: at most 128 characters).")
