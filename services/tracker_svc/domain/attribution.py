"""The attribution engine (docs/rules.md §4) as pure functions over stored events.

Conversation state at a hit time T is rebuilt from the conversation's events with
``at <= T``, so windows follow ``occurred_at``, not arrival order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tracker_svc.domain.model import (
    UNSUPPORTED_CHANNELS,
    Agent,
    Credit,
    StoredEvent,
    TrackedGoal,
)


@dataclass(slots=True)
class Segment:
    """One assignment of an agent: from assigned_at until ended_at (None: still assigned)."""

    agent: Agent
    assigned_at: dt.datetime
    ended_at: dt.datetime | None = None


@dataclass(slots=True)
class ConversationState:
    """A conversation as it stood at some time T."""

    conversation_id: str
    end_user_id: str = ""
    channel: str = ""
    skill: str = ""
    opened_at: dt.datetime | None = None  # first opening
    active: bool = False
    segments: list[Segment] = field(default_factory=list)
    current: Segment | None = None  # the agent assigned to the ticket
    messages: list[tuple[dt.datetime, str, str]] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        return self.opened_at is not None

    def first_assignment(self, agent_id: str) -> dt.datetime | None:
        for seg in self.segments:
            if seg.agent.id == agent_id:
                return seg.assigned_at
        return None

    def sent_message_between(self, agent_id: str, start: dt.datetime, end: dt.datetime) -> bool:
        return any(
            author == agent_id and kind != "END_USER" and start <= at <= end
            for at, kind, author in self.messages
        )


def build_state(
    conversation_id: str, events: Iterable[StoredEvent], until: dt.datetime
) -> ConversationState:
    """Replay a conversation's events (oldest first) up to and including ``until``."""
    state = ConversationState(conversation_id)
    for ev in events:
        if ev.at > until:
            break
        kind = ev.kind
        if kind == "opened":
            _opened(state, ev)
        elif kind == "closed":
            state.active = False  # the assignee is kept
        elif kind == "assigned":
            _assigned(state, ev)
        elif kind == "unassigned":
            _unassigned(state, ev)
        elif kind == "message":
            state.messages.append((ev.at, ev.author_type, ev.author_id))
    return state


def _opened(state: ConversationState, ev: StoredEvent) -> None:
    if state.opened_at is None:
        state.opened_at = ev.at
        state.end_user_id = ev.end_user_id
        state.channel = ev.channel
    state.skill = ev.skill or state.skill
    state.active = True


def _assigned(state: ConversationState, ev: StoredEvent) -> None:
    if state.current is not None and state.current.ended_at is None:
        state.current.ended_at = ev.at  # one assignee at a time: the latest wins
    assert ev.agent is not None  # required of an assignment
    segment = Segment(ev.agent, ev.at)
    state.segments.append(segment)
    state.current = segment


def _unassigned(state: ConversationState, ev: StoredEvent) -> None:
    for seg in reversed(state.segments):
        if seg.agent.id == ev.agent_id and seg.ended_at is None:
            seg.ended_at = ev.at
            break
    current = state.current
    if current is not None and current.agent.id == ev.agent_id:
        if ev.end_reason == "BACK_TO_QUEUE":
            state.current = None


def credits_for(goal: TrackedGoal, state: ConversationState, at: dt.datetime) -> list[Credit]:
    """The agents credited for ``goal`` converting in ``state``'s conversation at ``at``.

    An empty list means no conversion (no eligible agent: self-serve is out of scope).
    """
    if not state.exists or state.channel in UNSUPPORTED_CHANNELS:
        return []
    if not state.active and goal.period_days == 0:
        return []  # P = 0: inactive conversations never earn credit
    window_start = at - dt.timedelta(days=goal.period_days)

    def eligible(seg: Segment) -> bool:
        return seg.agent.group_id in goal.group_ids

    def engaged(agent_id: str) -> bool:
        # The attribution period applies to inactive conversations only.
        return state.active or state.sent_message_between(agent_id, window_start, at)

    chosen = _touched(goal, state, eligible)
    credits: list[Credit] = []
    for seg in chosen:
        agent_id = seg.agent.id
        if not eligible(seg) or not engaged(agent_id):
            continue
        first = state.first_assignment(agent_id) or seg.assigned_at
        credits.append(Credit(seg.agent, first, at - first))
    return credits


def _touched(
    goal: TrackedGoal, state: ConversationState, eligible: Callable[[Segment], bool]
) -> list[Segment]:
    """The assignments ``goal``'s model looks at (eligibility and engagement are checked
    by the caller)."""
    if goal.model == "FIRST_TOUCH":
        return state.segments[:1]
    if goal.model == "LAST_TOUCH":
        current = _last_touch(state)
        return [current] if current is not None else []
    # ALL_TOUCHES: every agent assigned so far, each once (first eligible assignment)
    seen: set[str] = set()
    chosen: list[Segment] = []
    for seg in state.segments:
        if seg.agent.id not in seen and eligible(seg):
            seen.add(seg.agent.id)
            chosen.append(seg)
    return chosen


def _last_touch(state: ConversationState) -> Segment | None:
    current = state.current
    if current is not None and current.agent.survey_bot:
        # Skip survey bots: the latest assignee before the bot(s) who is not one.
        index = state.segments.index(current)
        current = next(
            (s for s in reversed(state.segments[:index]) if not s.agent.survey_bot), None
        )
    return current
