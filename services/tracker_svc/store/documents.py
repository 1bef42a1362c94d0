"""The stored form of the tracker's model (schemas in ``tracker_svc.store.tracker_store``):
``*_document`` builds a document, ``*_from_document`` reads one back. Raw documents stay
inside store/.

An event document holds only its kind's fields (as since the first release), so reading
one back uses ``.get`` for every kind-specific field.
"""

from __future__ import annotations

import datetime as dt

from goalflow_common.db import Document
from tracker_svc.domain.model import (
    Agent,
    ConversionRecord,
    EventKind,
    Money,
    Opening,
    RecordedCredit,
    ReportConversion,
    StoredEvent,
    Transaction,
)


def _money_document(money: Money | None) -> Document | None:
    if money is None:
        return None
    return {"currency_code": money.currency_code, "amount": money.amount}


def _money(doc: Document | None) -> Money | None:
    if not doc:
        return None
    return Money(doc["currency_code"], doc["amount"])


def agent_document(agent: Agent) -> Document:
    return {"id": agent.id, "name": agent.name, "email": agent.email,
            "group_id": agent.group_id, "skill": agent.skill, "user_type": agent.user_type,
            "survey_bot": agent.survey_bot}


def agent_from_document(doc: Document) -> Agent:
    return Agent(
        id=doc.get("id", ""), name=doc.get("name") or "", email=doc.get("email") or "",
        group_id=doc.get("group_id") or "", skill=doc.get("skill") or "",
        user_type=doc.get("user_type"), survey_bot=bool(doc.get("survey_bot")),
    )


def _add_kind_fields(doc: Document, event: StoredEvent) -> None:
    """Add the fields of ``event``'s kind to its document, as stored."""
    kind = event.kind
    if kind == "activity":
        transaction = event.transaction
        doc["end_user_id"], doc["url"] = event.end_user_id, event.url
        doc["transaction"] = None if transaction is None else {
            "currency_code": transaction.value.currency_code,
            "amount": transaction.value.amount,
            "brand_event_id": transaction.brand_event_id,
            "event_type": transaction.event_type}
    elif kind == "opened":
        doc["end_user_id"], doc["channel"], doc["skill"] = (
            event.end_user_id, event.channel, event.skill)
    elif kind == "assigned":
        assert event.agent is not None
        doc["agent"], doc["start_reason"] = agent_document(event.agent), event.start_reason
    elif kind == "unassigned":
        doc["agent_id"], doc["end_reason"] = event.agent_id, event.end_reason
    elif kind == "message":
        doc["author_type"], doc["author_id"] = event.author_type, event.author_id
    elif kind == "rated":
        doc["rating"] = event.rating


def event_document(event: StoredEvent) -> Document:
    """The ``events`` document of ``event``."""
    doc = {"_id": event.key, "account_id": event.account_id, "event_id": event.event_id,
           "at": event.at, "received_at": event.received_at,
           "conversation_id": event.conversation_id, "kind": event.kind}
    _add_kind_fields(doc, event)
    return doc


def _transaction(doc: Document | None) -> Transaction | None:
    if not doc:
        return None
    return Transaction(Money(doc["currency_code"], doc["amount"]),
                       doc.get("brand_event_id") or "", doc.get("event_type"))


def event_from_document(doc: Document) -> StoredEvent:
    agent = doc.get("agent")
    kind: EventKind = doc["kind"]
    return StoredEvent(
        key=doc["_id"], account_id=doc["account_id"], event_id=doc["event_id"], kind=kind,
        at=doc["at"], received_at=doc.get("received_at") or doc["at"],
        conversation_id=doc.get("conversation_id"),
        end_user_id=doc.get("end_user_id") or "", channel=doc.get("channel") or "",
        skill=doc.get("skill") or "",
        agent=agent_from_document(agent) if agent else None,
        start_reason=doc.get("start_reason"), agent_id=doc.get("agent_id") or "",
        end_reason=doc.get("end_reason"), author_type=doc.get("author_type") or "",
        author_id=doc.get("author_id") or "", rating=doc.get("rating") or "",
        url=doc.get("url") or "", transaction=_transaction(doc.get("transaction")),
    )


