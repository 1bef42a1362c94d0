"""docs/rules.md §4 (and §7 D12, D21) in memory: every row of the attribution rules run
against the pure batch core (``tracker_svc.domain.batch_attribution``), no gRPC, no
database.

Each case is a batch of stored-event documents (read into the typed model as the store
reads them) and the goals; it runs twice: with the
whole history in the batch, and with everything but the hits already stored (passed as
the stored opens and events), which must agree. ``test_attribution.py`` is the end-to-end
version of the same cases; the expected outcomes here are the same.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from tracker_svc.domain.batch_attribution import (
    BatchAttribution,
    attribute_batch,
    goal_hits,
    unsupported_openings,
)
from tracker_svc.domain.goal_table import GoalTable, KnownGoal
from tracker_svc.domain.matching import Condition
from tracker_svc.domain.model import (
    STATE_KINDS,
    ConversionRecord,
    Money,
    Opening,
    StoredEvent,
    TrackedGoal,
    conversion_key,
)
from tracker_svc.store.documents import conversion_document, event_from_document

ACCOUNT = "acct"
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MS, MIN, HOUR, DAY = (dt.timedelta(milliseconds=1), dt.timedelta(minutes=1),
                      dt.timedelta(hours=1), dt.timedelta(days=1))
URL = "https://shop.example/checkout"
FIRST, LAST, ALL = "FIRST_TOUCH", "LAST_TOUCH", "ALL_TOUCHES"
GOAL_VALUE = Money("EUR", "25.00")

Doc = dict[str, Any]
_ids = itertools.count(1)


# -- stored-event documents (the shapes of tracker_svc/store/tracker_store.py) -------------


def typed(events: list[Doc]) -> list[StoredEvent]:
    return [event_from_document(e) for e in events]


def _event(kind: str, at: dt.datetime, conv: str | None, event_id: str | None, **fields: Any
           ) -> Doc:
    # Zero-padded ids sort in creation order, so same-instant events keep it (D21).
    event_id = event_id or f"e{next(_ids):05d}"
    return {"_id": f"{ACCOUNT}:{event_id}", "account_id": ACCOUNT, "event_id": event_id,
            "kind": kind, "at": at, "received_at": at, "conversation_id": conv, **fields}


def opened(conv: str, at: dt.datetime, *, user: str = "u1", channel: str = "WEB_WIDGET",
           skill: str = "billing", event_id: str | None = None) -> Doc:
    return _event("opened", at, conv, event_id, end_user_id=user, channel=channel, skill=skill)


def agent(agent_id: str, group: str = "sales", *, survey_bot: bool = False) -> Doc:
    return {"id": agent_id, "name": f"Agent {agent_id}", "email": f"{agent_id}@x.io",
            "group_id": group, "skill": "billing",
            "user_type": "BOT" if survey_bot else "HUMAN", "survey_bot": survey_bot}


def assigned(conv: str, at: dt.datetime, agent_id: str, group: str = "sales", *,
             survey_bot: bool = False, reason: str = "TAKEN_FROM_QUEUE",
             event_id: str | None = None) -> Doc:
    return _event("assigned", at, conv, event_id,
                  agent=agent(agent_id, group, survey_bot=survey_bot), start_reason=reason)


def unassigned(conv: str, at: dt.datetime, agent_id: str, reason: str = "AGENT_TRANSFER"
               ) -> Doc:
    return _event("unassigned", at, conv, None, agent_id=agent_id, end_reason=reason)


def message(conv: str, at: dt.datetime, author: str, author_type: str = "AGENT") -> Doc:
    return _event("message", at, conv, None, author_type=author_type, author_id=author)


def closed(conv: str, at: dt.datetime) -> Doc:
    return _event("closed", at, conv, None)


def visit(at: dt.datetime, *, conv: str | None = None, user: str = "u1", url: str = URL,
          amount: str | None = None, event_id: str | None = None) -> Doc:
    transaction = None
    if amount is not None:
        transaction = {"currency_code": "USD", "amount": amount,
                       "brand_event_id": f"order-{amount}", "event_type": "PURCHASE"}
    return _event("activity", at, conv, event_id, end_user_id=user, url=url,
                  transaction=transaction)


def goal(model: str, *, period: int = 7, groups: tuple[str, ...] = ("sales",),
         goal_id: str | None = None, active: bool = True,
         start: dt.datetime | None = T0 - DAY, end: dt.datetime | None = None) -> TrackedGoal:
    return TrackedGoal(goal_id or model, ACCOUNT, f"Goal {goal_id or model}",
                       "SELL_PRODUCT_OR_SERVICE", model, period, frozenset(groups),
                       GOAL_VALUE, active, start, end)


def two_agents(*, close_at: dt.datetime | None) -> list[Doc]:
    """As ``test_attribution.two_agent_conversation``: opened at T0; A assigned (T0+1m),
    writes (T0+2m), transfers to B (T0+5m); B writes (T0+6m); optionally closed."""
    events = [opened("c1", T0), assigned("c1", T0 + MIN, "A"), message("c1", T0 + 2 * MIN, "A"),
              unassigned("c1", T0 + 5 * MIN, "A"), assigned("c1", T0 + 5 * MIN, "B"),
              message("c1", T0 + 6 * MIN, "B")]
    return events + ([closed("c1", close_at)] if close_at else [])


# -- running the core ----------------------------------------------------------------------


def run(goals: list[TrackedGoal], events: list[Doc], layout: str) -> BatchAttribution:
    """Attribute ``events`` as one batch ("batch"), or with all but the activities already
    stored ("stored"), against a goal table holding ``goals`` (URL contains /checkout)."""
    table = GoalTable()
    table.replace_all(KnownGoal(g, (Condition("CONTAINS", "/checkout"),)) for g in goals)
    if layout == "batch":
        batch, stored = typed(events), []
    else:
        batch = typed([e for e in events if e["kind"] == "activity"])
        stored = typed([e for e in events if e["kind"] != "activity"])
    hits = goal_hits(ACCOUNT, batch, range(len(batch)), table)
    return attribute_batch(
        hits, batch,
        opens=[Opening.of(e) for e in stored if e.kind == "opened"],
        events=[e for e in stored if e.kind in STATE_KINDS],
    )


def outcome(result: BatchAttribution) -> list[tuple[str, str, list[str], str | None]]:
    """(goal id, conversation, credited agent ids, value amount) per conversion."""
    return [(c.goal.id, c.conversation_id, [k.agent.id for k in c.credits],
             c.value.amount if c.value else None) for c in result.conversions]


@dataclass(frozen=True)
class Case:
    id: str
    goals: list[TrackedGoal]
    events: list[Doc]
    # (goal id, conversation, credited agents, value); no row: no conversion
    expected: list[tuple[str, str, list[str], str | None]]
    unsupported_hits: tuple[str, ...] = ()  # event ids of hits the ack names

    def param(self) -> Any:
        return pytest.param(self, id=self.id)


# -- the table: model x active/inactive x attribution period -------------------------------

A_MSG, B_MSG = T0 + 2 * MIN, T0 + 6 * MIN
# Credits per model of the two-agent conversation in each situation (P = 7 days unless
# named): A is the first agent, B the agent assigned at T; "inside" means both agents
# wrote within [T-P, T].
PERIOD_ROWS: list[tuple[str, bool, int, dt.datetime, dict[str, list[str]]]] = [
    # (situation, active at T, P, T, {model: credited})
    ("active-inside", True, 7, T0 + 2 * HOUR, {FIRST: ["A"], LAST: ["B"], ALL: ["A", "B"]}),
    # The period never applies to active conversations.
    ("active-far-outside", True, 7, T0 + 30 * DAY,
     {FIRST: ["A"], LAST: ["B"], ALL: ["A", "B"]}),
    ("active-P0", True, 0, T0 + 2 * HOUR, {FIRST: ["A"], LAST: ["B"], ALL: ["A", "B"]}),
    ("inactive-inside", False, 7, T0 + 2 * HOUR, {FIRST: ["A"], LAST: ["B"], ALL: ["A", "B"]}),
    # T-P exactly at A's message: both messages inside (the window is closed at both ends).
    ("inactive-A-at-T-P", False, 7, A_MSG + 7 * DAY,
     {FIRST: ["A"], LAST: ["B"], ALL: ["A", "B"]}),
    # A's message just outside, B's inside: each agent on their own messages.
    ("inactive-A-just-outside", False, 7, A_MSG + 7 * DAY + MS,
     {FIRST: [], LAST: ["B"], ALL: ["B"]}),
    ("inactive-B-at-T-P", False, 7, B_MSG + 7 * DAY, {FIRST: [], LAST: ["B"], ALL: ["B"]}),
    ("inactive-all-just-outside", False, 7, B_MSG + 7 * DAY + MS,
     {FIRST: [], LAST: [], ALL: []}),
    ("inactive-P1-inside", False, 1, T0 + DAY, {FIRST: ["A"], LAST: ["B"], ALL: ["A", "B"]}),
    # Closed at the instant of B's message and of the hit (the hit sees its millisecond).
    ("inactive-closed-at-T", False, 7, B_MSG, {FIRST: ["A"], LAST: ["B"], ALL: ["A", "B"]}),
    # P = 0: inactive conversations never earn credit, even with B writing at T.
    ("inactive-P0", False, 0, B_MSG, {FIRST: [], LAST: [], ALL: []}),
    ("inactive-P0-far", False, 0, T0 + 2 * HOUR, {FIRST: [], LAST: [], ALL: []}),
]


def _period_case(situation: str, active: bool, period: int, hit_at: dt.datetime,
                 model: str, credited: list[str]) -> Case:
    # Inactive: closed at B's message (same instant, later id: D21) or at T0+1h, before T.
    close_at = None if active else min(T0 + HOUR, hit_at)
    events = [*two_agents(close_at=close_at), visit(hit_at)]
    expected = [(model, "c1", credited, "25.00")] if credited else []
    return Case(f"{model}-{situation}", [goal(model, period=period)], events, expected)


PERIOD_CASES = [
    _period_case(situation, active, period, hit_at, model, by_model[model])
    for situation, active, period, hit_at, by_model in PERIOD_ROWS
    for model in (FIRST, LAST, ALL)
]


# -- the table: every other rule -----------------------------------------------------------


def _transfer(reason: str) -> list[Doc]:
    return [opened("c1", T0), assigned("c1", T0 + MIN, "A"),
            unassigned("c1", T0 + 2 * MIN, "A", reason),
            assigned("c1", T0 + 2 * MIN, "B", reason=reason)]


RULE_CASES = [
    # Group eligibility: only agents whose group at their assignment is the goal's.
    Case("groups-all-touches-skips-ineligible",
         [goal(ALL, groups=("support",))],
         [opened("c1", T0), assigned("c1", T0 + MIN, "A", "sales"),
          unassigned("c1", T0 + 2 * MIN, "A"), assigned("c1", T0 + 2 * MIN, "S", "support"),
          visit(T0 + HOUR)],
         [(ALL, "c1", ["S"], "25.00")]),
    Case("groups-first-touch-needs-first-agent-eligible",
         [goal(FIRST, groups=("support",))],
         [opened("c1", T0), assigned("c1", T0 + MIN, "A", "sales"),
          unassigned("c1", T0 + 2 * MIN, "A"), assigned("c1", T0 + 2 * MIN, "S", "support"),
          visit(T0 + HOUR)],
         []),
    Case("groups-last-touch-current-ineligible-no-fallback",
         [goal(LAST, groups=("sales",))],
         [opened("c1", T0), assigned("c1", T0 + MIN, "A", "sales"),
          unassigned("c1", T0 + 2 * MIN, "A"), assigned("c1", T0 + 2 * MIN, "S", "support"),
          visit(T0 + HOUR)],
         []),
    Case("groups-last-touch-current-eligible",
         [goal(LAST, groups=("support",))],
         [opened("c1", T0), assigned("c1", T0 + MIN, "A", "sales"),
          unassigned("c1", T0 + 2 * MIN, "A"), assigned("c1", T0 + 2 * MIN, "S", "support"),
          visit(T0 + HOUR)],
         [(LAST, "c1", ["S"], "25.00")]),
    # The group is the one recorded with each assignment: A moved from sales to support.
    Case("groups-history-kept-per-assignment",
         [goal(ALL, groups=("support",), goal_id="all-support"),
          goal(ALL, groups=("sales",), goal_id="all-sales")],
         [opened("c1", T0), assigned("c1", T0 + MIN, "A", "sales"),
          unassigned("c1", T0 + 2 * MIN, "A"), assigned("c1", T0 + 3 * MIN, "A", "support"),
          visit(T0 + HOUR)],
         [("all-sales", "c1", ["A"], "25.00"), ("all-support", "c1", ["A"], "25.00")]),
    # Survey bots: last touch passes over them; the other models do not.
    Case("survey-bot-last-touch-credits-agent-before",
         [goal(LAST)],
         [opened("c1", T0), assigned("c1", T0 + MIN, "A"), message("c1", T0 + 2 * MIN, "A"),
          unassigned("c1", T0 + 3 * MIN, "A"),
          assigned("c1", T0 + 3 * MIN, "PCS", survey_bot=True), visit(T0 + HOUR)],
         [(LAST, "c1", ["A"], "25.00")]),
    Case("survey-bot-last-touch-only-bot",
         [goal(LAST)],
         [opened("c1", T0), assigned("c1", T0 + MIN, "PCS", survey_bot=True),
          visit(T0 + HOUR)],
         []),
    Case("survey-bot-first-and-all-touches-count-it",
         [goal(FIRST), goal(ALL)],
         [opened("c1", T0), assigned("c1", T0 + MIN, "PCS", survey_bot=True),
          unassigned("c1", T0 + 2 * MIN, "PCS"), assigned("c1", T0 + 2 * MIN, "A"),
          visit(T0 + HOUR)],
         [(ALL, "c1", ["PCS", "A"], "25.00"), (FIRST, "c1", ["PCS"], "25.00")]),
    # Transfers: the new assignee is the agent assigned at T.
    *[Case(f"transfer-{reason.lower()}", [goal(FIRST), goal(LAST), goal(ALL)],
           [*_transfer(reason), visit(T0 + HOUR)],
           [(ALL, "c1", ["A", "B"], "25.00"), (FIRST, "c1", ["A"], "25.00"),
            (LAST, "c1", ["B"], "25.00")])
      for reason in ("AGENT_TRANSFER", "SKILL_TRANSFER", "TAKEOVER")],
    # One assignee at a time: an assignment without an unassignment replaces the previous.
    Case("assignment-without-unassignment-replaces",
         [goal(LAST), goal(ALL)],
         [opened("c1", T0), assigned("c1", T0 + MIN, "A"), assigned("c1", T0 + 2 * MIN, "B"),
          visit(T0 + HOUR)],
         [(ALL, "c1", ["A", "B"], "25.00"), (LAST, "c1", ["B"], "25.00")]),
    # Back to the queue: no assignee until the next assignment.
    Case("back-to-queue-leaves-no-assignee",
         [goal(FIRST), goal(LAST), goal(ALL)],
         [opened("c1", T0), assigned("c1", T0 + MIN, "A"),
          unassigned("c1", T0 + 2 * MIN, "A", "BACK_TO_QUEUE"), visit(T0 + HOUR)],
         [(ALL, "c1", ["A"], "25.00"), (FIRST, "c1", ["A"], "25.00")]),
    Case("back-to-queue-then-reassigned",
         [goal(LAST)],
         [opened("c1", T0), assigned("c1", T0 + MIN, "A"),
          unassigned("c1", T0 + 2 * MIN, "A", "BACK_TO_QUEUE"),
          assigned("c1", T0 + 3 * MIN, "B"), visit(T0 + HOUR)],
         [(LAST, "c1", ["B"], "25.00")]),
    # Closing keeps the assignee (inactive, B wrote inside the period).
    Case("closed-keeps-assignee",
         [goal(LAST)], [*two_agents(close_at=T0 + HOUR), visit(T0 + 2 * HOUR)],
         [(LAST, "c1", ["B"], "25.00")]),
    # Reopen: active again, so the period no longer applies.
    Case("reopen-makes-active-again",
         [goal(FIRST), goal(LAST), goal(ALL)],
         [*two_agents(close_at=T0 + HOUR), opened("c1", T0 + 20 * DAY),
          visit(T0 + 20 * DAY + MIN)],
         [(ALL, "c1", ["A", "B"], "25.00"), (FIRST, "c1", ["A"], "25.00"),
          (LAST, "c1", ["B"], "25.00")]),
    Case("closed-before-reopen-outside-period",
         [goal(FIRST), goal(LAST), goal(ALL)],
         [*two_agents(close_at=T0 + HOUR), opened("c1", T0 + 20 * DAY),
          visit(T0 + 19 * DAY)],
         []),
    # No agent ever assigned: self-serve, out of scope.
    Case("no-agent-no-conversion", [goal(FIRST), goal(LAST), goal(ALL)],
         [opened("c1", T0), visit(T0 + HOUR)], []),
    # Only agent-side messages count for the period.
    Case("end-user-message-does-not-count",
         [goal(LAST)],
         [opened("c1", T0), assigned("c1", T0 + MIN, "A"),
          message("c1", T0 + 2 * MIN, "A", "END_USER"), closed("c1", T0 + 3 * MIN),
          visit(T0 + DAY)],
         []),
    # Unsupported channels: stored, never converting, the hit named in the ack.
    *[Case(f"unsupported-channel-{channel.lower()}", [goal(ALL)],
           [opened("c1", T0, channel=channel), assigned("c1", T0 + MIN, "A"),
            visit(T0 + HOUR, event_id=f"hit-{channel}")],
           [], unsupported_hits=(f"hit-{channel}",))
      for channel in ("UNITY_SDK", "THIRD_PARTY_BOT")],
    *[Case(f"supported-channel-{channel.lower()}", [goal(LAST)],
           [opened("c1", T0, channel=channel), assigned("c1", T0 + MIN, "A"), visit(T0 + HOUR)],
           [(LAST, "c1", ["A"], "25.00")])
      for channel in ("WEB_WIDGET", "IOS_SDK", "ANDROID_SDK", "WHATSAPP")],
    # Goal tracked at the hit or not (tracking_end is exclusive).
    Case("goal-inactive", [goal(ALL, active=False)],
         [*two_agents(close_at=None), visit(T0 + HOUR)], []),
    Case("goal-before-start-date", [goal(ALL, start=T0 + HOUR + MS)],
         [*two_agents(close_at=None), visit(T0 + HOUR)], []),
    Case("goal-at-start-date", [goal(ALL, start=T0 + HOUR)],
         [*two_agents(close_at=None), visit(T0 + HOUR)], [(ALL, "c1", ["A", "B"], "25.00")]),
    Case("goal-no-start-date", [goal(ALL, start=None)],
         [*two_agents(close_at=None), visit(T0 + HOUR)], []),
    Case("goal-at-end-date", [goal(ALL, end=T0 + HOUR)],
         [*two_agents(close_at=None), visit(T0 + HOUR)], []),
    Case("goal-before-end-date", [goal(ALL, end=T0 + HOUR + MS)],
         [*two_agents(close_at=None), visit(T0 + HOUR)], [(ALL, "c1", ["A", "B"], "25.00")]),
    Case("goal-url-not-matching", [goal(ALL)],
         [*two_agents(close_at=None), visit(T0 + HOUR, url="https://shop.example/cart")], []),
    # The hit's conversation: the one it names, else the end user's latest opened at or
    # before the hit.
    Case("conversation-named-by-the-hit",
         [goal(LAST)],
         [opened("c1", T0), assigned("c1", T0 + MIN, "A"),
          opened("c2", T0 + 10 * MIN), assigned("c2", T0 + 11 * MIN, "B"),
          visit(T0 + HOUR, conv="c1")],
         [(LAST, "c1", ["A"], "25.00")]),
    Case("conversation-latest-opened-before-hit",
         [goal(LAST)],
         [opened("old", T0), assigned("old", T0 + MIN, "A"),
          opened("new", T0 + HOUR), assigned("new", T0 + HOUR + MIN, "B"),
          opened("later", T0 + 3 * HOUR), assigned("later", T0 + 3 * HOUR, "C"),
          visit(T0 + 2 * HOUR)],
         [(LAST, "new", ["B"], "25.00")]),
    Case("conversation-opened-at-the-hit-instant",
         [goal(LAST)],
         [opened("old", T0), assigned("old", T0 + MIN, "A"),
          opened("new", T0 + HOUR), assigned("new", T0 + HOUR, "B"), visit(T0 + HOUR)],
         [(LAST, "new", ["B"], "25.00")]),
    Case("conversation-same-instant-openings-by-event-id",
         [goal(LAST)],
         [opened("x", T0, event_id="o-2"), assigned("x", T0 + MIN, "X"),
          opened("y", T0, event_id="o-1"), assigned("y", T0 + MIN, "Y"), visit(T0 + HOUR)],
         [(LAST, "x", ["X"], "25.00")]),
    Case("conversation-of-the-hits-own-end-user",
         [goal(LAST)],
         [opened("c1", T0, user="u1"), assigned("c1", T0 + MIN, "A"),
          opened("c2", T0 + MIN, user="u2"), assigned("c2", T0 + 2 * MIN, "B"),
          visit(T0 + HOUR, user="u1")],
         [(LAST, "c1", ["A"], "25.00")]),
    Case("conversation-none-opened-before-hit",
         [goal(LAST)],
         [visit(T0), opened("c1", T0 + MS), assigned("c1", T0 + MS, "A")],
         []),
    # At most once per goal and conversation.
    Case("already-converted-later-hit-changes-nothing",
         [goal(LAST)],
         [*two_agents(close_at=None), visit(T0 + HOUR, amount="10.00"),
          visit(T0 + 2 * HOUR, amount="20.00")],
         [(LAST, "c1", ["B"], "10.00")]),
    Case("already-converted-same-instant-smaller-id-wins",
         [goal(LAST)],
         [*two_agents(close_at=None), visit(T0 + HOUR, amount="20.00", event_id="h-2"),
          visit(T0 + HOUR, amount="10.00", event_id="h-1")],
         [(LAST, "c1", ["B"], "10.00")]),
    Case("hit-without-credit-does-not-use-up-the-goal",
         [goal(LAST)],
         [opened("c1", T0), visit(T0 + MIN, amount="10.00"), assigned("c1", T0 + 2 * MIN, "A"),
          visit(T0 + 3 * MIN, amount="20.00")],
         [(LAST, "c1", ["A"], "20.00")]),
    Case("two-goals-one-url-both-convert",
         [goal(LAST), goal(FIRST)], [*two_agents(close_at=None), visit(T0 + HOUR)],
         [(FIRST, "c1", ["A"], "25.00"), (LAST, "c1", ["B"], "25.00")]),
    Case("one-goal-two-conversations-both-convert",
         [goal(LAST)],
         [opened("c1", T0, user="u1"), assigned("c1", T0 + MIN, "A"),
          opened("c2", T0, user="u2"), assigned("c2", T0 + MIN, "B"),
          visit(T0 + HOUR, user="u1"), visit(T0 + HOUR, user="u2")],
         [(LAST, "c1", ["A"], "25.00"), (LAST, "c2", ["B"], "25.00")]),
    # Same-instant events in event id order (D21); a hit sees its own millisecond.
    Case("same-instant-assignments-by-event-id",
         [goal(LAST)],
         [opened("c1", T0), assigned("c1", T0 + 5 * MIN, "X", event_id="s-2"),
          assigned("c1", T0 + 5 * MIN, "Y", event_id="s-1"), visit(T0 + 10 * MIN)],
         [(LAST, "c1", ["X"], "25.00")]),
    Case("assignment-at-the-hit-instant-counts",
         [goal(LAST)],
         [opened("c1", T0), assigned("c1", T0 + HOUR, "Z"), visit(T0 + HOUR)],
         [(LAST, "c1", ["Z"], "25.00")]),
    Case("events-after-the-hit-ignored",
         [goal(LAST)],
         [opened("c1", T0), assigned("c1", T0 + MIN, "A"), visit(T0 + HOUR),
          assigned("c1", T0 + HOUR + MS, "B")],
         [(LAST, "c1", ["A"], "25.00")]),
    # The value: the event's when it carries one, else the goal's.
    Case("value-from-the-event", [goal(LAST)],
         [*two_agents(close_at=None), visit(T0 + HOUR, amount="99.90")],
         [(LAST, "c1", ["B"], "99.90")]),
]


def _sorted(rows: list[tuple[str, str, list[str], str | None]]) -> list[Any]:
    return sorted(rows, key=lambda r: (r[1], r[0]))


@pytest.mark.parametrize("layout", ["batch", "stored"])
@pytest.mark.parametrize("case", [c.param() for c in PERIOD_CASES + RULE_CASES])
def test_attribution_table(case: Case, layout: str) -> None:
    result = run(case.goals, case.events, layout)
    assert _sorted(outcome(result)) == _sorted(case.expected)
    batch = case.events if layout == "batch" else [
        e for e in case.events if e["kind"] == "activity"]
    assert tuple(batch[i]["event_id"] for i in result.unsupported) == case.unsupported_hits


# -- what a conversion records, and the batch-level contract -------------------------------


def test_conversion_records_every_field() -> None:
    events = [*two_agents(close_at=None), opened("c1", T0 + 3 * MIN, skill="vip"),
              visit(T0 + HOUR, amount="99.90", event_id="hit-1")]
    [conversion] = run([goal(ALL)], events, "batch").conversions
    doc = conversion_document(
        ConversionRecord.of(conversion, batch_id="b7", recorded_at=T0 + 2 * HOUR))
    a, b = doc.pop("credits")
    assert doc == {
        "_id": conversion_key(ACCOUNT, ALL, "c1"), "account_id": ACCOUNT, "goal_id": ALL,
        "goal_name": f"Goal {ALL}", "goal_type": "SELL_PRODUCT_OR_SERVICE",
        "attribution_model": ALL, "conversation_id": "c1", "end_user_id": "u1",
        "channel": "WEB_WIDGET",
        "skill": "vip",  # D12: the skill of the latest (re)opening before the hit
        "conversion_time": T0 + HOUR,
        "conversation_open_time": T0,  # the first opening
        "event_type": "PURCHASE", "brand_event_id": "order-99.90", "url": URL,
        "hit_event_id": "hit-1",
        "transaction_value": {"currency_code": "USD", "amount": "99.90"},
        "credited_agent_ids": ["A", "B"], "credited_group_ids": ["sales"],
        "recorded_at": T0 + 2 * HOUR, "batch_id": "b7",
    }
    assert a == {"agent": agent("A"), "assignment_time": T0 + MIN,
                 "contact_duration_ms": (HOUR - MIN) // MS}
    assert (b["agent"]["id"], b["assignment_time"]) == ("B", T0 + 5 * MIN)


def test_goal_value_and_no_event_type_when_the_hit_has_no_transaction() -> None:
    [conversion] = run([goal(LAST)], [*two_agents(close_at=None), visit(T0 + HOUR)],
                       "batch").conversions
    assert (conversion.value, conversion.event_type, conversion.brand_event_id) == (
        GOAL_VALUE, None, "")


def test_all_touches_credits_each_agent_once_from_their_first_assignment() -> None:
    events = [opened("c1", T0), assigned("c1", T0 + MIN, "A"), assigned("c1", T0 + 2 * MIN, "B"),
              assigned("c1", T0 + 3 * MIN, "A"), visit(T0 + DAY)]
    [conversion] = run([goal(ALL)], events, "batch").conversions
    assert [(k.agent.id, k.assignment_time, k.contact_duration)
            for k in conversion.credits] == [("A", T0 + MIN, DAY - MIN),
                                             ("B", T0 + 2 * MIN, DAY - 2 * MIN)]


def test_a_resent_event_stored_and_in_the_batch_counts_once() -> None:
    """A replayed batch: its events are both stored and in the batch (merged, each once)."""
    events = typed([*two_agents(close_at=None), visit(T0 + HOUR)])
    hits = goal_hits(ACCOUNT, events, range(len(events)), _table([goal(ALL)]))
    stored = [e for e in events if e.kind in STATE_KINDS]
    result = attribute_batch(hits, events, events=stored,
                             opens=[Opening.of(e) for e in stored if e.kind == "opened"])
    assert outcome(result) == [(ALL, "c1", ["A", "B"], "25.00")]


def test_another_batchs_conversion_has_the_same_key() -> None:
    """A goal converted by an earlier batch is converted again with the same key: the
    store's unique ``_id`` makes the second a no-op (one conversion per conversation)."""
    history = two_agents(close_at=None)
    first = run([goal(LAST)], [*history, visit(T0 + HOUR)], "stored")
    again = run([goal(LAST)], [*history, visit(T0 + 2 * HOUR)], "stored")
    assert [c.key for c in first.conversions] == [c.key for c in again.conversions] == [
        conversion_key(ACCOUNT, LAST, "c1")]


