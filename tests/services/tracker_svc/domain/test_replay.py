"""The what-if replay (``tracker_svc.domain.replay``) over an in-memory ``ReplayStore``: the
attribution table under the three models at once, the range's edges, history before the
range, one conversion per conversation across windows, the report counting and progress.

The store here is a list of typed events answering the four reads as ``TrackerStore``
does (tests/services/tracker_svc/store/test_replay_reads.py checks those on the database).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator, Iterable

import pytest

from tests.services.tracker_svc.domain.test_batch_attribution import (
    ACCOUNT,
    ALL,
    DAY,
    FIRST,
    HOUR,
    LAST,
    MIN,
    PERIOD_ROWS,
    T0,
    Doc,
    assigned,
    message,
    opened,
    two_agents,
    typed,
    visit,
)
from tracker_svc.domain.batch_attribution import attribute_batch, goal_hits
from tracker_svc.domain.goal_table import GoalTable, KnownGoal
from tracker_svc.domain.matching import Condition
from tracker_svc.domain.model import (
    STATE_KINDS,
    EventKind,
    Money,
    Opening,
    StoredEvent,
    TrackedGoal,
)
from tracker_svc.domain.replay import (
    MODELS,
    Replayer,
    ReplayProgress,
    ReplayRequest,
    ReplayResult,
)

CHECKOUT = (Condition("CONTAINS", "/checkout"),)


class ListStore:
    """Stored events in memory, read as the tracker's store reads them."""

    def __init__(self, docs: Iterable[Doc]) -> None:
        self.events = sorted(typed(list(docs)), key=lambda e: (e.at, e.key))
        self.windows = 0

    async def count_events(self, account_id: str, start: dt.datetime, end: dt.datetime) -> int:
        return sum(1 for e in self.events if e.account_id == account_id and start <= e.at < end)

    async def events_between(
        self, account_id: str, start: dt.datetime, end: dt.datetime, size: int
    ) -> AsyncIterator[list[StoredEvent]]:
        # Lists of about ``size``, never splitting an instant (as time windows do).
        chosen = [e for e in self.events if e.account_id == account_id and start <= e.at < end]
        chunk: list[StoredEvent] = []
        for _, same in itertools.groupby(chosen, key=lambda e: e.at):
            if len(chunk) >= size:
                self.windows += 1
                yield chunk
                chunk = []
            chunk.extend(same)
        if chunk:
            self.windows += 1
            yield chunk

    async def latest_opens(self, account_id: str, end_user_ids: Iterable[str]) -> list[Opening]:
        users = set(end_user_ids)
        return [Opening.of(e) for e in reversed(self.events)
                if e.kind == "opened" and e.account_id == account_id and e.end_user_id in users]

    async def conversation_events(
        self, account_id: str, conversation_ids: Iterable[str],
        kinds: Iterable[EventKind] = STATE_KINDS,
    ) -> list[StoredEvent]:
        wanted, kinds = set(conversation_ids), set(kinds)
        return [e for e in self.events if e.account_id == account_id
                and e.conversation_id in wanted and e.kind in kinds]


def goal(*, period: int = 7, active: bool = False, value: Money | None = None,
         goal_type: str | None = "SELL_PRODUCT_OR_SERVICE") -> TrackedGoal:
    # Inactive and without dates, as a definition never created: the replay tracks it anyway.
    return TrackedGoal("g", ACCOUNT, "Checkout", goal_type, "LAST_TOUCH", period,
                       frozenset({"sales"}), value, active, None, None)


async def replay(
    docs: list[Doc], *, start: dt.datetime = T0 - DAY, end: dt.datetime = T0 + 60 * DAY,
    chunk: int = 4000, tracked: TrackedGoal | None = None, clock: Iterable[float] | None = None,
) -> tuple[list[ReplayProgress], ReplayResult]:
    ticks = iter(clock) if clock is not None else None
    replayer = Replayer(ListStore(docs), chunk=chunk, progress_every_s=0.25,
                        **({"monotonic": lambda: next(ticks)} if ticks else {}))  # type: ignore[arg-type]
    request = ReplayRequest(ACCOUNT, tracked or goal(), CHECKOUT, start, end)
    updates = [u async for u in replayer.replay(request)]
    *progress, result = updates
    assert isinstance(result, ReplayResult)
    assert all(isinstance(p, ReplayProgress) for p in progress)
    return progress, result  # type: ignore[return-value]


