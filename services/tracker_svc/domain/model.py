"""The tracker's typed model: stored events, openings, goals, credits and conversions.

Frozen dataclasses, no I/O; the types made once per event (``StoredEvent``, ``Agent``,
``Transaction``, ``Money``, ``Opening``) are NamedTuples, as immutable and as typed but built
in C: a 19-field frozen dataclass took 1.55 µs to build against 0.38 µs, and the tracker
builds one per event ingested and one per stored event it reads back for attribution. The
documents they are stored as (field names, ``_id`` forms) belong to
``tracker_svc.store.documents``; the protobuf messages to ``tracker_svc.api``. Enum values
are kept as the proto enum names without prefix ("WEB_WIDGET", "LAST_TOUCH"), which is
also how they are stored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, NamedTuple

EventKind = Literal["opened", "assigned", "unassigned", "message", "closed", "rated", "activity"]
# Conversation kinds that make up conversation state (activity and ratings are not).
STATE_KINDS: tuple[EventKind, ...] = ("opened", "assigned", "unassigned", "message", "closed")
# What a report's agent activity is computed from.
ACTIVITY_KINDS: tuple[EventKind, ...] = ("message", "assigned", "unassigned", "closed")
UNSUPPORTED_CHANNELS = frozenset({"THIRD_PARTY_BOT", "UNITY_SDK"})


def event_key(account_id: str, event_id: str) -> str:
    """An event's identity: a resent event has the same key (a duplicate)."""
    return f"{account_id}:{event_id}"


def rating_key(account_id: str, conversation_id: str) -> str:
    return f"{account_id}:{conversation_id}"


RatingOrder = tuple[dt.datetime, str]  # (occurred_at, event id) of a "rated" event


def rating_supersedes(new: RatingOrder, held: RatingOrder) -> bool:
    """Whether a rating replaces the one held for its conversation: the latest counts, by
    time, then by event id (docs/rules.md D14, D21)."""
    return new > held


def conversion_key(account_id: str, goal_id: str, conversation_id: str) -> str:
    """One conversion per (goal, conversation): the key makes that hold across replicas."""
    return f"{account_id}:{goal_id}:{conversation_id}"


class Money(NamedTuple):
    """An amount as the canonical decimal string the API accepted (``money.normalize_amount``)."""

    currency_code: str
    amount: str


class Agent(NamedTuple):
    id: str
    name: str = ""
    email: str = ""
    group_id: str = ""
    skill: str = ""
    user_type: str | None = None  # HUMAN | BOT
    survey_bot: bool = False


class Transaction(NamedTuple):
    value: Money
    brand_event_id: str
    event_type: str | None  # PURCHASE | LEAD | ... (None: not given)


class StoredEvent(NamedTuple):
    """An accepted event. ``key`` is ``event_key(account_id, event_id)``; the fields after
    ``conversation_id`` belong to the kinds named beside them (others leave the default)."""

    key: str
    account_id: str
    event_id: str
    kind: EventKind
    at: dt.datetime  # occurred_at, UTC, whole milliseconds
    received_at: dt.datetime
    conversation_id: str | None  # None: an activity that names none
    end_user_id: str = ""  # opened, activity
    channel: str = ""  # opened
    skill: str = ""  # opened
    agent: Agent | None = None  # assigned
    start_reason: str | None = None  # assigned
    agent_id: str = ""  # unassigned
    end_reason: str | None = None  # unassigned
    author_type: str = ""  # message: END_USER | AGENT | BOT | SYSTEM
    author_id: str = ""  # message
    rating: str = ""  # rated
    url: str = ""  # activity
    transaction: Transaction | None = None  # activity


class Opening(NamedTuple):
    """An "opened" event as kept to find an end user's latest conversation."""

    key: str  # the opened event's key
    account_id: str
    end_user_id: str
    conversation_id: str
    at: dt.datetime

    @classmethod
    def of(cls, event: StoredEvent) -> Opening:
        assert event.conversation_id is not None  # an opening always names its conversation
        return cls(event.key, event.account_id, event.end_user_id, event.conversation_id,
                   event.at)


@dataclass(frozen=True, slots=True)
class TrackedGoal:
    """What attribution needs of a goal, as the config service last described it."""

    id: str
    account_id: str
    name: str
    goal_type: str | None
    model: str | None  # FIRST_TOUCH | LAST_TOUCH | ALL_TOUCHES (None: unknown, never matched)
    period_days: int
    group_ids: frozenset[str]
    value: Money | None
    active: bool
    tracking_start: dt.datetime | None
    tracking_end: dt.datetime | None  # exclusive
    revision: int = 0

    def tracked_at(self, when: dt.datetime) -> bool:
        """Active, started, and not past its end date at ``when``."""
        if not self.active or self.tracking_start is None or when < self.tracking_start:
            return False
        return self.tracking_end is None or when < self.tracking_end


