"""docs/rules.md §2 as pure functions: validation of goal fields, the date rules and status
derivation.

Inputs are plain values and model objects (the API layer has already read them out of the
request). Every refusal raises :class:`InvalidArgument` naming the field and the rule.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Sequence

from config_svc.domain.model import GoalStatus, Money, Schedule, name_key
from goalflow_common.errors import InvalidArgument
from goalflow_common.limits import LAST_DAY, MAX_ID
from goalflow_common.money import check_money, normalize_amount

__all__ = [
    "ENDING_WINDOW_DAYS", "MAX_ACTIVE_GOALS", "MAX_CONDITIONS", "MAX_CONDITION_VALUE",
    "MAX_DATE", "MAX_DESCRIPTION", "MAX_GROUPS", "MAX_GROUP_ID", "MAX_NAME",
    "MAX_PERIOD_DAYS", "UPDATABLE", "check_condition_count", "check_dates",
    "clean_condition_value", "clean_description", "clean_groups", "clean_money",
    "clean_name", "clean_period", "derive_status", "name_key",
]

MAX_ACTIVE_GOALS = 15
MAX_CONDITIONS = 100
MAX_NAME = 100
MAX_DESCRIPTION = 1000
MAX_CONDITION_VALUE = 2048
MAX_GROUPS = 100
MAX_GROUP_ID = MAX_ID
MAX_PERIOD_DAYS = 31
ENDING_WINDOW_DAYS = 5

# The exclusive end of tracking is the midnight after the end date, which must still be a
# representable date (and protobuf Timestamp) in every time zone.
MAX_DATE = LAST_DAY

# Fields an update mask may name (the attributes of GoalFields).
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


def clean_groups(raw: Sequence[str]) -> tuple[str, ...]:
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
    return tuple(out)


def clean_period(value: int | None) -> int:
    if value is None:
        raise InvalidArgument("attribution_period_days", "required, 0 to 31 days")
    if not 0 <= value <= MAX_PERIOD_DAYS:
        raise InvalidArgument(
            "attribution_period_days", f"must be between 0 and {MAX_PERIOD_DAYS} days"
        )
    return value


def clean_money(currency_code: str, amount: str) -> Money:
    problem = check_money(currency_code, amount)
    if problem:
        raise InvalidArgument(f"transaction_value.{problem[0]}", problem[1])
    return Money(currency_code, normalize_amount(amount))


def check_condition_count(count: int) -> None:
    if not count:
        raise InvalidArgument("conditions", "at least one condition is required")
    if count > MAX_CONDITIONS:
        raise InvalidArgument(
            "conditions", f"at most {MAX_CONDITIONS} conditions per goal (got {count})"
        )


def clean_condition_value(field: str, raw: str) -> str:
    """The value of condition ``field`` (``conditions[i]``): a URL or URL fragment."""
    value = raw.strip()
    if not value:
        raise InvalidArgument(f"{field}.value", "a URL or URL fragment is required")
    if len(value) > MAX_CONDITION_VALUE:
        raise InvalidArgument(f"{field}.value", f"must be at most {MAX_CONDITION_VALUE} characters")
    if _has_control(value) or any(ch.isspace() for ch in value):
        raise InvalidArgument(f"{field}.value", "must not contain spaces or control characters")
    return value


def check_dates(goal: Schedule, today: dt.date, previous: Schedule | None) -> None:
    """Date rules for a goal about to be stored (``previous`` is the stored version, or None
    when creating): start date required while active, never set before today, frozen once
    passed; end date not before the start date."""
    start, end = goal.start_date, goal.end_date
    if goal.active and start is None:
        raise InvalidArgument("start_date", "required when the goal is active")
    if end is not None and start is None:
        raise InvalidArgument("end_date", "requires a start_date")
    if end is not None and start is not None and end < start:
        raise InvalidArgument("end_date", f"must not be before start_date ({start})")
    old = previous.start_date if previous else None
    if start == old:
        _check_unchanged_start(goal, today, previous)
        return
    if old is not None and old < today:
        raise InvalidArgument("start_date", f"cannot change once it has passed ({old})")
    if start is not None and start < today:
        raise InvalidArgument(
            "start_date", f"cannot be set retroactively: must not be before today ({today})"
        )


def _check_unchanged_start(goal: Schedule, today: dt.date, previous: Schedule | None) -> None:
    """An unchanged start date is fine, unless this turns the active flag on with a start in
    the past (activation is refused then; a started goal's start date cannot move)."""
    start = goal.start_date
    if start is not None and start < today and goal.active and not (
        previous and previous.active
    ):
        raise InvalidArgument(
            "start_date",
            f"{start} is before today ({today}); the start date of a goal that has "
            "started cannot change, so it cannot be activated again",
        )


def derive_status(goal: Schedule, today: dt.date) -> tuple[GoalStatus, int]:
    """(status, days_remaining) at read time.

    Precedence: INACTIVE, ENDED, SCHEDULED, ENDING, ACTIVE. A goal that has not started is
    shown as scheduled even if it will end within five days.
    """
    if not goal.active:
        return GoalStatus.INACTIVE, 0
    end = goal.end_date
    if end is not None and end < today:
        return GoalStatus.ENDED, 0
    start = goal.start_date
    if start is not None and start > today:
        return GoalStatus.SCHEDULED, 0
    if end is not None:
        remaining = (end - today).days + 1
        if remaining <= ENDING_WINDOW_DAYS:
            return GoalStatus.ENDING, remaining
    return GoalStatus.ACTIVE, 0