def credited(result: ReplayResult) -> dict[str, list[str]]:
    """Credited agent ids per model (agent rows, ordered by key)."""
    return {m.model: sorted(line.key for line in m.agents) for m in result.models}


def conversions(result: ReplayResult) -> dict[str, int]:
    return {m.model: m.totals.conversions for m in result.models}


@pytest.mark.parametrize(("situation", "active", "period", "hit_at", "expected"),
                         [pytest.param(*row, id=row[0]) for row in PERIOD_ROWS])
async def test_attribution_table_under_three_models_at_once(
    situation, active, period, hit_at, expected
):
    close_at = None if active else min(T0 + HOUR, hit_at)
    docs = [*two_agents(close_at=close_at), visit(hit_at)]
    _, result = await replay(docs, tracked=goal(period=period))
    assert [m.model for m in result.models] == list(MODELS)
    assert credited(result) == {m: sorted(expected[m]) for m in MODELS}
    assert conversions(result) == {m: int(bool(expected[m])) for m in MODELS}
    assert result.hits == 1


async def test_same_answer_as_the_batch_core_over_the_whole_history():
    """Many conversations, several hits each, chunks of a few events: the replay's
    conversions per model are those of ``attribute_batch`` over the whole history at once."""
    docs: list[Doc] = []
    for n in range(30):
        conv, user, t = f"c{n}", f"u{n}", T0 + n * HOUR
        docs += [opened(conv, t, user=user), assigned(conv, t + MIN, f"A{n % 4}")]
        if n % 3:
            docs += [message(conv, t + 2 * MIN, f"A{n % 4}"),
                     assigned(conv, t + 3 * MIN, f"B{n % 5}",
                              group="sales" if n % 2 else "support")]
        docs += [visit(t + 10 * MIN, user=user, amount="10.00"),
                 visit(t + 20 * MIN, user=user, amount="99.00")]
    _, result = await replay(docs, chunk=7)
    for model_result in result.models:
        model = model_result.model
        tracked = TrackedGoal("g", ACCOUNT, "Checkout", "SELL_PRODUCT_OR_SERVICE", model, 7,
                              frozenset({"sales"}), None, True, T0 - DAY, T0 + 60 * DAY)
        table = GoalTable()
        table.replace_all([KnownGoal(tracked, CHECKOUT)])
        batch = typed(docs)
        expected = attribute_batch(goal_hits(ACCOUNT, batch, range(len(batch)), table), batch)
        assert model_result.totals.conversions == len(expected.conversions) > 0
        per_agent: dict[str, int] = {}
        for conversion in expected.conversions:
            for credit in conversion.credits:
                per_agent[credit.agent.id] = per_agent.get(credit.agent.id, 0) + 1
        assert {line.key: line.metrics.conversions for line in model_result.agents} == per_agent
        # The first hit of each conversation converts: 10.00 each, counted once.
        assert model_result.totals.transaction_micros == {
            "USD": 10_000_000 * len(expected.conversions)}
    assert result.hits == 60


async def test_range_edges_and_history_before_the_range():
    """Hits count from ``start`` (inclusive) to ``end`` (exclusive); the conversation's
    earlier events (opened and assigned the day before the range) are read all the same."""
    docs = [opened("c1", T0 - DAY, user="u1"), assigned("c1", T0 - DAY + MIN, "A"),
            visit(T0 - MIN, user="u1"),  # before the range
            opened("c2", T0 - DAY, user="u2"), assigned("c2", T0 - DAY + MIN, "B"),
            visit(T0 + DAY, user="u2"),  # at the end: outside
            opened("c3", T0 - DAY, user="u3"), assigned("c3", T0 - DAY + MIN, "C"),
            visit(T0, user="u3")]  # at the start: inside
    _, result = await replay(docs, start=T0, end=T0 + DAY)
    assert credited(result) == {m: ["C"] for m in MODELS}
    assert result.hits == 1
    assert result.events_scanned == 1  # only the range's events are scanned


