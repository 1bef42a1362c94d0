"""Batch attribution (docs/rules.md §4, §7 D21): a batch's goal hits become conversions.

Pure: no I/O, no clock. The caller reads what earlier batches stored and passes it in; the
core merges it with the batch's own events, so a batch is attributed before it is stored.
``attribution.py`` holds the per-conversation rules (``build_state``, ``credits_for``);
this module adds what only a batch has:

- **hits**: an activity whose URL matches a goal that is tracked at the activity's time
  (``goal_hits``);
- **the hit's conversation**: the one its event names, or else the end user's latest
  conversation opened at or before the hit (``resolve``);
- **history**: stored and in-batch records, each once (a resent event is both), ordered by
  (``at``, ``_id``), so same-instant events go in event id order (D21);
- **one conversion per goal and conversation**: hits go in (time, event id) order and the
  first that credits an agent converts; later hits of that goal there change nothing. An
  earlier batch's conversion is not known here: the result carries the same
  ``conversion_key``, so the store's unique ``_id`` makes it a no-op;
- **unsupported channels**: a hit in a conversation on a channel that never converts is
  reported by its batch index, as is an opening on one (``unsupported_openings``).

The caller (``ingest.Ingestor``) does the reads in two rounds because the second depends
on the first: ``users_to_resolve(hits)`` -> stored opens -> ``resolve`` ->
``hit_conversations`` -> stored events -> ``attribute``. ``attribute_batch`` is the same in
one call for a caller that already holds everything (the ingest benchmark's oracle, tests).

Inputs and outputs are the typed model (``domain.model``): ``StoredEvent`` for events,
``Opening`` for the stored "opens" records (a batch's "opened" events serve as openings
too), ``Conversion`` for the result.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from tracker_svc.domain.attribution import ConversationState, build_state, credits_for
from tracker_svc.domain.model import (
    STATE_KINDS,
    UNSUPPORTED_CHANNELS,
    Conversion,
    Credit,
    Money,
    Opening,
    StoredEvent,
    TrackedGoal,
    conversion_key,
)


class GoalLookup(Protocol):
    """The goal table as attribution sees it (``goal_table.GoalTable``,
    ``adapters.goal_feed.GoalCache``)."""

    def matching(self, account_id: str, url: str) -> list[TrackedGoal]:
        """The account's active goals with a condition matching ``url``, ordered by id."""
        ...


@dataclass(frozen=True, slots=True)
class GoalHit:
    """An activity matching a goal tracked at its time; ``index`` is its place in the
    batch request (for the ack); ``conversation_id`` is None until resolved."""

    goal: TrackedGoal
    event: StoredEvent
    index: int
    conversation_id: str | None


@dataclass(frozen=True, slots=True)
class BatchAttribution:
    """The conversions of a batch's hits (in the order their hits converted) and the batch
    indexes of hits whose conversation is on an unsupported channel (ascending)."""

    conversions: tuple[Conversion, ...]
    unsupported: tuple[int, ...]


def goal_hits(
    account_id: str, events: Sequence[StoredEvent], positions: Sequence[int], goals: GoalLookup
) -> list[GoalHit]:
    """The hits among a batch's ``events`` (``positions``: their indexes in the request):
    one per activity and goal matching its URL and tracked at its time."""
    return [
        GoalHit(goal, event, index, event.conversation_id)
        for event, index in zip(events, positions, strict=True)
        if event.kind == "activity"
        for goal in goals.matching(account_id, event.url)
        if goal.tracked_at(event.at)
    ]


def unsupported_openings(events: Sequence[StoredEvent], positions: Sequence[int]) -> list[int]:
    """Indexes of the batch's openings on a channel that never converts (stored all the
    same; the ack names them)."""
    return [
        index
        for event, index in zip(events, positions, strict=True)
        if event.kind == "opened" and event.channel in UNSUPPORTED_CHANNELS
    ]


def users_to_resolve(hits: Iterable[GoalHit]) -> set[str]:
    """End users whose openings ``resolve`` needs: those of hits naming no conversation."""
    return {h.event.end_user_id for h in hits if h.conversation_id is None}


