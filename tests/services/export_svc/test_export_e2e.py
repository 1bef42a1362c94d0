"""An export end to end: events in through the tracker, RequestExport, the e-mail in the
real SMTP sink, its link downloading the zip, and the CSV matching the conversions."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest

from export_svc.server import create_server as create_export
from export_svc.settings import ExportSettings
from goalflow_common.auth import Role
from goalflow_common.client import make_channel
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, export_pb2, export_pb2_grpc
from goalflow_common.pb.goals.v1 import tracker_pb2 as tpb
from goalflow_dev.embedded_mongo import free_port
from tests.services.export_svc.conftest import read_outbox
from tests.services.tracker_svc.builders import (
    agent,
    assigned,
    create_goal,
    ingest,
    message,
    opened,
    rated,
    visit,
)

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
ALL = config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES
JUNE_1 = common_pb2.Date(year=2026, month=6, day=1)
LINK_RE = re.compile(r"http://127\.0\.0\.1:\d+/exports/[0-9a-f]+/download\?\S+")


@pytest.fixture
async def exporter(stack, sink, mongo_uri, db_prefix, clock, platform_key) -> AsyncIterator:
    smtp_port, outbox = sink
    http_port = free_port()
    settings = ExportSettings(
        mongodb_uri=mongo_uri, auth_db_name=f"{db_prefix}_auth",
        export_db_name=f"{db_prefix}_export", grpc_port=0, http_port=http_port,
        public_base_url=f"http://127.0.0.1:{http_port}", tracker_address=stack.tracker_address,
        config_address=stack.config_address, smtp_port=smtp_port, link_secret="k" * 40,
        service_api_key=platform_key, lease_s=5.0, shutdown_grace_s=1.0,
    )
    server, port = await create_export(settings, clock=clock, ttl_indexes=False)
    await server.start()
    try:
        yield f"127.0.0.1:{port}", outbox
    finally:
        await server.stop(0.5)


async def wait_for_state(stub, export_id: str, state: int, within_s: float = 15.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        job = (await stub.GetExport(export_pb2.GetExportRequest(export_id=export_id))).export
        if job.state == state or loop.time() > deadline:
            return job
        await asyncio.sleep(0.05)


async def test_export_is_built_mailed_and_downloadable(stack, exporter, make_tenant, clock):
    address, outbox = exporter
    tenant = await make_tenant()
    goal = await create_goal(stack, tenant, "=Checkout", model=ALL)
    bot = agent("bot-1", user_type=tpb.USER_TYPE_BOT)
    events = [
        opened("c1", T0, user="u1"), assigned("c1", T0 + MIN, bot),
        assigned("c1", T0 + 2 * MIN, agent("A")), assigned("c1", T0 + 3 * MIN, agent("B")),
        message("c1", T0 + 4 * MIN, "B"), rated("c1", T0 + 5 * MIN, "good"),
        opened("c2", T0, user="u2"), assigned("c2", T0 + MIN, agent("A")),
    ]
    hits = [visit("https://shop.x/checkout", T0 + 10 * MIN, user="u1", amount="100.00"),
            visit("https://shop.x/checkout", T0 + 20 * MIN, user="u2")]
    clock.set(T0 + 30 * MIN)
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, hits)
    assert acks[1].conversions == 2

    channel = make_channel(address, tenant.admin)
    try:
        stub = export_pb2_grpc.ExportServiceStub(channel)
        requested = (await stub.RequestExport(export_pb2.RequestExportRequest(
            goal_id=goal.id, start_date=JUNE_1, end_date=JUNE_1,
            recipient_email="admin@example.com"))).export
        assert requested.state in (export_pb2.EXPORT_STATE_QUEUED,
                                   export_pb2.EXPORT_STATE_BUILDING)
        job = await wait_for_state(stub, requested.id, export_pb2.EXPORT_STATE_MAILED)
        assert job.state == export_pb2.EXPORT_STATE_MAILED, job.error
        assert job.row_count == 4 and job.size_bytes > 0
        assert job.link_expire_time.ToDatetime(dt.UTC) == clock.now() + dt.timedelta(days=14)
    finally:
        await channel.close()

    [mail] = read_outbox(outbox)
    text = mail.get_body(("plain",)).get_content()
    assert "=Checkout" in text and "4 rows" in text
    [link] = LINK_RE.findall(text)
    assert link == job.download_url
    async with aiohttp.ClientSession() as http:
        async with http.get(link) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/zip"
            body = await response.read()
        async with http.get(link.replace("sig=", "sig=0")) as tampered:
            assert tampered.status == 403
            assert b"PK" not in await tampered.read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        [name] = archive.namelist()
        rows = list(csv.reader(io.StringIO(archive.read(name).decode("utf-8-sig"))))
    assert rows[0] == ["Timestamp", "Goal ID", "Goal name", "Agent ID", "Agent name",
                       "Agent email", "Ticket ID", "Total transaction value",
                       "Satisfaction score", "Contact duration to goal"]
    data = sorted(rows[1:], key=lambda r: (r[6], r[3]))
    assert [(r[3], r[6], r[7], r[8], r[9]) for r in data] == [
        ("A", "c1", "100.00 USD", "good", "480"),
        ("B", "c1", "100.00 USD", "good", "420"),
        ("bot-1", "c1", "100.00 USD", "good", "540"),
        ("A", "c2", "", "Unoffered", "1140"),
    ]
    assert {r[0] for r in data} == {"2026-06-01T12:10:00Z", "2026-06-01T12:20:00Z"}
    assert {r[1] for r in data} == {goal.id}
    assert {r[2] for r in data} == {"'=Checkout"}  # a formula-like name stays inert


async def test_request_validation_and_isolation(stack, exporter, make_tenant):
    address, _ = exporter
    owner, other = await make_tenant(), await make_tenant()
    goal = await create_goal(stack, owner, "Checkout", model=ALL)

    async with make_channel(address, owner.admin) as channel:
        stub = export_pb2_grpc.ExportServiceStub(channel)
        for request, field in [
            (export_pb2.RequestExportRequest(start_date=JUNE_1, end_date=JUNE_1,
                                             recipient_email="a@b.io"), "goal_id"),
            (export_pb2.RequestExportRequest(goal_id=goal.id, end_date=JUNE_1,
                                             recipient_email="a@b.io"), "start_date"),
            (export_pb2.RequestExportRequest(goal_id=goal.id, start_date=JUNE_1, end_date=JUNE_1,
                                             recipient_email="not-an-address"),
             "recipient_email"),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                await stub.RequestExport(request)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith(f"{field}:")
        job = (await stub.RequestExport(export_pb2.RequestExportRequest(
            goal_id=goal.id, start_date=JUNE_1, end_date=JUNE_1, recipient_email="a@b.io",
            request_id="r1"))).export
        again = (await stub.RequestExport(export_pb2.RequestExportRequest(
            goal_id=goal.id, start_date=JUNE_1, end_date=JUNE_1, recipient_email="a@b.io",
            request_id="r1"))).export
        assert again.id == job.id
    async with make_channel(address, other.admin) as channel:
        stub = export_pb2_grpc.ExportServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            await stub.GetExport(export_pb2.GetExportRequest(export_id=job.id))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as err:  # another account's goal
            await stub.RequestExport(export_pb2.RequestExportRequest(
                goal_id=goal.id, start_date=JUNE_1, end_date=JUNE_1, recipient_email="a@b.io"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    async with make_channel(address, owner.keys[Role.AGENT]) as channel:
        with pytest.raises(grpc.RpcError) as err:
            await export_pb2_grpc.ExportServiceStub(channel).RequestExport(
                export_pb2.RequestExportRequest(goal_id=goal.id))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def _convert(stack, tenant, clock, conversations: list[str]) -> None:
    """One conversion per conversation id, credited to agent A, on June 1."""
    events, hits = [], []
    for conv in conversations:
        events += [opened(conv, T0, user=f"u-{conv}"), assigned(conv, T0 + MIN, agent("A"))]
        hits.append(visit("https://shop.x/checkout", T0 + 10 * MIN, user=f"u-{conv}"))
    clock.set(T0 + 30 * MIN)
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, hits)
    assert acks[1].conversions == len(conversations)


async def test_a_deleted_goals_conversions_are_exported_under_their_name(
        stack, exporter, make_tenant, clock):
    """docs/rules.md §2: conversions recorded for a deleted goal stay in exports, under the
    goal's name at the time of the conversion. Config no longer knows the goal; the tracker
    still holds its conversions for this account only."""
    address, outbox = exporter
    owner, other = await make_tenant(), await make_tenant()
    goal = await create_goal(stack, owner, "Spring sale", model=ALL)
    theirs = await create_goal(stack, other, "Their sale", model=ALL)
    await _convert(stack, owner, clock, ["c1", "c2"])
    await _convert(stack, other, clock, ["c9"])
    for tenant, deleted in ((owner, goal), (other, theirs)):
        await stack.config(tenant.admin).DeleteGoal(
            config_pb2.DeleteGoalRequest(goal_id=deleted.id))
        with pytest.raises(grpc.RpcError) as err:
            await stack.config(tenant.admin).GetGoal(
                config_pb2.GetGoalRequest(goal_id=deleted.id))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

    async with make_channel(address, owner.admin) as channel:
        stub = export_pb2_grpc.ExportServiceStub(channel)
        requested = (await stub.RequestExport(export_pb2.RequestExportRequest(
            goal_id=goal.id, start_date=JUNE_1, end_date=JUNE_1,
            recipient_email="admin@example.com"))).export
        assert requested.goal_name == "Spring sale"
        job = await wait_for_state(stub, requested.id, export_pb2.EXPORT_STATE_MAILED)
        assert job.state == export_pb2.EXPORT_STATE_MAILED, job.error
        assert job.row_count == 2
        # Another account's deleted goal (it has conversions, but not here) and an id that
        # never existed get the same answer.
        refusals = []
        for goal_id in (theirs.id, "never-a-goal"):
            with pytest.raises(grpc.RpcError) as err:
                await stub.RequestExport(export_pb2.RequestExportRequest(
                    goal_id=goal_id, start_date=JUNE_1, end_date=JUNE_1,
                    recipient_email="admin@example.com"))
            refusals.append((err.value.code(), err.value.details().replace(goal_id, "ID")))
        assert refusals == [(grpc.StatusCode.NOT_FOUND, "goal 'ID' not found")] * 2

    [mail] = read_outbox(outbox)
    text = mail.get_body(("plain",)).get_content()
    assert "Spring sale" in text and "2 rows" in text
    [link] = LINK_RE.findall(text)
    async with aiohttp.ClientSession() as http, http.get(link) as response:
        assert response.status == 200
        body = await response.read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        [name] = archive.namelist()
        rows = list(csv.reader(io.StringIO(archive.read(name).decode("utf-8-sig"))))
    assert sorted((r[1], r[2], r[3], r[6]) for r in rows[1:]) == [
        (goal.id, "Spring sale", "A", "c1"), (goal.id, "Spring sale", "A", "c2")]


async def test_export_shows_max_amounts_exactly(stack, exporter, make_tenant, clock):
    """The largest amount the API accepts (far beyond int64 micros), from a hit and from
    a goal's value, reaches the CSV digit for digit."""
    address, _ = exporter
    tenant = await make_tenant()
    largest = "999999999999999999.999999"
    goal = await create_goal(stack, tenant, "Checkout", model=ALL, value=("IDR", largest))
    events = [opened("c1", T0, user="u1"), assigned("c1", T0 + MIN, agent("A")),
              opened("c2", T0, user="u2"), assigned("c2", T0 + MIN, agent("A"))]
    hits = [visit("https://shop.x/checkout", T0 + 10 * MIN, user="u1", amount=largest),
            visit("https://shop.x/checkout", T0 + 20 * MIN, user="u2")]
    clock.set(T0 + 30 * MIN)
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, hits)
    assert acks[1].conversions == 2

    async with make_channel(address, tenant.admin) as channel:
        stub = export_pb2_grpc.ExportServiceStub(channel)
        requested = (await stub.RequestExport(export_pb2.RequestExportRequest(
            goal_id=goal.id, start_date=JUNE_1, end_date=JUNE_1,
            recipient_email="admin@example.com"))).export
        job = await wait_for_state(stub, requested.id, export_pb2.EXPORT_STATE_MAILED)
    assert job.state == export_pb2.EXPORT_STATE_MAILED, job.error
    async with aiohttp.ClientSession() as http, http.get(job.download_url) as response:
        assert response.status == 200
        body = await response.read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        [name] = archive.namelist()
        rows = list(csv.reader(io.StringIO(archive.read(name).decode("utf-8-sig"))))
    assert sorted((r[6], r[7]) for r in rows[1:]) == [
        ("c1", f"{largest} USD"), ("c2", f"{largest} IDR")]