async def test_one_conversion_per_conversation_across_windows():
    """A conversation hit in many windows converts once per model: the first hit that
    credits an agent (the earlier ones find nobody assigned yet)."""
    docs = [opened("c1", T0), visit(T0 + MIN), visit(T0 + 2 * MIN),
            assigned("c1", T0 + 3 * MIN, "A"),
            *[visit(T0 + (4 + k) * MIN, amount=f"{k}.00") for k in range(10)]]
    _, result = await replay(docs, chunk=1)
    assert conversions(result) == {m: 1 for m in MODELS}
    for model_result in result.models:
        assert model_result.totals.transaction_micros == {"USD": 0}  # the first: 0.00
    assert result.hits == 12


async def test_report_counting_per_agent_group_and_skill():
    """ALL_TOUCHES: each credited agent's row +1 and the full value; totals each conversion
    once; lead values apart (docs/rules.md §5, D13); groups and skills as rows."""
    docs = [opened("c1", T0, user="u1", skill="billing"), assigned("c1", T0 + MIN, "A"),
            assigned("c1", T0 + 2 * MIN, "B"), visit(T0 + 3 * MIN, user="u1", amount="30.00"),
            opened("c2", T0, user="u2", skill="vip"), assigned("c2", T0 + MIN, "B"),
            visit(T0 + 3 * MIN, user="u2")]
    value = Money("EUR", "5.00")
    _, result = await replay(docs, tracked=goal(value=value, goal_type="GENERATE_LEADS"))
    by_model = {m.model: m for m in result.models}
    every = by_model[ALL]
    assert every.totals.conversions == 2
    assert every.totals.transaction_micros == {"USD": 30_000_000}
    assert every.totals.lead_micros == {"EUR": 5_000_000}  # untyped on a leads goal
    rows = {line.key: line.metrics for line in every.agents}
    assert rows["A"].conversions == 1 and rows["B"].conversions == 2
    assert rows["B"].transaction_micros == {"USD": 30_000_000}
    assert [line.key for line in every.agents] == ["B", "A"]  # most conversions first
    assert every.agents[0].label == "Agent B"
    assert {line.key: line.metrics.conversions for line in every.groups} == {"sales": 2}
    assert {line.key: line.metrics.conversions for line in every.skills} == {
        "billing": 1, "vip": 1}
    first = by_model[FIRST]
    assert {line.key: line.metrics.conversions for line in first.agents} == {"A": 1, "B": 1}
    assert {line.key for line in by_model[LAST].agents} == {"B"}


async def test_progress_first_at_once_then_paced():
    docs = []
    for n in range(10):
        docs += [opened(f"c{n}", T0 + n * HOUR, user=f"u{n}"),
                 assigned(f"c{n}", T0 + n * HOUR + MIN, "A"),
                 visit(T0 + n * HOUR + 2 * MIN, user=f"u{n}")]
    # The clock advances 0.1 s per look: a progress message every third window or so.
    progress, result = await replay(docs, chunk=3, clock=itertools.count(0, 0.1))
    assert progress[0] == ReplayProgress(0, 30, {m: 0 for m in MODELS})
    assert 2 <= len(progress) <= 10
    scanned = [p.events_scanned for p in progress]
    assert scanned == sorted(scanned) and scanned[-1] <= 30
    assert all(p.events_total == 30 for p in progress)
    assert progress[-1].conversions[LAST] <= 10
    assert conversions(result) == {m: 10 for m in MODELS}
    assert result.events_scanned == 30


async def test_unmatched_urls_and_no_events():
    _, result = await replay([opened("c1", T0), assigned("c1", T0 + MIN, "A"),
                              visit(T0 + 2 * MIN, url="https://shop.example/home")])
    assert result.hits == 0 and conversions(result) == {m: 0 for m in MODELS}
    progress, empty = await replay([])
    assert progress == [ReplayProgress(0, 0, {m: 0 for m in MODELS})]
    assert empty.events_scanned == 0
    assert all(m.agents == [] and m.totals.conversions == 0 for m in empty.models)
