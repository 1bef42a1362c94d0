"""IngestEvents: validate a batch, store it, attribute its goal hits, acknowledge.

This is the I/O around ``batch_attribution`` (the pure rules). Per batch: only if the batch
has goal hits, the reads attribution needs (the end users' opens, then the hit
conversations' events; the core merges them with the batch's own); then one round of bulk
inserts: conversions, events and "opened" records. Duplicates are found by the unique
``_id``s, so replays and concurrent tracker replicas never double anything. A resent hit is
attributed again (the conversion's ``_id`` makes that a no-op if it was recorded), so a
crash between storing a batch and recording its conversions loses nothing.

The ack's ``conversions`` counts what the batch caused: conversions this attempt recorded,
plus those an earlier attempt of the same batch (same ``batch_id``, same hit event)
recorded. A producer resends a batch whose ack it never got, so without the second part a
tracker restart after recording a batch but before its ack arrived made the producer's
total fall short (1,575 reported for 1,800 recorded). A batch sent again under a new id
(the same file sent twice) counts nothing again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import structlog
from grpc import aio

from goalflow_common.auth import current_principal
from goalflow_common.clock import Clock
from goalflow_common.errors import Unavailable
from goalflow_common.pb.goals.v1 import tracker_pb2
from goalflow_common.server import Lifecycle
from tracker_svc.batch_attribution import (
    BatchAttribution,
    GoalHit,
    attribute,
    goal_hits,
    hit_conversations,
    resolve,
    unsupported_openings,
    users_to_resolve,
)
from tracker_svc.events import Rejected, to_document
from tracker_svc.feed import ConversionFeed
from tracker_svc.goals import GoalCache
from tracker_svc.store import TrackerStore, conversion_document, open_record

log = structlog.get_logger(__name__)

GOALS_SYNC_WAIT_S = 5.0
# Longest batch id stored with a conversion to recognise a resend of the batch; a longer
# (or empty) one still works, but then an ack counts only what its own attempt recorded.
MAX_BATCH_ID = 128


class Ingestor:
    def __init__(
        self,
        store: TrackerStore,
        goals: GoalCache,
        feed: ConversionFeed,
        clock: Clock,
        lifecycle: Lifecycle,
        *,
        max_batch: int,
    ) -> None:
        self._store = store
        self._goals = goals
        self._feed = feed
        self._clock = clock
        self._lifecycle = lifecycle
        self._max_batch = max_batch

    async def stream(
        self, requests: AsyncIterator[tracker_pb2.IngestEventsRequest], context: aio.ServicerContext
    ) -> AsyncIterator[tracker_pb2.IngestEventsResponse]:
        account_id = current_principal().require_account()
        if not await self._goals.wait_synced(GOALS_SYNC_WAIT_S):
            raise Unavailable("goals are not loaded from the config service yet; retry")
        batches = aiter(requests)
        while True:
            # A batch that has started is finished and acknowledged; on shutdown no new one
            # is started, and the producer resends what was not acknowledged. Waiting for the
            # next batch also ends on shutdown: an idle stream would otherwise hold the
            # process for the whole grace period before being cancelled.
            stopped, batch = await self._lifecycle.wait_or(anext(batches, None))
            if stopped or self._lifecycle.stopping.is_set():
                raise Unavailable("the tracker is shutting down; resend unacknowledged batches")
            if batch is None:
                return
            yield await self.process(batch, account_id)

    async def process(
        self, batch: tracker_pb2.IngestEventsRequest, account_id: str
    ) -> tracker_pb2.IngestEventsResponse:
        ack = tracker_pb2.IngestEventsResponse(batch_id=batch.batch_id)
        if len(batch.events) > self._max_batch:
            ack.rejected.add(
                index=0, field="events",
                reason=f"a batch holds at most {self._max_batch} events (got {len(batch.events)})",
            )
            return ack
        now = self._clock.now()
        docs: list[dict[str, Any]] = []
        positions: list[int] = []
        seen: set[str] = set()
        for index, event in enumerate(batch.events):
            try:
                doc = to_document(event, account_id, now)
            except Rejected as exc:
                ack.rejected.add(index=index, event_id=event.event_id[:128], field=exc.field,
                                 reason=exc.reason)
                continue
            if doc["_id"] in seen:  # the same event twice in one batch
                ack.duplicates += 1
                continue
            seen.add(doc["_id"])
            docs.append(doc)
            positions.append(index)

        ack.unsupported_channel_indexes.extend(unsupported_openings(docs, positions))
        conversions: list[dict[str, Any]] = []
        hits = goal_hits(account_id, docs, positions, self._goals)
        if hits:
            # Attribution reads what earlier batches stored and adds this batch's own
            # events, so it need not wait for this batch's insert; the conversions are then
            # written first (subscribers see them sooner) and the ack still waits for all.
            result = await self._attribute(account_id, hits, docs)
            ack.unsupported_channel_indexes.extend(result.unsupported)
            batch_id = batch.batch_id if len(batch.batch_id) <= MAX_BATCH_ID else ""
            recorded_at = self._clock.now()
            conversions = [
                conversion_document(c, batch_id=batch_id, recorded_at=recorded_at)
                for c in result.conversions
            ]
        ack.conversions, duplicates = await asyncio.gather(
            self._record(conversions),
            self._store.insert_new(self._store.events, docs),
        )
        # Opens and ratings are derived from the events as stored: a resent batch cut short
        # after its events were stored still gets them, and an id resent with other
        # content (a duplicate) changes nothing.
        stored = [d for d in docs if d["_id"] not in duplicates]
        if duplicates:
            stored += await self._store.events.find({"_id": {"$in": sorted(duplicates)}}).to_list()
        await asyncio.gather(
            self._store.insert_new(self._store.opens, [open_record(d) for d in stored
                                                       if d["kind"] == "opened"]),
            self._store.record_ratings(account_id, [d for d in stored if d["kind"] == "rated"]),
        )
        ack.duplicates += len(duplicates)
        ack.accepted = len(docs) - len(duplicates)
        return ack

    async def _record(self, conversions: list[dict[str, Any]]) -> int:
        """Insert conversions and publish the new ones to live subscribers at once; how many
        the batch caused (new ones, and those an earlier attempt of it recorded)."""
        with self._feed.inserting([doc["_id"] for doc in conversions]):
            existing = await self._store.insert_new(self._store.conversions, conversions)
            self._feed.publish([doc for doc in conversions if doc["_id"] not in existing])
        caused = len(conversions) - len(existing)
        ours = {doc["_id"]: doc for doc in conversions if doc["_id"] in existing
                and doc["batch_id"]}
        if ours:
            # ``$in`` on ``_id`` is served from the primary key (see ``latest_ratings``).
            stored = self._store.conversions.find(
                {"_id": {"$in": sorted(ours)}}, {"batch_id": 1, "hit_event_id": 1})
            caused += sum([
                (doc.get("batch_id"), doc.get("hit_event_id"))
                == (ours[doc["_id"]]["batch_id"], ours[doc["_id"]]["hit_event_id"])
                async for doc in stored
            ])
        return caused

    async def _attribute(
        self, account_id: str, hits: list[GoalHit], batch: list[dict[str, Any]]
    ) -> BatchAttribution:
        """Read the stored history ``hits`` need (two rounds: the hit conversations depend
        on the end users' openings) and attribute them with the batch's own events."""
        users = users_to_resolve(hits)
        opens = await self._store.latest_opens(account_id, users) if users else []
        hits = resolve(hits, batch, opens)
        events = await self._store.conversation_events(account_id, hit_conversations(hits))
        return attribute(hits, batch, events)
