"""A reliable event producer for the tracker's ``IngestEvents`` stream.

Used by the ``goalflow`` CLI, the demo, benchmarks and fault tests. Events go in batches
over one stream with a bounded window of unacknowledged batches. If the stream breaks with
a status a producer may retry (the tracker restarted, shutting down, the database away),
it reconnects with bounded, jittered backoff and resends every unacknowledged batch. The
tracker stores events idempotently by event id, so a resent batch that had been applied
before the break comes back as duplicates: nothing is lost and nothing is doubled.

A status that a resend cannot change (INVALID_ARGUMENT for a malformed batch,
RESOURCE_EXHAUSTED for one too large, UNAUTHENTICATED, PERMISSION_DENIED, ...) stops the
send at once with :class:`ProducerError` carrying that code: a poison batch is never resent.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
)
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio

from goalflow_common.client import make_channel
from goalflow_common.interceptors import REQUEST_ID_KEY
from goalflow_common.pb.goals.v1 import tracker_pb2, tracker_pb2_grpc

# The tracker restarting, shutting down or losing its database: resent within the
# reconnect budget.
TRANSIENT = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
})
# A batch that fails the tracker every time comes back as INTERNAL or UNKNOWN, answered by
# the tracker itself (its trailers echo the request id, as every goalflow server's do): such
# a batch is resent at most ``max_unexplained`` times in a row without an acknowledgement in
# between. The same codes raised by the client's own gRPC core (a stream written to as the
# server goes away: "Internal error from Core") are a broken connection, resent within the
# reconnect budget like UNAVAILABLE; counting them as poison stopped a producer across a
# tracker's SIGTERM restart.
UNEXPLAINED = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
RETRYABLE = TRANSIENT | UNEXPLAINED


class ProducerError(Exception):
    """The tracker refused the stream for good (``code`` says why), could not be reached
    within the reconnect budget, or broke the protocol (``code`` is None for those two)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Rejection:
    """One refused event; ``index`` is its position in the events given to ``send``."""

    index: int
    event_id: str
    field: str
    reason: str


@dataclass
class IngestSummary:
    """What the tracker acknowledged for one ``send``."""

    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    conversions: int = 0
    unsupported_channel: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    batches: int = 0
    resent_batches: int = 0
    reconnects: int = 0


@dataclass
class _Batch:
    request: tracker_pb2.IngestEventsRequest
    offset: int  # index of the batch's first event in the whole send
    sent: bool = False


AckCallback = Callable[[tracker_pb2.IngestEventsResponse, int], None]
RejectionCallback = Callable[[Rejection], None]
# A file read while sending is an async iterable (its reads run off the event loop).
Events = Iterable[tracker_pb2.Event] | AsyncIterable[tracker_pb2.Event]


class _StreamBroke(Exception):
    """The stream ended or failed retryably; unacknowledged batches must be resent."""

    def __init__(self, code: grpc.StatusCode, why: str, trailers: Any = ()) -> None:
        super().__init__(why)
        self.code = code
        self.why = why
        # Whether the server answered this status itself (see UNEXPLAINED).
        self.answered = any(key == REQUEST_ID_KEY for key, _ in trailers or ())


class _Requests:
    """The requests of one stream, as grpc's request iterator: fed by ``put``, ended by
    ``end``. A plain iterator, not an async generator, ended by a sentinel: closing the
    generator that ``call.write`` feeds while grpc's task still iterates it printed
    "aclose(): asynchronous generator is already running" after each broken stream."""

    _END = object()

    def __init__(self) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue()  # at most a window of batches

    def put(self, request: tracker_pb2.IngestEventsRequest) -> None:
        self._queue.put_nowait(request)

    def end(self) -> None:
        self._queue.put_nowait(self._END)

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> object:
        request = await self._queue.get()
        if request is self._END:
            self._queue.put_nowait(self._END)  # ended for good, however often asked
            raise StopAsyncIteration
        return request


