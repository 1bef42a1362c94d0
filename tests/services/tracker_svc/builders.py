"""Event builders and an ingest helper for tracker tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, tracker_pb2
from tests.services.config_svc.helpers import date, url_condition
from tests.services.tracker_svc.documents import T0, conversion_doc

_ids = itertools.count(1)


def _ts(when: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def _event(at: dt.datetime, event_id: str | None = None, **kind: Any) -> tracker_pb2.Event:
    return tracker_pb2.Event(
        event_id=event_id or f"ev-{next(_ids)}", occurred_at=_ts(at), **kind
    )


def opened(conv: str, at: dt.datetime, *, user: str = "u1", channel: int =
           tracker_pb2.CHANNEL_WEB_WIDGET, skill: str = "billing", **kw: Any):
    return _event(at, conversation_opened=tracker_pb2.ConversationOpened(
        conversation_id=conv, end_user_id=user, channel=channel, skill=skill), **kw)


def agent(agent_id: str, group: str = "sales", *, user_type: int = tracker_pb2.USER_TYPE_HUMAN,
          survey_bot: bool = False) -> tracker_pb2.Agent:
    return tracker_pb2.Agent(id=agent_id, name=f"Agent {agent_id}", email=f"{agent_id}@x.io",
                             group_id=group, skill="billing", user_type=user_type,
                             survey_bot=survey_bot)


def assigned(conv: str, at: dt.datetime, who: tracker_pb2.Agent, **kw: Any):
    return _event(at, agent_assigned=tracker_pb2.AgentAssigned(
        conversation_id=conv, agent=who,
        start_reason=tracker_pb2.SEGMENT_START_REASON_TAKEN_FROM_QUEUE), **kw)


def unassigned(conv: str, at: dt.datetime, agent_id: str,
               reason: int = tracker_pb2.SEGMENT_END_REASON_AGENT_TRANSFER, **kw: Any):
    return _event(at, agent_unassigned=tracker_pb2.AgentUnassigned(
        conversation_id=conv, agent_id=agent_id, end_reason=reason), **kw)


def message(conv: str, at: dt.datetime, author: str,
            author_type: int = tracker_pb2.AUTHOR_TYPE_AGENT, **kw: Any):
    return _event(at, message_sent=tracker_pb2.MessageSent(
        conversation_id=conv, author_type=author_type, author_id=author), **kw)


def closed(conv: str, at: dt.datetime, **kw: Any):
    return _event(at, conversation_closed=tracker_pb2.ConversationClosed(conversation_id=conv),
                  **kw)


def rated(conv: str, at: dt.datetime, rating: str, **kw: Any):
    return _event(at, satisfaction_rated=tracker_pb2.SatisfactionRated(
        conversation_id=conv, rating=rating), **kw)


def visit(url: str, at: dt.datetime, *, user: str = "u1", conv: str = "",
          amount: str | None = None, currency: str = "USD",
          event_type: int = tracker_pb2.TRANSACTION_EVENT_TYPE_PURCHASE, **kw: Any):
    transaction = None
    if amount is not None:
        transaction = tracker_pb2.Transaction(
            value=common_pb2.Money(currency_code=currency, amount=amount),
            brand_event_id=f"order-{next(_ids)}", event_type=event_type)
    return _event(at, end_user_activity=tracker_pb2.EndUserActivity(
        end_user_id=user, url=url, conversation_id=conv, transaction=transaction), **kw)


async def ingest(stub, *batches: list[tracker_pb2.Event]) -> list[tracker_pb2.IngestEventsResponse]:
    """Send each list of events as one batch on one stream; return the acknowledgements."""

    async def requests():
        for n, events in enumerate(batches):
            yield tracker_pb2.IngestEventsRequest(batch_id=f"b{n}", events=events)

    return [ack async for ack in stub.IngestEvents(requests())]


async def create_goal(stack, tenant, name: str, *, model: int, period: int = 7,
                      groups: tuple[str, ...] = ("sales",), conditions=None, active: bool = True,
                      start: dt.date = dt.date(2026, 6, 1), end: dt.date | None = None,
                      value: tuple[str, str] | None = None) -> config_pb2.Goal:
    """Create a goal through config and wait until the tracker's goal cache has it."""
    request = config_pb2.CreateGoalRequest(
        name=name, agent_group_ids=list(groups), attribution_model=model,
        attribution_period_days=period, active=active,
        conditions=conditions or [url_condition("/checkout")],
        goal_type=config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE,
    )
    if active:
        request.start_date.CopyFrom(date(start))
        if end:
            request.end_date.CopyFrom(date(end))
    if value:
        request.transaction_value.CopyFrom(common_pb2.Money(currency_code=value[0],
                                                            amount=value[1]))
    goal = (await stack.config(tenant.admin).CreateGoal(request)).goal
    await wait_for_goal(stack, goal.id, goal.revision)
    return goal


async def wait_for_goal(stack, goal_id: str, revision: int, within_s: float = 3.0) -> None:
    """Wait until the tracker knows ``goal_id`` at ``revision`` or later (or its deletion)."""
    cache = stack.tracker_server.components["goals"]
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        known = cache.goal(goal_id)
        if known is not None and known.revision >= revision:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"tracker did not see goal {goal_id} revision {revision}")


async def read_ids(call, into: list[str]) -> None:
    """Append the id of every conversion the subscription delivers, until it ends."""
    async for message in call:
        into.append(message.conversion.id)


async def settled(tracker_db, account_id: str, received: list[str], agent_id: str = "A") -> int:
    """Insert a marker conversion for the agent straight into the database and wait until
    the subscriber has it: the change stream delivers in insertion order, so by then every
    echo of what came before has been dispatched (a late duplicate would be in
    ``received``). The number of conversions received before the marker."""
    marker = conversion_doc(account_id, "marker", f"marker-{next(_ids)}", T0,
                            agents=(agent_id,))
    await tracker_db.conversions.insert_one(marker)
    deadline = time.monotonic() + 20.0
    while marker["_id"] not in received:
        assert time.monotonic() < deadline, f"marker not delivered; {len(received)} received"
        await asyncio.sleep(0.02)
    received.remove(marker["_id"])
    return len(received)
