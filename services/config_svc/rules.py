"""docs/rules.md §2 as pure functions: validation of goal fields and status derivation.

A goal here is a plain dict in its stored shape (see ``store.py``). Every refusal raises
:class:`InvalidArgument` naming the field and the rule.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any

from goalflow_common.errors import InvalidArgument
from goalflow_common.money import check_money, normalize_amount
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2
from goalflow_common.protoconv import LAST_DAY, calendar_date

MAX_ACTIVE_GOALS = 15
MAX_CONDITIONS = 100
MAX_NAME = 100
MAX_DESCRIPTION = 1000
MAX_CONDITION_VALUE = 2048
MAX_GROUPS = 100
MAX_GROUP_ID = 128
MAX_PERIOD_DAYS = 31
ENDING_WINDOW_DAYS = 5

MODELS = {
    config_pb2.ATTRIBUTION_MODEL_FIRST_TOUCH: "FIRST_TOUCH",
    config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH: "LAST_TOUCH",
    config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES: "ALL_TOUCHES",
}
GOAL_TYPES = {
    config_pb2.GOAL_TYPE_UNSPECIFIED: None,
    config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE: "SELL_PRODUCT_OR_SERVICE",
    config_pb2.GOAL_TYPE_GENERATE_LEADS: "GENERATE_LEADS",
    config_pb2.GOAL_TYPE_SERVICE_ACTIVITY_COMPLETE: "SERVICE_ACTIVITY_COMPLETE",
    config_pb2.GOAL_TYPE_OTHER: "OTHER",
}
OPERATORS = {
    config_pb2.CONDITION_OPERATOR_CONTAINS: "CONTAINS",
    config_pb2.CONDITION_OPERATOR_IS: "IS",
}

# Fields an update mask may name, and the stored keys they map to.
UPDATABLE = (
    "name",
    "description",
    "start_date",
    "end_date",
    "agent_group_ids",
    "attribution_model",
    "attribution_period_days",
    "transaction_value",
    "goal_type",
    "conditions",
)


# Zero-width (non-)joiners are format characters that Persian and Indic spelling and emoji
# sequences need; every other format character (bidi overrides, zero-width space) is refused.
_JOINERS = frozenset("\u200c\u200d")


def _has_control(text: str) -> bool:
    return any(
        unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") and ch not in _JOINERS
        for ch in text
    )


# The exclusive end of tracking is the midnight after the end date, which must still be a
# representable date (and protobuf Timestamp) in every time zone.
MAX_DATE = LAST_DAY


def parse_date(field: str, msg: common_pb2.Date) -> dt.date:
    day = calendar_date(field, msg)
    if day > MAX_DATE:
        raise InvalidArgument(field, f"must be on or before {MAX_DATE.isoformat()}")
    return day


def date_or_none(field: str, parent: Any) -> str | None:
    """An optional Date field of ``parent`` as an ISO string (None when unset)."""
    if not parent.HasField(field):
        return None
    return parse_date(field, getattr(parent, field)).isoformat()


def name_key(name: str) -> str:
    """Names are unique per account without regard to case."""
    return unicodedata.normalize("NFKC", name).casefold()


def clean_name(raw: str) -> str:
    name = raw.strip()
    if not name:
        raise InvalidArgument("name", "required, 1 to 100 characters after trimming")
    if len(name) > MAX_NAME:
        raise InvalidArgument("name", f"must be at most {MAX_NAME} characters (got {len(name)})")
    if _has_control(name):
        raise InvalidArgument("name", "must not contain control characters")
    return name


def clean_description(raw: str) -> str:
    description = raw.strip()
    if len(description) > MAX_DESCRIPTION:
        raise InvalidArgument(
            "description",
            f"must be at most {MAX_DESCRIPTION} characters (got {len(description)})",
        )
    return description


def clean_groups(raw: Any) -> list[str]:
    groups = list(raw)
    if not groups:
        raise InvalidArgument("agent_group_ids", "at least one agent group is required")
    if len(groups) > MAX_GROUPS:
        raise InvalidArgument("agent_group_ids", f"at most {MAX_GROUPS} groups")
    seen: dict[str, int] = {}
    out = []
    for i, raw_group in enumerate(groups):
        group = raw_group.strip()
        field = f"agent_group_ids[{i}]"
        if not group:
            raise InvalidArgument(field, "must not be empty")
        if len(group) > MAX_GROUP_ID or _has_control(group):
            raise InvalidArgument(field, f"must be 1 to {MAX_GROUP_ID} printable characters")
        if group in seen:
            raise InvalidArgument(field, f"duplicate of agent_group_ids[{seen[group]}]")
        seen[group] = i
        out.append(group)
    return out


def clean_model(value: int) -> str:
    if value == config_pb2.ATTRIBUTION_MODEL_UNSPECIFIED:
        raise InvalidArgument(
            "attribution_model", "required: FIRST_TOUCH, LAST_TOUCH or ALL_TOUCHES"
        )
    if value not in MODELS:
        raise InvalidArgument("attribution_model", f"unknown value {value}")
    return MODELS[value]


def clean_period(value: int | None) -> int:
    if value is None:
        raise InvalidArgument("attribution_period_days", "required, 0 to 31 days")
    if not 0 <= value <= MAX_PERIOD_DAYS:
        raise InvalidArgument(
            "attribution_period_days", f"must be between 0 and {MAX_PERIOD_DAYS} days"
        )
    return value


def clean_value(parent: Any) -> dict[str, str] | None:
    if not parent.HasField("transaction_value"):
        return None
    money = parent.transaction_value
    problem = check_money(money.currency_code, money.amount)
    if problem:
        raise InvalidArgument(f"transaction_value.{problem[0]}", problem[1])
    return {"currency_code": money.currency_code, "amount": normalize_amount(money.amount)}


def clean_goal_type(value: int) -> str | None:
    if value not in GOAL_TYPES:
        raise InvalidArgument("goal_type", f"unknown value {value}")
    return GOAL_TYPES[value]


def clean_conditions(raw: Any) -> list[dict[str, str]]:
    conditions = list(raw)
    if not conditions:
        raise InvalidArgument("conditions", "at least one condition is required")
    if len(conditions) > MAX_CONDITIONS:
        raise InvalidArgument(
            "conditions",
            f"at most {MAX_CONDITIONS} conditions per goal (got {len(conditions)})",
        )
    out = []
    for i, cond in enumerate(conditions):
        field = f"conditions[{i}]"
        if cond.category != config_pb2.CONDITION_CATEGORY_URL:
            raise InvalidArgument(f"{field}.category", "must be URL")
        if cond.operator not in OPERATORS:
            raise InvalidArgument(f"{field}.operator", "must be CONTAINS or IS")
        value = cond.value.strip()
        if not value:
            raise InvalidArgument(f"{field}.value", "a URL or URL fragment is required")
        if len(value) > MAX_CONDITION_VALUE:
            raise InvalidArgument(
                f"{field}.value", f"must be at most {MAX_CONDITION_VALUE} characters"
            )
        if _has_control(value) or any(ch.isspace() for ch in value):
            raise InvalidArgument(f"{field}.value", "must not contain spaces or control characters")
        out.append({"category": "URL", "operator": OPERATORS[cond.operator], "value": value})
    return out


def fields_from(message: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The named writable fields of a CreateGoalRequest or Goal, validated one by one."""
    out: dict[str, Any] = {}
    for name in names:
        if name == "name":
            out["name"] = clean_name(message.name)
        elif name == "description":
            out["description"] = clean_description(message.description)
        elif name in ("start_date", "end_date"):
            out[name] = date_or_none(name, message)
        elif name == "agent_group_ids":
            out[name] = clean_groups(message.agent_group_ids)
        elif name == "attribution_model":
            out[name] = clean_model(message.attribution_model)
        elif name == "attribution_period_days":
            present = (
                message.HasField(name)
                if isinstance(message, config_pb2.CreateGoalRequest)
                else True
            )
            out[name] = clean_period(message.attribution_period_days if present else None)
        elif name == "transaction_value":
            out[name] = clean_value(message)
        elif name == "goal_type":
            out[name] = clean_goal_type(message.goal_type)
        elif name == "conditions":
            out[name] = clean_conditions(message.conditions)
    return out


