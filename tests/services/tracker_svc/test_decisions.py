"""The tracker's decisions where the rules are silent (docs/rules.md §7), one test each,
end to end: events in over IngestEvents on the real config + tracker servers and database,
answers out over GetReport, ListConversions and config's ListGoals."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from google.protobuf.field_mask_pb2 import FieldMask

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, tracker_pb2
from tests.services.config_svc.helpers import date, url_condition
from tests.services.tracker_svc.builders import (
    agent,
    assigned,
    closed,
    create_goal,
    ingest,
    message,
    opened,
    rated,
    visit,
    wait_for_goal,
)

G = tracker_pb2
ALL = config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES
LAST = config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MS, MIN, HOUR, DAY = (dt.timedelta(milliseconds=1), dt.timedelta(minutes=1),
                      dt.timedelta(hours=1), dt.timedelta(days=1))
JUNE_1 = common_pb2.Date(year=2026, month=6, day=1)
SHOP = "https://shop.example"


async def report(stack, tenant, group_by: int, **filters) -> G.GetReportResponse:
    return await stack.tracker(tenant.admin).GetReport(G.GetReportRequest(
        start_date=JUNE_1, end_date=JUNE_1, group_by=group_by, **filters))


def amounts(values) -> dict[str, Decimal]:
    return {money.currency_code: Decimal(money.amount) for money in values}


def activity(metrics: G.ReportMetrics) -> tuple[int, int, int, int]:
    return (metrics.conversions, metrics.agent_messages, metrics.agent_responses,
            metrics.time_assigned_seconds)


async def test_d9_future_dated_conversions_count_in_the_seven_day_column(
    stack, make_tenant, clock
):
    """D9: a conversion stamped ahead of the server clock (producers' clocks drift; the
    tracker takes events up to a day ahead) counts in the 7-day column as soon as it is
    recorded, even when it is dated tomorrow; the window has a start and no end."""
    tenant = await make_tenant()
    goal = await create_goal(stack, tenant, "Checkout", model=ALL)
    now = T0 + 9 * DAY  # June 10, 12:00 UTC: the window starts June 4, 00:00
    clock.set(now)
    tomorrow = now + 18 * HOUR  # June 11, 06:00: within the accepted skew
    batches = []
    for n, when in enumerate((T0 + 2 * DAY, now - HOUR, tomorrow)):  # June 3, today, tomorrow
        conv, user = f"c{n}", f"u{n}"
        batches.append([opened(conv, when - MIN, user=user),
                        assigned(conv, when - MIN, agent("A")),
                        visit(f"{SHOP}/checkout", when, user=user)])
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]), *batches)
    assert [a.conversions for a in acks] == [1, 1, 1]
    # More than a day ahead is refused, so nothing further out can reach the column.
    [too_far] = await ingest(stack.tracker(tenant.keys[Role.INGEST]),
                             [opened("c9", now + DAY + MIN, user="u9")])
    assert [r.field for r in too_far.rejected] == ["occurred_at"]

    listing = await stack.config(tenant.admin).ListGoals(config_pb2.ListGoalsRequest())
    assert listing.seven_day_conversions_available
    assert {row.goal.id: row.seven_day_conversions for row in listing.goals} == {goal.id: 2}


async def test_d10_report_totals_count_each_conversation_and_credited_agent_once(
    stack, make_tenant, clock
):
    """D10: messages, responses and time assigned are those of the credited agents, over
    the whole conversation (also after the conversion), and the totals count each
    (conversation, credited agent) pair once: two goals converting in one conversation
    show its activity in both goal rows but once in the totals."""
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=ALL)
    await create_goal(stack, tenant, "Paid", model=ALL, conditions=[url_condition("/paid")])
    a, b, c = agent("A"), agent("B"), agent("C", "support")  # C's group is not the goals'
    events = [
        opened("c1", T0), assigned("c1", T0 + MIN, a),
        message("c1", T0 + 2 * MIN, "u1", G.AUTHOR_TYPE_END_USER),
        message("c1", T0 + 3 * MIN, "A"), message("c1", T0 + 4 * MIN, "A"),  # 2 msgs, 1 run
        assigned("c1", T0 + 5 * MIN, c), message("c1", T0 + 6 * MIN, "C"),
        assigned("c1", T0 + 7 * MIN, b),
        message("c1", T0 + 8 * MIN, "u1", G.AUTHOR_TYPE_END_USER),
        message("c1", T0 + 9 * MIN, "B"),
        visit(f"{SHOP}/checkout", T0 + 10 * MIN, conv="c1"),
        visit(f"{SHOP}/paid", T0 + 11 * MIN, conv="c1"),
        message("c1", T0 + 14 * MIN, "u1", G.AUTHOR_TYPE_END_USER),
        message("c1", T0 + 15 * MIN, "B"),  # after both conversions: still counted
        closed("c1", T0 + 20 * MIN),
    ]
    clock.set(T0 + HOUR)
    [ack] = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events)
    assert ack.conversions == 2

    # A: 2 messages, 1 response, 1:00-5:00 assigned; B: 2, 2, 7:00-20:00 (closed); C is
    # not credited, so its message and 5:00-7:00 count nowhere.
    goals = await report(stack, tenant, G.REPORT_GROUPING_GOAL)
    assert [activity(row.metrics) for row in goals.rows] == [(1, 4, 3, 240 + 780)] * 2
    assert activity(goals.totals) == (2, 4, 3, 1020)
    agents = await report(stack, tenant, G.REPORT_GROUPING_AGENT)
    assert {row.key: activity(row.metrics) for row in agents.rows} == {
        "A": (2, 2, 1, 240), "B": (2, 2, 2, 780)}
    assert activity(agents.totals) == (2, 4, 3, 1020)


async def test_d11_a_group_row_counts_a_shared_conversion_once(stack, make_tenant, clock):
    """D11: two credited agents of one group share a conversion: that group's row counts
    1 conversion and its value once (the account-level rule, applied per group); each
    agent's row counts it +1 with the full value; another group's row counts it too."""
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=ALL, groups=("sales", "bots"))
    events = [
        opened("c1", T0), assigned("c1", T0 + MIN, agent("bot", "bots")),
        assigned("c1", T0 + 2 * MIN, agent("A")), assigned("c1", T0 + 3 * MIN, agent("B")),
        visit(f"{SHOP}/checkout", T0 + 10 * MIN, conv="c1", amount="100.00"),
        closed("c1", T0 + 20 * MIN),
    ]
    clock.set(T0 + HOUR)
    [ack] = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events)
    assert ack.conversions == 1

    groups = await report(stack, tenant, G.REPORT_GROUPING_GROUP)
    rows = {row.key: row.metrics for row in groups.rows}
    assert {key: m.conversions for key, m in rows.items()} == {"bots": 1, "sales": 1}
    assert amounts(rows["sales"].transaction_values) == {"USD": Decimal(100)}
    assert rows["sales"].time_assigned_seconds == 60 + 17 * 60  # A 2:00-3:00, B 3:00-20:00
    assert groups.totals.conversions == 1
    assert amounts(groups.totals.transaction_values) == {"USD": Decimal(100)}
    agents = await report(stack, tenant, G.REPORT_GROUPING_AGENT)
    assert [(row.key, row.metrics.conversions, amounts(row.metrics.transaction_values))
            for row in agents.rows] == [(key, 1, {"USD": Decimal(100)})
                                        for key in ("A", "B", "bot")]


async def test_d12_skill_is_the_conversations_not_the_agents(stack, make_tenant, clock):
    """D12: a conversion's skill (the SKILL grouping and the skills filter) is the skill
    the conversation was opened, or last reopened, under at the hit; each credit keeps the
    agent's own skill at the assignment."""
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=LAST)
    returns_agent = G.Agent(id="A", name="Agent A", email="a@x.io", group_id="sales",
                            skill="returns", user_type=G.USER_TYPE_HUMAN)
    events = [
        opened("c1", T0, user="u1", skill="billing"), assigned("c1", T0 + MIN, returns_agent),
        visit(f"{SHOP}/checkout", T0 + 10 * MIN, conv="c1"),
        opened("c2", T0, user="u2", skill="billing"), assigned("c2", T0 + MIN, returns_agent),
        closed("c2", T0 + 2 * MIN), opened("c2", T0 + 3 * MIN, user="u2", skill="vip"),
        visit(f"{SHOP}/checkout", T0 + 10 * MIN, conv="c2"),
    ]
    clock.set(T0 + HOUR)
    [ack] = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events)
    assert ack.conversions == 2

    skills = await report(stack, tenant, G.REPORT_GROUPING_SKILL)
    assert [(row.key, row.metrics.conversions) for row in skills.rows] == [
        ("billing", 1), ("vip", 1)]
    assert (await report(stack, tenant, G.REPORT_GROUPING_SKILL, skills=["returns"])) \
        .totals.conversions == 0
    listed = await stack.tracker(tenant.admin).ListConversions(G.ListConversionsRequest())
    assert sorted((c.conversation_id, c.skill, [k.agent.skill for k in c.credits])
                  for c in listed.conversions) == [
        ("c1", "billing", ["returns"]), ("c2", "vip", ["returns"])]


