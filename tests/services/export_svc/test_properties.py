"""Bad input, property-based: every ExportService RPC gets random and adversarial field
values (empty, huge, control characters and line breaks in e-mail addresses, unicode,
impossible or extreme dates, huge ranges, made-up ids and page tokens). Each call gets a
correct answer or a clear error naming the field, the server keeps serving, nothing of a
refused request is stored, and every job that was accepted is built and mailed.

One real config + tracker + export stack and SMTP sink per test function.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

import grpc
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from goalflow_common.client import make_channel
from goalflow_common.db import eq
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, export_pb2, export_pb2_grpc
from tests.services.adversarial import (
    EITHER,
    INVALID,
    VALID,
    adversarial_text,
    assert_names_field,
    assert_serving,
    calendar_date,
    call,
    dates,
    page_tokens,
    property_settings,
    some_spoiled,
    worst,
)
from tests.services.export_svc.test_export_e2e import exporter, wait_for_state  # noqa: F401
from tests.services.tracker_svc.builders import create_goal

TODAY = dt.date(2026, 6, 1)
FIRST_DAY, LAST_DAY = dt.date(1, 1, 2), dt.date(9999, 12, 30)

VALID_EMAILS = ["admin@example.com", "a.b+tag@sub.example.org", "x@y.io",
                "O'Brien@example.ie", ("l" * 64) + "@" + ("d" * 60) + ".example.com"]
INVALID_EMAILS = ["", " ", "no-at-sign", "a@b", "a@@b.com", "@example.com", "a@.com",
                  "a b@example.com", "a@example.com\r\nBcc: victim@example.org",
                  "a@example.com\nX-Injected: 1", "a@exa mple.com", "a\x00@example.com",
                  "=cmd|' /C calc'!A0@example.com\r\n", "<a@example.com>",
                  "a@example.com, b@example.com", ("x" * 250) + "@example.com"]


def email_verdict(raw: str) -> str:
    if raw in VALID_EMAILS or raw.strip() in VALID_EMAILS:
        return VALID
    if raw in INVALID_EMAILS or len(raw.strip()) > 254 or raw.strip().count("@") != 1:
        return INVALID
    address = raw.strip()
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in address):
        return INVALID  # a line break here would be a header injection
    return EITHER


def date_verdict(request, name: str) -> str:
    if not request.HasField(name):
        return INVALID
    day = calendar_date(getattr(request, name))
    if day is None:
        return INVALID
    # The worker reads [start 00:00, end + 1 day 00:00) in the account's zone: the days at
    # the very ends of the calendar have no such bounds.
    return VALID if FIRST_DAY <= day <= LAST_DAY else INVALID


class Exports:
    """The export stack for one tenant: a stub, the job collection, the goal to export."""

    def __init__(self, stack, tenant, goal, address: str, db, channel) -> None:
        self.stack = stack
        self.tenant = tenant
        self.goal = goal
        self.address = address
        self.db = db
        self.stub = export_pb2_grpc.ExportServiceStub(channel)
        self.accepted: dict[str, str] = {}  # job id -> request_id ("" if none)

    async def jobs(self) -> int:
        return await self.db["exports"].count_documents(
            {"account_id": eq(self.tenant.account_id)})


@pytest.fixture
async def exports(stack, exporter, make_tenant, mongo, db_prefix):  # noqa: F811
    address, _ = exporter
    tenant = await make_tenant()
    goal = await create_goal(stack, tenant, "Checkout",
                             model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH)
    async with make_channel(address, tenant.admin) as channel:
        yield Exports(stack, tenant, goal, address, mongo[f"{db_prefix}_export"], channel)


def day(value: dt.date) -> common_pb2.Date:
    return common_pb2.Date(year=value.year, month=value.month, day=value.day)


def plausible_range() -> st.SearchStrategy[tuple]:
    first = st.integers(-400, 30).map(lambda n: TODAY + dt.timedelta(days=n))
    return st.tuples(first, st.integers(0, 366)).map(
        lambda p: (day(p[0]), day(p[0] + dt.timedelta(days=p[1]))))


REQUEST_GOOD = {
    "goal_id": st.just("real"),
    "dates": plausible_range(),
    "recipient_email": st.one_of(st.sampled_from(VALID_EMAILS), st.emails().map(str)),
    "request_id": st.one_of(st.just(""), st.text("abcdef0123456789-", min_size=1,
                                                  max_size=128)),
}
REQUEST_BAD = {
    "goal_id": st.one_of(adversarial_text(128), st.just("0" * 32)),
    "dates": st.tuples(st.one_of(st.none(), dates(TODAY)),
                       st.one_of(st.none(), dates(TODAY + dt.timedelta(days=30)))),
    "recipient_email": st.one_of(st.sampled_from(INVALID_EMAILS), adversarial_text(254)),
    "request_id": st.one_of(st.sampled_from(["r1", "r2"]), adversarial_text(128)),
}


def edge_range(first: dt.date, last: dt.date) -> dict:
    return {"goal_id": "real", "dates": (day(first), day(last)),
            "recipient_email": "a@b.io", "request_id": ""}


@property_settings(30)
@example(fields=edge_range(dt.date(9999, 1, 1), dt.date(9999, 12, 31)))
@example(fields=edge_range(dt.date(1, 1, 1), dt.date(1, 12, 1)))
@example(fields=edge_range(dt.date(9999, 1, 1), LAST_DAY))
@given(fields=some_spoiled(REQUEST_GOOD, REQUEST_BAD))
async def test_request_export_answers_or_names_the_field(exports: Exports, fields):
    goal_id = exports.goal.id if fields["goal_id"] == "real" else fields["goal_id"]
    request = export_pb2.RequestExportRequest(
        goal_id=goal_id, recipient_email=fields["recipient_email"],
        request_id=fields["request_id"])
    for name, value in zip(("start_date", "end_date"), fields["dates"], strict=True):
        if value is not None:
            getattr(request, name).CopyFrom(value)
    verdicts = {
        "goal_id": VALID if 1 <= len(goal_id) <= 128 else INVALID,
        "start_date": date_verdict(request, "start_date"),
        "end_date": date_verdict(request, "end_date"),
        "recipient_email": email_verdict(request.recipient_email),
        "request_id": VALID if len(request.request_id) <= 128 else INVALID,
    }
    if verdicts["start_date"] == verdicts["end_date"] == VALID:
        first, last = calendar_date(request.start_date), calendar_date(request.end_date)
        span = (last - first).days
        # README: the range spans at most 366 days; the proto says "at most 366 days after
        # the start", so that one day is either.
        verdicts["end_date"] = INVALID if span < 0 or span > 366 else (
            EITHER if span == 366 else VALID)
    verdict = worst(*verdicts.values())
    repeated = request.request_id and request.request_id in exports.accepted.values()
    before = await exports.jobs()

    reply, error = await call(exports.stub.RequestExport(request))

    if error is not None and error.code() == grpc.StatusCode.NOT_FOUND:
        assert verdict != INVALID and goal_id != exports.goal.id
        assert await exports.jobs() == before
    elif error is not None:
        assert verdict != VALID, (error.code(), error.details())
        assert_names_field(error, {f for f, v in verdicts.items() if v != VALID})
        assert await exports.jobs() == before  # nothing of a refused request is kept
    else:
        assert verdict != INVALID and goal_id == exports.goal.id, (verdicts, request)
        job = reply.export
        if repeated:  # an idempotent repeat: the first job, nothing new
            assert exports.accepted[job.id] == request.request_id
            assert await exports.jobs() == before
        else:
            assert job.id not in exports.accepted
            assert await exports.jobs() == before + 1
            exports.accepted[job.id] = request.request_id
            address = job.recipient_email
            assert address == request.recipient_email.strip()
            assert not any(ch.isspace() or unicodedata.category(ch).startswith("C")
                           for ch in address)
            assert (job.goal_id, job.goal_name) == (exports.goal.id, exports.goal.name)
            assert (job.start_date, job.end_date) == (request.start_date, request.end_date)
        read = (await exports.stub.GetExport(export_pb2.GetExportRequest(export_id=job.id)))
        assert read.export.id == job.id
    await assert_serving(exports.address)


async def test_every_accepted_extreme_range_is_built_and_mailed(exports: Exports):
    """Accepted jobs at the edges of the calendar really run: built and mailed, not failed
    later in the worker (where the caller would learn of it only by polling)."""
    requested = []
    for first, last in ((FIRST_DAY, dt.date(1, 12, 31)), (dt.date(9999, 1, 1), LAST_DAY),
                        (TODAY, TODAY + dt.timedelta(days=365))):
        reply = await exports.stub.RequestExport(export_pb2.RequestExportRequest(
            goal_id=exports.goal.id, start_date=day(first), end_date=day(last),
            recipient_email="admin@example.com"))
        requested.append(reply.export.id)
    for export_id in requested:
        job = await wait_for_state(exports.stub, export_id, export_pb2.EXPORT_STATE_MAILED,
                                   within_s=30)
        assert job.state == export_pb2.EXPORT_STATE_MAILED, job.error


@property_settings(40)
@given(export_id=st.one_of(adversarial_text(128), st.just("0" * 32)),
       page_size=st.one_of(st.integers(-1, 3), st.integers(-(2**31), 2**31 - 1)),
       token=st.one_of(st.just(""), page_tokens()))
async def test_get_and_list_exports_answer_or_name_the_field(exports: Exports, export_id,
                                                             page_size, token):
    if not exports.accepted:
        for n in range(3):
            job = (await exports.stub.RequestExport(export_pb2.RequestExportRequest(
                goal_id=exports.goal.id, start_date=day(TODAY), end_date=day(TODAY),
                recipient_email="admin@example.com", request_id=f"list-{n}"))).export
            exports.accepted[job.id] = f"list-{n}"
    before = await exports.jobs()

    _, error = await call(exports.stub.GetExport(
        export_pb2.GetExportRequest(export_id=export_id)))
    assert error is not None
    if not 1 <= len(export_id) <= 128:  # ids are 128 characters at most (README)
        assert_names_field(error, {"export_id"})
    else:
        assert error.code() == grpc.StatusCode.NOT_FOUND, (error.code(), error.details())

    reply, error = await call(exports.stub.ListExports(
        export_pb2.ListExportsRequest(page_size=page_size, page_token=token)))
    if error is not None:
        assert_names_field(error, {"page_size", "page_token"})
        assert page_size < 0 or token
    else:
        assert page_size >= 0
        if not token:  # page through: every job once, newest first
            seen = [job.id for job in reply.exports]
            while reply.next_page_token:
                reply = await exports.stub.ListExports(export_pb2.ListExportsRequest(
                    page_size=page_size, page_token=reply.next_page_token))
                seen += [job.id for job in reply.exports]
            assert sorted(seen) == sorted(exports.accepted) and len(set(seen)) == len(seen)
    assert await exports.jobs() == before
    await assert_serving(exports.address)


async def test_oversized_request_is_refused_and_server_keeps_serving(exports: Exports):
    before = await exports.jobs()
    async with make_channel(exports.address, exports.tenant.admin,
                            max_message_bytes=32 * 1024 * 1024) as channel:
        stub = export_pb2_grpc.ExportServiceStub(channel)
        _, error = await call(stub.RequestExport(export_pb2.RequestExportRequest(
            goal_id=exports.goal.id, start_date=day(TODAY), end_date=day(TODAY),
            recipient_email="a" * (9 * 1024 * 1024) + "@example.com")))
        assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Under gRPC's limit but over RequestExport's own budget (a few ids, dates and one
        # address): refused unparsed, by size.
        _, error = await call(stub.RequestExport(export_pb2.RequestExportRequest(
            goal_id=exports.goal.id, start_date=day(TODAY), end_date=day(TODAY),
            recipient_email="a" * (7 * 1024 * 1024) + "@example.com")))
        assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "RequestExport accepts at most" in error.details()
        # Within the budget, a too-long address is refused naming the field.
        _, error = await call(stub.RequestExport(export_pb2.RequestExportRequest(
            goal_id=exports.goal.id, start_date=day(TODAY), end_date=day(TODAY),
            recipient_email="a" * 10_000 + "@example.com")))
        assert_names_field(error, {"recipient_email"})
    assert await exports.jobs() == before
    await assert_serving(exports.address)
