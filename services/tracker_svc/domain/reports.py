"""Report maths (docs/rules.md §5): conversions and agent activity over a date range,
aggregated from typed rows (pure: ``aggregate``, ``conversation_activity``, ``metrics``)
and the workflow reading them through the store's ``ReportStore`` (``Reporter``).

Definitions (the lead engineer's decisions, implemented exactly):

- **Universe**: the account's conversions whose ``conversation_open_time`` falls in
  [start_date 00:00, end_date + 1 00:00) in the caller's UTC offset (``utc_offset_minutes``,
  -720..840, whole minutes) — a conversion is reported under the day its conversation
  started (docs/rules.md §5). Filters: ``skills`` (conversion skill), ``group_ids`` (credited
  agent's group), ``agent_ids`` (credited agent's id), ``goal_ids``.
- **Credit rows**: each (conversion, credit) pair passing the filters. A credit passes when
  its agent is in ``agent_ids`` and its group in ``group_ids`` (each when given). When an
  agent or group filter is given, a conversion with no passing credit is left out.
- **Grouping keys**: SKILL (conversion skill), GROUP (credit agent's group id), AGENT
  (credit agent id; label = agent name), GOAL (goal id; label = goal name as recorded),
  DAY (ISO date of the open time in the offset), DAY_OF_WEEK (0 = Sunday .. 6 = Saturday;
  label "Sunday".."Saturday"), WEEK (ISO date of the Sunday starting the open time's week),
  HOUR (0..23; label "00:00".."23:00"), DAY_OF_WEEK_HOUR (both together, for a weekday x
  hour heat map: key "d-h", "1-13" = Monday 13:00; label "Monday 13:00"). Rows are sorted
  by key, numeric keys numerically (DAY_OF_WEEK_HOUR by weekday, then hour).
  Where a name varies between conversions (a renamed goal or agent), the label is the name
  on the most recently opened conversation.
- **conversions**: distinct conversions in the row. Per AGENT each credited agent gets +1
  (the report article's "each agent +1", docs/rules.md §4); a conversion crediting agents
  of two groups counts 1 in each GROUP row.
- **transaction_values**: per currency, the sum over the row's distinct conversions of the
  recorded transaction value when it is not a lead value; **lead_values** the same for lead
  values: ``event_type == "LEAD"``, or no event type (the goal's own value, or an untyped
  transaction) on a ``GENERATE_LEADS`` goal (docs/rules.md §7 D13). Under ALL_TOUCHES each
  agent's row carries the full value.
  Sums are exact at any size (unbounded integer micros, ``goalflow_common.money``).
- **agent_messages / agent_responses / time_assigned_seconds**: from the conversation's
  stored events, once per DISTINCT (conversation, credited agent) pair in the row —
  messages authored by that agent (``author_id`` = agent id, ``author_type`` not
  END_USER); responses = runs of consecutive messages by that agent that follow a message
  by another participant (the conversation's first message starts no response); time
  assigned = the sum over the agent's segments of (end - start), a segment ending at the
  agent's unassignment, at the next assignment of another agent, at conversation close,
  or else at ``clock.now()``. A reassignment of the agent already assigned continues the
  same segment; a reopened conversation accrues time again from its next assignment.
  Metrics cover the whole conversation, not only the report range.
- **totals**: distinct conversions of the universe; each conversion's value once;
  activity over the distinct (conversation, agent) pairs of the universe.
- **Validation**: ``group_by`` is required; dates must be valid with start <= end and
  span at most 366 days; the offset must be within -720..840; each filter list holds at
  most 100 entries.

Conversation events are read in bulk (chunks of conversation ids), never one query per
conversation. Request parsing and validation are ``tracker_svc.api.reports``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from goalflow_common.clock import Clock
from goalflow_common.money import to_micros
from tracker_svc.domain.model import (
    ACTIVITY_KINDS,
    Agent,
    ReportConversion,
    ReportFilter,
    StoredEvent,
)
from tracker_svc.store.protocols import ReportStore

GROUPINGS = ("SKILL", "GROUP", "AGENT", "GOAL", "DAY", "DAY_OF_WEEK", "WEEK", "HOUR",
             "DAY_OF_WEEK_HOUR")
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MICROS_PER_SECOND = 1_000_000
_NUMERIC_KEYS = frozenset({"DAY_OF_WEEK", "HOUR", "DAY_OF_WEEK_HOUR"})


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """A validated GetReport request."""

    account_id: str
    start: dt.datetime  # UTC, inclusive
    end: dt.datetime  # UTC, exclusive
    offset: dt.timezone
    grouping: str  # one of GROUPINGS
    skills: frozenset[str]
    group_ids: frozenset[str]
    agent_ids: frozenset[str]
    goal_ids: frozenset[str]

    def credit_passes(self, agent: Agent) -> bool:
        if self.agent_ids and agent.id not in self.agent_ids:
            return False
        return not self.group_ids or agent.group_id in self.group_ids

    @property
    def rows_read(self) -> ReportFilter:
        return ReportFilter(self.account_id, self.start, self.end, self.skills,
                            self.goal_ids, self.agent_ids, self.group_ids)


@dataclass(slots=True)
class _Conversion:
    id: str
    conversation_id: str
    currency: str | None
    micros: int
    is_lead: bool


@dataclass(slots=True)
class Bucket:
    """One row (or the totals) while it is being accumulated."""

    label: str = ""
    conversions: set[str] = field(default_factory=set)
    transaction_micros: dict[str, int] = field(default_factory=dict)
    lead_micros: dict[str, int] = field(default_factory=dict)
    pairs: set[tuple[str, str]] = field(default_factory=set)  # (conversation, agent)

    def add_conversion(self, conversion: _Conversion) -> None:
        if conversion.id in self.conversions:
            return
        self.conversions.add(conversion.id)
        if conversion.currency is not None:
            sums = self.lead_micros if conversion.is_lead else self.transaction_micros
            sums[conversion.currency] = sums.get(conversion.currency, 0) + conversion.micros


@dataclass(slots=True)
class Activity:
    """One agent's activity in one conversation."""

    messages: int = 0
    responses: int = 0
    assigned_micros: int = 0


