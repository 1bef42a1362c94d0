"""What-if over stored history (ReplayGoal, behind config's SimulateGoal; docs/rules.md §7).

A goal is replayed over an account's stored events of [start, end) and writes nothing. The
rules are the live engine's, called the way ingest calls them (``batch_attribution``), and
the result is counted by the report module's aggregation (``reports.Aggregate``), so a
simulation can only disagree with live attribution where the inputs differ:

- **the goal** is treated as tracked over the whole range (active, from ``start`` to
  ``end``), whatever its own active flag and dates say: "had it been active". It is
  replayed under each of the three models at once; its own model is ignored.
- **hits** are the activities that occurred in the range whose URL matches the goal.
  Their conversations are found as at ingest (``batch_attribution.resolve``: the one named,
  else the end user's latest opened at or before the hit) and their state is rebuilt from
  every stored event of the conversation up to the hit, so history before the range counts
  (an agent assigned the day before), and events that arrived late are where they belong
  by ``occurred_at``.
- **one conversion per goal and conversation**: hits go in (time, event id) order and the
  first that credits an agent converts; a conversation converted once is skipped after.
- **the report**: per model, conversions and values counted once each, and rows per
  credited agent, per credited agent's group and per conversation skill (each credited
  agent's row +1; docs/rules.md §5). Agent activity (messages, time assigned) is not
  computed. Rows come most conversions first, at most ``MAX_ROWS`` per list.

Memory stays flat in the range's size: events are read in time windows of a few thousand
(``ReplayStore.events_between``); per window, the hits' openings and conversations' events
are read in bulk, as ingest reads them. What is kept across windows is the aggregates and,
per model, the keys of the conversations already converted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from tracker_svc.domain.batch_attribution import (
    GoalHit,
    attribute,
    goal_hits,
    hit_conversations,
    resolve,
    users_to_resolve,
)
from tracker_svc.domain.matching import Condition, UrlMatcher
from tracker_svc.domain.model import (
    Conversion,
    EventKind,
    Opening,
    ReportConversion,
    StoredEvent,
    TrackedGoal,
    conversion_key,
)
from tracker_svc.domain.reports import Aggregate, Metrics, ReportLine, ReportQuery, report_of

MODELS = ("FIRST_TOUCH", "LAST_TOUCH", "ALL_TOUCHES")
ROW_GROUPINGS = ("AGENT", "GROUP", "SKILL")
MAX_ROWS = 500
CHUNK_EVENTS = 4000  # events per time window read, about
PROGRESS_EVERY_S = 0.25


class ReplayStore(Protocol):
    """What a replay reads (``TrackerStore``)."""

    async def count_events(self, account_id: str, start: dt.datetime, end: dt.datetime) -> int:
        ...

    def events_between(
        self, account_id: str, start: dt.datetime, end: dt.datetime, size: int
    ) -> AsyncIterator[list[StoredEvent]]: ...

    async def latest_opens(
        self, account_id: str, end_user_ids: Iterable[str]
    ) -> list[Opening]: ...

    async def conversation_events(
        self, account_id: str, conversation_ids: Iterable[str],
        kinds: Iterable[EventKind] = ...,
    ) -> list[StoredEvent]: ...


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """A validated ReplayGoal request: the goal (as the goal feed keeps it) and the range."""

    account_id: str
    goal: TrackedGoal
    conditions: tuple[Condition, ...]
    start: dt.datetime  # inclusive, whole seconds
    end: dt.datetime  # exclusive, whole seconds


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    events_scanned: int
    events_total: int
    conversions: dict[str, int]  # model -> conversions so far


@dataclass(frozen=True, slots=True)
class ModelResult:
    model: str
    totals: Metrics
    agents: list[ReportLine]  # most conversions first, at most MAX_ROWS
    groups: list[ReportLine]
    skills: list[ReportLine]
    truncated: bool


@dataclass(frozen=True, slots=True)
class ReplayResult:
    events_scanned: int
    hits: int
    models: list[ModelResult]  # in MODELS order


class _SingleGoal:
    """The ``GoalLookup`` of one goal: the goal when its conditions match the URL."""

    def __init__(self, goal: TrackedGoal, conditions: tuple[Condition, ...]) -> None:
        self._goal = [goal]
        self._matcher = UrlMatcher([(goal.id, conditions)])

    def matching(self, account_id: str, url: str) -> list[TrackedGoal]:
        return self._goal if self._matcher.match(url) else []


def tracked_goal(request: ReplayRequest) -> TrackedGoal:
    """The goal as replayed: active and tracked from ``start`` to ``end``."""
    return dataclasses.replace(
        request.goal, active=True, tracking_start=request.start, tracking_end=request.end)


def model_goals(goal: TrackedGoal) -> dict[str, TrackedGoal]:
    """``goal`` under each model. Each variant has its own id (``<id>/<model>``), so one
    ``attribute`` call judges the three side by side (sharing the rebuilt conversation
    states) with a conversion key per model."""
    return {m: dataclasses.replace(goal, id=f"{goal.id}/{m}", model=m) for m in MODELS}


def report_row(conversion: Conversion) -> ReportConversion:
    """A simulated conversion as a report reads a recorded one."""
    opened = conversion.conversation_open_time
    assert opened is not None  # a conversion's conversation has been opened
    goal = conversion.goal
    return ReportConversion(
        id=conversion.key, goal_id=goal.id, goal_name=goal.name, goal_type=goal.goal_type,
        conversation_id=conversion.conversation_id, skill=conversion.skill,
        conversation_open_time=opened, event_type=conversion.event_type,
        transaction_value=conversion.value,
        credited=tuple(credit.agent for credit in conversion.credits),
    )


def _top(lines: list[ReportLine]) -> list[ReportLine]:
    ranked = sorted(lines, key=lambda line: (-line.metrics.conversions, line.key))
    return ranked[:MAX_ROWS]


class _Tally:
    """Per model: the conversations converted so far and the report aggregates."""

    def __init__(self, request: ReplayRequest) -> None:
        self.converted: dict[str, set[str]] = {m: set() for m in MODELS}
        self.aggregates = {
            (m, grouping): Aggregate(ReportQuery(
                account_id=request.account_id, start=request.start, end=request.end,
                offset=dt.UTC, grouping=grouping, skills=frozenset(),
                group_ids=frozenset(), agent_ids=frozenset(), goal_ids=frozenset()))
            for m in MODELS for grouping in ROW_GROUPINGS
        }

    def add(self, conversion: Conversion) -> None:
        model = conversion.goal.model
        assert model is not None
        self.converted[model].add(conversion.key)
        row = report_row(conversion)
        for grouping in ROW_GROUPINGS:
            self.aggregates[(model, grouping)].add(row)

    def counts(self) -> dict[str, int]:
        return {m: len(keys) for m, keys in self.converted.items()}

    def result(self, model: str) -> ModelResult:
        # Activity (messages, time assigned) is not simulated: no conversation activity.
        reports = {g: report_of(self.aggregates[(model, g)], {}) for g in ROW_GROUPINGS}
        truncated = any(len(r.rows) > MAX_ROWS for r in reports.values())
        return ModelResult(
            model=model, totals=reports["SKILL"].totals, agents=_top(reports["AGENT"].rows),
            groups=_top(reports["GROUP"].rows), skills=_top(reports["SKILL"].rows),
            truncated=truncated,
        )


class Replayer:
    """Runs replays over a ``ReplayStore``; ``monotonic`` paces the progress messages."""

    def __init__(
        self, store: ReplayStore, *, chunk: int = CHUNK_EVENTS,
        progress_every_s: float = PROGRESS_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._chunk = chunk
        self._every = progress_every_s
        self._monotonic = monotonic

    async def replay(
        self, request: ReplayRequest
    ) -> AsyncIterator[ReplayProgress | ReplayResult]:
        """Progress (first at once, then at most every ``progress_every_s``), then the
        result."""
        account_id = request.account_id
        total = await self._store.count_events(account_id, request.start, request.end)
        tally = _Tally(request)
        base = tracked_goal(request)
        goals = model_goals(base)
        lookup = _SingleGoal(base, request.conditions)
        scanned = hits = 0
        yield ReplayProgress(0, total, tally.counts())
        last = self._monotonic()
        async for events in self._store.events_between(
            account_id, request.start, request.end, self._chunk
        ):
            scanned += len(events)
            found = goal_hits(account_id, events, range(len(events)), lookup)
            hits += len(found)
            if found:
                for conversion in await self._attribute(account_id, found, goals, tally):
                    tally.add(conversion)
            if self._monotonic() - last >= self._every:
                last = self._monotonic()
                yield ReplayProgress(scanned, max(total, scanned), tally.counts())
        yield ReplayResult(scanned, hits, [tally.result(m) for m in MODELS])

    async def _attribute(
        self, account_id: str, found: list[GoalHit], goals: dict[str, TrackedGoal],
        tally: _Tally,
    ) -> tuple[Conversion, ...]:
        """One window's hits judged under each model, with the stored history they need
        (read as ingest reads it: openings, then the hit conversations' events)."""
        users = users_to_resolve(found)
        opens = await self._store.latest_opens(account_id, users) if users else []
        resolved = resolve(found, (), opens)
        pending = [
            dataclasses.replace(hit, goal=goal)
            for hit in resolved
            for model, goal in goals.items()
            if hit.conversation_id is not None
            and conversion_key(account_id, goal.id, hit.conversation_id)
            not in tally.converted[model]
        ]
        if not pending:
            return ()
        events = await self._store.conversation_events(account_id, hit_conversations(pending))
        return attribute(pending, (), events).conversions
