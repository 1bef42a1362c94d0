"""Unit tests of conversation-state replay and the credit rules (pure functions)."""

from __future__ import annotations

import datetime as dt
import itertools

from tracker_svc.domain.attribution import build_state, credits_for
from tracker_svc.domain.model import Agent, StoredEvent, TrackedGoal

T0 = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
MIN, DAY = dt.timedelta(minutes=1), dt.timedelta(days=1)


_ids = itertools.count(1)


def agent(agent_id: str, group: str = "sales", survey_bot: bool = False) -> Agent:
    return Agent(agent_id, group_id=group, survey_bot=survey_bot)


def ev(kind: str, offset: dt.timedelta, **fields) -> StoredEvent:
    event_id = f"e{next(_ids)}"
    return StoredEvent(f"acct:{event_id}", "acct", event_id, kind, T0 + offset, T0 + offset,
                       "c", **fields)


def goal(model: str, period: int = 7, groups=("sales",)) -> TrackedGoal:
    return TrackedGoal("g", "acct", "G", None, model, period, frozenset(groups), None, True,
                       T0 - DAY, None)


def test_reopen_makes_a_closed_conversation_active_again():
    events = [ev("opened", 0 * MIN, channel="WEB_WIDGET", end_user_id="u"),
              ev("closed", 5 * MIN), ev("opened", 10 * MIN, channel="WEB_WIDGET")]
    assert build_state("c", events, T0 + 7 * MIN).active is False
    reopened = build_state("c", events, T0 + 11 * MIN)
    assert reopened.active is True and reopened.opened_at == T0


def test_state_ignores_events_after_the_hit():
    events = [ev("opened", 0 * MIN), ev("assigned", MIN, agent=agent("A")),
              ev("assigned", 10 * MIN, agent=agent("B"))]
    state = build_state("c", events, T0 + 5 * MIN)
    assert state.current is not None and state.current.agent.id == "A"
    assert [s.agent.id for s in state.segments] == ["A"]


def test_new_assignment_ends_the_previous_segment():
    events = [ev("opened", 0 * MIN), ev("assigned", MIN, agent=agent("A")),
              ev("assigned", 3 * MIN, agent=agent("B"))]
    state = build_state("c", events, T0 + 5 * MIN)
    assert state.segments[0].ended_at == T0 + 3 * MIN
    assert credits_for(goal("LAST_TOUCH"), state, T0 + 5 * MIN)[0].agent.id == "B"


def test_all_touches_credits_each_agent_once_with_first_assignment():
    events = [ev("opened", 0 * MIN), ev("assigned", MIN, agent=agent("A")),
              ev("assigned", 2 * MIN, agent=agent("B")),
              ev("assigned", 3 * MIN, agent=agent("A"))]
    credits = credits_for(goal("ALL_TOUCHES"), build_state("c", events, T0 + DAY), T0 + DAY)
    assert [(c.agent.id, c.assignment_time) for c in credits] == [
        ("A", T0 + MIN), ("B", T0 + 2 * MIN)]
    assert credits[0].contact_duration == DAY - MIN


def test_message_window_is_inclusive_at_both_ends():
    events = [ev("opened", 0 * MIN), ev("assigned", MIN, agent=agent("A")),
              ev("message", 2 * MIN, author_type="AGENT", author_id="A"), ev("closed", 3 * MIN)]
    hit = T0 + 2 * MIN + 7 * DAY
    state = build_state("c", events, hit)
    assert [c.agent.id for c in credits_for(goal("FIRST_TOUCH"), state, hit)] == ["A"]
    late = hit + dt.timedelta(milliseconds=1)
    assert credits_for(goal("FIRST_TOUCH"), build_state("c", events, late), late) == []


def test_end_user_messages_do_not_count_for_the_agent():
    events = [ev("opened", 0 * MIN), ev("assigned", MIN, agent=agent("A")),
              ev("message", 2 * MIN, author_type="END_USER", author_id="A"),
              ev("closed", 3 * MIN)]
    state = build_state("c", events, T0 + DAY)
    assert credits_for(goal("LAST_TOUCH"), state, T0 + DAY) == []


def test_last_touch_with_only_a_survey_bot_credits_nobody():
    events = [ev("opened", 0 * MIN), ev("assigned", MIN, agent=agent("PCS", survey_bot=True))]
    assert credits_for(goal("LAST_TOUCH"), build_state("c", events, T0 + DAY), T0 + DAY) == []


def test_goal_tracking_window_is_half_open():
    g = TrackedGoal("g", "a", "G", None, "ALL_TOUCHES", 7, frozenset(), None, True, T0, T0 + DAY)
    assert g.tracked_at(T0) and not g.tracked_at(T0 - MIN)
    assert g.tracked_at(T0 + DAY - MIN) and not g.tracked_at(T0 + DAY)