@dataclass(frozen=True, slots=True)
class Metrics:
    conversions: int
    transaction_micros: dict[str, int]  # currency -> sum
    lead_micros: dict[str, int]
    agent_messages: int
    agent_responses: int
    time_assigned_seconds: int


@dataclass(frozen=True, slots=True)
class ReportLine:
    key: str
    label: str
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class Report:
    rows: list[ReportLine]  # sorted by key, numeric keys numerically
    totals: Metrics


@dataclass(slots=True)
class Aggregate:
    """Rows by key and the totals, as conversions are added (``add``)."""

    query: ReportQuery
    rows: dict[str, Bucket] = field(default_factory=dict)
    totals: Bucket = field(default_factory=Bucket)

    def _bucket(self, key: str, label: str) -> Bucket:
        found = self.rows.get(key)
        if found is None:
            found = self.rows[key] = Bucket()
        found.label = label  # the most recently opened conversation's name wins
        return found

    def add(self, row: ReportConversion) -> None:
        """Add one conversion (in conversation-open order) to its rows and to the totals."""
        query = self.query
        credits = [agent for agent in row.credited if query.credit_passes(agent)]
        if not credits and (query.agent_ids or query.group_ids):
            return
        value = row.transaction_value
        conversion = _Conversion(
            id=row.id,
            conversation_id=row.conversation_id,
            currency=value.currency_code if value else None,
            micros=to_micros(value.amount) if value else 0,
            is_lead=is_lead_value(row),
        )
        pairs = {(conversion.conversation_id, agent.id) for agent in credits}
        self.totals.add_conversion(conversion)
        self.totals.pairs |= pairs
        if query.grouping in ("AGENT", "GROUP"):
            for agent in credits:
                if query.grouping == "AGENT":
                    bucket = self._bucket(agent.id, agent.name or agent.id)
                else:
                    bucket = self._bucket(agent.group_id, agent.group_id or "(no group)")
                bucket.add_conversion(conversion)
                bucket.pairs.add((conversion.conversation_id, agent.id))
        else:
            opened = row.conversation_open_time.astimezone(query.offset)
            bucket = self._bucket(*_conversation_key(query.grouping, opened, row))
            bucket.add_conversion(conversion)
            bucket.pairs |= pairs


def is_lead_value(row: ReportConversion) -> bool:
    """Whether a conversion's value is a lead value (docs/rules.md §7 D13): the event says
    so, or it names no type and the goal generates leads (its default value is a lead's)."""
    if row.event_type is None:
        return row.goal_type == "GENERATE_LEADS"
    return row.event_type == "LEAD"


