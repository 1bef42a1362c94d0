"""The auth interceptor and the request guard on a real server (real interceptors, real key
store): a refused caller's body never reaches the deserializer, an admitted one's reaches
it only within its method's budget, and the handler sees the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc import aio

from goalflow_common.auth import KeyStore, Role, current_principal
from goalflow_common.pb.goals.v1 import tracker_pb2
from goalflow_common.request_guard import RequestBudget
from goalflow_common.server import Registration, build_server

TRACKER = "goals.v1.TrackerService"
REPORT, INGEST = f"/{TRACKER}/GetReport", f"/{TRACKER}/IngestEvents"
SKILLS = tracker_pb2.GetReportRequest.DESCRIPTOR.fields_by_name["skills"].number
BUDGET = RequestBudget(4096, {"goals.v1.GetReportRequest.skills": 3})
NOT_VALID = ("request: not a valid goals.v1.GetReportRequest (malformed protobuf, or invalid "
             "UTF-8 in a string field)")


class Counting:
    """A request deserializer that counts the bodies it was given."""

    def __init__(self, message: Any) -> None:
        self._parse = message.FromString
        self.calls = 0

    def __call__(self, raw: bytes) -> Any:
        self.calls += 1
        return self._parse(raw)


@dataclass
class Probe:
    address: str
    report_reads: Counting
    ingest_reads: Counting


async def _report(request: tracker_pb2.GetReportRequest, context) -> tracker_pb2.GetReportResponse:
    # The caller, as the auth interceptor made it known.
    row = tracker_pb2.ReportRow(key=current_principal().account_id, label=str(len(request.skills)))
    return tracker_pb2.GetReportResponse(rows=[row])


async def _ingest(requests, context) -> AsyncIterator[tracker_pb2.IngestEventsResponse]:
    async for batch in requests:
        yield tracker_pb2.IngestEventsResponse(batch_id=batch.batch_id,
                                               accepted=len(batch.events))


@pytest.fixture
async def probe(config_settings, keys: KeyStore) -> AsyncIterator[Probe]:
    """A server with the tracker's GetReport and IngestEvents paths (so their roles apply),
    served by handlers whose deserializers count their calls."""
    report_reads = Counting(tracker_pb2.GetReportRequest)
    ingest_reads = Counting(tracker_pb2.IngestEventsRequest)
    handlers = grpc.method_handlers_generic_handler(TRACKER, {
        "GetReport": grpc.unary_unary_rpc_method_handler(
            _report, request_deserializer=report_reads,
            response_serializer=tracker_pb2.GetReportResponse.SerializeToString),
        "IngestEvents": grpc.stream_stream_rpc_method_handler(
            _ingest, request_deserializer=ingest_reads,
            response_serializer=tracker_pb2.IngestEventsResponse.SerializeToString),
    })
    server, port = build_server(config_settings, port=0, keys=keys, registrations=[
        Registration(lambda _, grpc_server: grpc_server.add_generic_rpc_handlers((handlers,)),
                     None, TRACKER, {"GetReport": BUDGET}),
    ])
    await server.start()
    try:
        yield Probe(f"127.0.0.1:{port}", report_reads, ingest_reads)
    finally:
        await server.stop(0)


def _skills(count: int, size: int = 0) -> bytes:
    entry = bytes([SKILLS << 3 | 2, size]) + b"s" * size
    return entry * count


async def _call(address: str, path: str, body: bytes, key: str | None) -> tuple[str, Any]:
    """(code name, response bytes or error details) of a raw call; a stream sends ``body``
    as its one message."""
    metadata = None if key is None else (("authorization", f"Bearer {key}"),)
    async with aio.insecure_channel(address) as channel:
        try:
            if path == INGEST:
                async def one():
                    yield body

                replies = [r async for r in channel.stream_stream(path)(
                    one(), metadata=metadata, timeout=10)]
                return "OK", replies
            return "OK", await channel.unary_unary(path)(body, metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc.code().name, exc.details()


async def test_a_refused_callers_body_is_never_parsed(probe: Probe, make_tenant):
    tenant = await make_tenant()
    huge = _skills(4_000_000)  # the probe: ~8 MiB of tiny entries
    refused = [
        (REPORT, huge, None, "UNAUTHENTICATED"),
        (REPORT, huge, "not-a-key", "UNAUTHENTICATED"),
        (REPORT, huge, tenant.keys[Role.AGENT], "PERMISSION_DENIED"),
        (INGEST, huge, None, "UNAUTHENTICATED"),
        (INGEST, huge, tenant.admin, "PERMISSION_DENIED"),
    ]
    for path, body, key, code in refused:
        assert (await _call(probe.address, path, body, key))[0] == code, (path, key)
    assert (probe.report_reads.calls, probe.ingest_reads.calls) == (0, 0)


async def test_an_admitted_body_is_parsed_within_its_budget(probe: Probe, make_tenant):
    tenant = await make_tenant()
    code, reply = await _call(probe.address, REPORT, _skills(5), tenant.admin)
    assert code == "OK" and probe.report_reads.calls == 1
    [row] = tracker_pb2.GetReportResponse.FromString(reply).rows
    assert (row.key, row.label) == (tenant.account_id, "5")  # the handler saw its caller
    over = [
        (_skills(41, 100), "RESOURCE_EXHAUSTED", "request: 4182 bytes; GetReport accepts at "
                                                 "most 4096 bytes"),
        (_skills(7), "INVALID_ARGUMENT", "skills: at most 3 entries (this request has more "
                                         "than 6)"),
        (b"\xff" * 8, "INVALID_ARGUMENT", NOT_VALID),  # the list walk finds it broken
    ]
    for body, code, details in over:
        assert await _call(probe.address, REPORT, body, tenant.admin) == (code, details)
    assert probe.report_reads.calls == 1  # none of them was parsed
    # Well-formed, but a string holds invalid UTF-8: only the parse can tell.
    bad_utf8 = bytes([SKILLS << 3 | 2, 2, 0xFF, 0xFE])
    assert await _call(probe.address, REPORT, bad_utf8, tenant.admin) == (
        "INVALID_ARGUMENT", NOT_VALID)
    assert probe.report_reads.calls == 2


async def test_a_bad_message_ends_a_request_stream_with_invalid_argument(
    probe: Probe, make_tenant
):
    tenant = await make_tenant()
    good = tracker_pb2.IngestEventsRequest(batch_id="b1", events=[tracker_pb2.Event()])
    metadata = (("authorization", f"Bearer {tenant.keys[Role.INGEST]}"),)
    async with aio.insecure_channel(probe.address) as channel:
        call = channel.stream_stream(INGEST)(metadata=metadata, timeout=10)
        await call.write(good.SerializeToString())
        first = tracker_pb2.IngestEventsResponse.FromString(await call.read())
        await call.write(b"\x0a\x02\xff\xfe")  # batch_id holding invalid UTF-8
        with pytest.raises(aio.AioRpcError) as ended:
            await call.read()
    assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid goals.v1.IngestEventsRequest" in ended.value.details()
    assert (first.batch_id, first.accepted) == ("b1", 1)
    assert probe.ingest_reads.calls == 2
