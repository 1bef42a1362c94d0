"""GetReport (docs/rules.md §5): conversions and agent activity over a date range.

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
  HOUR (0..23; label "00:00".."23:00"). Rows are sorted by key, numeric keys numerically.
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

Conversation events are read in bulk (``$in`` chunks of conversation ids), never one
query per conversation.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pymongo import ASCENDING

from goalflow_common.auth import current_principal
from goalflow_common.clock import Clock
from goalflow_common.errors import InvalidArgument
from goalflow_common.money import from_micros, to_micros
from goalflow_common.pb.goals.v1 import common_pb2, tracker_pb2
from goalflow_common.protoconv import date_between
from tracker_svc.store import TrackerStore

log = structlog.get_logger(__name__)

MAX_RANGE_DAYS = 366
MIN_OFFSET_MINUTES, MAX_OFFSET_MINUTES = -720, 840
MAX_FILTER_ENTRIES = 100
ACTIVITY_KINDS = ("message", "assigned", "unassigned", "closed")
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MICROS_PER_SECOND = 1_000_000

_G = tracker_pb2
GROUPINGS = {
    _G.REPORT_GROUPING_SKILL: "SKILL",
    _G.REPORT_GROUPING_GROUP: "GROUP",
    _G.REPORT_GROUPING_AGENT: "AGENT",
    _G.REPORT_GROUPING_GOAL: "GOAL",
    _G.REPORT_GROUPING_DAY: "DAY",
    _G.REPORT_GROUPING_DAY_OF_WEEK: "DAY_OF_WEEK",
    _G.REPORT_GROUPING_WEEK: "WEEK",
    _G.REPORT_GROUPING_HOUR: "HOUR",
}
_NUMERIC_KEYS = frozenset({"DAY_OF_WEEK", "HOUR"})
_PROJECTION = {
    "_id": 1, "goal_id": 1, "goal_name": 1, "conversation_id": 1, "skill": 1,
    "conversation_open_time": 1, "event_type": 1, "goal_type": 1, "transaction_value": 1,
    "credits": 1,
}


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """A validated GetReport request."""

    account_id: str
    start: dt.datetime  # UTC, inclusive
    end: dt.datetime  # UTC, exclusive
    offset: dt.timezone
    grouping: str
    skills: frozenset[str]
    group_ids: frozenset[str]
    agent_ids: frozenset[str]
    goal_ids: frozenset[str]

    def credit_passes(self, agent: dict[str, Any]) -> bool:
        if self.agent_ids and agent.get("id") not in self.agent_ids:
            return False
        return not self.group_ids or agent.get("group_id") in self.group_ids


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
class _Conversion:
    id: str
    conversation_id: str
    currency: str | None
    micros: int
    is_lead: bool


@dataclass(slots=True)
class Activity:
    """One agent's activity in one conversation."""

    messages: int = 0
    responses: int = 0
    assigned_micros: int = 0


def is_lead_value(doc: dict[str, Any]) -> bool:
    """Whether a conversion's value is a lead value (docs/rules.md §7 D13): the event says
    so, or it names no type and the goal generates leads (its default value is a lead's)."""
    event_type = doc.get("event_type")
    if event_type is None:
        return doc.get("goal_type") == "GENERATE_LEADS"
    return event_type == "LEAD"


def _money(sums: dict[str, int]) -> list[common_pb2.Money]:
    return [
        common_pb2.Money(currency_code=currency, amount=from_micros(micros))
        for currency, micros in sorted(sums.items())
    ]


def _micros(delta: dt.timedelta) -> int:
    return max(0, (delta.days * 86_400 + delta.seconds) * _MICROS_PER_SECOND + delta.microseconds)


def _parse_date(name: str, message: common_pb2.Date, present: bool) -> dt.date:
    if not present:
        raise InvalidArgument(name, "required")
    # The day after the end date must exist in every offset, as must the day before the start.
    return date_between(name, message)


def _filter(name: str, values: Iterable[str]) -> frozenset[str]:
    entries = list(values)
    if len(entries) > MAX_FILTER_ENTRIES:
        raise InvalidArgument(name, f"at most {MAX_FILTER_ENTRIES} entries")
    return frozenset(entries)


