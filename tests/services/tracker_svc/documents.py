"""Stored tracker documents for tests that write straight into the tracker's database,
built by the store's own ``tracker_svc.store.documents`` functions so the shape has one
owner."""

from __future__ import annotations

import datetime as dt
import itertools

from goalflow_common.db import Document
from tracker_svc.domain.model import (
    Agent,
    ConversionRecord,
    Money,
    RecordedCredit,
    StoredEvent,
    conversion_key,
    event_key,
)
from tracker_svc.store.documents import conversion_document, event_document

T0 = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
_event_ids = itertools.count(1)


def conversion_doc(
    account_id: str,
    goal_id: str,
    conversation_id: str,
    when: dt.datetime,
    *,
    agents: tuple[str, ...] = ("agent-1",),
    model: str = "LAST_TOUCH",
    goal_type: str | None = "SELL_PRODUCT_OR_SERVICE",
    channel: str = "WEB_WIDGET",
    value: tuple[str, str] | None = ("USD", "100.00"),
    event_type: str | None = "PURCHASE",
) -> Document:
    """A conversion as ingest records it: one document per (goal, conversation); the k-th
    agent is assigned k + 1 minutes after the conversation opened, 30 minutes before
    ``when``."""
    opened = when - dt.timedelta(minutes=30)
    credits = []
    for k, agent_id in enumerate(agents):
        assigned = opened + dt.timedelta(minutes=k + 1)
        agent = Agent(id=agent_id, name=f"Agent {agent_id}", email=f"{agent_id}@example.com",
                      group_id=f"group-{k}", skill="billing",
                      user_type="BOT" if k == 2 else "HUMAN")
        credits.append(RecordedCredit(
            agent, assigned, (when - assigned) // dt.timedelta(milliseconds=1)))
    return conversion_document(ConversionRecord(
        id=conversion_key(account_id, goal_id, conversation_id), account_id=account_id,
        goal_id=goal_id, goal_name=f"Goal {goal_id}", goal_type=goal_type,
        attribution_model=model, conversation_id=conversation_id,
        end_user_id=f"user-{conversation_id}", channel=channel, skill="billing",
        conversion_time=when, conversation_open_time=opened, event_type=event_type,
        brand_event_id=f"order-{conversation_id}" if event_type else "",
        url=f"https://shop.example/checkout?c={conversation_id}",
        hit_event_id=f"hit-{goal_id}-{conversation_id}",
        transaction_value=Money(*value) if value else None,
        credits=tuple(credits), recorded_at=when + SECOND,
    ))


def rated_doc(account_id: str, conversation_id: str, rating: str, at: dt.datetime) -> Document:
    """A "rated" event of ``conversation_id``, received as it occurred at ``at``; event ids
    increase with each call."""
    event_id = f"rating-{next(_event_ids)}"
    return event_document(StoredEvent(
        key=event_key(account_id, event_id), account_id=account_id, event_id=event_id,
        kind="rated", at=at, received_at=at, conversation_id=conversation_id, rating=rating,
    ))
