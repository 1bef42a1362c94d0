"""Stored goal documents to protobuf messages."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from config_svc import rules
from goalflow_common.clock import start_of_day
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2
from goalflow_common.protoconv import date_message, timestamp

_MODEL_ENUM = {name: number for number, name in rules.MODELS.items()}
_TYPE_ENUM = {name: number for number, name in rules.GOAL_TYPES.items() if name}
_OPERATOR_ENUM = {name: number for number, name in rules.OPERATORS.items()}


# Every goal of a page shares a handful of (date, zone) pairs; ZoneInfo maths once each.
_start_of_day = functools.lru_cache(maxsize=4096)(start_of_day)


def goal_to_proto(doc: dict[str, Any], today: dt.date, time_zone: str) -> config_pb2.Goal:
    status, remaining = rules.derive_status(doc, today)
    goal = config_pb2.Goal(
        id=doc["_id"],
        account_id=doc["account_id"],
        name=doc["name"],
        description=doc.get("description", ""),
        active=bool(doc.get("active")),
        agent_group_ids=doc["agent_group_ids"],
        attribution_model=_MODEL_ENUM[doc["attribution_model"]],
        attribution_period_days=doc["attribution_period_days"],
        goal_type=_TYPE_ENUM.get(doc.get("goal_type") or "", 0),
        conditions=[
            config_pb2.Condition(
                category=config_pb2.CONDITION_CATEGORY_URL,
                operator=_OPERATOR_ENUM[c["operator"]],
                value=c["value"],
            )
            for c in doc["conditions"]
        ],
        status=status,
        days_remaining=remaining,
        time_zone=time_zone,
        create_time=timestamp(doc["create_time"]),
        update_time=timestamp(doc["update_time"]),
        revision=doc["revision"],
    )
    if doc.get("start_date"):
        start = dt.date.fromisoformat(doc["start_date"])
        goal.start_date.CopyFrom(date_message(start))
        goal.tracking_start_time.CopyFrom(timestamp(_start_of_day(start, time_zone)))
    if doc.get("end_date"):
        end = dt.date.fromisoformat(doc["end_date"])
        goal.end_date.CopyFrom(date_message(end))
        after_end = end + dt.timedelta(days=1)
        goal.tracking_end_time.CopyFrom(timestamp(_start_of_day(after_end, time_zone)))
    if doc.get("transaction_value"):
        goal.transaction_value.CopyFrom(common_pb2.Money(**doc["transaction_value"]))
    return goal