async def test_d13_a_lead_goals_default_value_is_a_lead_value(stack, make_tenant, clock):
    """D13: a conversion's value is a lead value when its event is a LEAD, or when the
    event names no type and the goal's type is "generate leads" (so a lead goal's default
    value, used when the hit carries none, is a lead value); any other value is a
    transaction value. A typed event always decides."""
    tenant = await make_tenant()
    lead = (await stack.config(tenant.admin).CreateGoal(config_pb2.CreateGoalRequest(
        name="Lead form", agent_group_ids=["sales"], attribution_model=LAST,
        attribution_period_days=7, active=True, start_date=date(T0.date()),
        conditions=[url_condition("/lead")], goal_type=config_pb2.GOAL_TYPE_GENERATE_LEADS,
        transaction_value=common_pb2.Money(currency_code="USD", amount="20.00"),
    ))).goal
    await wait_for_goal(stack, lead.id, lead.revision)
    sale = await create_goal(stack, tenant, "Checkout", model=LAST, value=("USD", "50.00"))
    untyped = G.TRANSACTION_EVENT_TYPE_UNSPECIFIED
    hits = [  # (conversation, url, amount, event type)
        ("c1", "/lead", None, untyped),  # the lead goal's default value: lead
        ("c2", "/lead", "30.00", G.TRANSACTION_EVENT_TYPE_PURCHASE),  # typed: transaction
        ("c3", "/lead", "5.00", untyped),  # untyped on a lead goal: lead
        ("c4", "/checkout", None, untyped),  # the sale goal's default value: transaction
    ]
    events = []
    for conv, path, amount, event_type in hits:
        user = f"u-{conv}"
        events += [opened(conv, T0, user=user), assigned(conv, T0 + MIN, agent("A")),
                   visit(SHOP + path, T0 + 10 * MIN, user=user, amount=amount,
                         event_type=event_type)]
    clock.set(T0 + HOUR)
    [ack] = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events)
    assert ack.conversions == 4

    goals = await report(stack, tenant, G.REPORT_GROUPING_GOAL)
    rows = {row.key: row.metrics for row in goals.rows}
    assert amounts(rows[lead.id].lead_values) == {"USD": Decimal(25)}
    assert amounts(rows[lead.id].transaction_values) == {"USD": Decimal(30)}
    assert amounts(rows[sale.id].transaction_values) == {"USD": Decimal(50)}
    assert not rows[sale.id].lead_values
    assert amounts(goals.totals.lead_values) == {"USD": Decimal(25)}
    assert amounts(goals.totals.transaction_values) == {"USD": Decimal(80)}


