"""Stored conversion documents (schema in ``tracker_svc.store``) to protobuf messages."""

from __future__ import annotations

from typing import Any

from google.protobuf.duration_pb2 import Duration

from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, tracker_pb2
from goalflow_common.protoconv import enum_numbers, timestamp

_CHANNEL = enum_numbers(tracker_pb2.Channel)
_GOAL_TYPE = enum_numbers(config_pb2.GoalType)
_MODEL = enum_numbers(config_pb2.AttributionModel)
_EVENT_TYPE = enum_numbers(tracker_pb2.TransactionEventType)
_USER_TYPE = enum_numbers(tracker_pb2.UserType)


def _enum(table: dict[str, int], name: str | None) -> int:
    # Unknown or missing names read as UNSPECIFIED: history stays readable if an enum
    # value is ever retired.
    return table.get(name or "", 0)


def agent_to_proto(agent: dict[str, Any]) -> tracker_pb2.Agent:
    return tracker_pb2.Agent(
        id=agent.get("id", ""),
        name=agent.get("name", "") or "",
        email=agent.get("email", "") or "",
        group_id=agent.get("group_id", "") or "",
        skill=agent.get("skill", "") or "",
        user_type=_enum(_USER_TYPE, agent.get("user_type")),
        survey_bot=bool(agent.get("survey_bot")),
    )


def credit_to_proto(credit: dict[str, Any]) -> tracker_pb2.Credit:
    duration = Duration()
    duration.FromMilliseconds(int(credit.get("contact_duration_ms") or 0))
    return tracker_pb2.Credit(
        agent=agent_to_proto(credit["agent"]),
        assignment_time=timestamp(credit["assignment_time"]),
        contact_duration_to_goal=duration,
    )


def conversion_to_proto(
    doc: dict[str, Any], satisfaction_rating: str = ""
) -> tracker_pb2.Conversion:
    conversion = tracker_pb2.Conversion(
        id=doc["_id"],
        account_id=doc["account_id"],
        goal_id=doc["goal_id"],
        goal_name=doc.get("goal_name", "") or "",
        goal_type=_enum(_GOAL_TYPE, doc.get("goal_type")),
        attribution_model=_enum(_MODEL, doc.get("attribution_model")),
        conversation_id=doc["conversation_id"],
        end_user_id=doc.get("end_user_id", "") or "",
        conversion_time=timestamp(doc["conversion_time"]),
        channel=_enum(_CHANNEL, doc.get("channel")),
        skill=doc.get("skill", "") or "",
        event_type=_enum(_EVENT_TYPE, doc.get("event_type")),
        brand_event_id=doc.get("brand_event_id", "") or "",
        url=doc.get("url", "") or "",
        credits=[credit_to_proto(c) for c in doc.get("credits") or ()],
        hit_event_id=doc.get("hit_event_id", "") or "",
        satisfaction_rating=satisfaction_rating,
    )
    if doc.get("conversation_open_time") is not None:
        conversion.conversation_open_time.CopyFrom(timestamp(doc["conversation_open_time"]))
    value = doc.get("transaction_value")
    if value:
        conversion.transaction_value.CopyFrom(
            common_pb2.Money(currency_code=value["currency_code"], amount=value["amount"])
        )
    return conversion
