"""Ingest of one validated batch: store it, attribute its goal hits, count what it caused.

This is the workflow around ``batch_attribution`` (the pure rules), over the store's
``IngestStore`` Protocol. Per batch: only if the batch has goal hits, the reads attribution
needs (the end users' opens, then the hit conversations' events; the core merges them with
the batch's own); then one round of bulk inserts: conversions, events and "opened"
records. Duplicates are found by the unique keys, so replays and concurrent tracker
replicas never double anything. A resent hit is attributed again (the conversion's key
makes that a no-op if it was recorded), so a crash between storing a batch and recording
its conversions loses nothing.

The outcome's ``conversions`` counts what the batch caused: conversions this attempt
recorded, plus those an earlier attempt of the same batch (same ``batch_id``, same hit
event) recorded. A producer resends a batch whose ack it never got, so without the second
part a tracker restart after recording a batch but before its ack arrived made the
producer's total fall short (1,575 reported for 1,800 recorded). A batch sent again under
a new id (the same file sent twice) counts nothing again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from goalflow_common.clock import Clock
from tracker_svc.domain.batch_attribution import (
    BatchAttribution,
    GoalHit,
    GoalLookup,
    attribute,
    goal_hits,
    hit_conversations,
    resolve,
    unsupported_openings,
    users_to_resolve,
)
from tracker_svc.domain.feed import Publisher
from tracker_svc.domain.model import ConversionRecord, Opening, StoredEvent
from tracker_svc.store.protocols import IngestStore

# Longest batch id stored with a conversion to recognise a resend of the batch; a longer
# (or empty) one still works, but then an ack counts only what its own attempt recorded.
MAX_BATCH_ID = 128


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """What the ack of a batch reports of its valid, distinct events."""

    accepted: int  # stored by this attempt
    duplicates: int  # already stored
    conversions: int  # caused by the batch (see the module docstring)
    unsupported_channel_indexes: tuple[int, ...]  # openings first, then hits


class Ingestor:
    def __init__(
        self, store: IngestStore, goals: GoalLookup, feed: Publisher, clock: Clock
    ) -> None:
        self._store = store
        self._goals = goals
        self._feed = feed
        self._clock = clock

    async def ingest(
        self, account_id: str, batch_id: str, events: Sequence[StoredEvent],
        positions: Sequence[int],
    ) -> IngestOutcome:
        """Store ``events`` (valid, distinct; ``positions``: their indexes in the request)
        and record the conversions they cause."""
        unsupported = unsupported_openings(events, positions)
        records: list[ConversionRecord] = []
        hits = goal_hits(account_id, events, positions, self._goals)
        if hits:
            # Attribution reads what earlier batches stored and adds this batch's own
            # events, so it need not wait for this batch's insert; the conversions are then
            # written first (subscribers see them sooner) and the ack still waits for all.
            result = await self._attribute(account_id, hits, events)
            unsupported.extend(result.unsupported)
            kept_id = batch_id if len(batch_id) <= MAX_BATCH_ID else ""
            recorded_at = self._clock.now()
            records = [ConversionRecord.of(c, batch_id=kept_id, recorded_at=recorded_at)
                       for c in result.conversions]
        caused, duplicates = await asyncio.gather(
            self._record(records),
            self._store.insert_new_events(events),
        )
        # Opens and ratings are derived from the events as stored: a resent batch cut short
        # after its events were stored still gets them, and an id resent with other
        # content (a duplicate) changes nothing.
        stored = [e for e in events if e.key not in duplicates]
        if duplicates:
            stored += await self._store.events_by_key(duplicates)
        await asyncio.gather(
            self._store.insert_openings([Opening.of(e) for e in stored if e.kind == "opened"]),
            self._store.record_ratings(account_id, [e for e in stored if e.kind == "rated"]),
        )
        return IngestOutcome(
            accepted=len(events) - len(duplicates), duplicates=len(duplicates),
            conversions=caused, unsupported_channel_indexes=tuple(unsupported),
        )

    async def _record(self, records: list[ConversionRecord]) -> int:
        """Insert conversions and publish the new ones to live subscribers at once; how many
        the batch caused (new ones, and those an earlier attempt of it recorded)."""
        with self._feed.inserting([r.id for r in records]):
            existing = await self._store.insert_conversions(records)
            self._feed.publish([r for r in records if r.id not in existing])
        caused = len(records) - len(existing)
        ours = {r.id: r for r in records if r.id in existing and r.batch_id}
        if ours:
            origins = await self._store.conversion_origins(ours)
            caused += sum(
                origin == (ours[record_id].batch_id, ours[record_id].hit_event_id)
                for record_id, origin in origins.items()
            )
        return caused

    async def _attribute(
        self, account_id: str, hits: list[GoalHit], batch: Sequence[StoredEvent]
    ) -> BatchAttribution:
        """Read the stored history ``hits`` need (two rounds: the hit conversations depend
        on the end users' openings) and attribute them with the batch's own events."""
        users = users_to_resolve(hits)
        opens = await self._store.latest_opens(account_id, users) if users else []
        hits = resolve(hits, batch, opens)
        events = await self._store.conversation_events(account_id, hit_conversations(hits))
        return attribute(hits, batch, events)