async def test_d14_the_latest_rating_by_time_counts(stack, make_tenant, clock):
    """D14: a conversation rated more than once shows its latest rating by occurred_at
    (ties by event id, D21), whatever order the ratings arrive in, including a rating
    given after the conversion; every read shows the rating as it is now."""
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=LAST)
    ingest_stub = stack.tracker(tenant.keys[Role.INGEST])
    clock.set(T0 + 3 * HOUR)

    async def rating_now() -> str:
        listed = await stack.tracker(tenant.admin).ListConversions(
            G.ListConversionsRequest(conversation_id="c1"))
        [conversion] = listed.conversions
        return conversion.satisfaction_rating

    await ingest(ingest_stub, [opened("c1", T0), assigned("c1", T0 + MIN, agent("A")),
                               visit(f"{SHOP}/checkout", T0 + 10 * MIN, conv="c1")])
    assert await rating_now() == ""  # the export shows "Unoffered"
    await ingest(ingest_stub, [rated("c1", T0 + 20 * MIN, "bad")])
    await ingest(ingest_stub, [rated("c1", T0 + 15 * MIN, "good")])  # older, arrives later
    assert await rating_now() == "bad"
    await ingest(ingest_stub, [rated("c1", T0 + 2 * HOUR, "5", event_id="rate-b")])
    assert await rating_now() == "5"
    # Same instant: the greater event id is the later one, so "rate-a" changes nothing.
    await ingest(ingest_stub, [rated("c1", T0 + 2 * HOUR, "3", event_id="rate-a")])
    assert await rating_now() == "5"


