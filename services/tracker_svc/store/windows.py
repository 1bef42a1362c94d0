"""A goal's conversions over a time range, oldest first, read as a run of bounded queries
(``TrackerStore.goal_conversions``). Everything here is shaped by nx-27017; on MongoDB one
keyset query per fetch would do:

- nx-27017 materialises and sorts everything a query matches before applying the limit, so
  a fetch over the remaining range costs time in proportion to that range (quadratic over
  a stream: ~86 s per 100,000 conversions). A fetch is therefore also capped by a time
  window, sized to hold about one fetch of rows (measured: 5,000 rows in 0.8 s from a
  window, 2-3.7 s from the rest of a 50,000-row range).
- Window edges are whole seconds: nx-27017 compares these datetimes to the second
  (tests/libs/common/test_mongo_conformance.py::test_keyset_or_on_millisecond_datetimes_with_eq).
- A fetch resumes with ``time >= t`` and ``limit + ties``, dropping the ties itself, rather
  than with ``time > t OR (time == t AND _id > id)``: nx-27017 evaluates a query with $or in
  Python over the whole collection, which an export of a large range cannot afford per
  fetch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from tracker_svc.domain.model import ConversionRecord

# Where the windows start, their least size, and how fast they grow over sparse stretches.
_FIRST_WINDOW = dt.timedelta(hours=1)
_MIN_WINDOW = dt.timedelta(seconds=1)
_MAX_GROWTH = 8.0

Key = tuple[dt.datetime, str]  # (conversion time, id): the order rows come in
# (start, end, limit) -> up to ``limit`` rows with start <= time < end, oldest first.
Fetch = Callable[[dt.datetime, dt.datetime, int], Awaitable[list[ConversionRecord]]]


def _key(record: ConversionRecord) -> Key:
    return record.conversion_time, record.id


async def in_windows(
    fetch: Fetch, start: dt.datetime, end: dt.datetime, size: int
) -> AsyncIterator[list[ConversionRecord]]:
    """Every row with ``start <= time < end`` once, oldest first, in non-empty lists of at
    most ``size`` rows, one ``fetch`` each."""
    after: Key | None = None
    ties = 0
    lo, window, in_window = start, _FIRST_WINDOW, 0
    while lo < end:
        hi = _window_end(lo, window, end)
        limit = size + ties
        raw = await fetch(after[0] if after else lo, hi, limit)
        rows = [r for r in raw if after is None or _key(r) > after]
        in_window += len(rows)
        if rows:
            yield rows
        if len(raw) < limit:  # the window is done: size the next one to its density
            window = _next_window(window, size, in_window)
            lo, after, ties, in_window = hi, None, 0, 0
            continue
        after, ties = _next_key(raw, rows[-1] if rows else None, after)


def _whole_second(when: dt.datetime) -> dt.datetime:
    """``when`` rounded up to a whole second."""
    floor = when.replace(microsecond=0)
    return floor if floor == when else floor + dt.timedelta(seconds=1)


def _next_key(
    raw: Sequence[ConversionRecord], last: ConversionRecord | None, after: Key | None
) -> tuple[Key | None, int]:
    """Where the next fetch resumes: the last row handed out, and how many rows at its
    conversion time come up to and including it (the "ties", dropped again by the caller).
    ``raw`` holds every row at the resume time up to ``last``, so counting them there is
    exact."""
    if last is None:  # every row fetched was already handed out (rows inserted meanwhile)
        return after, len(raw)
    upto = next(k for k, row in enumerate(raw) if row is last)
    when = last.conversion_time
    return _key(last), sum(1 for row in raw[: upto + 1] if row.conversion_time == when)


def _window_end(lo: dt.datetime, window: dt.timedelta, end: dt.datetime) -> dt.datetime:
    # Compared before adding: lo + window (rounded up to a second) may pass year 9999
    # (OverflowError) when a wide range ends near the end of the calendar.
    if window >= end - lo - _MIN_WINDOW:
        return end
    return min(end, _whole_second(lo + window))


def _next_window(window: dt.timedelta, fetch: int, in_window: int) -> dt.timedelta:
    scale = fetch / in_window if in_window else _MAX_GROWTH
    return max(_MIN_WINDOW, window * min(_MAX_GROWTH, max(0.25, scale * 0.8)))