def check_dates(goal: dict[str, Any], today: dt.date, previous: dict[str, Any] | None) -> None:
    """Date rules for a goal about to be stored (``previous`` is the stored version, or None
    when creating): start date required while active, never set before today, frozen once
    passed; end date not before the start date."""
    start, end = goal.get("start_date"), goal.get("end_date")
    if goal.get("active") and start is None:
        raise InvalidArgument("start_date", "required when the goal is active")
    if end is not None and start is None:
        raise InvalidArgument("end_date", "requires a start_date")
    if end is not None and end < start:
        raise InvalidArgument("end_date", f"must not be before start_date ({start})")
    old = previous.get("start_date") if previous else None
    if start == old:
        # Unchanged start date: fine, unless this turns the active flag on with a start in
        # the past (activation is refused then; a started goal's start date cannot move).
        if start is not None and start < today.isoformat() and goal.get("active") and not (
            previous and previous.get("active")
        ):
            raise InvalidArgument(
                "start_date",
                f"{start} is before today ({today}); the start date of a goal that has "
                "started cannot change, so it cannot be activated again",
            )
        return
    if old is not None and old < today.isoformat():
        raise InvalidArgument("start_date", f"cannot change once it has passed ({old})")
    if start is not None and start < today.isoformat():
        raise InvalidArgument(
            "start_date", f"cannot be set retroactively: must not be before today ({today})"
        )


def derive_status(goal: dict[str, Any], today: dt.date) -> tuple[int, int]:
    """(GoalStatus, days_remaining) at read time.

    Precedence: INACTIVE, ENDED, SCHEDULED, ENDING, ACTIVE. A goal that has not started is
    shown as scheduled even if it will end within five days.
    """
    if not goal.get("active"):
        return config_pb2.GOAL_STATUS_INACTIVE, 0
    iso_today = today.isoformat()
    end = goal.get("end_date")
    if end is not None and end < iso_today:
        return config_pb2.GOAL_STATUS_ENDED, 0
    start = goal.get("start_date")
    if start is not None and start > iso_today:
        return config_pb2.GOAL_STATUS_SCHEDULED, 0
    if end is not None:
        remaining = (dt.date.fromisoformat(end) - today).days + 1
        if remaining <= ENDING_WINDOW_DAYS:
            return config_pb2.GOAL_STATUS_ENDING, remaining
    return config_pb2.GOAL_STATUS_ACTIVE, 0
