"""Reads of recorded conversions over the store's ``ConversionReader``: a keyset page, a
goal's conversions streamed in time windows, counts per goal. Each conversion comes with
its conversation's latest satisfaction rating."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from tracker_svc.domain.model import ConversionFilter, ConversionRecord
from tracker_svc.store.protocols import ConversionReader

# StreamConversions' time windows (see ``stream``): where they start, their least size, and
# how fast they grow over sparse stretches.
_FIRST_WINDOW = dt.timedelta(hours=1)
_MIN_WINDOW = dt.timedelta(seconds=1)
_MAX_GROWTH = 8.0

Key = tuple[dt.datetime, str]  # (conversion time, id): the total order of conversions


@dataclass(frozen=True, slots=True)
class RatedConversion:
    record: ConversionRecord
    rating: str  # the conversation's latest satisfaction rating ("" if none)


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[RatedConversion]
    more: bool  # rows follow the last one


def key_of(record: ConversionRecord) -> Key:
    return record.conversion_time, record.id


def _whole_second(when: dt.datetime) -> dt.datetime:
    """``when`` rounded up to a whole second."""
    floor = when.replace(microsecond=0)
    return floor if floor == when else floor + dt.timedelta(seconds=1)


def _next_key(
    raw: Sequence[ConversionRecord], last: ConversionRecord | None, after: Key | None
) -> tuple[Key | None, int]:
    """Where the stream's next fetch resumes: the last row handed out, and how many rows
    at its conversion time come up to and including it (the "ties").

    The stream resumes with ``time >= t`` and ``limit + ties``, dropping the ties itself,
    rather than with ``time > t OR (time == t AND _id > id)``: nx-27017 evaluates a query
    with $or in Python over the whole collection, which an export of a large range cannot
    afford per fetch. ``raw`` holds every row at the resume time up to ``last``, so
    counting them there is exact.
    """
    if last is None:  # every row fetched was already handed out (rows inserted meanwhile)
        return after, len(raw)
    upto = next(k for k, row in enumerate(raw) if row is last)
    when = last.conversion_time
    return key_of(last), sum(1 for row in raw[: upto + 1] if row.conversion_time == when)


class ConversionReads:
    def __init__(self, store: ConversionReader, *, fetch_size: int) -> None:
        self._store = store
        self._fetch = fetch_size

    async def rated(
        self, account_id: str, records: Sequence[ConversionRecord]
    ) -> list[RatedConversion]:
        ratings = await self._store.latest_ratings(
            account_id, (r.conversation_id for r in records))
        return [RatedConversion(r, ratings.get(r.conversation_id, "")) for r in records]

    async def page(self, which: ConversionFilter, after: Key | None, size: int) -> Page:
        """Up to ``size`` conversions newest first, after the keyset position ``after``."""
        raw = await self._store.conversions_page(which, after, size + 1)
        return Page(await self.rated(which.account_id, raw[:size]), len(raw) > size)

    async def stream(
        self, account_id: str, goal_id: str, start: dt.datetime, end: dt.datetime,
        chunk: int,
    ) -> AsyncIterator[list[RatedConversion]]:
        """A goal's conversions with ``start <= time < end``, oldest first, in lists of at
        most ``chunk``.

        Keyset iteration in time windows, one bounded query per fetch. nx-27017
        materialises and sorts everything a query matches before applying the limit, so
        a fetch over the remaining range costs time in proportion to that range
        (quadratic over a stream: ~86 s per 100,000 conversions). A fetch is therefore
        also capped by a time window, sized to hold about one fetch of rows (measured:
        5,000 rows in 0.8 s from a window, 2-3.7 s from the rest of a 50,000-row range).
        Window edges are whole seconds: nx-27017 compares datetimes to the second."""
        after: Key | None = None
        ties = 0
        lo, window, in_window = start, _FIRST_WINDOW, 0
        while lo < end:
            hi = _window_end(lo, window, end)
            limit = self._fetch + ties
            raw = await self._store.conversions_window(
                account_id, goal_id, after[0] if after else lo, hi, limit)
            rows = [r for r in raw if after is None or key_of(r) > after]
            in_window += len(rows)
            for k in range(0, len(rows), chunk):
                yield await self.rated(account_id, rows[k : k + chunk])
            if len(raw) < limit:  # the window is done: size the next one to its density
                window = _next_window(window, self._fetch, in_window)
                lo, after, ties, in_window = hi, None, 0, 0
                continue
            after, ties = _next_key(raw, rows[-1] if rows else None, after)

    async def counts(
        self, account_id: str, since: dt.datetime, goal_ids: Iterable[str]
    ) -> list[tuple[str, int]]:
        """(goal id, conversions since ``since``) of the given goals (all if none), by id;
        goals without conversions are left out."""
        counts = await self._store.count_by_goal(account_id, since)
        wanted = set(goal_ids)
        return sorted((goal_id, n) for goal_id, n in counts.items()
                      if not wanted or goal_id in wanted)


def _window_end(lo: dt.datetime, window: dt.timedelta, end: dt.datetime) -> dt.datetime:
    # Compared before adding: lo + window (rounded up to a second) may pass year 9999
    # (OverflowError) when a wide range ends near the end of the calendar.
    if window >= end - lo - _MIN_WINDOW:
        return end
    return min(end, _whole_second(lo + window))


def _next_window(window: dt.timedelta, fetch: int, in_window: int) -> dt.timedelta:
    scale = fetch / in_window if in_window else _MAX_GROWTH
    return max(_MIN_WINDOW, window * min(_MAX_GROWTH, max(0.25, scale * 0.8)))