async def test_d21_same_instant_events_go_in_event_id_order(stack, make_tenant, clock):
    """D21: events are ordered by occurred_at (milliseconds), then by event id compared as
    text, never by arrival: of two assignments in one millisecond the one with the greater
    id is the later. A hit sees every event of its own millisecond. Two hits of one goal in
    one conversation and millisecond, in one batch: the smaller event id converts."""
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=LAST)
    hit_at = T0 + 10 * MIN
    events = [
        # Sent X then Y, both at 12:05:00.000: by id, s-1 (Y) comes first, so X is the
        # latest assignee.
        opened("c1", T0, user="u1"),
        assigned("c1", T0 + 5 * MIN, agent("X"), event_id="s-2"),
        assigned("c1", T0 + 5 * MIN, agent("Y"), event_id="s-1"),
        visit(f"{SHOP}/checkout", hit_at, conv="c1"),
        # Assigned in the hit's own millisecond: the hit sees the assignment.
        opened("c2", T0, user="u2"), assigned("c2", hit_at, agent("Z")),
        visit(f"{SHOP}/checkout", hit_at, conv="c2"),
        # Two hits at one instant, the greater id first in the batch.
        opened("c3", T0, user="u3"), assigned("c3", T0 + MIN, agent("W")),
        visit(f"{SHOP}/checkout", hit_at + MS, conv="c3", amount="20.00", event_id="h-2"),
        visit(f"{SHOP}/checkout", hit_at + MS, conv="c3", amount="10.00", event_id="h-1"),
    ]
    clock.set(T0 + HOUR)
    [ack] = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events)
    assert ack.conversions == 3
    listed = await stack.tracker(tenant.admin).ListConversions(G.ListConversionsRequest())
    by_conversation = {c.conversation_id: c for c in listed.conversions}
    assert {conv: [k.agent.id for k in c.credits] for conv, c in by_conversation.items()} == {
        "c1": ["X"], "c2": ["Z"], "c3": ["W"]}
    assert by_conversation["c3"].hit_event_id == "h-1"
    assert by_conversation["c3"].transaction_value.amount == "10.00"


async def test_d20_reports_label_a_renamed_goal_with_its_latest_recorded_name(
    stack, make_tenant, clock
):
    """D20 (reports): conversions keep the goal name of their time; a GOAL row is labelled
    with the name recorded on its most recently opened conversation, which after a rename
    and a new conversion is the new name."""
    tenant = await make_tenant()
    goal = await create_goal(stack, tenant, "Checkout", model=LAST)
    ingest_stub = stack.tracker(tenant.keys[Role.INGEST])
    clock.set(T0 + HOUR)
    await ingest(ingest_stub, [opened("c1", T0, user="u1"), assigned("c1", T0, agent("A")),
                               visit(f"{SHOP}/checkout", T0 + MIN, conv="c1")])
    renamed = (await stack.config(tenant.admin).UpdateGoal(config_pb2.UpdateGoalRequest(
        goal_id=goal.id, goal=config_pb2.Goal(name="Checkout v2"),
        update_mask=FieldMask(paths=["name"])))).goal
    await wait_for_goal(stack, goal.id, renamed.revision)
    await ingest(ingest_stub, [opened("c2", T0 + 5 * MIN, user="u2"),
                               assigned("c2", T0 + 5 * MIN, agent("A")),
                               visit(f"{SHOP}/checkout", T0 + 6 * MIN, conv="c2")])

    listed = await stack.tracker(tenant.admin).ListConversions(G.ListConversionsRequest())
    assert sorted((c.conversation_id, c.goal_name) for c in listed.conversions) == [
        ("c1", "Checkout"), ("c2", "Checkout v2")]
    goals = await report(stack, tenant, G.REPORT_GROUPING_GOAL)
    assert [(row.key, row.label, row.metrics.conversions) for row in goals.rows] == [
        (goal.id, "Checkout v2", 2)]

