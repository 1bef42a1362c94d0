"""docs/rules.md §4 end to end: events in over IngestEvents, conversions out, on the real
config + tracker servers and database."""

from __future__ import annotations

import datetime as dt

import pytest

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import config_pb2, tracker_pb2
from goalflow_common.protoconv import timestamp
from tests.services.config_svc.helpers import url_condition
from tests.services.tracker_svc.builders import (
    agent,
    assigned,
    closed,
    create_goal,
    ingest,
    message,
    opened,
    unassigned,
    visit,
    wait_for_goal,
)

FIRST = config_pb2.ATTRIBUTION_MODEL_FIRST_TOUCH
LAST = config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH
ALL = config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MIN, HOUR, DAY = dt.timedelta(minutes=1), dt.timedelta(hours=1), dt.timedelta(days=1)
URL = "https://shop.example/checkout"


async def conversions(stack, account_id: str) -> list[dict]:
    store = stack.tracker_server.components["db"]
    return await store.conversions.find({"account_id": account_id}).sort("_id", 1).to_list()


def credited(docs: list[dict]) -> list[list[str]]:
    return [[c["agent"]["id"] for c in doc["credits"]] for doc in docs]


def two_agent_conversation(*, close_at: dt.timedelta | None, b_message_at=6 * MIN):
    """Opened at T0; A assigned, writes, transfers to B; B writes; optionally closed."""
    a, b = agent("A"), agent("B")
    events = [
        opened("c1", T0),
        assigned("c1", T0 + MIN, a),
        message("c1", T0 + 2 * MIN, "A"),
        unassigned("c1", T0 + 5 * MIN, "A"),
        assigned("c1", T0 + 5 * MIN, b),
        message("c1", T0 + b_message_at, "B"),
    ]
    if close_at is not None:
        events.append(closed("c1", T0 + close_at))
    return events


# (model, conversation active at T?, hit inside the attribution period?, expected credits)
# Period P = 7 days. "Inside": agents' last messages are within [T-P, T].
SCENARIOS = [
    (FIRST, True, True, ["A"]),
    (FIRST, True, False, ["A"]),  # the period never applies to active conversations
    (FIRST, False, True, ["A"]),
    (FIRST, False, False, []),
    (LAST, True, True, ["B"]),
    (LAST, True, False, ["B"]),
    (LAST, False, True, ["B"]),
    (LAST, False, False, []),
    (ALL, True, True, ["A", "B"]),
    (ALL, True, False, ["A", "B"]),
    (ALL, False, True, ["A", "B"]),
    (ALL, False, False, []),
]


async def replayed_credits(stack, tenant, goal: config_pb2.Goal, model: int) -> list[str]:
    """The agents a simulation (ReplayGoal over the stored events, from the day before T0
    to the day after the latest hit) credits under ``model``."""
    start = dt.datetime.combine(T0.date() - DAY, dt.time(), tzinfo=dt.UTC)
    request = tracker_pb2.ReplayGoalRequest(
        goal=goal, start_time=timestamp(start), end_time=timestamp(start + 10 * DAY))
    updates = [u async for u in stack.tracker(tenant.keys[Role.SERVICE]).ReplayGoal(request)]
    [result] = [m for m in updates[-1].result.models if m.attribution_model == model]
    return sorted(row.key for row in result.agents)


@pytest.mark.parametrize(("model", "active", "inside", "expected"), SCENARIOS)
async def test_attribution_table(stack, make_tenant, clock, model, active, inside, expected):
    """Live ingest, then a simulation of the same goal over the stored events: the same
    credits (docs/rules.md §7 D23)."""
    tenant = await make_tenant()
    goal = await create_goal(stack, tenant, "Checkout", model=model, period=7)
    events = two_agent_conversation(close_at=None if active else HOUR)
    hit_at = T0 + 2 * HOUR if inside else T0 + 8 * DAY
    clock.set(hit_at)
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, [visit(URL, hit_at)])
    assert [a.accepted for a in acks] == [len(events), 1]
    docs = await conversions(stack, tenant.account_id)
    assert credited(docs) == ([expected] if expected else [])
    assert acks[1].conversions == (1 if expected else 0)
    assert await replayed_credits(stack, tenant, goal, model) == sorted(expected)


