"""Request builders for config tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from goalflow_common.pb.goals.v1 import common_pb2, config_pb2


def date(day: dt.date) -> common_pb2.Date:
    return common_pb2.Date(year=day.year, month=day.month, day=day.day)


def url_condition(value: str = "/checkout", operator: int = config_pb2.CONDITION_OPERATOR_CONTAINS):
    return config_pb2.Condition(
        category=config_pb2.CONDITION_CATEGORY_URL, operator=operator, value=value
    )


def goal_request(name: str = "Checkout", **overrides: Any) -> config_pb2.CreateGoalRequest:
    """A valid inactive CreateGoalRequest; keyword arguments replace fields."""
    fields: dict[str, Any] = {
        "name": name,
        "description": "Reach the checkout page",
        "agent_group_ids": ["sales"],
        "attribution_model": config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH,
        "attribution_period_days": 7,
        "conditions": [url_condition()],
    }
    fields.update(overrides)
    return config_pb2.CreateGoalRequest(**fields)