def parse_request(account_id: str, request: tracker_pb2.GetReportRequest) -> ReportQuery:
    """Validate ``request``; raise InvalidArgument naming the first field that fails."""
    grouping = GROUPINGS.get(request.group_by)
    if grouping is None:
        if request.group_by == _G.REPORT_GROUPING_UNSPECIFIED:
            raise InvalidArgument("group_by", "required")
        raise InvalidArgument("group_by", "unknown grouping")
    start_day = _parse_date("start_date", request.start_date, request.HasField("start_date"))
    end_day = _parse_date("end_date", request.end_date, request.HasField("end_date"))
    if end_day < start_day:
        raise InvalidArgument("end_date", "must be on or after start_date")
    if (end_day - start_day).days + 1 > MAX_RANGE_DAYS:
        raise InvalidArgument("end_date", f"the range spans at most {MAX_RANGE_DAYS} days")
    minutes = request.utc_offset_minutes
    if not MIN_OFFSET_MINUTES <= minutes <= MAX_OFFSET_MINUTES:
        raise InvalidArgument(
            "utc_offset_minutes", f"must be between {MIN_OFFSET_MINUTES} and {MAX_OFFSET_MINUTES}"
        )
    offset = dt.timezone(dt.timedelta(minutes=minutes))

    def midnight(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), tzinfo=offset).astimezone(dt.UTC)

    return ReportQuery(
        account_id=account_id,
        start=midnight(start_day),
        end=midnight(end_day + dt.timedelta(days=1)),
        offset=offset,
        grouping=grouping,
        skills=_filter("skills", request.skills),
        group_ids=_filter("group_ids", request.group_ids),
        agent_ids=_filter("agent_ids", request.agent_ids),
        goal_ids=_filter("goal_ids", request.goal_ids),
    )


def _conversation_key(grouping: str, opened: dt.datetime, doc: dict[str, Any]) -> tuple[str, str]:
    """(key, label) of a grouping that depends on the conversion, not on its credits."""
    if grouping == "SKILL":
        skill = doc.get("skill") or ""
        return skill, skill or "(no skill)"
    if grouping == "GOAL":
        return doc["goal_id"], doc.get("goal_name") or doc["goal_id"]
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
    raise AssertionError(grouping)


def conversation_activity(
    events: Iterable[dict[str, Any]], now: dt.datetime
) -> dict[str, Activity]:
    """Each agent's messages, responses and assigned time in one conversation.

    ``events`` are the conversation's message/assigned/unassigned/closed events, oldest first.
    """
    activity: dict[str, Activity] = {}

    def of(agent_id: str) -> Activity:
        found = activity.get(agent_id)
        if found is None:
            found = activity[agent_id] = Activity()
        return found

    previous_author: tuple[bool, str] | None = None
    assignee: str | None = None
    since: dt.datetime | None = None

    def end_segment(at: dt.datetime) -> None:
        nonlocal assignee, since
        if assignee is not None and since is not None:
            of(assignee).assigned_micros += _micros(at - since)
        assignee, since = None, None

    for ev in events:
        kind, at = ev["kind"], ev["at"]
        if kind == "message":
            by_end_user = ev.get("author_type") == "END_USER"
            author = (by_end_user, ev.get("author_id") or "")
            if not by_end_user:
                stats = of(author[1])
                stats.messages += 1
                if previous_author is not None and previous_author != author:
                    stats.responses += 1
            previous_author = author
        elif kind == "assigned":
            agent_id = (ev.get("agent") or {}).get("id")
            if agent_id and agent_id != assignee:
                end_segment(at)
                assignee, since = agent_id, at
        elif kind == "unassigned":
            if ev.get("agent_id") == assignee:
                end_segment(at)
        elif kind == "closed":
            end_segment(at)
    end_segment(now)
    return activity


