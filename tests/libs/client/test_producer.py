"""The shared event producer against a real tracker: batching, rejections, resending."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest
from grpc import aio

from goalflow_client.producer import EventProducer, ProducerError
from goalflow_common.auth import Role
from goalflow_common.interceptors import REQUEST_ID_KEY
from goalflow_common.pb.goals.v1 import config_pb2, tracker_pb2
from goalflow_dev.embedded_mongo import free_port
from tests.services.tracker_svc.builders import agent, assigned, create_goal, message, opened, visit
from tracker_svc.server import create_server as create_tracker

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
CONVERSATIONS = 30


def converting_traffic() -> list[tracker_pb2.Event]:
    """Each conversation: opened, an agent, a reply, a checkout visit (one conversion)."""
    events = []
    for n in range(CONVERSATIONS):
        conv, user, at = f"c{n}", f"u{n}", T0 + n * MIN
        events += [
            opened(conv, at, user=user), assigned(conv, at + 1 * MIN, agent(f"a{n % 3}")),
            message(conv, at + 2 * MIN, f"a{n % 3}"),
            visit("https://shop.example/checkout", at + 3 * MIN, user=user, conv=conv),
        ]
    return events


async def test_sends_everything_and_names_refused_events_by_position(stack, make_tenant):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH)
    events = converting_traffic()
    bad = tracker_pb2.Event(event_id="no-kind")  # no time, no kind
    events.insert(57, bad)
    acks: list[int] = []
    async with EventProducer(stack.tracker_address, tenant.keys[Role.INGEST], batch_size=7,
                             window=3) as producer:
        first = await producer.send(events, on_ack=lambda ack, n: acks.append(n))
        again = await producer.send(events)
    assert (first.events, first.accepted, first.duplicates) == (len(events), len(events) - 1, 0)
    assert first.conversions == CONVERSATIONS
    [refused] = first.rejected
    assert (refused.index, refused.event_id) == (57, "no-kind") and refused.field
    assert first.batches == -(-len(events) // 7) and sum(acks) == len(events)
    # A resend changes nothing: every event is a duplicate, no conversion is recorded again.
    assert (again.accepted, again.duplicates, again.conversions) == (0, len(events) - 1, 0)


async def test_a_tracker_restart_mid_send_loses_and_doubles_nothing(
    stack, make_tenant, tracker_db, clock
):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES)
    events = converting_traffic()
    restarted = asyncio.Event()

    async def restart() -> None:
        old = stack.tracker_server
        await old.stop(0)  # abrupt: open streams are cancelled
        await asyncio.sleep(0.3)  # the producer meets a closed port meanwhile
        server, _ = await create_tracker(stack.tracker_settings, clock=clock)
        await server.start()
        stack.servers[stack.servers.index(old)] = stack.tracker_server = server
        restarted.set()

    tasks = []

    def on_ack(ack: tracker_pb2.IngestEventsResponse, size: int) -> None:
        if not tasks:  # after the first acknowledgement, pull the tracker away
            tasks.append(asyncio.get_running_loop().create_task(restart()))

    async with EventProducer(stack.tracker_address, tenant.keys[Role.INGEST], batch_size=5,
                             window=2, backoff_s=(0.05, 0.3)) as producer:
        summary = await producer.send(events, on_ack=on_ack)
    await tasks[0]
    assert restarted.is_set() and summary.reconnects >= 1
    assert summary.accepted + summary.duplicates == len(events) and not summary.rejected
    stored = await tracker_db.events.count_documents({"account_id": tenant.account_id})
    recorded = await tracker_db.conversions.count_documents({"account_id": tenant.account_id})
    assert (stored, recorded) == (len(events), CONVERSATIONS)


async def test_gives_up_after_the_reconnect_budget():
    address = f"127.0.0.1:{free_port()}"  # nothing listens here
    async with EventProducer(address, "gf_0000000000000000_x", max_reconnects=2,
                             backoff_s=(0.01, 0.02)) as producer:
        with pytest.raises(ProducerError, match="after 2 reconnects"):
            await producer.send(converting_traffic()[:3])


async def test_a_refusal_that_retrying_cannot_fix_is_raised(stack, make_tenant):
    tenant = await make_tenant()
    async with EventProducer(stack.tracker_address, tenant.keys[Role.AGENT]) as producer:
        with pytest.raises(ProducerError, match="PERMISSION_DENIED") as caught:
            await producer.send(converting_traffic()[:3])
    assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED


class RefusingTracker:
    """A gRPC server on loopback whose IngestEvents reads one batch and ends with ``code``:
    a tracker that fails the same batch every time. Counts the streams it was sent. Its
    trailers echo a request id as a goalflow server's do, unless ``answered`` is false (a
    status the server did not answer itself, as a broken connection's)."""

    def __init__(self, code: grpc.StatusCode, answered: bool = True) -> None:
        self.code = code
        self.answered = answered
        self.streams = 0
        self.server = aio.server()
        handler = grpc.stream_stream_rpc_method_handler(
            self._ingest, request_deserializer=tracker_pb2.IngestEventsRequest.FromString,
            response_serializer=tracker_pb2.IngestEventsResponse.SerializeToString)
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "goals.v1.TrackerService", {"IngestEvents": handler}),))
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"

    async def _ingest(self, requests, context):
        self.streams += 1
        async for _ in requests:
            if self.answered:
                context.set_trailing_metadata(((REQUEST_ID_KEY, "r-1"),))
            await context.abort(self.code, "this batch fails every time")
        yield tracker_pb2.IngestEventsResponse()  # not reached


