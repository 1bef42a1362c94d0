"""What the domain needs of the tracker's store, as Protocols: ``TrackerStore`` implements
them over MongoDB, tests implement the part they need in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Protocol

from tracker_svc.domain.model import (
    ConversionFilter,
    ConversionRecord,
    EventKind,
    Opening,
    ReportConversion,
    ReportFilter,
    StoredEvent,
)


class WatchLost(Exception):
    """The change stream failed or was closed by the server; the next read reopens it."""


class IngestStore(Protocol):
    """What ``domain.ingest.Ingestor`` reads and writes."""

    async def insert_new_events(self, events: Sequence[StoredEvent]) -> set[str]: ...

    async def insert_openings(self, openings: Sequence[Opening]) -> None: ...

    async def insert_conversions(self, records: Sequence[ConversionRecord]) -> set[str]: ...

    async def record_ratings(self, account_id: str, rated: Sequence[StoredEvent]) -> None: ...

    async def events_by_key(self, keys: Iterable[str]) -> list[StoredEvent]: ...

    async def latest_opens(
        self, account_id: str, end_user_ids: Iterable[str]
    ) -> list[Opening]: ...

    async def conversation_events(
        self, account_id: str, conversation_ids: Iterable[str],
        kinds: Iterable[EventKind] = ...,
    ) -> list[StoredEvent]: ...

    async def conversion_origins(self, ids: Iterable[str]) -> dict[str, tuple[str, str]]: ...


class ConversionReader(Protocol):
    """What the conversion reads (ListConversions, StreamConversions, CountConversions)
    need."""

    async def latest_ratings(
        self, account_id: str, conversation_ids: Iterable[str]
    ) -> dict[str, str]: ...

    async def conversions_page(
        self, which: ConversionFilter, after: tuple[dt.datetime, str] | None, limit: int
    ) -> list[ConversionRecord]: ...

    def goal_conversions(
        self, account_id: str, goal_id: str, start: dt.datetime, end: dt.datetime, size: int
    ) -> AsyncIterator[list[ConversionRecord]]: ...

    async def count_by_goal(self, account_id: str, since: dt.datetime) -> dict[str, int]: ...


class ReportStore(Protocol):
    """What ``domain.reports.Reporter`` reads."""

    def report_rows(self, which: ReportFilter) -> AsyncIterator[ReportConversion]: ...

    async def conversation_events(
        self, account_id: str, conversation_ids: Iterable[str],
        kinds: Iterable[EventKind] = ...,
    ) -> list[StoredEvent]: ...


class ConversionWatch(Protocol):
    """A follower of conversion inserts (``TrackerStore.watch_conversions``)."""

    async def open(self) -> None: ...

    async def next(self) -> ConversionRecord | None: ...

    async def close(self) -> None: ...