class _Source:
    """The batches of one ``send``, taken one at a time by a task that outlives a broken
    stream: a read of the events (a pipe may block) is never interrupted by a reconnect."""

    def __init__(self, batches: AsyncGenerator[_Batch, None]) -> None:
        self._batches = batches
        self._next: asyncio.Task[_Batch | None] | None = None
        self.exhausted = False

    def next(self) -> asyncio.Task[_Batch | None]:
        """The task taking the next batch (None at the end), started if need be."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._take())
        return self._next

    async def _take(self) -> _Batch | None:
        return await anext(self._batches, None)

    def taken(self) -> _Batch | None:
        """The batch of the finished ``next`` task (raises what reading the events raised)."""
        assert self._next is not None
        batch, self._next = self._next.result(), None
        self.exhausted = batch is None
        return batch

    async def close(self) -> None:
        if self._next is not None:
            self._next.cancel()  # ends the events' source (a file's reader) with it
            await asyncio.wait([self._next])
            if not self._next.cancelled():
                self._next.exception()  # the send ended for another reason, raised already
        await self._batches.aclose()


class EventProducer:
    """Sends events to one tracker address with one key (role ingest or admin)."""

    def __init__(
        self,
        address: str,
        key: str,
        *,
        batch_size: int = 250,
        window: int = 4,
        max_reconnects: int = 8,
        max_unexplained: int = 1,
        backoff_s: tuple[float, float] = (0.1, 5.0),
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """``max_reconnects`` bounds consecutive reconnects without an acknowledgement in
        between, ``max_unexplained`` those after INTERNAL or UNKNOWN; ``backoff_s`` is the
        first and the largest wait before reconnecting; ``credentials``
        (``client.tls_credentials``) make the channel TLS."""
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be 1 to 1000 (the tracker's batch limit)")
        self._channel = make_channel(address, key, credentials=credentials)
        self._stub = tracker_pb2_grpc.TrackerServiceStub(self._channel)
        self._batch_size = batch_size
        self._window = max(1, window)
        self._max_reconnects = max_reconnects
        self._max_unexplained = max_unexplained
        self._backoff = backoff_s
        self._ids = (f"{uuid.uuid4().hex[:12]}-{n}" for n in itertools.count())

    async def __aenter__(self) -> EventProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def send(
        self, events: Events, on_ack: AckCallback | None = None,
        on_rejected: RejectionCallback | None = None,
    ) -> IngestSummary:
        """Send every event; return once all are acknowledged. Events are taken from
        ``events`` as the window allows, so a large source is never held whole.

        As each batch is acknowledged (in order), ``on_rejected`` gets each of its refused
        events, then ``on_ack`` the acknowledgement and the batch's size."""
        summary = IngestSummary()
        source = _Source(self._batches(events, summary))
        try:
            return await self._send(source, summary, on_ack, on_rejected)
        finally:
            await source.close()  # the events' source too (a file being read), however it ends

    async def _send(
        self, source: _Source, summary: IngestSummary,
        on_ack: AckCallback | None, on_rejected: RejectionCallback | None,
    ) -> IngestSummary:
        unacked: deque[_Batch] = deque()
        failures = unexplained = 0
        while True:
            acknowledged = summary.batches
            try:
                await self._session(source, unacked, summary, on_ack, on_rejected)
                return summary
            except _StreamBroke as broke:
                # Reconnects are counted from the last acknowledgement.
                progressed = summary.batches > acknowledged
                failures = 0 if progressed else failures + 1
                poison = broke.code in UNEXPLAINED and broke.answered
                unexplained = 0 if progressed else unexplained + poison
                if unexplained > self._max_unexplained:
                    raise ProducerError(
                        f"{broke.code.name}: {broke.why} (the same batch failed "
                        f"{unexplained} times; not resent again)", broke.code
                    ) from broke.__cause__
                if failures > self._max_reconnects:
                    raise ProducerError(
                        f"tracker unreachable after {self._max_reconnects} reconnects: "
                        f"{broke.code.name}: {broke.why}"
                    ) from broke.__cause__
                summary.reconnects += 1
                first, cap = self._backoff
                delay = min(cap, first * 2 ** max(0, failures - 1))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _batches(self, events: Events, summary: IngestSummary) -> AsyncIterator[_Batch]:
        offset = 0
        async for chunk in _chunks(events, self._batch_size):
            summary.events += len(chunk)
            yield _Batch(
                tracker_pb2.IngestEventsRequest(batch_id=next(self._ids), events=chunk), offset
            )
            offset += len(chunk)

    async def _session(
        self,
        source: _Source,
        unacked: deque[_Batch],
        summary: IngestSummary,
        on_ack: AckCallback | None,
        on_rejected: RejectionCallback | None,
    ) -> None:
        """One stream: resend what is unacknowledged, then go on with the source.
        Acknowledgements are read while the next batch is awaited from the source: a pipe
        whose writer stalls does not hold back those already received."""
        requests = _Requests()
        call = self._stub.IngestEvents(requests)
        reading: asyncio.Future[object] | None = None
        try:
            self._resend(unacked, requests, summary)
            if source.exhausted:
                requests.end()
            while unacked or not source.exhausted:
                if unacked and reading is None:
                    reading = asyncio.ensure_future(call.read())
                taking = None
                if not source.exhausted and len(unacked) < self._window:
                    taking = source.next()
                await asyncio.wait([w for w in (taking, reading) if w is not None],
                                   return_when=asyncio.FIRST_COMPLETED)
                if taking is not None and taking.done():
                    self._send_taken(source.taken(), unacked, requests)
                if reading is not None and reading.done():
                    ack, reading = reading.result(), None
                    if ack is aio.EOF:  # the server ended the stream early (graceful shutdown)
                        await self._ended(call)
                    self._acknowledged(ack, unacked.popleft(), summary, on_ack, on_rejected)
        except aio.AioRpcError as exc:
            raise self._stream_failure(exc) from exc
        finally:
            # grpc's task that consumes ``requests`` must end however the call ended: a
            # call that already failed is not cancelled again, and its task would wait for
            # a request forever (then "Task was destroyed but it is pending!" at exit).
            call.cancel()
            requests.end()
            await _abandon_read(reading)

    @staticmethod
    def _resend(unacked: deque[_Batch], requests: _Requests, summary: IngestSummary) -> None:
        """Queue every unacknowledged batch on a new stream; those sent before count as
        resent."""
        for batch in unacked:
            summary.resent_batches += batch.sent
            batch.sent = True
            requests.put(batch.request)

    @staticmethod
    def _send_taken(batch: _Batch | None, unacked: deque[_Batch], requests: _Requests) -> None:
        """Queue the batch just taken from the source, or end the requests if it ran dry."""
        if batch is None:
            requests.end()  # grpc half-closes the stream once all is written
            return
        unacked.append(batch)
        batch.sent = True
        requests.put(batch.request)

    @staticmethod
    def _stream_failure(exc: aio.AioRpcError) -> Exception:
        """What a failed stream raises: a retryable status breaks it (reconnect and resend),
        any other stops the send."""
        if exc.code() in RETRYABLE:
            return _StreamBroke(exc.code(), exc.details() or "", exc.trailing_metadata())
        return ProducerError(f"{exc.code().name}: {exc.details()}", exc.code())

    def _acknowledged(
        self, ack: tracker_pb2.IngestEventsResponse, batch: _Batch, summary: IngestSummary,
        on_ack: AckCallback | None, on_rejected: RejectionCallback | None,
    ) -> None:
        known = len(summary.rejected)
        self._account(batch, ack, summary)
        if on_rejected is not None:
            for rejection in summary.rejected[known:]:
                on_rejected(rejection)
        if on_ack is not None:
            on_ack(ack, len(batch.request.events))

    @staticmethod
    async def _ended(call: aio.StreamStreamCall) -> None:
        """Raise for a stream that ended before every batch was acknowledged."""
        status = await call.code()
        details = await call.details()
        if status is grpc.StatusCode.OK or status in RETRYABLE:
            raise _StreamBroke(status, f"stream ended before every batch was acknowledged: "
                                       f"{details}", await call.trailing_metadata())
        raise ProducerError(f"{status.name}: {details}", status)

    @staticmethod
    def _account(
        batch: _Batch, ack: tracker_pb2.IngestEventsResponse, summary: IngestSummary
    ) -> None:
        sent = len(batch.request.events)
        if ack.batch_id != batch.request.batch_id:
            raise ProducerError(
                f"acknowledgement for batch {ack.batch_id!r}, expected "
                f"{batch.request.batch_id!r}"
            )
        # A refusal of the whole batch (index 0, field "events") counts every event.
        whole = len(ack.rejected) == 1 and ack.rejected[0].field == "events" and sent > 1
        if not whole and ack.accepted + ack.duplicates + len(ack.rejected) != sent:
            raise ProducerError(
                f"batch {ack.batch_id}: {ack.accepted} accepted + {ack.duplicates} "
                f"duplicates + {len(ack.rejected)} rejected of {sent} sent"
            )
        summary.batches += 1
        summary.accepted += ack.accepted
        summary.duplicates += ack.duplicates
        summary.conversions += ack.conversions
        summary.unsupported_channel += len(ack.unsupported_channel_indexes)
        if whole:
            first = ack.rejected[0]
            summary.rejected.extend(
                Rejection(batch.offset + k, event.event_id, first.field, first.reason)
                for k, event in enumerate(batch.request.events)
            )
            return
        summary.rejected.extend(
            Rejection(batch.offset + r.index, r.event_id, r.field, r.reason)
            for r in ack.rejected
        )


async def _abandon_read(reading: asyncio.Future[object] | None) -> None:
    """Cancel a pending read of an ended stream and wait until it is done."""
    if reading is None:
        return
    reading.cancel()
    await asyncio.wait([reading])
    if not reading.cancelled():
        reading.exception()  # the error that ended this stream is raised already


async def _chunks(events: Events, size: int) -> AsyncIterator[list[tracker_pb2.Event]]:
    """Lists of at most ``size`` events, from a plain or an async iterable."""
    if not isinstance(events, AsyncIterable):
        plain = iter(events)
        while chunk := list(itertools.islice(plain, size)):
            yield chunk
        return
    chunk = []
    async for event in events:
        chunk.append(event)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
