"""The export's decisions where the rules are silent (docs/rules.md §7): the CSV's cell
formats, encoding and row order, and the goal name after a rename. End to end: events in
through the real tracker, RequestExport on the real export service, the zip downloaded
from the link in the e-mail the real SMTP sink received."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile

import aiohttp
from google.protobuf.field_mask_pb2 import FieldMask

from goalflow_common.auth import Role
from goalflow_common.client import make_channel
from goalflow_common.pb.goals.v1 import config_pb2, export_pb2, export_pb2_grpc
from tests.services.export_svc import test_export_e2e as e2e
from tests.services.export_svc.conftest import read_outbox
from tests.services.tracker_svc.builders import (
    agent,
    assigned,
    create_goal,
    ingest,
    opened,
    visit,
    wait_for_goal,
)

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
ALL = config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES
URL = "https://shop.example/checkout"
JUNE_1, LINK_RE, wait_for_state = e2e.JUNE_1, e2e.LINK_RE, e2e.wait_for_state
exporter = e2e.exporter  # the fixture: a real export server on the test's stack


async def export_file(export_server, tenant, goal_id: str) -> tuple[str, bytes, str]:
    """Request an export of June 1, wait until it is mailed; (entry name, CSV bytes, mail
    text)."""
    address, outbox = export_server
    async with make_channel(address, tenant.admin) as channel:
        stub = export_pb2_grpc.ExportServiceStub(channel)
        requested = (await stub.RequestExport(export_pb2.RequestExportRequest(
            goal_id=goal_id, start_date=JUNE_1, end_date=JUNE_1,
            recipient_email="admin@example.com"))).export
        job = await wait_for_state(stub, requested.id, export_pb2.EXPORT_STATE_MAILED)
        assert job.state == export_pb2.EXPORT_STATE_MAILED, job.error
    [mail] = read_outbox(outbox)
    text = mail.get_body(("plain",)).get_content()
    [link] = LINK_RE.findall(text)
    async with aiohttp.ClientSession() as http, http.get(link) as response:
        assert response.status == 200
        body = await response.read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        [name] = archive.namelist()
        return name, archive.read(name), text


async def test_d15_to_d19_csv_values_encoding_order_timestamps_and_durations(
    stack, exporter, make_tenant, clock
):
    """D15: ``Total transaction value`` is the amount exactly as recorded (scale kept, no
    rounding), a space and the ISO-4217 code; a zero value shows, no value is empty.
    D16: UTF-8 with a byte-order mark, CRLF line endings.
    D17: rows oldest conversion first, same instant by ticket id, a conversion's credits in
    the order the agents were first assigned.
    D18: ``Timestamp`` is UTC to the second, with milliseconds only when they are not zero.
    D19: ``Contact duration to goal`` is whole seconds, rounded down."""
    tenant = await make_tenant()
    goal = await create_goal(stack, tenant, "Checkout", model=ALL)
    same_instant = T0 + 10 * MIN + dt.timedelta(milliseconds=250)
    events = [
        opened("c1", T0, user="u1"), assigned("c1", T0 + MIN, agent("A")),
        assigned("c1", T0 + 2 * MIN, agent("B")),
        visit(URL, same_instant, conv="c1", amount="12.50"),
        opened("c0", T0, user="u0"), assigned("c0", T0 + 3 * MIN, agent("A")),
        visit(URL, same_instant, conv="c0"),
        opened("c2", T0, user="u2"), assigned("c2", T0 + MIN, agent("A")),
        # Microseconds: the tracker keeps milliseconds (BSON dates), the CSV shows them.
        visit(URL, T0 + 5 * MIN + dt.timedelta(microseconds=123_456), conv="c2",
              amount="7.5", currency="EUR"),
        opened("c3", T0, user="u3"), assigned("c3", T0 + MIN, agent("B")),
        visit(URL, T0 + 3 * MIN, conv="c3", amount="0.00"),
    ]
    clock.set(T0 + 30 * MIN)
    [ack] = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events)
    assert ack.conversions == 4

    _, data, _ = await export_file(exporter, tenant, goal.id)
    assert data.startswith(b"\xef\xbb\xbf")
    lines = data[3:].split(b"\r\n")
    assert lines[-1] == b"" and all(b"\n" not in line and b"\r" not in line for line in lines)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert [(r[0], r[6], r[3], r[7], r[9]) for r in rows[1:]] == [
        ("2026-06-01T12:03:00Z", "c3", "B", "0.00 USD", "120"),
        ("2026-06-01T12:05:00.123Z", "c2", "A", "7.5 EUR", "240"),  # 240.123 s
        ("2026-06-01T12:10:00.250Z", "c0", "A", "", "420"),  # 420.25 s
        ("2026-06-01T12:10:00.250Z", "c1", "A", "12.50 USD", "540"),
        ("2026-06-01T12:10:00.250Z", "c1", "B", "12.50 USD", "480"),
    ]


async def test_d20_an_export_shows_each_conversions_goal_name_of_its_time(
    stack, exporter, make_tenant, clock
):
    """D20: after a rename, each CSV row shows the goal name recorded with its conversion
    (conversions are history), while the e-mail and the file name use the goal's name when
    the export is requested."""
    tenant = await make_tenant()
    goal = await create_goal(stack, tenant, "Checkout", model=ALL)
    ingest_stub = stack.tracker(tenant.keys[Role.INGEST])
    clock.set(T0 + 30 * MIN)
    await ingest(ingest_stub, [opened("c1", T0, user="u1"), assigned("c1", T0, agent("A")),
                               visit(URL, T0 + MIN, conv="c1")])
    renamed = (await stack.config(tenant.admin).UpdateGoal(config_pb2.UpdateGoalRequest(
        goal_id=goal.id, goal=config_pb2.Goal(name="Checkout v2"),
        update_mask=FieldMask(paths=["name"])))).goal
    await wait_for_goal(stack, goal.id, renamed.revision)
    await ingest(ingest_stub, [opened("c2", T0, user="u2"), assigned("c2", T0, agent("A")),
                               visit(URL, T0 + 2 * MIN, conv="c2")])

    name, data, mail_text = await export_file(exporter, tenant, goal.id)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert [(r[1], r[2], r[6]) for r in rows[1:]] == [
        (goal.id, "Checkout", "c1"), (goal.id, "Checkout v2", "c2")]
    assert name == "Checkout-v2_2026-06-01_2026-06-01.csv"
    assert "Checkout v2" in mail_text
