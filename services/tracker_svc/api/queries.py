"""ListConversions, StreamConversions, CountConversions: request checks and replies around
``domain.conversions.ConversionReads``."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from goalflow_common.auth import current_principal
from goalflow_common.errors import InvalidArgument
from goalflow_common.limits import check_id
from goalflow_common.pb.goals.v1 import tracker_pb2
from goalflow_common.protoconv import (
    decode_page_token,
    encode_page_token,
    page_fingerprint,
    to_datetime,
)
from tracker_svc.api.convert import conversion_to_proto
from tracker_svc.domain.conversions import ConversionReads, RatedConversion, key_of
from tracker_svc.domain.model import ConversionFilter
from tracker_svc.domain.scope import scoped_agent

DEFAULT_PAGE, MAX_PAGE = 50, 500
MAX_GOAL_IDS = 1000
# Replies are cut at about half the 8 MiB message limit: a conversion carries one credit
# per credited agent, so a page of ALL_TOUCHES conversions with many long-named agents
# exceeded the limit and failed with RESOURCE_EXHAUSTED on every try (and every export).
DEFAULT_MAX_REPLY_BYTES = 4 * 1024 * 1024


class _Timed(Protocol):
    def HasField(self, field_name: str) -> bool: ...


def _time(request: _Timed, field: str, *, required: bool = False) -> dt.datetime | None:
    if not request.HasField(field):
        if required:
            raise InvalidArgument(field, "required")
        return None
    try:
        return to_datetime(getattr(request, field))
    except (ValueError, OverflowError):
        raise InvalidArgument(field, "not a valid timestamp") from None


def _required_time(request: _Timed, field: str) -> dt.datetime:
    when = _time(request, field, required=True)
    assert when is not None
    return when


def _protos(rows: Sequence[RatedConversion]) -> list[tracker_pb2.Conversion]:
    return [conversion_to_proto(row.record, row.rating) for row in rows]


def _fitting(conversions: list[tracker_pb2.Conversion], budget: int) -> int:
    """How many of ``conversions``, from the first, fit in ``budget`` bytes (at least one)."""
    used = 0
    for n, conversion in enumerate(conversions):
        used += conversion.ByteSize() + 8  # + the field's tag and length
        if n and used > budget:
            return n
    return len(conversions)


class ConversionQueries:
    def __init__(
        self, reads: ConversionReads, *, chunk_size: int,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        self._reads = reads
        self._chunk = max(1, chunk_size)
        self._max_bytes = max_reply_bytes

    async def list(
        self, request: tracker_pb2.ListConversionsRequest
    ) -> tracker_pb2.ListConversionsResponse:
        principal = current_principal()
        account_id = principal.require_account()
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        for field in ("conversation_id", "goal_id", "agent_id"):
            check_id(field, getattr(request, field), required=False)
        agent_id = scoped_agent(principal.agent_id, request.agent_id)
        start, end = _time(request, "start_time"), _time(request, "end_time")
        if start is not None and end is not None and end <= start:
            raise InvalidArgument("end_time", "must be after start_time")
        fingerprint = page_fingerprint(
            account_id, request.conversation_id, request.goal_id, agent_id, start, end
        )
        # Tokens of the earlier [millis, id, ties, fingerprint] form are refused like any
        # other bad token.
        after = decode_page_token(request.page_token, (dt.datetime, str), fingerprint)
        which = ConversionFilter(account_id, request.conversation_id, request.goal_id,
                                 agent_id, start, end)
        page = await self._reads.page(which, after, size)
        conversions = _protos(page.rows)
        fit = _fitting(conversions, self._max_bytes)  # a page ends early rather than overflow
        next_token = ""
        if page.more or fit < len(page.rows):
            next_token = encode_page_token(key_of(page.rows[fit - 1].record), fingerprint)
        return tracker_pb2.ListConversionsResponse(
            conversions=conversions[:fit], next_page_token=next_token
        )

    async def stream(
        self, request: tracker_pb2.StreamConversionsRequest
    ) -> AsyncIterator[tracker_pb2.StreamConversionsResponse]:
        account_id = current_principal().require_account(request.account_id)
        check_id("goal_id", request.goal_id)
        start = _required_time(request, "start_time")
        end = _required_time(request, "end_time")
        if end <= start:
            raise InvalidArgument("end_time", "must be after start_time")
        async for rows in self._reads.stream(account_id, request.goal_id, start, end,
                                             self._chunk):
            chunk = _protos(rows)
            while chunk:  # split further where the conversions are large
                fit = _fitting(chunk, self._max_bytes)
                yield tracker_pb2.StreamConversionsResponse(conversions=chunk[:fit])
                chunk = chunk[fit:]

    async def count(
        self, request: tracker_pb2.CountConversionsRequest
    ) -> tracker_pb2.CountConversionsResponse:
        account_id = current_principal().require_account(request.account_id)
        since = _required_time(request, "since")
        goal_ids = list(dict.fromkeys(request.goal_ids))
        if len(goal_ids) > MAX_GOAL_IDS:
            raise InvalidArgument("goal_ids", f"at most {MAX_GOAL_IDS} goals")
        for k, goal_id in enumerate(goal_ids):
            check_id(f"goal_ids[{k}]", goal_id)
        counts = await self._reads.counts(account_id, since, goal_ids)
        return tracker_pb2.CountConversionsResponse(
            counts=[tracker_pb2.GoalConversionCount(goal_id=goal_id, count=n)
                    for goal_id, n in counts]
        )
