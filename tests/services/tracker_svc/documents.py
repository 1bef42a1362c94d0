"""Stored tracker documents (the shapes in tracker_svc/store/tracker_store.py), for tests that write
straight into the tracker's database."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from tracker_svc.domain.model import conversion_key, event_key

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
) -> dict[str, Any]:
    """A conversion as ingest records it: one document per (goal, conversation)."""
    opened = when - dt.timedelta(minutes=30)
    credits = []
    for k, agent_id in enumerate(agents):
        assigned = opened + dt.timedelta(minutes=k + 1)
        credits.append({
            "agent": {"id": agent_id, "name": f"Agent {agent_id}",
                      "email": f"{agent_id}@example.com", "group_id": f"group-{k}",
                      "skill": "billing", "user_type": "BOT" if k == 2 else "HUMAN",
                      "survey_bot": False},
            "assignment_time": assigned,
            "contact_duration_ms": (when - assigned) // dt.timedelta(milliseconds=1),
        })
    return {
        "_id": conversion_key(account_id, goal_id, conversation_id),
        "account_id": account_id,
        "goal_id": goal_id,
        "goal_name": f"Goal {goal_id}",
        "goal_type": goal_type,
        "attribution_model": model,
        "conversation_id": conversation_id,
        "end_user_id": f"user-{conversation_id}",
        "channel": channel,
        "skill": "billing",
        "conversion_time": when,
        "conversation_open_time": opened,
        "event_type": event_type,
        "brand_event_id": f"order-{conversation_id}" if event_type else "",
        "url": f"https://shop.example/checkout?c={conversation_id}",
        "hit_event_id": f"hit-{goal_id}-{conversation_id}",
        "transaction_value": (
            {"currency_code": value[0], "amount": value[1]} if value else None
        ),
        "credits": credits,
        "credited_agent_ids": sorted(set(agents)),
        "credited_group_ids": sorted({c["agent"]["group_id"] for c in credits}),
        "recorded_at": when + SECOND,
    }


def rated_doc(account_id: str, conversation_id: str, rating: str, at: dt.datetime) -> dict:
    event_id = f"rating-{next(_event_ids)}"
    return {
        "_id": event_key(account_id, event_id), "account_id": account_id,
        "event_id": event_id, "kind": "rated", "at": at, "received_at": at,
        "conversation_id": conversation_id, "rating": rating,
    }
