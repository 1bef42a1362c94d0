"""The attribution engine (docs/rules.md §4) as pure functions over stored events.

Conversation state at a hit time T is rebuilt from the conversation's events with
``at <= T``, so windows follow ``occurred_at``, not arrival order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
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
        at = ev.at
        if at > until:
            break
        kind = ev.kind
        if kind == "opened":
            if state.opened_at is None:
                state.opened_at = at
                state.end_user_id = ev.end_user_id
                state.channel = ev.channel
            state.skill = ev.skill or state.skill
            state.active = True
        elif kind == "closed":
            state.active = False  # the assignee is kept
        elif kind == "assigned":
            if state.current is not None and state.current.ended_at is None:
                state.current.ended_at = at  # one assignee at a time: the latest wins
            assert ev.agent is not None  # required of an assignment
            segment = Segment(ev.agent, at)
            state.segments.append(segment)
            state.current = segment
        elif kind == "unassigned":
            for seg in reversed(state.segments):
                if seg.agent.id == ev.agent_id and seg.ended_at is None:
                    seg.ended_at = at
                    break
            if state.current is not None and state.current.agent.id == ev.agent_id:
                if ev.end_reason == "BACK_TO_QUEUE":
                    state.current = None
        elif kind == "message":
            state.messages.append((at, ev.author_type, ev.author_id))
    return state


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

    chosen: list[Segment] = []
    if goal.model == "FIRST_TOUCH":
        if state.segments:
            chosen = [state.segments[0]]
    elif goal.model == "LAST_TOUCH":
        current = state.current
        if current is not None and current.agent.survey_bot:
            # Skip survey bots: the latest assignee before the bot(s) who is not one.
            index = state.segments.index(current)
            current = next(
                (s for s in reversed(state.segments[:index]) if not s.agent.survey_bot),
                None,
            )
        if current is not None:
            chosen = [current]
    else:  # ALL_TOUCHES: every agent assigned so far, each once (first eligible assignment)
        seen: set[str] = set()
        for seg in state.segments:
            if seg.agent.id not in seen and eligible(seg):
                seen.add(seg.agent.id)
                chosen.append(seg)

    credits = []
    for seg in chosen:
        agent_id = seg.agent.id
        if not eligible(seg) or not engaged(agent_id):
            continue
        first = state.first_assignment(agent_id) or seg.assigned_at
        credits.append(Credit(seg.agent, first, at - first))
    return credits