async def test_period_counts_back_from_the_hit_per_agent(stack, make_tenant, clock):
    """Inactive: only agents who wrote in [T-P, T] are credited (B wrote late, A did not)."""
    tenant = await make_tenant()
    goals = {m: await create_goal(stack, tenant, f"g{m}", model=m, period=7)
             for m in (FIRST, LAST, ALL)}
    events = two_agent_conversation(close_at=HOUR, b_message_at=6 * DAY)
    clock.set(T0 + 8 * DAY)
    await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, [visit(URL, T0 + 8 * DAY)])
    by_goal = {d["goal_id"]: d for d in await conversions(stack, tenant.account_id)}
    assert goals[FIRST].id not in by_goal
    assert credited([by_goal[goals[LAST].id]]) == [["B"]]
    assert credited([by_goal[goals[ALL].id]]) == [["B"]]


async def test_conversion_records_every_field(stack, make_tenant, clock):
    tenant = await make_tenant()
    goal = await create_goal(stack, tenant, "Checkout", model=ALL, value=("EUR", "25.00"))
    events = two_agent_conversation(close_at=None)
    hit = visit(URL + "?step=pay", T0 + HOUR, amount="99.90", currency="USD")
    clock.set(T0 + HOUR)
    await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, [hit])
    [doc] = await conversions(stack, tenant.account_id)
    assert doc["goal_id"] == goal.id and doc["goal_name"] == "Checkout"
    assert doc["goal_type"] == "SELL_PRODUCT_OR_SERVICE"
    assert doc["attribution_model"] == "ALL_TOUCHES"
    assert (doc["conversation_id"], doc["end_user_id"]) == ("c1", "u1")
    assert doc["conversion_time"] == T0 + HOUR
    assert doc["conversation_open_time"] == T0
    assert (doc["channel"], doc["skill"]) == ("WEB_WIDGET", "billing")
    assert doc["event_type"] == "PURCHASE" and doc["brand_event_id"].startswith("order-")
    assert doc["url"] == URL + "?step=pay" and doc["hit_event_id"] == hit.event_id
    assert doc["transaction_value"] == {"currency_code": "USD", "amount": "99.90"}
    a, b = doc["credits"]
    assert a["agent"] == {"id": "A", "name": "Agent A", "email": "A@x.io", "group_id": "sales",
                          "skill": "billing", "user_type": "HUMAN", "survey_bot": False}
    assert a["assignment_time"] == T0 + MIN
    assert a["contact_duration_ms"] == (HOUR - MIN) / dt.timedelta(milliseconds=1)
    assert b["assignment_time"] == T0 + 5 * MIN


async def test_goal_value_used_when_event_has_none(stack, make_tenant, clock):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=LAST, value=("EUR", "25.00"))
    clock.set(T0 + HOUR)
    await ingest(stack.tracker(tenant.keys[Role.INGEST]),
                 two_agent_conversation(close_at=None), [visit(URL, T0 + HOUR)])
    [doc] = await conversions(stack, tenant.account_id)
    assert doc["transaction_value"] == {"currency_code": "EUR", "amount": "25.00"}
    assert doc["event_type"] is None


async def test_agent_outside_goal_groups_earns_nothing(stack, make_tenant, clock):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=ALL, groups=("support",))
    events = [opened("c1", T0), assigned("c1", T0 + MIN, agent("A", "sales")),
              unassigned("c1", T0 + 2 * MIN, "A"),
              assigned("c1", T0 + 2 * MIN, agent("S", "support"))]
    clock.set(T0 + HOUR)
    await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, [visit(URL, T0 + HOUR)])
    assert credited(await conversions(stack, tenant.account_id)) == [["S"]]


