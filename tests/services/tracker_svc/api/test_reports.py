"""GetReport over real gRPC, on conversions and events written into the tracker database.

The documents follow the schema in services/tracker_svc/store/tracker_store.py; they are
real data in the real database (the ingest path is tested on its own)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import grpc
import pytest

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import common_pb2, tracker_pb2

UTC = dt.UTC
G = tracker_pb2


def at(day: str, clock_time: str = "00:00:00") -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{clock_time}").replace(tzinfo=UTC)


def date(day: str) -> common_pb2.Date:
    parsed = dt.date.fromisoformat(day)
    return common_pb2.Date(year=parsed.year, month=parsed.month, day=parsed.day)


def agent(agent_id: str, group_id: str = "sales", user_type: str = "HUMAN") -> dict[str, Any]:
    return {
        "id": agent_id, "name": f"Name of {agent_id}", "email": f"{agent_id}@example.com",
        "group_id": group_id, "skill": "sales", "user_type": user_type, "survey_bot": False,
    }


class TrackerData:
    """Builds event and conversion documents of one account, then inserts them in bulk."""

    def __init__(self, mongo, db_prefix: str, account_id: str) -> None:
        db = mongo[f"{db_prefix}_tracker"]
        self._events_coll, self._conversions_coll = db["events"], db["conversions"]
        self.account_id = account_id
        self.events: list[dict[str, Any]] = []
        self.conversions: list[dict[str, Any]] = []

    def event(self, conversation_id: str, kind: str, when: dt.datetime, **fields: Any) -> None:
        event_id = f"e{len(self.events)}"
        self.events.append({
            "_id": f"{self.account_id}:{event_id}", "account_id": self.account_id,
            "event_id": event_id, "kind": kind, "at": when, "received_at": when,
            "conversation_id": conversation_id, **fields,
        })

    def open(self, conversation_id: str, when: dt.datetime, skill: str = "sales") -> None:
        self.event(conversation_id, "opened", when, end_user_id=f"user-{conversation_id}",
                   channel="WEB_WIDGET", skill=skill)

    def assign(self, conversation_id: str, when: dt.datetime, who: dict[str, Any],
               reason: str = "TAKEN_FROM_QUEUE") -> None:
        self.event(conversation_id, "assigned", when, agent=who, start_reason=reason)

    def unassign(self, conversation_id: str, when: dt.datetime, agent_id: str,
                 reason: str) -> None:
        self.event(conversation_id, "unassigned", when, agent_id=agent_id, end_reason=reason)

    def message(self, conversation_id: str, when: dt.datetime, author_id: str,
                author_type: str = "AGENT") -> None:
        self.event(conversation_id, "message", when, author_type=author_type,
                   author_id=author_id)

    def close(self, conversation_id: str, when: dt.datetime) -> None:
        self.event(conversation_id, "closed", when)

    def conversion(
        self, conversation_id: str, credited: list[dict[str, Any]], *, opened: dt.datetime,
        converted: dt.datetime | None = None, goal_id: str = "goal-1", goal_name: str = "",
        skill: str = "sales", event_type: str | None = "PURCHASE",
        value: tuple[str, str] | None = ("USD", "100.00"),
    ) -> None:
        converted = converted or opened + dt.timedelta(hours=1)
        self.conversions.append({
            "_id": f"{self.account_id}:{goal_id}:{conversation_id}",
            "account_id": self.account_id, "goal_id": goal_id,
            "goal_name": goal_name or f"Goal {goal_id}", "goal_type": "SELL_PRODUCT_OR_SERVICE",
            "attribution_model": "ALL_TOUCHES", "conversation_id": conversation_id,
            "end_user_id": f"user-{conversation_id}", "channel": "WEB_WIDGET", "skill": skill,
            "conversion_time": converted, "conversation_open_time": opened,
            "event_type": event_type, "brand_event_id": "", "url": "https://shop.example/done",
            "hit_event_id": f"hit-{conversation_id}",
            "transaction_value": (
                {"currency_code": value[0], "amount": value[1]} if value else None
            ),
            "credits": [
                {"agent": who, "assignment_time": opened,
                 "contact_duration_ms": int((converted - opened).total_seconds() * 1000)}
                for who in credited
            ],
            "credited_agent_ids": [who["id"] for who in credited],
            "credited_group_ids": sorted({who["group_id"] for who in credited}),
            "recorded_at": converted,
        })

    async def save(self) -> None:
        if self.events:
            await self._events_coll.insert_many(self.events)
        if self.conversions:
            await self._conversions_coll.insert_many(self.conversions)
        self.events, self.conversions = [], []


@pytest.fixture
def tracker_data(mongo, db_prefix):
    def make(account_id: str) -> TrackerData:
        return TrackerData(mongo, db_prefix, account_id)

    return make


async def get_report(stub, group_by: int, start: str, end: str, offset: int = 0,
                     **filters: Any) -> tracker_pb2.GetReportResponse:
    return await stub.GetReport(G.GetReportRequest(
        start_date=date(start), end_date=date(end), utc_offset_minutes=offset,
        group_by=group_by, **filters,
    ))


def by_key(response: tracker_pb2.GetReportResponse) -> dict[str, tracker_pb2.ReportRow]:
    return {row.key: row for row in response.rows}


def amounts(values) -> dict[str, Decimal]:
    return {money.currency_code: Decimal(money.amount) for money in values}


async def test_seed_example_each_agent_gets_the_conversion_and_the_full_value(
    stack, make_tenant, tracker_data
):
    """docs/rules.md §4 (the report article): a bot and two agents, one $100 purchase,
    attribution "All"."""
    tenant = await make_tenant()
    data = tracker_data(tenant.account_id)
    bot, agent_a, agent_b = agent("bot-1", "bots", "BOT"), agent("agent-a"), agent("agent-b")
    t0 = at("2026-05-20", "10:00:00")
    data.open("c1", t0)
    data.assign("c1", t0, bot)
    data.message("c1", t0 + dt.timedelta(seconds=30), "user-c1", "END_USER")
    data.message("c1", t0 + dt.timedelta(minutes=1), "bot-1", "BOT")
    data.assign("c1", t0 + dt.timedelta(minutes=5), agent_a, "AGENT_TRANSFER")
    data.message("c1", t0 + dt.timedelta(minutes=6), "agent-a")
    data.assign("c1", t0 + dt.timedelta(minutes=10), agent_b, "AGENT_TRANSFER")
    data.message("c1", t0 + dt.timedelta(minutes=11), "agent-b")
    data.close("c1", t0 + dt.timedelta(minutes=20))
    data.conversion("c1", [bot, agent_a, agent_b], opened=t0)
    await data.save()
    stub = stack.tracker(tenant.admin)

    report = await get_report(stub, G.REPORT_GROUPING_AGENT, "2026-05-20", "2026-05-20")
    assert [row.key for row in report.rows] == ["agent-a", "agent-b", "bot-1"]
    for row in report.rows:
        assert row.label == f"Name of {row.key}"
        assert row.metrics.conversions == 1
        assert [(m.currency_code, m.amount) for m in row.metrics.transaction_values] == [
            ("USD", "100.00")
        ]
        assert not row.metrics.lead_values
    rows = by_key(report)
    # Assigned 10:00-10:05, 10:05-10:10, 10:10-close at 10:20.
    assert [rows[k].metrics.time_assigned_seconds for k in ("bot-1", "agent-a", "agent-b")] == [
        300, 300, 600
    ]
    assert report.totals.conversions == 1
    assert [(m.currency_code, m.amount) for m in report.totals.transaction_values] == [
        ("USD", "100.00")
    ]
    assert report.totals.agent_messages == 3
    assert report.totals.time_assigned_seconds == 1200

    # Two agents of one group: that group counts the conversion (and its value) once.
    groups = by_key(await get_report(stub, G.REPORT_GROUPING_GROUP, "2026-05-20", "2026-05-20"))
    assert sorted(groups) == ["bots", "sales"]
    assert groups["sales"].metrics.conversions == 1
    assert amounts(groups["sales"].metrics.transaction_values) == {"USD": Decimal(100)}
    assert groups["sales"].metrics.time_assigned_seconds == 900
    assert groups["bots"].metrics.conversions == 1


async def test_date_range_filters_on_conversation_open_time(
    stack, make_tenant, tracker_data, clock
):
    """docs/rules.md §5 (the report article): opened June 1, converted June 3; only a
    range reaching June 1 finds it."""
    clock.set(at("2026-06-04", "09:00:00"))
    tenant = await make_tenant()
    data = tracker_data(tenant.account_id)
    opened = at("2026-06-01", "10:00:00")
    data.open("c1", opened)
    data.assign("c1", opened, agent("agent-a"))
    data.close("c1", opened + dt.timedelta(minutes=30))
    data.conversion("c1", [agent("agent-a")], opened=opened, converted=at("2026-06-03", "15:00"))
    await data.save()
    stub = stack.tracker(tenant.admin)

    june_3 = await get_report(stub, G.REPORT_GROUPING_DAY, "2026-06-03", "2026-06-03")
    assert list(june_3.rows) == []
    assert june_3.totals.conversions == 0 and not june_3.totals.transaction_values
    assert (await get_report(stub, G.REPORT_GROUPING_DAY, "2026-06-02", "2026-06-03")).totals \
        .conversions == 0

    found = await get_report(stub, G.REPORT_GROUPING_DAY, "2026-06-01", "2026-06-03")
    assert [(row.key, row.metrics.conversions) for row in found.rows] == [("2026-06-01", 1)]
    assert found.totals.conversions == 1
    assert amounts(found.totals.transaction_values) == {"USD": Decimal(100)}


async def test_agent_messages_and_responses_follow_the_definition(
    stack, make_tenant, tracker_data, clock
):
    tenant = await make_tenant()
    data = tracker_data(tenant.account_id)
    a, b = agent("agent-a"), agent("agent-b")
    t0 = at("2026-05-20", "08:00:00")
    data.open("c1", t0)
    data.assign("c1", t0, a)
    # The script, with agent-a's responses marked R:
    #   a (first message: no response)  u  aR a  u u  aR  bR  aR  system  aR  u
    # agent-a: 6 messages, 4 responses; agent-b: 1 message, 1 response.
    script = [
        ("agent-a", "AGENT"), ("user-c1", "END_USER"), ("agent-a", "AGENT"),
        ("agent-a", "AGENT"), ("user-c1", "END_USER"), ("user-c1", "END_USER"),
        ("agent-a", "AGENT"), ("agent-b", "AGENT"), ("agent-a", "AGENT"),
        ("system", "SYSTEM"), ("agent-a", "AGENT"), ("user-c1", "END_USER"),
    ]
    for i, (author, kind) in enumerate(script):
        data.message("c1", t0 + dt.timedelta(seconds=10 * (i + 1)), author, kind)
    data.close("c1", t0 + dt.timedelta(minutes=10))
    # Two goals converted in the same conversation: two conversions, one set of activity.
    data.conversion("c1", [a, b], opened=t0, goal_id="goal-1")
    data.conversion("c1", [a, b], opened=t0, goal_id="goal-2", value=None)
    await data.save()
    stub = stack.tracker(tenant.admin)

    agents = by_key(await get_report(stub, G.REPORT_GROUPING_AGENT, "2026-05-20", "2026-05-20"))
    assert (agents["agent-a"].metrics.agent_messages,
            agents["agent-a"].metrics.agent_responses) == (6, 4)
    assert (agents["agent-b"].metrics.agent_messages,
            agents["agent-b"].metrics.agent_responses) == (1, 1)
    assert agents["agent-a"].metrics.conversions == 2

    goals = await get_report(stub, G.REPORT_GROUPING_GOAL, "2026-05-20", "2026-05-20")
    assert [row.key for row in goals.rows] == ["goal-1", "goal-2"]
    for row in goals.rows:
        assert row.label == f"Goal {row.key}"
        assert (row.metrics.conversions, row.metrics.agent_messages,
                row.metrics.agent_responses) == (1, 7, 5)
    # Totals count each (conversation, agent) pair once, whatever the number of goals.
    assert (goals.totals.conversions, goals.totals.agent_messages,
            goals.totals.agent_responses) == (2, 7, 5)
    assert amounts(goals.totals.transaction_values) == {"USD": Decimal(100)}


async def test_day_of_week_hour_and_day_buckets_follow_the_offset(
    stack, make_tenant, tracker_data
):
    tenant = await make_tenant()
    data = tracker_data(tenant.account_id)
    saturday_evening = at("2026-06-06", "20:00:00")  # a Saturday in UTC
    sunday_night = at("2026-06-07", "03:00:00")  # a Sunday in UTC
    for conversation_id, opened in (("sat", saturday_evening), ("sun", sunday_night)):
        data.open(conversation_id, opened)
        data.conversion(conversation_id, [agent("agent-a")], opened=opened)
    await data.save()
    stub = stack.tracker(tenant.admin)

    def buckets(report) -> list[tuple[str, str, int]]:
        return [(row.key, row.label, row.metrics.conversions) for row in report.rows]

    dow, hour = G.REPORT_GROUPING_DAY_OF_WEEK, G.REPORT_GROUPING_HOUR
    # UTC: one Saturday, one Sunday; hours sorted numerically (3 before 20).
    assert buckets(await get_report(stub, dow, "2026-06-06", "2026-06-07")) == [
        ("0", "Sunday", 1), ("6", "Saturday", 1)
    ]
    assert buckets(await get_report(stub, hour, "2026-06-06", "2026-06-07")) == [
        ("3", "03:00", 1), ("20", "20:00", 1)
    ]
    # UTC+05:30: Saturday 20:00 UTC is Sunday 01:30; both open on Sunday June 7.
    assert buckets(await get_report(stub, dow, "2026-06-07", "2026-06-07", 330)) == [
        ("0", "Sunday", 2)
    ]
    assert buckets(await get_report(stub, hour, "2026-06-07", "2026-06-07", 330)) == [
        ("1", "01:00", 1), ("8", "08:00", 1)
    ]
    both = G.REPORT_GROUPING_DAY_OF_WEEK_HOUR
    assert buckets(await get_report(stub, both, "2026-06-06", "2026-06-07")) == [
        ("0-3", "Sunday 03:00", 1), ("6-20", "Saturday 20:00", 1)
    ]
    assert buckets(await get_report(stub, both, "2026-06-07", "2026-06-07", 330)) == [
        ("0-1", "Sunday 01:00", 1), ("0-8", "Sunday 08:00", 1)
    ]
    assert buckets(await get_report(stub, G.REPORT_GROUPING_DAY, "2026-06-01", "2026-06-30",
                                    330)) == [("2026-06-07", "2026-06-07", 2)]
    # UTC-05:00: Sunday 03:00 UTC is Saturday 22:00; both open on Saturday June 6.
    assert buckets(await get_report(stub, dow, "2026-06-06", "2026-06-06", -300)) == [
        ("6", "Saturday", 2)
    ]
    assert buckets(await get_report(stub, hour, "2026-06-06", "2026-06-06", -300)) == [
        ("15", "15:00", 1), ("22", "22:00", 1)
    ]
    assert buckets(await get_report(stub, both, "2026-06-06", "2026-06-06", -300)) == [
        ("6-15", "Saturday 15:00", 1), ("6-22", "Saturday 22:00", 1)
    ]
    # The date range moves with the offset too: June 7 in UTC holds only one of them.
    assert buckets(await get_report(stub, dow, "2026-06-07", "2026-06-07")) == [
        ("0", "Sunday", 1)
    ]
    assert (await get_report(stub, dow, "2026-06-07", "2026-06-07", -300)).totals \
        .conversions == 0


async def test_weeks_start_on_sunday(stack, make_tenant, tracker_data):
    tenant = await make_tenant()
    data = tracker_data(tenant.account_id)
    opened = {
        "sun-may31": at("2026-05-31", "00:00:00"),
        "sat-jun6": at("2026-06-06", "12:00:00"),
        "sun-jun7": at("2026-06-07", "12:00:00"),
        "mon-jun8": at("2026-06-08", "12:00:00"),
        "sat-jun13": at("2026-06-13", "23:30:00"),
    }
    for conversation_id, when in opened.items():
        data.conversion(conversation_id, [agent("agent-a")], opened=when)
    await data.save()
    stub = stack.tracker(tenant.admin)

    def weeks(report) -> list[tuple[str, int]]:
        return [(row.key, row.metrics.conversions) for row in report.rows]

    week = G.REPORT_GROUPING_WEEK
    assert weeks(await get_report(stub, week, "2026-05-01", "2026-06-30")) == [
        ("2026-05-31", 2), ("2026-06-07", 3)
    ]
    # UTC+01:00 moves Saturday 23:30 into Sunday June 14, the start of the next week.
    assert weeks(await get_report(stub, week, "2026-05-01", "2026-06-30", 60)) == [
        ("2026-05-31", 2), ("2026-06-07", 2), ("2026-06-14", 1)
    ]


async def test_filters_on_skill_group_agent_and_goal(stack, make_tenant, tracker_data):
    tenant = await make_tenant()
    data = tracker_data(tenant.account_id)
    a, b, c = agent("agent-a", "north"), agent("agent-b", "south"), agent("agent-c", "north")
    t0 = at("2026-05-20", "09:00:00")
    setup = [  # conversation, skill, goal, credited agents, value
        ("c1", "sales", "goal-1", [a, b], "10.00"),
        ("c2", "support", "goal-2", [c], "20.00"),
        ("c3", "sales", "goal-2", [b], "30.00"),
    ]
    for i, (conversation_id, skill, goal_id, credited, value) in enumerate(setup):
        opened = t0 + dt.timedelta(hours=i)
        data.open(conversation_id, opened, skill)
        for who in credited:  # each credited agent writes two messages
            data.message(conversation_id, opened + dt.timedelta(minutes=1), who["id"])
            data.message(conversation_id, opened + dt.timedelta(minutes=2), who["id"])
        data.conversion(conversation_id, credited, opened=opened, goal_id=goal_id, skill=skill,
                        value=("USD", value))
    await data.save()
    stub = stack.tracker(tenant.admin)
    day = "2026-05-20"

    async def totals(group_by: int = G.REPORT_GROUPING_SKILL, **filters: Any):
        report = await get_report(stub, group_by, day, day, **filters)
        return report.totals.conversions, amounts(report.totals.transaction_values), report

    count, value, report = await totals(skills=["sales"])
    assert (count, value) == (2, {"USD": Decimal(40)})
    assert [row.key for row in report.rows] == ["sales"]
    assert (await totals(goal_ids=["goal-2"]))[:2] == (2, {"USD": Decimal(50)})
    assert (await totals(skills=["sales"], goal_ids=["goal-2"]))[:2] == (1, {"USD": Decimal(30)})

    count, value, report = await totals(G.REPORT_GROUPING_AGENT, agent_ids=["agent-a"])
    assert (count, value) == (1, {"USD": Decimal(10)})
    assert [row.key for row in report.rows] == ["agent-a"]
    assert report.totals.agent_messages == 2  # agent-b's messages in c1 are filtered out

    count, value, report = await totals(G.REPORT_GROUPING_GROUP, group_ids=["south"])
    assert (count, value) == (2, {"USD": Decimal(40)})
    assert [(row.key, row.metrics.conversions) for row in report.rows] == [("south", 2)]
    assert report.totals.agent_messages == 4  # agent-b in c1 and c3

    # Agent and group filters apply to the same credit: c1 credits agent-a and a "south"
    # agent, but agent-a is in "north", so nothing passes both.
    for agent_ids in (["agent-a"], ["agent-c"]):
        count, value, report = await totals(G.REPORT_GROUPING_AGENT, agent_ids=agent_ids,
                                            group_ids=["south"])
        assert (count, value, list(report.rows)) == (0, {}, [])
    count, _, report = await totals(G.REPORT_GROUPING_GROUP, agent_ids=["agent-a", "agent-c"])
    assert count == 2
    assert [(row.key, row.metrics.conversions) for row in report.rows] == [("north", 2)]


async def test_lead_and_transaction_values_per_currency_sum_exactly(
    stack, make_tenant, tracker_data
):
    tenant = await make_tenant()
    data = tracker_data(tenant.account_id)
    t0 = at("2026-05-20", "09:00:00")
    cases = [  # event type, value, goal
        ("PURCHASE", ("USD", "0.10"), "goal-1"),
        ("PURCHASE", ("USD", "0.20"), "goal-1"),
        ("PURCHASE", ("USD", "1.000001"), "goal-2"),
        (None, ("USD", "7"), "goal-2"),  # no event type: the goal's own value
        ("PURCHASE", ("EUR", "5.25"), "goal-1"),
        ("LEAD", ("USD", "20"), "goal-2"),
        ("LEAD", ("GBP", "3.5"), "goal-2"),
        ("GOAL_ACHIEVED", None, "goal-1"),
    ]
    for i, (event_type, value, goal_id) in enumerate(cases):
        data.conversion(f"c{i}", [agent("agent-a")], opened=t0 + dt.timedelta(minutes=i),
                        goal_id=goal_id, event_type=event_type, value=value)
    await data.save()
    stub = stack.tracker(tenant.admin)

    report = await get_report(stub, G.REPORT_GROUPING_GOAL, "2026-05-20", "2026-05-20")
    totals = report.totals
    assert totals.conversions == len(cases)
    assert [(m.currency_code, m.amount) for m in totals.transaction_values] == [
        ("EUR", "5.25"), ("USD", "8.300001")
    ]
    assert [(m.currency_code, m.amount) for m in totals.lead_values] == [
        ("GBP", "3.50"), ("USD", "20.00")
    ]
    rows = by_key(report)
    assert [(m.currency_code, m.amount) for m in rows["goal-1"].metrics.transaction_values] == [
        ("EUR", "5.25"), ("USD", "0.30")
    ]
    assert not rows["goal-1"].metrics.lead_values
    assert amounts(rows["goal-2"].metrics.transaction_values) == {"USD": Decimal("8.000001")}
    assert amounts(rows["goal-2"].metrics.lead_values) == {
        "USD": Decimal(20), "GBP": Decimal("3.5")
    }
    assert (rows["goal-1"].metrics.conversions, rows["goal-2"].metrics.conversions) == (4, 4)


async def test_time_assigned_with_transfer_back_to_queue_close_and_open_segments(
    stack, make_tenant, tracker_data, clock
):
    tenant = await make_tenant()
    data = tracker_data(tenant.account_id)
    a, b, c = agent("agent-a"), agent("agent-b"), agent("agent-c")
    t0 = at("2026-05-20", "09:00:00")

    def s(seconds: int) -> dt.datetime:
        return t0 + dt.timedelta(seconds=seconds)

    data.open("c1", t0)
    data.assign("c1", s(60), a)                                  # a: 60..160 = 100
    data.unassign("c1", s(160), "agent-a", "AGENT_TRANSFER")
    data.assign("c1", s(160), b, "AGENT_TRANSFER")               # b: 160..400 = 240
    data.unassign("c1", s(400), "agent-b", "BACK_TO_QUEUE")      # nobody until 1000
    data.assign("c1", s(1000), a)                                # a: 1000..1100 = 100
    data.assign("c1", s(1050), a)                                # same agent: same segment
    data.assign("c1", s(1100), b, "AGENT_TRANSFER")              # b: 1100..1300 = 200
    data.unassign("c1", s(1200), "agent-a", "AGENT_TRANSFER")    # a already replaced
    data.close("c1", s(1300))
    data.open("c1", s(2000))                                     # reopened
    data.assign("c1", s(2100), b, "RESUME")                      # b: 2100..2200 = 100
    data.close("c1", s(2200))
    data.conversion("c1", [a, b], opened=t0)

    opened = clock.now() - dt.timedelta(hours=1)
    data.open("c2", opened)
    data.assign("c2", clock.now() - dt.timedelta(seconds=90), c)  # still assigned: until now
    data.conversion("c2", [c], opened=opened)
    await data.save()
    stub = stack.tracker(tenant.admin)

    async def assigned() -> dict[str, int]:
        report = await get_report(stub, G.REPORT_GROUPING_AGENT, "2026-05-01", "2026-06-01")
        seconds = {row.key: row.metrics.time_assigned_seconds for row in report.rows}
        assert report.totals.time_assigned_seconds == sum(seconds.values())
        return seconds

    assert await assigned() == {"agent-a": 200, "agent-b": 540, "agent-c": 90}
    clock.advance(dt.timedelta(seconds=60))
    assert (await assigned())["agent-c"] == 150


async def test_many_conversations_span_several_event_reads(stack, make_tenant, tracker_data):
    """More conversations than one $in chunk (500): every one's activity is counted."""
    tenant = await make_tenant()
    data = tracker_data(tenant.account_id)
    t0 = at("2026-05-20", "00:00:00")
    count = 1_201
    for i in range(count):
        conversation_id, opened = f"c{i:05d}", t0 + dt.timedelta(seconds=30 * i)
        who = agent(f"agent-{i % 3}")
        data.open(conversation_id, opened)
        data.assign(conversation_id, opened, who)
        data.message(conversation_id, opened + dt.timedelta(seconds=1), f"user-{conversation_id}",
                     "END_USER")
        data.message(conversation_id, opened + dt.timedelta(seconds=2), who["id"])
        data.close(conversation_id, opened + dt.timedelta(seconds=20))
        data.conversion(conversation_id, [who], opened=opened, value=("USD", "1.01"))
    await data.save()
    stub = stack.tracker(tenant.admin)

    report = await get_report(stub, G.REPORT_GROUPING_AGENT, "2026-05-20", "2026-05-20")
    totals = report.totals
    assert (totals.conversions, totals.agent_messages, totals.agent_responses,
            totals.time_assigned_seconds) == (count, count, count, 20 * count)
    assert amounts(totals.transaction_values) == {"USD": Decimal("1.01") * count}
    assert sum(row.metrics.conversions for row in report.rows) == count
    assert sum(row.metrics.agent_messages for row in report.rows) == count