def resolve(
    hits: Sequence[GoalHit], batch: Sequence[StoredEvent], opens: Sequence[Opening]
) -> list[GoalHit]:
    """``hits`` with their conversations: each unresolved hit takes its end user's latest
    opening at or before it, from the stored ``opens`` and the ``batch``'s own; a hit with
    none is dropped (no conversation, no conversion)."""
    users = users_to_resolve(hits)
    if not users:
        return [h for h in hits if h.conversation_id is not None]
    fresh = [Opening.of(e) for e in batch if e.kind == "opened" and e.end_user_id in users]
    by_user: dict[str, list[Opening]] = defaultdict(list)
    for record in merge(opens, fresh):
        by_user[record.end_user_id].append(record)
    resolved = []
    for hit in hits:
        if hit.conversation_id is None:
            at = hit.event.at
            found = next(
                (o.conversation_id for o in reversed(by_user[hit.event.end_user_id])
                 if o.at <= at),
                None,
            )
            if found is None:
                continue
            hit = dataclasses.replace(hit, conversation_id=found)
        resolved.append(hit)
    return resolved


def hit_conversations(hits: Iterable[GoalHit]) -> set[str]:
    """The conversations whose stored events ``attribute`` needs (of resolved hits)."""
    return {h.conversation_id for h in hits if h.conversation_id is not None}


def attribute(
    hits: Sequence[GoalHit], batch: Sequence[StoredEvent], events: Sequence[StoredEvent]
) -> BatchAttribution:
    """The conversions of resolved ``hits``, from the hit conversations' stored ``events``
    merged with the ``batch``'s own (unresolved hits are skipped)."""
    wanted = hit_conversations(hits)
    in_batch = [e for e in batch if e.kind in STATE_KINDS and e.conversation_id in wanted]
    history: dict[str | None, list[StoredEvent]] = defaultdict(list)
    for event in merge(events, in_batch):
        history[event.conversation_id].append(event)

    conversions: dict[str, Conversion] = {}
    unsupported: set[int] = set()
    states: dict[tuple[str, dt.datetime], ConversationState] = {}
    # Same-instant hits go in event id order, as stored events do (D21), so which of two
    # simultaneous hits converts does not depend on batch order.
    for hit in sorted(hits, key=lambda h: (h.event.at, h.event.key)):
        conversation_id = hit.conversation_id
        if conversation_id is None:
            continue
        at = hit.event.at
        state = states.get((conversation_id, at))
        if state is None:
            state = build_state(conversation_id, history[conversation_id], at)
            states[(conversation_id, at)] = state
        if state.channel in UNSUPPORTED_CHANNELS:
            unsupported.add(hit.index)
            continue
        key = conversion_key(hit.goal.account_id, hit.goal.id, conversation_id)
        if key in conversions:
            continue  # an earlier hit of this batch converted this goal here already
        credits = credits_for(hit.goal, state, at)
        if credits:
            conversions[key] = _conversion(key, hit, conversation_id, state, credits)
    return BatchAttribution(tuple(conversions.values()), tuple(sorted(unsupported)))


def attribute_batch(
    hits: Sequence[GoalHit],
    batch: Sequence[StoredEvent],
    *,
    opens: Sequence[Opening] = (),
    events: Sequence[StoredEvent] = (),
) -> BatchAttribution:
    """``resolve`` then ``attribute``, for a caller holding the stored ``opens`` of the
    hits' end users and the stored ``events`` of their conversations (or none: a batch that
    is the whole history)."""
    return attribute(resolve(hits, batch, opens), batch, events)


_Record = TypeVar("_Record", StoredEvent, Opening)


def merge(stored: Iterable[_Record], fresh: Iterable[_Record]) -> list[_Record]:
    """Stored and in-batch records, each once (a resent event is both: the stored one
    wins), oldest first, same instant by key (D21)."""
    by_key = {record.key: record for record in stored}
    for record in fresh:
        by_key.setdefault(record.key, record)
    return sorted(by_key.values(), key=lambda r: (r.at, r.key))


def _conversion(
    key: str, hit: GoalHit, conversation_id: str, state: ConversationState,
    credits: list[Credit],
) -> Conversion:
    goal, event = hit.goal, hit.event
    transaction = event.transaction
    value: Money | None = transaction.value if transaction is not None else goal.value
    return Conversion(
        key=key,
        goal=goal,
        conversation_id=conversation_id,
        end_user_id=state.end_user_id,
        channel=state.channel,
        skill=state.skill,
        conversation_open_time=state.opened_at,
        conversion_time=event.at,
        url=event.url,
        hit_event_id=event.event_id,
        event_type=transaction.event_type if transaction else None,
        brand_event_id=transaction.brand_event_id if transaction else "",
        value=value,
        credits=tuple(credits),
    )