async def test_first_touch_needs_the_first_agent_eligible(stack, make_tenant, clock):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=FIRST, groups=("support",))
    events = [opened("c1", T0), assigned("c1", T0 + MIN, agent("A", "sales")),
              unassigned("c1", T0 + 2 * MIN, "A"),
              assigned("c1", T0 + 2 * MIN, agent("S", "support"))]
    clock.set(T0 + HOUR)
    await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, [visit(URL, T0 + HOUR)])
    assert await conversions(stack, tenant.account_id) == []


async def test_last_touch_skips_survey_bot(stack, make_tenant, clock):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=LAST)
    bot = agent("PCS", "sales", user_type=tracker_pb2.USER_TYPE_BOT, survey_bot=True)
    events = [opened("c1", T0), assigned("c1", T0 + MIN, agent("A")),
              message("c1", T0 + 2 * MIN, "A"), unassigned("c1", T0 + 3 * MIN, "A"),
              assigned("c1", T0 + 3 * MIN, bot)]
    clock.set(T0 + HOUR)
    await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, [visit(URL, T0 + HOUR)])
    assert credited(await conversions(stack, tenant.account_id)) == [["A"]]


async def test_no_agent_assigned_no_conversion(stack, make_tenant, clock):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=ALL)
    clock.set(T0 + HOUR)
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]),
                        [opened("c1", T0)], [visit(URL, T0 + HOUR)])
    assert acks[1].conversions == 0
    assert await conversions(stack, tenant.account_id) == []


async def test_back_to_queue_then_conversion(stack, make_tenant, clock):
    """Back to queue leaves no assignee: last touch credits nobody, first touch still A."""
    tenant = await make_tenant()
    first = await create_goal(stack, tenant, "First", model=FIRST)
    await create_goal(stack, tenant, "Last", model=LAST)
    events = [opened("c1", T0), assigned("c1", T0 + MIN, agent("A")),
              unassigned("c1", T0 + 2 * MIN, "A", tracker_pb2.SEGMENT_END_REASON_BACK_TO_QUEUE)]
    clock.set(T0 + HOUR)
    await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, [visit(URL, T0 + HOUR)])
    docs = await conversions(stack, tenant.account_id)
    assert [(d["goal_id"], credited([d])[0]) for d in docs] == [(first.id, ["A"])]


async def test_period_zero(stack, make_tenant, clock):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=LAST, period=0)
    active = [opened("c1", T0), assigned("c1", T0 + MIN, agent("A")),
              message("c1", T0 + 2 * MIN, "A")]
    inactive = [opened("c2", T0, user="u2"), assigned("c2", T0 + MIN, agent("B")),
                message("c2", T0 + HOUR, "B"), closed("c2", T0 + HOUR)]
    clock.set(T0 + HOUR)
    await ingest(stack.tracker(tenant.keys[Role.INGEST]), active + inactive,
                 [visit(URL, T0 + HOUR, user="u1"), visit(URL, T0 + HOUR, user="u2")])
    docs = await conversions(stack, tenant.account_id)
    assert [(d["conversation_id"], credited([d])[0]) for d in docs] == [("c1", ["A"])]


async def test_unsupported_channel_stored_but_never_converts(stack, make_tenant, clock):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=ALL)
    events = [opened("c1", T0, channel=tracker_pb2.CHANNEL_UNITY_SDK),
              assigned("c1", T0 + MIN, agent("A"))]
    clock.set(T0 + HOUR)
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, [visit(URL, T0 + HOUR)])
    assert acks[0].accepted == 2 and list(acks[0].unsupported_channel_indexes) == [0]
    assert list(acks[1].unsupported_channel_indexes) == [0]
    assert await conversions(stack, tenant.account_id) == []