def test_hits_take_their_batch_indexes_and_unsupported_openings_are_named() -> None:
    events = typed([opened("c1", T0, channel="UNITY_SDK"), opened("c2", T0, user="u2"),
                    assigned("c2", T0 + MIN, "A"), visit(T0 + HOUR), visit(T0 + HOUR, user="u2")])
    positions = [0, 2, 3, 5, 6]  # rejected events at 1 and 4 are not in ``events``
    hits = goal_hits(ACCOUNT, events, positions, _table([goal(LAST)]))
    assert [h.index for h in hits] == [5, 6]
    assert unsupported_openings(events, positions) == [0]
    result = attribute_batch(hits, events)
    assert result.unsupported == (5,)
    assert outcome(result) == [(LAST, "c2", ["A"], "25.00")]


def test_a_goal_of_another_account_never_matches() -> None:
    other = TrackedGoal("g", "other", "G", None, ALL, 7, frozenset({"sales"}), None, True,
                        T0 - DAY, None)
    events = typed([*two_agents(close_at=None), visit(T0 + HOUR)])
    assert goal_hits(ACCOUNT, events, range(len(events)), _table([other])) == []


def _table(goals: list[TrackedGoal]) -> GoalTable:
    table = GoalTable()
    table.replace_all(KnownGoal(g, (Condition("CONTAINS", "/checkout"),)) for g in goals)
    return table
