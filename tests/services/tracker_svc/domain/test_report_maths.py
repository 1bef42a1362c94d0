"""Report maths (``domain.reports``) over in-memory conversions and events: grouping,
values per currency and lead/transaction split, filters on credits, activity metrics.
The end-to-end version over gRPC and the database is ``api/test_reports.py``."""

from __future__ import annotations

import datetime as dt

from tracker_svc.domain.model import Agent, EventKind, Money, ReportConversion, StoredEvent
from tracker_svc.domain.reports import (
    Aggregate,
    ReportQuery,
    conversation_activity,
    report_of,
)

T0 = dt.datetime(2026, 6, 7, 22, 30, tzinfo=dt.UTC)  # a Sunday, 22:30 UTC
MIN = dt.timedelta(minutes=1)
A = Agent("A", name="Ann", group_id="sales")
B = Agent("B", name="Bob", group_id="support")


def query(grouping: str, *, offset_minutes: int = 0, agent_ids: frozenset[str] = frozenset(),
          ) -> ReportQuery:
    return ReportQuery("acct", T0 - dt.timedelta(days=1), T0 + dt.timedelta(days=1),
                       dt.timezone(dt.timedelta(minutes=offset_minutes)), grouping,
                       frozenset(), frozenset(), agent_ids, frozenset())


def conversion(cid: str, conversation: str, credited: tuple[Agent, ...], *,
               amount: str | None = "10.00", event_type: str | None = "PURCHASE",
               goal_type: str = "SELL_PRODUCT_OR_SERVICE", opened: dt.datetime = T0,
               ) -> ReportConversion:
    value = Money("USD", amount) if amount is not None else None
    return ReportConversion(cid, "g1", "Goal", goal_type, conversation, "billing", opened,
                            event_type, value, credited)


def event(kind: EventKind, at: dt.datetime, *, agent: Agent | None = None,
          author_type: str = "", author_id: str = "") -> StoredEvent:
    return StoredEvent(f"acct:{kind}:{at.isoformat()}", "acct", "e", kind, at, at, "c1",
                       agent=agent, author_type=author_type, author_id=author_id)


def aggregate(q: ReportQuery, rows: list[ReportConversion]) -> Aggregate:
    result = Aggregate(q)
    for row in rows:
        result.add(row)
    return result


def test_per_agent_each_credited_agent_counts_the_conversion_and_its_whole_value() -> None:
    rows = [conversion("x1", "c1", (A, B)), conversion("x2", "c2", (A,), amount="5.50")]
    report = report_of(aggregate(query("AGENT"), rows), {})
    assert [(r.key, r.label, r.metrics.conversions, r.metrics.transaction_micros)
            for r in report.rows] == [("A", "Ann", 2, {"USD": 15_500_000}),
                                      ("B", "Bob", 1, {"USD": 10_000_000})]
    assert (report.totals.conversions, report.totals.transaction_micros) == (
        2, {"USD": 15_500_000})


def test_lead_values_are_summed_apart_and_an_agent_filter_drops_uncredited() -> None:
    rows = [conversion("x1", "c1", (A,), event_type="LEAD"),
            conversion("x2", "c2", (B,), event_type=None, goal_type="GENERATE_LEADS"),
            conversion("x3", "c3", (B,))]
    totals = report_of(aggregate(query("GOAL"), rows), {}).totals
    assert (totals.lead_micros, totals.transaction_micros) == (
        {"USD": 20_000_000}, {"USD": 10_000_000})
    only_a = report_of(aggregate(query("GOAL", agent_ids=frozenset({"A"})), rows), {})
    assert only_a.totals.conversions == 1


def test_time_groupings_use_the_callers_offset_and_sort_numerically() -> None:
    rows = [conversion("x1", "c1", (A,)), conversion("x2", "c2", (A,), opened=T0 - 13 * 60 * MIN)]
    by_hour = report_of(aggregate(query("HOUR", offset_minutes=120), rows), {})
    # 22:30 UTC is 00:30 on Monday at +02:00; 09:30 UTC is 11:30.
    assert [(r.key, r.label) for r in by_hour.rows] == [("0", "00:00"), ("11", "11:00")]
    by_day = report_of(aggregate(query("DAY_OF_WEEK", offset_minutes=120), rows), {})
    assert [(r.key, r.label) for r in by_day.rows] == [("0", "Sunday"), ("1", "Monday")]


def test_day_of_week_hour_keys_both_and_sorts_by_weekday_then_hour() -> None:
    # At +02:00: 22:30 UTC Sunday is Monday 00:30; 09:30 UTC is Sunday 11:30; 10:30 UTC on
    # Sunday is Sunday 12:30; and 20:30 UTC Monday is Monday 22:30 (hour 22 sorts after 0
    # and "1-22" after "1-0" numerically, not as text).
    rows = [conversion("x1", "c1", (A,)),
            conversion("x2", "c2", (A,), opened=T0 - 13 * 60 * MIN),
            conversion("x3", "c3", (B,), opened=T0 - 12 * 60 * MIN),
            conversion("x4", "c4", (B,), opened=T0 + 22 * 60 * MIN)]
    by_both = report_of(aggregate(query("DAY_OF_WEEK_HOUR", offset_minutes=120), rows), {})
    assert [(r.key, r.label, r.metrics.conversions) for r in by_both.rows] == [
        ("0-11", "Sunday 11:00", 1), ("0-12", "Sunday 12:00", 1),
        ("1-0", "Monday 00:00", 1), ("1-22", "Monday 22:00", 1)]
    assert by_both.totals.conversions == 4


def test_activity_counts_messages_responses_and_assigned_time_per_pair() -> None:
    events = [event("assigned", T0, agent=A), event("message", T0 + MIN,
              author_type="END_USER", author_id="u"),
              event("message", T0 + 2 * MIN, author_type="AGENT", author_id="A"),
              event("message", T0 + 3 * MIN, author_type="AGENT", author_id="A"),
              event("closed", T0 + 10 * MIN)]
    activity = {"c1": conversation_activity(events, T0 + dt.timedelta(days=1))}
    report = report_of(aggregate(query("AGENT"), [conversion("x1", "c1", (A,))]), activity)
    metrics = report.rows[0].metrics
    assert (metrics.agent_messages, metrics.agent_responses, metrics.time_assigned_seconds) == (
        2, 1, 600)