@pytest.mark.parametrize("situation", ["scheduled", "ended", "deactivated", "inactive"])
async def test_goal_not_tracked_at_hit_time(stack, make_tenant, clock, situation):
    tenant = await make_tenant()
    config = stack.config(tenant.admin)
    if situation == "scheduled":
        goal = await create_goal(stack, tenant, "G", model=ALL, start=dt.date(2026, 6, 3))
    elif situation == "ended":
        goal = await create_goal(stack, tenant, "G", model=ALL, end=dt.date(2026, 6, 1))
    elif situation == "inactive":
        goal = await create_goal(stack, tenant, "G", model=ALL, active=False)
    else:
        goal = await create_goal(stack, tenant, "G", model=ALL)
        goal = (await config.DeactivateGoal(
            config_pb2.DeactivateGoalRequest(goal_id=goal.id))).goal
        await wait_for_goal(stack, goal.id, goal.revision)
    hit_at = T0 + 13 * HOUR  # 2026-06-02 01:00 UTC: after an end date of June 1
    clock.set(hit_at)
    await ingest(stack.tracker(tenant.keys[Role.INGEST]),
                 two_agent_conversation(close_at=None), [visit(URL, hit_at)])
    assert await conversions(stack, tenant.account_id) == []


async def test_same_goal_twice_in_one_conversation_converts_once(stack, make_tenant, clock):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=LAST)
    clock.set(T0 + 2 * HOUR)
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]),
                        two_agent_conversation(close_at=None),
                        [visit(URL, T0 + HOUR), visit(URL, T0 + HOUR + MIN)],
                        [visit(URL, T0 + 2 * HOUR)])
    assert [a.conversions for a in acks] == [0, 1, 0]
    [doc] = await conversions(stack, tenant.account_id)
    assert doc["conversion_time"] == T0 + HOUR


async def test_two_goals_hit_by_one_url(stack, make_tenant, clock):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Any checkout", model=LAST)
    await create_goal(stack, tenant, "Exact", model=FIRST,
                      conditions=[url_condition(URL, config_pb2.CONDITION_OPERATOR_IS)])
    clock.set(T0 + HOUR)
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]),
                        two_agent_conversation(close_at=None), [visit(URL + "/", T0 + HOUR)])
    assert acks[1].conversions == 2
    docs = await conversions(stack, tenant.account_id)
    assert sorted((d["goal_name"], credited([d])[0][0]) for d in docs) == [
        ("Any checkout", "B"), ("Exact", "A")]


async def test_replayed_batch_after_lost_ack_changes_nothing(stack, make_tenant, clock):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=ALL)
    batch = [*two_agent_conversation(close_at=None), visit(URL, T0 + HOUR)]
    clock.set(T0 + HOUR)
    stub = stack.tracker(tenant.keys[Role.INGEST])
    first = await ingest(stub, batch)
    replay = await ingest(stub, batch)  # a producer that never saw the ack resends it all
    assert (first[0].accepted, first[0].duplicates, first[0].conversions) == (7, 0, 1)
    # The replay (same batch id) counts the conversion its first attempt recorded: the
    # producer sums only the acks it gets, and it never got the first one.
    assert (replay[0].accepted, replay[0].duplicates, replay[0].conversions) == (0, 7, 1)
    # The same events under another batch id (the file sent again) caused nothing.
    [again] = [ack async for ack in stub.IngestEvents(
        iter([tracker_pb2.IngestEventsRequest(batch_id="another", events=batch)]))]
    assert (again.accepted, again.duplicates, again.conversions) == (0, 7, 0)
    store = stack.tracker_server.components["db"]
    assert await store.events.count_documents({"account_id": tenant.account_id}) == 7
    assert len(await conversions(stack, tenant.account_id)) == 1


