"""The tracker over gRPC: the ``ConversionSource`` of export builds (domain/sources.py),
yielding each ``tracker_pb2.Conversion`` as the domain's ``ExportConversion``."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncGenerator

import grpc

from export_svc.domain.sources import (
    ConversionsRefused,
    ExportConversion,
    ExportCredit,
    TrackerOutage,
    TransactionValue,
)
from goalflow_common.limits import EPOCH
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
    ) -> AsyncGenerator[ExportConversion, None]:
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
                    yield export_conversion(conversion)
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


def export_conversion(message: tracker_pb2.Conversion) -> ExportConversion:
    """``message`` as the domain's row type: no value when it has none or an empty amount, no
    rating when it is empty."""
    value = message.transaction_value
    return ExportConversion(
        id=message.id,
        goal_id=message.goal_id,
        goal_name=message.goal_name,
        conversation_id=message.conversation_id,
        conversion_time=EPOCH + _floored(message.conversion_time.seconds,
                                         message.conversion_time.nanos),
        transaction_value=(
            TransactionValue(amount=value.amount, currency_code=value.currency_code)
            if message.HasField("transaction_value") and value.amount else None
        ),
        satisfaction_rating=message.satisfaction_rating or None,
        credits=tuple(
            ExportCredit(
                agent_id=credit.agent.id,
                agent_name=credit.agent.name,
                agent_email=credit.agent.email,
                contact_duration=_floored(credit.contact_duration_to_goal.seconds,
                                          credit.contact_duration_to_goal.nanos),
            )
            for credit in message.credits
        ),
    )


def _floored(seconds: int, nanos: int) -> dt.timedelta:
    """A Timestamp's or Duration's seconds and nanos, nanos floored to microseconds (never
    rounded up, so flooring the result to seconds or milliseconds gives what flooring the
    exact value gives; ``Duration.ToTimedelta`` truncates toward zero, which differs for a
    negative duration)."""
    return dt.timedelta(seconds=seconds, microseconds=nanos // 1000)


def _refusal(exc: grpc.aio.AioRpcError) -> str:
    """A clause for the job's record: never a gRPC error's multi-line dump."""
    details = " ".join((exc.details() or "").split())[:200]
    return f"the tracker refused the request ({exc.code().name}{': ' * bool(details)}{details})"
