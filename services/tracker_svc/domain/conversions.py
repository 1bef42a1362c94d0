"""Reads of recorded conversions over the store's ``ConversionReader``: a keyset page, a
goal's conversions as a stream, counts per goal. Each conversion comes with its
conversation's latest satisfaction rating."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from tracker_svc.domain.model import ConversionFilter, ConversionRecord
from tracker_svc.store.protocols import ConversionReader

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

        The store reads them in bounded queries (``goal_conversions``); this adds the
        ratings and cuts the lists."""
        fetched = self._store.goal_conversions(account_id, goal_id, start, end, self._fetch)
        async for rows in fetched:
            for k in range(0, len(rows), chunk):
                yield await self.rated(account_id, rows[k : k + chunk])

    async def counts(
        self, account_id: str, since: dt.datetime, goal_ids: Iterable[str]
    ) -> list[tuple[str, int]]:
        """(goal id, conversions since ``since``) of the given goals (all if none), by id;
        goals without conversions are left out."""
        counts = await self._store.count_by_goal(account_id, since)
        wanted = set(goal_ids)
        return sorted((goal_id, n) for goal_id, n in counts.items()
                      if not wanted or goal_id in wanted)