class Reporter:
    """Builds GetReport responses from the conversions and events collections."""

    def __init__(self, store: TrackerStore, clock: Clock, *, event_chunk: int = 500) -> None:
        self._store = store
        self._clock = clock
        self._event_chunk = event_chunk

    async def report(self, request: tracker_pb2.GetReportRequest) -> tracker_pb2.GetReportResponse:
        began = time.perf_counter()
        query = parse_request(current_principal().require_account(), request)
        now = self._clock.now()
        rows: dict[str, Bucket] = {}
        totals = Bucket()
        async for doc in self._store.conversions.find(
            self._selector(query), _PROJECTION
        ).sort([("conversation_open_time", ASCENDING), ("_id", ASCENDING)]):
            self._add(query, doc, rows, totals)

        activity = await self._activity(query.account_id, totals.pairs, now)

        def metrics(bucket: Bucket) -> tracker_pb2.ReportMetrics:
            messages = responses = micros = 0
            for conversation_id, agent_id in bucket.pairs:
                stats = activity.get(conversation_id, {}).get(agent_id)
                if stats is not None:
                    messages += stats.messages
                    responses += stats.responses
                    micros += stats.assigned_micros
            return tracker_pb2.ReportMetrics(
                conversions=len(bucket.conversions),
                transaction_values=_money(bucket.transaction_micros),
                lead_values=_money(bucket.lead_micros),
                agent_messages=messages,
                agent_responses=responses,
                time_assigned_seconds=micros // _MICROS_PER_SECOND,
            )

        sort_key: Callable[[str], Any] = (
            int if query.grouping in _NUMERIC_KEYS else (lambda key: key)
        )
        response = tracker_pb2.GetReportResponse(
            rows=[
                tracker_pb2.ReportRow(key=key, label=rows[key].label, metrics=metrics(rows[key]))
                for key in sorted(rows, key=sort_key)
            ],
            totals=metrics(totals),
        )
        log.info(
            "report_built", account_id=query.account_id, group_by=query.grouping,
            conversions=len(totals.conversions), rows=len(rows),
            ms=round((time.perf_counter() - began) * 1000, 1),
        )
        return response

    @staticmethod
    def _selector(query: ReportQuery) -> dict[str, Any]:
        # The credit filters here only narrow the read; credits are re-checked one by one.
        selector: dict[str, Any] = {
            "account_id": query.account_id,
            "conversation_open_time": {"$gte": query.start, "$lt": query.end},
        }
        if query.skills:
            selector["skill"] = {"$in": sorted(query.skills)}
        if query.goal_ids:
            selector["goal_id"] = {"$in": sorted(query.goal_ids)}
        if query.agent_ids:
            selector["credited_agent_ids"] = {"$in": sorted(query.agent_ids)}
        if query.group_ids:
            selector["credited_group_ids"] = {"$in": sorted(query.group_ids)}
        return selector

    @staticmethod
    def _add(
        query: ReportQuery, doc: dict[str, Any], rows: dict[str, Bucket], totals: Bucket
    ) -> None:
        """Add one conversion document to its rows and to the totals."""
        credits = [
            c["agent"] for c in doc.get("credits") or () if query.credit_passes(c["agent"])
        ]
        if not credits and (query.agent_ids or query.group_ids):
            return
        value = doc.get("transaction_value")
        conversion = _Conversion(
            id=doc["_id"],
            conversation_id=doc["conversation_id"],
            currency=value["currency_code"] if value else None,
            micros=to_micros(value["amount"]) if value else 0,
            is_lead=is_lead_value(doc),
        )
        pairs = {(conversion.conversation_id, agent["id"]) for agent in credits}
        totals.add_conversion(conversion)
        totals.pairs |= pairs

        def bucket(key: str, label: str) -> Bucket:
            found = rows.get(key)
            if found is None:
                found = rows[key] = Bucket()
            found.label = label  # the most recently opened conversation's name wins
            return found

        if query.grouping == "AGENT":
            for agent in credits:
                row = bucket(agent["id"], agent.get("name") or agent["id"])
                row.add_conversion(conversion)
                row.pairs.add((conversion.conversation_id, agent["id"]))
        elif query.grouping == "GROUP":
            for agent in credits:
                group_id = agent.get("group_id") or ""
                row = bucket(group_id, group_id or "(no group)")
                row.add_conversion(conversion)
                row.pairs.add((conversion.conversation_id, agent["id"]))
        else:
            opened = doc["conversation_open_time"].astimezone(query.offset)
            row = bucket(*_conversation_key(query.grouping, opened, doc))
            row.add_conversion(conversion)
            row.pairs |= pairs

    async def _activity(
        self, account_id: str, pairs: set[tuple[str, str]], now: dt.datetime
    ) -> dict[str, dict[str, Activity]]:
        """Activity per conversation and agent, for the conversations in ``pairs``."""
        conversation_ids = sorted({conversation_id for conversation_id, _ in pairs})
        result: dict[str, dict[str, Activity]] = {}
        for i in range(0, len(conversation_ids), self._event_chunk):
            chunk = conversation_ids[i : i + self._event_chunk]
            by_conversation: dict[str, list[dict[str, Any]]] = {cid: [] for cid in chunk}
            events = await self._store.conversation_events(account_id, chunk, ACTIVITY_KINDS)
            for ev in events:  # oldest first, so each conversation's list stays in order
                by_conversation[ev["conversation_id"]].append(ev)
            for conversation_id, conversation_events in by_conversation.items():
                result[conversation_id] = conversation_activity(conversation_events, now)
        return result