def opening_document(opening: Opening) -> Document:
    return {"_id": opening.key, "account_id": opening.account_id,
            "end_user_id": opening.end_user_id, "conversation_id": opening.conversation_id,
            "at": opening.at}


def opening_from_document(doc: Document) -> Opening:
    return Opening(doc["_id"], doc["account_id"], doc["end_user_id"], doc["conversation_id"],
                   doc["at"])


def conversion_document(record: ConversionRecord) -> Document:
    """The ``conversions`` document of a recorded conversion."""
    return {
        "_id": record.id,
        "account_id": record.account_id,
        "goal_id": record.goal_id,
        "goal_name": record.goal_name,
        "goal_type": record.goal_type,
        "attribution_model": record.attribution_model,
        "conversation_id": record.conversation_id,
        "end_user_id": record.end_user_id,
        "channel": record.channel,
        "skill": record.skill,
        "conversion_time": record.conversion_time,
        "conversation_open_time": record.conversation_open_time,
        "event_type": record.event_type,
        "brand_event_id": record.brand_event_id,
        "url": record.url,
        "hit_event_id": record.hit_event_id,
        "transaction_value": _money_document(record.transaction_value),
        "credits": [
            {"agent": agent_document(c.agent), "assignment_time": c.assignment_time,
             "contact_duration_ms": c.contact_duration_ms}
            for c in record.credits
        ],
        "credited_agent_ids": record.credited_agent_ids,
        "credited_group_ids": record.credited_group_ids,
        "recorded_at": record.recorded_at,
        "batch_id": record.batch_id,
    }


def _credit(doc: Document) -> RecordedCredit:
    return RecordedCredit(agent_from_document(doc["agent"]), doc["assignment_time"],
                          int(doc.get("contact_duration_ms") or 0))


def conversion_from_document(doc: Document) -> ConversionRecord:
    """A stored conversion; optional fields missing or None read as their empty value, so
    history stays readable if a field is ever retired."""
    return ConversionRecord(
        id=doc["_id"], account_id=doc["account_id"], goal_id=doc["goal_id"],
        goal_name=doc.get("goal_name") or "", goal_type=doc.get("goal_type"),
        attribution_model=doc.get("attribution_model"),
        conversation_id=doc["conversation_id"], end_user_id=doc.get("end_user_id") or "",
        channel=doc.get("channel") or "", skill=doc.get("skill") or "",
        conversion_time=doc["conversion_time"],
        conversation_open_time=doc.get("conversation_open_time"),
        event_type=doc.get("event_type"), brand_event_id=doc.get("brand_event_id") or "",
        url=doc.get("url") or "", hit_event_id=doc.get("hit_event_id") or "",
        transaction_value=_money(doc.get("transaction_value")),
        credits=tuple(_credit(c) for c in doc.get("credits") or ()),
        recorded_at=doc.get("recorded_at"), batch_id=doc.get("batch_id") or "",
    )


REPORT_PROJECTION = {
    "_id": 1, "goal_id": 1, "goal_name": 1, "conversation_id": 1, "skill": 1,
    "conversation_open_time": 1, "event_type": 1, "goal_type": 1, "transaction_value": 1,
    "credits": 1,
}


def report_conversion_from_document(doc: Document) -> ReportConversion:
    """A conversion as read for a report (``REPORT_PROJECTION``)."""
    open_time: dt.datetime = doc["conversation_open_time"]
    return ReportConversion(
        id=doc["_id"], goal_id=doc["goal_id"], goal_name=doc.get("goal_name") or "",
        goal_type=doc.get("goal_type"), conversation_id=doc["conversation_id"],
        skill=doc.get("skill") or "", conversation_open_time=open_time,
        event_type=doc.get("event_type"),
        transaction_value=_money(doc.get("transaction_value")),
        credited=tuple(agent_from_document(c["agent"]) for c in doc.get("credits") or ()),
    )