async def test_another_accounts_data_never_appears(stack, make_tenant, tracker_data):
    mine, theirs = await make_tenant(), await make_tenant()
    t0 = at("2026-05-20", "09:00:00")
    for tenant, who, value, messages in (
        (mine, agent("agent-a"), "10.00", 1),
        (theirs, agent("agent-x"), "999.00", 5),
    ):
        data = tracker_data(tenant.account_id)
        data.open("shared-id", t0)  # the same conversation id in both accounts
        data.assign("shared-id", t0, who)
        for i in range(messages):  # agent-a also writes in the other account
            data.message("shared-id", t0 + dt.timedelta(seconds=i + 1), "agent-a")
        data.close("shared-id", t0 + dt.timedelta(minutes=5))
        data.conversion("shared-id", [who, agent("agent-a")], opened=t0, value=("USD", value))
        await data.save()

    report = await get_report(stack.tracker(mine.admin), G.REPORT_GROUPING_AGENT,
                              "2026-05-20", "2026-05-20")
    assert [row.key for row in report.rows] == ["agent-a"]
    assert report.totals.conversions == 1
    assert amounts(report.totals.transaction_values) == {"USD": Decimal(10)}
    assert report.totals.agent_messages == 1
    assert report.totals.time_assigned_seconds == 300

    with pytest.raises(grpc.RpcError) as err:
        await get_report(stack.tracker(mine.keys[Role.AGENT]), G.REPORT_GROUPING_AGENT,
                         "2026-05-20", "2026-05-20")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _request(**overrides: Any) -> tracker_pb2.GetReportRequest:
    fields: dict[str, Any] = {
        "start_date": date("2026-05-01"), "end_date": date("2026-05-31"),
        "group_by": G.REPORT_GROUPING_SKILL,
    }
    fields.update(overrides)
    return G.GetReportRequest(**fields)