@pytest.mark.parametrize(("code", "streams"), [
    # Nothing a resend can change: one stream, the code in the error.
    (grpc.StatusCode.INVALID_ARGUMENT, 1),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 1),
    (grpc.StatusCode.UNAUTHENTICATED, 1),
    (grpc.StatusCode.PERMISSION_DENIED, 1),
    (grpc.StatusCode.FAILED_PRECONDITION, 1),
    # Maybe a server killed mid-call: resent once (max_unexplained), then given up.
    (grpc.StatusCode.INTERNAL, 2),
    (grpc.StatusCode.UNKNOWN, 2),
    # Transient: resent within the reconnect budget (2 here), then "unreachable".
    (grpc.StatusCode.UNAVAILABLE, 3),
], ids=lambda v: getattr(v, "name", str(v)))
async def test_a_poison_batch_is_not_resent_forever(code, streams):
    tracker = RefusingTracker(code)
    await tracker.server.start()
    try:
        async with EventProducer(tracker.address, "gf_0000000000000000_x", max_reconnects=2,
                                 backoff_s=(0.01, 0.02)) as producer:
            with pytest.raises(ProducerError) as caught:
                await producer.send(converting_traffic()[:3])
    finally:
        await tracker.server.stop(0)
    assert tracker.streams == streams
    if code is grpc.StatusCode.UNAVAILABLE:
        assert caught.value.code is None and "unreachable after 2 reconnects" in str(caught.value)
    else:
        assert caught.value.code is code
        assert str(caught.value).startswith(f"{code.name}: this batch fails every time")


async def test_an_internal_error_the_server_did_not_answer_is_retried_as_a_broken_stream():
    """INTERNAL without the server's trailers (gRPC core's own "Internal error from Core"
    when a stream is written as the server goes away) is a broken connection: resent within
    the reconnect budget, not taken for a poison batch after one resend."""
    tracker = RefusingTracker(grpc.StatusCode.INTERNAL, answered=False)
    await tracker.server.start()
    try:
        async with EventProducer(tracker.address, "gf_0000000000000000_x", max_reconnects=2,
                                 backoff_s=(0.01, 0.02)) as producer:
            with pytest.raises(ProducerError) as caught:
                await producer.send(converting_traffic()[:3])
    finally:
        await tracker.server.stop(0)
    assert tracker.streams == 3
    assert "unreachable after 2 reconnects" in str(caught.value)


async def test_a_batch_over_the_trackers_message_limit_stops_the_send(
    stack, make_tenant, tracker_db, clock
):
    """A real tracker whose message limit is 64 KiB: a 250-event batch of long URLs is
    refused with RESOURCE_EXHAUSTED, which the producer raises at once instead of resending
    the batch through its whole reconnect budget."""
    small = stack.tracker_settings.model_copy(update={"grpc_port": 0,
                                                      "max_message_bytes": 64 * 1024})
    server, port = await create_tracker(small, clock=clock)
    await server.start()
    tenant = await make_tenant()
    events = [visit("https://shop.example/" + "p" * 2000, T0, user=f"u{n}") for n in range(250)]
    try:
        async with EventProducer(f"127.0.0.1:{port}", tenant.keys[Role.INGEST],
                                 backoff_s=(0.5, 0.5)) as producer:
            with pytest.raises(ProducerError) as caught:
                await producer.send(events)
    finally:
        await server.stop(0)
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await tracker_db.events.count_documents({"account_id": tenant.account_id}) == 0


async def test_acknowledgements_are_read_while_the_source_waits(stack, make_tenant):
    """A source that stalls after four events (a pipe whose writer waits): the four
    acknowledgements reach ``on_ack`` meanwhile. Before, the producer read one, then waited
    for the source to fill its window again, and the CLI's count lagged."""
    tenant = await make_tenant()
    events = converting_traffic()
    acks: list[int] = []
    four_acked, release = asyncio.Event(), asyncio.Event()

    async def stalling():
        for event in events[:4]:
            yield event
        await release.wait()
        for event in events[4:8]:
            yield event

    def on_ack(ack: tracker_pb2.IngestEventsResponse, size: int) -> None:
        acks.append(size)
        if len(acks) == 4:
            four_acked.set()

    async with EventProducer(stack.tracker_address, tenant.keys[Role.INGEST], batch_size=1,
                             window=4) as producer:
        sending = asyncio.create_task(producer.send(stalling(), on_ack=on_ack))
        try:
            await asyncio.wait_for(four_acked.wait(), 20)
        finally:
            release.set()
        summary = await sending
    assert (summary.accepted, sum(acks)) == (8, 8)