def _micros(delta: dt.timedelta) -> int:
    return max(0, (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds)


def _conversation_key(
    grouping: str, opened: dt.datetime, row: ReportConversion
) -> tuple[str, str]:
    """(key, label) of a grouping that depends on the conversion, not on its credits."""
    if grouping == "SKILL":
        return row.skill, row.skill or "(no skill)"
    if grouping == "GOAL":
        return row.goal_id, row.goal_name or row.goal_id
    if grouping == "DAY":
        day = opened.date().isoformat()
        return day, day
    weekday = (opened.weekday() + 1) % 7  # Python's Monday = 0; the report's Sunday = 0
    if grouping == "DAY_OF_WEEK":
        return str(weekday), WEEKDAYS[weekday]
    if grouping == "WEEK":
        sunday = (opened.date() - dt.timedelta(days=weekday)).isoformat()
        return sunday, sunday
    if grouping == "HOUR":
        return str(opened.hour), f"{opened.hour:02d}:00"
    if grouping == "DAY_OF_WEEK_HOUR":
        return f"{weekday}-{opened.hour}", f"{WEEKDAYS[weekday]} {opened.hour:02d}:00"
    raise AssertionError(grouping)


class _Segments:
    """The assignee whose time is being counted in a conversation, and since when."""

    def __init__(self, activity: dict[str, Activity]) -> None:
        self.activity = activity
        self.assignee: str | None = None
        self.since: dt.datetime | None = None

    def end(self, at: dt.datetime) -> None:
        if self.assignee is not None and self.since is not None:
            _of(self.activity, self.assignee).assigned_micros += _micros(at - self.since)
        self.assignee, self.since = None, None


def _of(activity: dict[str, Activity], agent_id: str) -> Activity:
    found = activity.get(agent_id)
    if found is None:
        found = activity[agent_id] = Activity()
    return found


def conversation_activity(events: Iterable[StoredEvent], now: dt.datetime) -> dict[str, Activity]:
    """Each agent's messages, responses and assigned time in one conversation.

    ``events`` are the conversation's message/assigned/unassigned/closed events, oldest first.
    """
    activity: dict[str, Activity] = {}
    segments = _Segments(activity)
    previous_author: tuple[bool, str] | None = None
    for ev in events:
        kind, at = ev.kind, ev.at
        if kind == "message":
            by_end_user = ev.author_type == "END_USER"
            author = (by_end_user, ev.author_id)
            if not by_end_user:
                stats = _of(activity, author[1])
                stats.messages += 1
                if previous_author is not None and previous_author != author:
                    stats.responses += 1
            previous_author = author
        elif kind == "assigned":
            agent_id = ev.agent.id if ev.agent is not None else ""
            if agent_id and agent_id != segments.assignee:
                segments.end(at)
                segments.assignee, segments.since = agent_id, at
        elif kind == "closed" or (kind == "unassigned" and ev.agent_id == segments.assignee):
            segments.end(at)
    segments.end(now)
    return activity


def metrics(bucket: Bucket, activity: dict[str, dict[str, Activity]]) -> Metrics:
    """A row's (or the totals') figures: its conversions and values, and the activity of
    its distinct (conversation, agent) pairs."""
    messages = responses = micros = 0
    for conversation_id, agent_id in bucket.pairs:
        stats = activity.get(conversation_id, {}).get(agent_id)
        if stats is not None:
            messages += stats.messages
            responses += stats.responses
            micros += stats.assigned_micros
    return Metrics(
        conversions=len(bucket.conversions),
        transaction_micros=dict(bucket.transaction_micros),
        lead_micros=dict(bucket.lead_micros),
        agent_messages=messages,
        agent_responses=responses,
        time_assigned_seconds=micros // MICROS_PER_SECOND,
    )


def _numeric_key(key: str) -> tuple[int, ...]:
    """"13" -> (13,); "1-13" (weekday-hour) -> (1, 13)."""
    return tuple(int(part) for part in key.split("-"))


def report_of(aggregate: Aggregate, activity: dict[str, dict[str, Activity]]) -> Report:
    """The finished report: rows sorted by key (numeric keys numerically), and totals."""
    rows = aggregate.rows
    if aggregate.query.grouping in _NUMERIC_KEYS:
        keys = sorted(rows, key=_numeric_key)
    else:
        keys = sorted(rows)
    return Report(
        rows=[ReportLine(key, rows[key].label, metrics(rows[key], activity)) for key in keys],
        totals=metrics(aggregate.totals, activity),
    )


class Reporter:
    """Builds reports from the store's report rows and conversation events."""

    def __init__(self, store: ReportStore, clock: Clock, *, event_chunk: int = 500) -> None:
        self._store = store
        self._clock = clock
        self._event_chunk = event_chunk

    async def report(self, query: ReportQuery) -> Report:
        now = self._clock.now()
        aggregate = Aggregate(query)
        async for row in self._store.report_rows(query.rows_read):
            aggregate.add(row)
        activity = await self._activity(query.account_id, aggregate.totals.pairs, now)
        return report_of(aggregate, activity)

    async def _activity(
        self, account_id: str, pairs: set[tuple[str, str]], now: dt.datetime
    ) -> dict[str, dict[str, Activity]]:
        """Activity per conversation and agent, for the conversations in ``pairs``."""
        conversation_ids = sorted({conversation_id for conversation_id, _ in pairs})
        result: dict[str, dict[str, Activity]] = {}
        for i in range(0, len(conversation_ids), self._event_chunk):
            chunk = conversation_ids[i : i + self._event_chunk]
            by_conversation: dict[str, list[StoredEvent]] = {cid: [] for cid in chunk}
            events = await self._store.conversation_events(account_id, chunk, ACTIVITY_KINDS)
            for ev in events:  # oldest first, so each conversation's list stays in order
                if ev.conversation_id is not None:
                    by_conversation[ev.conversation_id].append(ev)
            for conversation_id, conversation_events in by_conversation.items():
                result[conversation_id] = conversation_activity(conversation_events, now)
        return result
