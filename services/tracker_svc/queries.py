"""Reads of recorded conversions: ListConversions, StreamConversions, CountConversions."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from pymongo import ASCENDING, DESCENDING

from goalflow_common.auth import current_principal
from goalflow_common.db import eq
from goalflow_common.errors import InvalidArgument
from goalflow_common.pb.goals.v1 import tracker_pb2
from goalflow_common.protoconv import (
    MAX_ID,
    decode_page_token,
    encode_page_token,
    page_fingerprint,
    to_datetime,
)
from tracker_svc.convert import conversion_to_proto
from tracker_svc.store import TrackerStore

DEFAULT_PAGE, MAX_PAGE = 50, 500
MAX_GOAL_IDS = 1000
_NEWEST_FIRST = [("conversion_time", DESCENDING), ("_id", DESCENDING)]
_OLDEST_FIRST = [("conversion_time", ASCENDING), ("_id", ASCENDING)]
# StreamConversions' time windows (see stream): where they start, their least size, and
# how fast they grow over sparse stretches.
_FIRST_WINDOW = dt.timedelta(hours=1)
_MIN_WINDOW = dt.timedelta(seconds=1)
_MAX_GROWTH = 8.0
# Replies are cut at about half the 8 MiB message limit: a conversion carries one credit
# per credited agent, so a page of ALL_TOUCHES conversions with many long-named agents
# exceeded the limit and failed with RESOURCE_EXHAUSTED on every try (and every export).
DEFAULT_MAX_REPLY_BYTES = 4 * 1024 * 1024


def _check_id(field: str, value: str, *, required: bool = False) -> None:
    if not value:
        if required:
            raise InvalidArgument(field, "required")
        return
    if len(value) > MAX_ID:
        raise InvalidArgument(field, f"at most {MAX_ID} characters")


def _time(request: Any, field: str, *, required: bool = False) -> dt.datetime | None:
    if not request.HasField(field):
        if required:
            raise InvalidArgument(field, "required")
        return None
    try:
        return to_datetime(getattr(request, field))
    except (ValueError, OverflowError):
        raise InvalidArgument(field, "not a valid timestamp") from None


def _whole_second(when: dt.datetime) -> dt.datetime:
    """``when`` rounded up to a whole second."""
    floor = when.replace(microsecond=0)
    return floor if floor == when else floor + dt.timedelta(seconds=1)


def _key(doc: dict[str, Any]) -> tuple[dt.datetime, str]:
    return doc["conversion_time"], doc["_id"]


def _next_key(
    raw: list[dict[str, Any]], last: dict[str, Any] | None, after: tuple[dt.datetime, str] | None
) -> tuple[tuple[dt.datetime, str] | None, int]:
    """Where StreamConversions' next fetch resumes: the last row handed out, and how many
    rows at its conversion time come up to and including it (the "ties").

    The stream resumes with ``time >= t`` and ``limit + ties``, dropping the ties itself,
    rather than with ``time > t OR (time == t AND _id > id)``: nx-27017 evaluates a query
    with $or in Python over the whole collection, which an export of a large range cannot
    afford per fetch. ``raw`` holds every row at the resume time up to ``last``, so
    counting them there is exact.
    """
    if last is None:  # every row fetched was already handed out (rows inserted meanwhile)
        return after, len(raw)
    upto = next(k for k, doc in enumerate(raw) if doc is last)
    when = last["conversion_time"]
    return _key(last), sum(1 for doc in raw[: upto + 1] if doc["conversion_time"] == when)


def _older_than(
    after: tuple[dt.datetime, str], times: dict[str, dt.datetime]
) -> list[dict[str, Any]]:
    """The $or keyset condition for rows after ``after`` in newest-first order, on the
    total order (conversion_time, _id): no counting of rows that share a time.

    Two nx-27017 gaps shape the query (both in tests/libs/common/test_mongo_conformance.py):
    it drops a range on a field that the $or also names, so ``times`` goes inside the
    first branch; and its SQL path compares datetimes to the second, so rows earlier in
    the same second would be skipped. A query that also holds a $in is evaluated in Python
    instead, exactly, so the caller writes the account filter as a $in. Measured on
    nx-27017: ~0.3 s a page among 12,600 documents, ~1 s among 32,600; a real MongoDB
    answers both branches from the (account_id, conversion_time) index."""
    when, last_id = after
    bound = min(when, times["$lt"]) if "$lt" in times else when
    return [
        {"conversion_time": {**times, "$lt": bound}},
        {"conversion_time": when, "_id": {"$lt": last_id}},
    ]


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
        self, store: TrackerStore, *, chunk_size: int, fetch_size: int = 5000,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        self._store = store
        self._chunk = max(1, chunk_size)
        self._fetch = max(self._chunk, fetch_size)
        self._max_bytes = max_reply_bytes

    async def _with_ratings(
        self, account_id: str, docs: list[dict[str, Any]]
    ) -> list[tracker_pb2.Conversion]:
        ratings = await self._store.latest_ratings(account_id, (d["conversation_id"] for d in docs))
        return [conversion_to_proto(d, ratings.get(d["conversation_id"], "")) for d in docs]

    async def list(
        self, request: tracker_pb2.ListConversionsRequest
    ) -> tracker_pb2.ListConversionsResponse:
        account_id = current_principal().require_account()
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        query: dict[str, Any] = {"account_id": eq(account_id)}
        for field, stored in (
            ("conversation_id", "conversation_id"),
            ("goal_id", "goal_id"),
            ("agent_id", "credited_agent_ids"),
        ):
            value = getattr(request, field)
            _check_id(field, value)
            if value:
                # $in, not equality: nx-27017 does not match an array field's elements on
                # equality (credited_agent_ids).
                query[stored] = {"$in": [value]}
        start, end = _time(request, "start_time"), _time(request, "end_time")
        if start is not None and end is not None and end <= start:
            raise InvalidArgument("end_time", "must be after start_time")
        fingerprint = page_fingerprint(
            account_id, request.conversation_id, request.goal_id, request.agent_id, start, end
        )
        # Tokens of the earlier [millis, id, ties, fingerprint] form are refused like any
        # other bad token.
        after = decode_page_token(request.page_token, (dt.datetime, str), fingerprint)
        times: dict[str, dt.datetime] = {}
        if start is not None:
            times["$gte"] = start
        if end is not None:
            times["$lt"] = end
        if after is not None:
            query["$or"] = _older_than(after, times)
            # See _older_than: a $in makes nx-27017 evaluate the query exactly.
            query["account_id"] = {"$in": [account_id]}
        elif times:
            query["conversion_time"] = times
        raw = await self._store.conversions.find(query).sort(_NEWEST_FIRST).limit(
            size + 1
        ).to_list()
        page = raw[:size]
        conversions = await self._with_ratings(account_id, page)
        fit = _fitting(conversions, self._max_bytes)  # a page ends early rather than overflow
        page, conversions = page[:fit], conversions[:fit]
        next_token = ""
        if len(raw) > fit:
            next_token = encode_page_token(_key(page[-1]), fingerprint)
        return tracker_pb2.ListConversionsResponse(
            conversions=conversions, next_page_token=next_token
        )

    async def stream(
        self, request: tracker_pb2.StreamConversionsRequest
    ) -> AsyncIterator[tracker_pb2.StreamConversionsResponse]:
        account_id = current_principal().require_account(request.account_id)
        _check_id("goal_id", request.goal_id, required=True)
        start = _time(request, "start_time", required=True)
        end = _time(request, "end_time", required=True)
        assert start is not None and end is not None
        if end <= start:
            raise InvalidArgument("end_time", "must be after start_time")
        # Keyset iteration in time windows, one bounded query per fetch. nx-27017
        # materialises and sorts everything a query matches before applying the limit, so
        # a fetch over the remaining range costs time in proportion to that range
        # (quadratic over a stream: ~86 s per 100,000 conversions). A fetch is therefore
        # also capped by a time window, sized to hold about one fetch of rows (measured:
        # 5,000 rows in 0.8 s from a window, 2-3.7 s from the rest of a 50,000-row range).
        # Window edges are whole seconds: nx-27017 compares datetimes to the second.
        after: tuple[dt.datetime, str] | None = None
        ties = 0
        lo, window, in_window = start, _FIRST_WINDOW, 0
        while lo < end:
            # Compared before adding: lo + window (rounded up to a second) may pass year 9999
            # (OverflowError) when a wide range ends near the end of the calendar.
            if window >= end - lo - _MIN_WINDOW:
                hi = end
            else:
                hi = min(end, _whole_second(lo + window))
            query = {
                "account_id": account_id,
                "goal_id": request.goal_id,
                "conversion_time": {"$gte": after[0] if after else lo, "$lt": hi},
            }
            limit = self._fetch + ties
            raw = await self._store.conversions.find(query).sort(_OLDEST_FIRST).limit(
                limit
            ).to_list()
            rows = [d for d in raw if after is None or _key(d) > after]
            in_window += len(rows)
            for k in range(0, len(rows), self._chunk):
                chunk = await self._with_ratings(account_id, rows[k : k + self._chunk])
                while chunk:  # split further where the conversions are large
                    fit = _fitting(chunk, self._max_bytes)
                    yield tracker_pb2.StreamConversionsResponse(conversions=chunk[:fit])
                    chunk = chunk[fit:]
            if len(raw) < limit:  # the window is done: size the next one to its density
                scale = self._fetch / in_window if in_window else _MAX_GROWTH
                window = max(_MIN_WINDOW, window * min(_MAX_GROWTH, max(0.25, scale * 0.8)))
                lo, after, ties, in_window = hi, None, 0, 0
                continue
            key, ties = _next_key(raw, rows[-1] if rows else None, after)
            after = key

    async def count(
        self, request: tracker_pb2.CountConversionsRequest
    ) -> tracker_pb2.CountConversionsResponse:
        account_id = current_principal().require_account(request.account_id)
        since = _time(request, "since", required=True)
        goal_ids = list(dict.fromkeys(request.goal_ids))
        if len(goal_ids) > MAX_GOAL_IDS:
            raise InvalidArgument("goal_ids", f"at most {MAX_GOAL_IDS} goals")
        for k, goal_id in enumerate(goal_ids):
            _check_id(f"goal_ids[{k}]", goal_id, required=True)
        # One document per conversion, so counting documents counts each conversion once,
        # whatever the model. Measured on nx-27017 with 10,000 conversions over 10 goals:
        # this $match/$group takes ~0.12 s, count_documents ~1 s per goal. The $match is
        # wrapped in $and because nx-27017 mis-evaluates a date range written directly in an
        # aggregation $match; the goal filter is applied to the grouped rows (a handful
        # per account) because a $in in that $match makes nx-27017 ten times slower.
        cursor = await self._store.conversions.aggregate([
            {"$match": {"$and": [{"account_id": account_id},
                                 {"conversion_time": {"$gte": since}}]}},
            {"$group": {"_id": "$goal_id", "count": {"$sum": 1}}},
        ])
        wanted = set(goal_ids)
        rows = [
            row async for row in cursor
            if row["count"] and (not wanted or row["_id"] in wanted)
        ]
        return tracker_pb2.CountConversionsResponse(
            counts=[
                tracker_pb2.GoalConversionCount(goal_id=row["_id"], count=row["count"])
                for row in sorted(rows, key=lambda r: r["_id"])
            ]
        )
