"""IngestEvents: validate a batch, store it, attribute its goal hits, acknowledge.

Per batch: only if the batch has goal hits, one round of reads (the end users' opens, the
hit conversations' events — stored ones merged with the batch's own); then one round of
bulk inserts: conversions, events and "opened" records. Duplicates are found by the unique ``_id``s,
so replays and concurrent tracker replicas never double anything. A resent hit is
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
import datetime as dt
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
from grpc import aio

from goalflow_common.auth import current_principal
from goalflow_common.clock import Clock
from goalflow_common.errors import Unavailable
from goalflow_common.pb.goals.v1 import tracker_pb2
from goalflow_common.server import Lifecycle
from tracker_svc.attribution import (
    UNSUPPORTED_CHANNELS,
    ConversationState,
    TrackedGoal,
    build_state,
    credits_for,
)
from tracker_svc.events import Rejected, to_document
from tracker_svc.feed import ConversionFeed
from tracker_svc.goals import GoalCache
from tracker_svc.store import STATE_KINDS, TrackerStore, conversion_key

log = structlog.get_logger(__name__)

GOALS_SYNC_WAIT_S = 5.0
# Longest batch id stored with a conversion to recognise a resend of the batch; a longer
# (or empty) one still works, but then an ack counts only what its own attempt recorded.
MAX_BATCH_ID = 128


@dataclass(slots=True)
class Hit:
    """An activity matching a tracked goal: the goal, the event and its conversation."""

    goal: TrackedGoal
    event: dict[str, Any]
    index: int
    conversation_id: str | None = None


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

        opens = [open_record(d) for d in docs if d["kind"] == "opened"]
        for doc, index in zip(docs, positions, strict=True):
            if doc["kind"] == "opened" and doc["channel"] in UNSUPPORTED_CHANNELS:
                ack.unsupported_channel_indexes.append(index)
        hits = [
            Hit(goal, doc, index, doc["conversation_id"])
            for doc, index in zip(docs, positions, strict=True)
            if doc["kind"] == "activity"
            for goal in self._goals.matching(account_id, doc["url"])
            if goal.tracked_at(doc["at"])
        ]
        conversions: list[dict[str, Any]] = []
        if hits:
            # Attribution reads what earlier batches stored and adds this batch's own
            # events, so it need not wait for this batch's insert; the conversions are then
            # written first (subscribers see them sooner) and the ack still waits for all.
            conversions, unsupported = await self._attribute(account_id, hits, docs, opens)
            ack.unsupported_channel_indexes.extend(sorted(unsupported))
            batch_id = batch.batch_id if len(batch.batch_id) <= MAX_BATCH_ID else ""
            for conversion in conversions:
                conversion["batch_id"] = batch_id
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
        self,
        account_id: str,
        hits: list[Hit],
        batch: list[dict[str, Any]],
        batch_opens: list[dict[str, Any]],
    ) -> tuple[list[dict[str, Any]], set[int]]:
        """The conversion documents of ``hits`` (from stored events plus ``batch``), and the
        indexes of hits whose conversation is on a channel that never converts."""
        unresolved = [h for h in hits if h.conversation_id is None]
        if unresolved:
            users = {h.event["end_user_id"] for h in unresolved}
            stored = await self._store.latest_opens(account_id, users)
            by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for record in _merge(stored, [o for o in batch_opens if o["end_user_id"] in users]):
                by_user[record["end_user_id"]].append(record)
            for hit in unresolved:
                hit.conversation_id = next(
                    (o["conversation_id"] for o in reversed(by_user[hit.event["end_user_id"]])
                     if o["at"] <= hit.event["at"]),
                    None,
                )
        hits = [h for h in hits if h.conversation_id is not None]
        wanted = {h.conversation_id for h in hits}
        stored = await self._store.conversation_events(account_id, wanted)
        by_conversation: dict[str, list[dict[str, Any]]] = defaultdict(list)
        in_batch = [d for d in batch if d["kind"] in STATE_KINDS and d["conversation_id"] in wanted]
        for event in _merge(stored, in_batch):
            by_conversation[event["conversation_id"]].append(event)

        conversions: dict[str, dict[str, Any]] = {}
        unsupported: set[int] = set()
        states: dict[tuple[str, dt.datetime], ConversationState] = {}
        # Same-instant hits go in event id order, as stored events do (docs/rules.md §7 D21),
        # so which of two simultaneous hits converts does not depend on batch order.
        for hit in sorted(hits, key=lambda h: (h.event["at"], h.event["_id"])):
            at = hit.event["at"]
            key = (hit.conversation_id, at)
            if key not in states:
                history = by_conversation[hit.conversation_id]
                states[key] = build_state(hit.conversation_id, history, at)
            state = states[key]
            if state.channel in UNSUPPORTED_CHANNELS:
                unsupported.add(hit.index)
                continue
            doc_id = conversion_key(account_id, hit.goal.id, hit.conversation_id)
            if doc_id in conversions:
                continue  # an earlier hit of this batch converted this goal here already
            credits = credits_for(hit.goal, state, at)
            if credits:
                conversions[doc_id] = _conversion(doc_id, hit, state, credits, self._clock.now())
        return list(conversions.values()), unsupported


def open_record(event: dict[str, Any]) -> dict[str, Any]:
    """The ``opens`` record of a stored "opened" event."""
    return {"_id": event["_id"], "account_id": event["account_id"],
            "end_user_id": event["end_user_id"], "conversation_id": event["conversation_id"],
            "at": event["at"]}


def _merge(stored: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored and in-batch records, each once (a resent event is both), oldest first."""
    by_id = {doc["_id"]: doc for doc in stored}
    for doc in fresh:
        by_id.setdefault(doc["_id"], doc)
    return sorted(by_id.values(), key=lambda d: (d["at"], d["_id"]))


def _conversion(
    doc_id: str, hit: Hit, state: ConversationState, credits: list, now: dt.datetime
) -> dict[str, Any]:
    goal, event = hit.goal, hit.event
    transaction = event.get("transaction")
    if transaction is not None:
        value = {"currency_code": transaction["currency_code"], "amount": transaction["amount"]}
    else:
        value = goal.value
    return {
        "_id": doc_id,
        "account_id": goal.account_id,
        "goal_id": goal.id,
        "goal_name": goal.name,
        "goal_type": goal.goal_type,
        "attribution_model": goal.model,
        "conversation_id": hit.conversation_id,
        "end_user_id": state.end_user_id,
        "channel": state.channel,
        "skill": state.skill,
        "conversion_time": event["at"],
        "conversation_open_time": state.opened_at,
        "event_type": transaction["event_type"] if transaction else None,
        "brand_event_id": transaction["brand_event_id"] if transaction else "",
        "url": event["url"],
        "hit_event_id": event["event_id"],
        "transaction_value": value,
        "credits": [
            {
                "agent": credit.agent,
                "assignment_time": credit.assignment_time,
                "contact_duration_ms": int(credit.contact_duration.total_seconds() * 1000),
            }
            for credit in credits
        ],
        "credited_agent_ids": sorted({c.agent["id"] for c in credits}),
        "credited_group_ids": sorted({c.agent["group_id"] for c in credits}),
        "recorded_at": now,
    }
