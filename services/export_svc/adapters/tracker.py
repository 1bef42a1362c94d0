"""The tracker over gRPC: the ``ConversionSource`` of export builds (domain/sources.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncGenerator

import grpc

from export_svc.domain.sources import ConversionsRefused, TrackerOutage
from goalflow_common.pb.goals.v1 import tracker_pb2, tracker_pb2_grpc

# Codes that mean the tracker is down or overloaded, not that the request is wrong.
OUTAGE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class TrackerConversions:
    """``StreamConversions`` with a deadline on each chunk of ``read_timeout_s``."""

    def __init__(self, tracker: tracker_pb2_grpc.TrackerServiceStub, read_timeout_s: float) -> None:
        self._tracker = tracker
        self._read_timeout_s = read_timeout_s

    async def conversions(
        self, account_id: str, goal_id: str, start: dt.datetime, end: dt.datetime
    ) -> AsyncGenerator[tracker_pb2.Conversion, None]:
        request = tracker_pb2.StreamConversionsRequest(account_id=account_id, goal_id=goal_id)
        request.start_time.FromDatetime(start)
        request.end_time.FromDatetime(end)
        call = self._tracker.StreamConversions(request)
        try:
            while True:
                chunk = await self._next_chunk(call)
                if chunk is None:
                    return
                for conversion in chunk.conversions:
                    yield conversion
        finally:
            call.cancel()

    async def _next_chunk(
        self, call: grpc.aio.UnaryStreamCall[tracker_pb2.StreamConversionsRequest,
                                             tracker_pb2.StreamConversionsResponse],
    ) -> tracker_pb2.StreamConversionsResponse | None:
        """The next chunk, None at the end of the stream."""
        # No deadline on the whole call (a large export streams for minutes), but one on
        # each chunk: a frozen tracker (SIGSTOP, a stuck host) keeps its connection open
        # and answers nothing, which would hold the build for as long as the connection
        # lives.
        try:
            chunk = await asyncio.wait_for(call.read(), self._read_timeout_s)
        except TimeoutError:
            raise TrackerOutage(
                f"no conversions from the tracker for {self._read_timeout_s:g} s"
            ) from None
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in OUTAGE_CODES:
                raise TrackerOutage(f"StreamConversions: {code.name}") from None
            raise ConversionsRefused(_refusal(exc)) from exc
        if chunk is grpc.aio.EOF:
            return None
        assert isinstance(chunk, tracker_pb2.StreamConversionsResponse)
        return chunk


def _refusal(exc: grpc.aio.AioRpcError) -> str:
    """A clause for the job's record: never a gRPC error's multi-line dump."""
    details = " ".join((exc.details() or "").split())[:200]
    return f"the tracker refused the request ({exc.code().name}{': ' * bool(details)}{details})"