async def test_invalid_requests_name_the_field(stack, make_tenant):
    tenant = await make_tenant()
    stub = stack.tracker(tenant.admin)
    many = [f"x{i}" for i in range(101)]
    no_group = _request()
    no_group.ClearField("group_by")
    no_start = _request()
    no_start.ClearField("start_date")
    invalid = [
        (no_group, "group_by"),
        (_request(group_by=99), "group_by"),
        (no_start, "start_date"),
        (_request(start_date=common_pb2.Date(year=2026, month=2, day=30)), "start_date"),
        (_request(start_date=common_pb2.Date(year=0, month=1, day=1)), "start_date"),
        (_request(end_date=common_pb2.Date(year=9999, month=12, day=31)), "end_date"),
        (_request(end_date=date("2026-04-30")), "end_date"),
        (_request(start_date=date("2025-01-01"), end_date=date("2026-01-02")), "end_date"),
        (_request(utc_offset_minutes=841), "utc_offset_minutes"),
        (_request(utc_offset_minutes=-721), "utc_offset_minutes"),
        (_request(skills=many), "skills"),
        (_request(group_ids=many), "group_ids"),
        (_request(agent_ids=many), "agent_ids"),
        (_request(goal_ids=many), "goal_ids"),
    ]
    for request, field_name in invalid:
        with pytest.raises(grpc.RpcError) as err:
            await stub.GetReport(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert err.value.details().startswith(f"{field_name}:"), err.value.details()

    # The limits themselves are accepted: 366 days, both offset bounds, 100 filter entries.
    valid = [
        _request(start_date=date("2024-01-01"), end_date=date("2024-12-31")),
        _request(utc_offset_minutes=840),
        _request(utc_offset_minutes=-720),
        _request(skills=many[:100], group_ids=many[:100], agent_ids=many[:100],
                 goal_ids=many[:100]),
    ]
    for request in valid:
        response = await stub.GetReport(request)
        assert response.totals.conversions == 0 and not response.rows