@dataclass(frozen=True, slots=True)
class Credit:
    """An agent credited for a conversion, as attribution decides it."""

    agent: Agent
    assignment_time: dt.datetime
    contact_duration: dt.timedelta


@dataclass(frozen=True, slots=True)
class Conversion:
    """What a hit converted (docs/rules.md §4 "A conversion records"). Goal fields are the
    goal's as known at the hit."""

    key: str  # conversion_key(account, goal, conversation): one per goal and conversation
    goal: TrackedGoal
    conversation_id: str
    end_user_id: str
    channel: str
    skill: str
    conversation_open_time: dt.datetime | None
    conversion_time: dt.datetime
    url: str
    hit_event_id: str
    event_type: str | None  # the transaction's, as sent (None: no transaction)
    brand_event_id: str
    value: Money | None  # the event's, else the goal's
    credits: tuple[Credit, ...]


@dataclass(frozen=True, slots=True)
class RecordedCredit:
    agent: Agent
    assignment_time: dt.datetime
    contact_duration_ms: int


@dataclass(frozen=True, slots=True)
class ConversionRecord:
    """A recorded conversion, as stored and as read back (ListConversions, the feed)."""

    id: str  # conversion_key(...)
    account_id: str
    goal_id: str
    goal_name: str
    goal_type: str | None
    attribution_model: str | None
    conversation_id: str
    end_user_id: str
    channel: str
    skill: str
    conversion_time: dt.datetime
    conversation_open_time: dt.datetime | None
    event_type: str | None
    brand_event_id: str
    url: str
    hit_event_id: str
    transaction_value: Money | None
    credits: tuple[RecordedCredit, ...]
    recorded_at: dt.datetime | None = None
    batch_id: str = ""  # the ingest batch that recorded it ("" if none or over 128 chars)

    @property
    def credited_agent_ids(self) -> list[str]:
        return sorted({c.agent.id for c in self.credits})

    @property
    def credited_group_ids(self) -> list[str]:
        return sorted({c.agent.group_id for c in self.credits})

    @classmethod
    def of(cls, conversion: Conversion, *, batch_id: str,
           recorded_at: dt.datetime) -> ConversionRecord:
        goal = conversion.goal
        return cls(
            id=conversion.key, account_id=goal.account_id, goal_id=goal.id,
            goal_name=goal.name, goal_type=goal.goal_type, attribution_model=goal.model,
            conversation_id=conversion.conversation_id, end_user_id=conversion.end_user_id,
            channel=conversion.channel, skill=conversion.skill,
            conversion_time=conversion.conversion_time,
            conversation_open_time=conversion.conversation_open_time,
            event_type=conversion.event_type, brand_event_id=conversion.brand_event_id,
            url=conversion.url, hit_event_id=conversion.hit_event_id,
            transaction_value=conversion.value,
            credits=tuple(
                RecordedCredit(
                    c.agent, c.assignment_time,
                    # As stored since the first release (float seconds to ms).
                    int(c.contact_duration.total_seconds() * 1000),
                )
                for c in conversion.credits
            ),
            recorded_at=recorded_at, batch_id=batch_id,
        )


@dataclass(frozen=True, slots=True)
class ReportConversion:
    """What a report reads of one conversion."""

    id: str
    goal_id: str
    goal_name: str
    goal_type: str | None
    conversation_id: str
    skill: str
    conversation_open_time: dt.datetime
    event_type: str | None
    transaction_value: Money | None
    credited: tuple[Agent, ...]  # the credited agents, in credit order


@dataclass(frozen=True, slots=True)
class ConversionFilter:
    """Which of an account's conversions a ListConversions page reads ("" / None: any)."""

    account_id: str
    conversation_id: str = ""
    goal_id: str = ""
    agent_id: str = ""  # a credited agent
    start: dt.datetime | None = None  # conversion_time, inclusive
    end: dt.datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class ReportFilter:
    """Which conversions a report reads: those whose conversation opened in [start, end),
    narrowed by any of the given sets (credits are re-checked one by one by the caller)."""

    account_id: str
    start: dt.datetime
    end: dt.datetime
    skills: frozenset[str] = frozenset()
    goal_ids: frozenset[str] = frozenset()
    agent_ids: frozenset[str] = frozenset()
    group_ids: frozenset[str] = frozenset()
