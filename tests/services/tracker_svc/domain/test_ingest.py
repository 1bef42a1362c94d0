"""``domain.ingest.Ingestor`` over an in-memory store (the ``IngestStore`` Protocol): the
workflow around the attribution core, without gRPC or a database. The end-to-end
behaviour is in ``test_attribution.py`` and ``test_decisions.py``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

from goalflow_common.clock import ManualClock
from tests.services.tracker_svc.domain.test_batch_attribution import (
    ACCOUNT,
    HOUR,
    LAST,
    MIN,
    T0,
    _table,
    assigned,
    goal,
    opened,
    typed,
    visit,
)
from tracker_svc.domain.ingest import Ingestor
from tracker_svc.domain.model import (
    STATE_KINDS,
    ConversionRecord,
    EventKind,
    Opening,
    StoredEvent,
    conversion_key,
)


class MemoryStore:
    """Just enough of ``IngestStore`` for these tests: records kept by key."""

    def __init__(self) -> None:
        self.events: dict[str, StoredEvent] = {}
        self.openings: dict[str, Opening] = {}
        self.conversions: dict[str, ConversionRecord] = {}
        self.ratings: dict[str, StoredEvent] = {}

    async def insert_new_events(self, events: Sequence[StoredEvent]) -> set[str]:
        duplicates = {e.key for e in events if e.key in self.events}
        self.events.update((e.key, e) for e in events if e.key not in duplicates)
        return duplicates

    async def insert_openings(self, openings: Sequence[Opening]) -> None:
        for opening in openings:
            self.openings.setdefault(opening.key, opening)

    async def insert_conversions(self, records: Sequence[ConversionRecord]) -> set[str]:
        existing = {r.id for r in records if r.id in self.conversions}
        self.conversions.update((r.id, r) for r in records if r.id not in existing)
        return existing

    async def record_ratings(self, account_id: str, rated: Sequence[StoredEvent]) -> None:
        for event in rated:
            assert event.conversation_id is not None
            self.ratings[event.conversation_id] = event

    async def events_by_key(self, keys: Iterable[str]) -> list[StoredEvent]:
        return [self.events[k] for k in keys]

    async def latest_opens(self, account_id: str, end_user_ids: Iterable[str]) -> list[Opening]:
        users = set(end_user_ids)
        return sorted((o for o in self.openings.values() if o.end_user_id in users),
                      key=lambda o: o.at, reverse=True)

    async def conversation_events(
        self, account_id: str, conversation_ids: Iterable[str],
        kinds: Iterable[EventKind] = STATE_KINDS,
    ) -> list[StoredEvent]:
        wanted, kept = set(conversation_ids), set(kinds)
        return sorted((e for e in self.events.values()
                       if e.conversation_id in wanted and e.kind in kept),
                      key=lambda e: (e.at, e.key))

    async def conversion_origins(self, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        return {i: (self.conversions[i].batch_id, self.conversions[i].hit_event_id)
                for i in ids}


class RecordingFeed:
    def __init__(self) -> None:
        self.published: list[str] = []

    @contextlib.contextmanager
    def inserting(self, ids: list[str]) -> Iterator[None]:
        yield

    def publish(self, records: list[ConversionRecord]) -> None:
        self.published += [r.id for r in records]


def ingestor(store: MemoryStore, feed: RecordingFeed) -> Ingestor:
    # Typed as the Protocols: mypy checks the fakes implement what the domain needs.
    return Ingestor(store, _table([goal(LAST)]), feed, ManualClock(T0 + 2 * HOUR))


async def test_a_batch_is_stored_attributed_and_its_conversions_counted() -> None:
    store, feed = MemoryStore(), RecordingFeed()
    history = typed([opened("c1", T0), assigned("c1", T0 + MIN, "A")])
    first = await ingestor(store, feed).ingest(ACCOUNT, "b1", history, [0, 1])
    assert (first.accepted, first.duplicates, first.conversions) == (2, 0, 0)
    assert list(store.openings) == [history[0].key]

    # The hit comes in a later batch: attributed from what the first one stored.
    hit = typed([visit(T0 + HOUR, event_id="hit-1")])
    outcome = await ingestor(store, feed).ingest(ACCOUNT, "b2", hit, [0])
    key = conversion_key(ACCOUNT, LAST, "c1")
    assert (outcome.accepted, outcome.conversions) == (1, 1)
    assert feed.published == [key]
    record = store.conversions[key]
    assert (record.batch_id, record.hit_event_id, record.credited_agent_ids) == (
        "b2", "hit-1", ["A"])
    assert record.recorded_at == T0 + 2 * HOUR


async def test_a_resent_batch_counts_its_conversions_again_and_another_batch_does_not() -> None:
    store, feed = MemoryStore(), RecordingFeed()
    batch = typed([opened("c1", T0), assigned("c1", T0 + MIN, "A"),
                   visit(T0 + HOUR, event_id="hit-1")])
    positions = list(range(len(batch)))
    first = await ingestor(store, feed).ingest(ACCOUNT, "b1", batch, positions)
    again = await ingestor(store, feed).ingest(ACCOUNT, "b1", batch, positions)
    other = await ingestor(store, feed).ingest(ACCOUNT, "b2", batch, positions)
    assert [o.conversions for o in (first, again, other)] == [1, 1, 0]
    assert [(o.accepted, o.duplicates) for o in (first, again, other)] == [
        (3, 0), (0, 3), (0, 3)]
    assert len(store.conversions) == 1 and len(feed.published) == 1


async def test_unsupported_channels_are_named_by_batch_index() -> None:
    store, feed = MemoryStore(), RecordingFeed()
    batch = typed([opened("c1", T0, channel="UNITY_SDK"), assigned("c1", T0 + MIN, "A"),
                   visit(T0 + HOUR)])
    outcome = await ingestor(store, feed).ingest(ACCOUNT, "b1", batch, [0, 3, 7])
    assert outcome.unsupported_channel_indexes == (0, 7)
    assert outcome.conversions == 0 and not store.conversions