async def test_hit_resent_after_crash_before_attribution_is_recorded(stack, make_tenant, clock):
    """Events stored but the conversion not (a crash between the two): the resent batch
    is all duplicates, yet the conversion is recorded, once."""
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=LAST)
    batch = [*two_agent_conversation(close_at=None), visit(URL, T0 + HOUR)]
    clock.set(T0 + HOUR)
    stub = stack.tracker(tenant.keys[Role.INGEST])
    await ingest(stub, batch)
    store = stack.tracker_server.components["db"]
    await store.conversions.delete_many({"account_id": tenant.account_id})
    replay = await ingest(stub, batch)
    assert (replay[0].duplicates, replay[0].conversions) == (7, 1)


async def test_malformed_event_refused_alone(stack, make_tenant, clock):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=LAST)
    good = two_agent_conversation(close_at=None)
    bad = visit("", T0 + HOUR)  # no URL
    clock.set(T0 + HOUR)
    [ack] = await ingest(stack.tracker(tenant.keys[Role.INGEST]),
                         [*good[:3], bad, *good[3:], visit(URL, T0 + HOUR)])
    assert ack.accepted == len(good) + 1 and ack.conversions == 1
    [rejected] = ack.rejected
    assert (rejected.index, rejected.event_id, rejected.field) == (3, bad.event_id,
                                                                   "end_user_activity.url")
    assert rejected.reason == "required"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e.ClearField("occurred_at"), "occurred_at"),
        (lambda e: setattr(e, "event_id", ""), "event_id"),
        (lambda e: setattr(e, "event_id", "x" * 129), "event_id"),
        (lambda e: setattr(e, "account_id", "someone-else"), "account_id"),
        (lambda e: e.occurred_at.FromDatetime(dt.datetime(1999, 1, 1)), "occurred_at"),
        (lambda e: e.occurred_at.FromDatetime(dt.datetime(2030, 1, 1)), "occurred_at"),
        (lambda e: e.ClearField("conversation_opened"), "kind"),
        (lambda e: setattr(e.conversation_opened, "channel", 0), "conversation_opened.channel"),
        (lambda e: setattr(e.conversation_opened, "channel", 99), "conversation_opened.channel"),
        (lambda e: setattr(e.conversation_opened, "end_user_id", ""),
         "conversation_opened.end_user_id"),
    ],
)
async def test_each_rule_names_its_field(stack, make_tenant, mutate, field):
    tenant = await make_tenant()
    event = opened("c1", T0)
    mutate(event)
    [ack] = await ingest(stack.tracker(tenant.keys[Role.INGEST]), [event, opened("c2", T0)])
    assert ack.accepted == 1
    assert [(r.index, r.field) for r in ack.rejected] == [(0, field)]


async def test_conversation_resolved_from_latest_open_before_hit(stack, make_tenant, clock):
    """No conversation id on the activity: the end user's latest conversation opened at or
    before the hit is used (not one opened after it)."""
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=LAST)
    events = [opened("old", T0), assigned("old", T0 + MIN, agent("A")),
              opened("new", T0 + HOUR), assigned("new", T0 + HOUR + MIN, agent("B")),
              opened("later", T0 + 3 * HOUR), assigned("later", T0 + 3 * HOUR, agent("C"))]
    clock.set(T0 + 3 * HOUR)
    await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, [visit(URL, T0 + 2 * HOUR)])
    [doc] = await conversions(stack, tenant.account_id)
    assert (doc["conversation_id"], credited([doc])) == ("new", [["B"]])


async def test_other_accounts_goals_never_match(stack, make_tenant, clock):
    owner, other = await make_tenant(), await make_tenant()
    await create_goal(stack, owner, "Checkout", model=ALL)
    clock.set(T0 + HOUR)
    await ingest(stack.tracker(other.keys[Role.INGEST]),
                 two_agent_conversation(close_at=None), [visit(URL, T0 + HOUR)])
    assert await conversions(stack, other.account_id) == []
    assert await conversions(stack, owner.account_id) == []
