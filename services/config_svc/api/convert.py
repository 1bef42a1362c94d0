"""Protobuf <-> model: requests read into validated model values, goals and changes written
back as messages.

Reading a request checks what only the wire format can get wrong (enum numbers, the URL
category, calendar dates) and leaves the rest to ``domain.rules``, field by field in the
order the fields are declared, so a request with several problems names the first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Iterable

from config_svc.domain import rules
from config_svc.domain.model import (
    AttributionModel,
    ChangeKind,
    Condition,
    Goal,
    GoalChange,
    GoalFields,
    GoalPatch,
    GoalStatus,
    GoalType,
    Money,
    Operator,
)
from goalflow_common.clock import start_of_day
from goalflow_common.errors import InvalidArgument
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2
from goalflow_common.protoconv import calendar_date, date_message, timestamp

# Model enums <-> protobuf enums; every proto value but UNSPECIFIED has its model member.
_MODEL_ENUM: dict[AttributionModel, config_pb2.AttributionModel] = {
    AttributionModel.FIRST_TOUCH: config_pb2.ATTRIBUTION_MODEL_FIRST_TOUCH,
    AttributionModel.LAST_TOUCH: config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH,
    AttributionModel.ALL_TOUCHES: config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES,
}
_TYPE_ENUM: dict[GoalType, config_pb2.GoalType] = {
    GoalType.SELL_PRODUCT_OR_SERVICE: config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE,
    GoalType.GENERATE_LEADS: config_pb2.GOAL_TYPE_GENERATE_LEADS,
    GoalType.SERVICE_ACTIVITY_COMPLETE: config_pb2.GOAL_TYPE_SERVICE_ACTIVITY_COMPLETE,
    GoalType.OTHER: config_pb2.GOAL_TYPE_OTHER,
}
_OPERATOR_ENUM: dict[Operator, config_pb2.ConditionOperator] = {
    Operator.CONTAINS: config_pb2.CONDITION_OPERATOR_CONTAINS,
    Operator.IS: config_pb2.CONDITION_OPERATOR_IS,
}
_STATUS_ENUM: dict[GoalStatus, config_pb2.GoalStatus] = {
    GoalStatus.INACTIVE: config_pb2.GOAL_STATUS_INACTIVE,
    GoalStatus.SCHEDULED: config_pb2.GOAL_STATUS_SCHEDULED,
    GoalStatus.ACTIVE: config_pb2.GOAL_STATUS_ACTIVE,
    GoalStatus.ENDING: config_pb2.GOAL_STATUS_ENDING,
    GoalStatus.ENDED: config_pb2.GOAL_STATUS_ENDED,
}
_CHANGE_ENUM: dict[ChangeKind, config_pb2.GoalChangeType] = {
    ChangeKind.UPSERTED: config_pb2.GOAL_CHANGE_TYPE_UPSERTED,
    ChangeKind.DELETED: config_pb2.GOAL_CHANGE_TYPE_DELETED,
}
_MODELS = {number: model for model, number in _MODEL_ENUM.items()}
_TYPES = {number: goal_type for goal_type, number in _TYPE_ENUM.items()}
_OPERATORS = {number: operator for operator, number in _OPERATOR_ENUM.items()}

# A message carrying the writable goal fields: CreateGoalRequest or Goal (an update's).
GoalMessage = config_pb2.CreateGoalRequest | config_pb2.Goal


# -- requests ----------------------------------------------------------------------------


def parse_date(field: str, msg: common_pb2.Date) -> dt.date:
    day = calendar_date(field, msg)
    if day > rules.MAX_DATE:
        raise InvalidArgument(field, f"must be on or before {rules.MAX_DATE.isoformat()}")
    return day


def date_or_none(
    field: str, parent: GoalMessage | config_pb2.ActivateGoalRequest
) -> dt.date | None:
    """An optional Date field of ``parent`` (None when unset)."""
    if not parent.HasField(field):
        return None
    date: common_pb2.Date = getattr(parent, field)
    return parse_date(field, date)


def parse_model(value: config_pb2.AttributionModel) -> AttributionModel:
    if value == config_pb2.ATTRIBUTION_MODEL_UNSPECIFIED:
        raise InvalidArgument(
            "attribution_model", "required: FIRST_TOUCH, LAST_TOUCH or ALL_TOUCHES"
        )
    if value not in _MODELS:
        raise InvalidArgument("attribution_model", f"unknown value {value}")
    return _MODELS[value]


def parse_goal_type(value: config_pb2.GoalType) -> GoalType | None:
    if value == config_pb2.GOAL_TYPE_UNSPECIFIED:
        return None
    if value not in _TYPES:
        raise InvalidArgument("goal_type", f"unknown value {value}")
    return _TYPES[value]


def parse_money(parent: GoalMessage) -> Money | None:
    if not parent.HasField("transaction_value"):
        return None
    money = parent.transaction_value
    return rules.clean_money(money.currency_code, money.amount)


def parse_conditions(raw: Iterable[config_pb2.Condition]) -> tuple[Condition, ...]:
    conditions = list(raw)
    rules.check_condition_count(len(conditions))
    out = []
    for i, cond in enumerate(conditions):
        field = f"conditions[{i}]"
        if cond.category != config_pb2.CONDITION_CATEGORY_URL:
            raise InvalidArgument(f"{field}.category", "must be URL")
        if cond.operator not in _OPERATORS:
            raise InvalidArgument(f"{field}.operator", "must be CONTAINS or IS")
        value = rules.clean_condition_value(field, cond.value)
        out.append(Condition(_OPERATORS[cond.operator], value))
    return tuple(out)


def _period(message: GoalMessage) -> int:
    # A create must say the period (0 is a valid one); an update's Goal cannot tell unset
    # from 0, so there it is always present.
    present = (
        message.HasField("attribution_period_days")
        if isinstance(message, config_pb2.CreateGoalRequest)
        else True
    )
    return rules.clean_period(message.attribution_period_days if present else None)


def _with_field(patch: GoalPatch, message: GoalMessage, name: str) -> GoalPatch:
    """``patch`` also setting one writable field of ``message``, validated."""
    replace = dataclasses.replace
    match name:
        case "name":
            return replace(patch, name=rules.clean_name(message.name))
        case "description":
            return replace(patch, description=rules.clean_description(message.description))
        case "start_date" | "end_date":
            return _with_date(patch, name, date_or_none(name, message))
        case "agent_group_ids":
            return replace(patch, agent_group_ids=rules.clean_groups(message.agent_group_ids))
        case "attribution_model":
            return replace(patch, attribution_model=parse_model(message.attribution_model))
        case "attribution_period_days":
            return replace(patch, attribution_period_days=_period(message))
        case "transaction_value":
            return replace(patch, transaction_value=parse_money(message))
        case "goal_type":
            return replace(patch, goal_type=parse_goal_type(message.goal_type))
        case "conditions":
            return replace(patch, conditions=parse_conditions(message.conditions))
    raise AssertionError(f"not a writable goal field: {name}")


def _with_date(patch: GoalPatch, name: str, day: dt.date | None) -> GoalPatch:
    if name == "start_date":
        return dataclasses.replace(patch, start_date=day)
    return dataclasses.replace(patch, end_date=day)


def goal_patch(message: GoalMessage, names: Iterable[str]) -> GoalPatch:
    """The named writable fields of ``message``, validated one by one in ``names``' order
    (so a request with several problems names the first)."""
    patch = GoalPatch()
    for name in names:
        patch = _with_field(patch, message, name)
    return patch


def goal_fields(request: config_pb2.CreateGoalRequest) -> GoalFields:
    """Every writable field of a CreateGoalRequest, validated in declaration order (that
    of ``rules.UPDATABLE``)."""
    return GoalFields(
        name=rules.clean_name(request.name),
        description=rules.clean_description(request.description),
        start_date=date_or_none("start_date", request),
        end_date=date_or_none("end_date", request),
        agent_group_ids=rules.clean_groups(request.agent_group_ids),
        attribution_model=parse_model(request.attribution_model),
        attribution_period_days=_period(request),
        transaction_value=parse_money(request),
        goal_type=parse_goal_type(request.goal_type),
        conditions=parse_conditions(request.conditions),
    )


def update_paths(request: config_pb2.UpdateGoalRequest) -> tuple[str, ...]:
    """The fields an update names (every writable one for an empty mask)."""
    paths = tuple(request.update_mask.paths) or rules.UPDATABLE
    for path in paths:
        if path not in rules.UPDATABLE:
            allowed = ", ".join(rules.UPDATABLE)
            # The path is cut short: details echoing an unbounded path could exceed the
            # client's metadata limit.
            raise InvalidArgument(
                "update_mask", f"{path[:64]!r} cannot be updated; allowed: {allowed}"
            )
    return paths


def override_paths(request: config_pb2.SimulateGoalRequest) -> tuple[str, ...]:
    """The fields a simulation overrides: those its mask names (as UpdateGoal's update
    mask), every writable one for an empty mask with overrides set, else none."""
    paths = tuple(request.override_mask.paths)
    if not paths:
        return rules.UPDATABLE if request.HasField("overrides") else ()
    for path in paths:
        if path not in rules.UPDATABLE:
            allowed = ", ".join(rules.UPDATABLE)
            raise InvalidArgument(
                "override_mask", f"{path[:64]!r} cannot be overridden; allowed: {allowed}")
    return paths


def nested(prefix: str, error: InvalidArgument) -> InvalidArgument:
    """``error`` naming its field inside the request's ``prefix`` message."""
    return InvalidArgument(f"{prefix}.{error.field}", error.rule)


def simulated_goal(
    request: config_pb2.SimulateGoalRequest,
) -> tuple[GoalFields | None, GoalPatch]:
    """What a simulation's goal is made of: a definition's fields, validated as CreateGoal
    validates them (and no patch), or for a goal_id the overrides (``None`` fields). Errors
    name the field inside ``definition`` or ``overrides``."""
    which = request.WhichOneof("goal")
    if which is None:
        raise InvalidArgument("goal", "required: a definition or a goal_id")
    if which == "definition":
        if request.HasField("overrides") or request.override_mask.paths:
            raise InvalidArgument("overrides", "only with goal_id")
        try:
            return goal_fields(request.definition), GoalPatch()
        except InvalidArgument as exc:
            raise nested("definition", exc) from None
    paths = override_paths(request)
    try:
        return None, goal_patch(request.overrides, paths)
    except InvalidArgument as exc:
        raise nested("overrides", exc) from None


def activation_dates(request: config_pb2.ActivateGoalRequest) -> GoalPatch:
    """The start and end dates an activation sets, if any."""
    patch = GoalPatch()
    for name in ("start_date", "end_date"):
        if request.HasField(name):
            patch = _with_date(patch, name, date_or_none(name, request))
    return patch


# -- replies -----------------------------------------------------------------------------


# Every goal of a page shares a handful of (date, zone) pairs; ZoneInfo maths once each.
_start_of_day = functools.lru_cache(maxsize=4096)(start_of_day)


def goal_to_proto(goal: Goal, today: dt.date, time_zone: str) -> config_pb2.Goal:
    status, remaining = rules.derive_status(goal.schedule, today)
    message = config_pb2.Goal(
        id=goal.id,
        account_id=goal.account_id,
        name=goal.name,
        description=goal.description,
        active=goal.active,
        agent_group_ids=goal.agent_group_ids,
        attribution_model=_MODEL_ENUM[goal.attribution_model],
        attribution_period_days=goal.attribution_period_days,
        goal_type=_TYPE_ENUM[goal.goal_type] if goal.goal_type else None,
        conditions=[
            config_pb2.Condition(
                category=config_pb2.CONDITION_CATEGORY_URL,
                operator=_OPERATOR_ENUM[c.operator],
                value=c.value,
            )
            for c in goal.conditions
        ],
        status=_STATUS_ENUM[status],
        days_remaining=remaining,
        time_zone=time_zone,
        create_time=timestamp(goal.create_time),
        update_time=timestamp(goal.update_time),
        revision=goal.revision,
    )
    if goal.start_date:
        message.start_date.CopyFrom(date_message(goal.start_date))
        start = _start_of_day(goal.start_date, time_zone)
        message.tracking_start_time.CopyFrom(timestamp(start))
    if goal.end_date:
        message.end_date.CopyFrom(date_message(goal.end_date))
        after_end = _start_of_day(goal.end_date + dt.timedelta(days=1), time_zone)
        message.tracking_end_time.CopyFrom(timestamp(after_end))
    if goal.transaction_value:
        value = goal.transaction_value
        message.transaction_value.CopyFrom(
            common_pb2.Money(currency_code=value.currency_code, amount=value.amount)
        )
    return message


def deleted_goal(change: GoalChange) -> config_pb2.Goal:
    """What a watcher learns of a deleted goal: its id, account and final revision."""
    return config_pb2.Goal(
        id=change.goal_id, account_id=change.account_id, revision=change.revision
    )


def change_to_proto(change: GoalChange, goal: config_pb2.Goal) -> config_pb2.WatchGoalsResponse:
    return config_pb2.WatchGoalsResponse(
        type=_CHANGE_ENUM[change.kind], goal=goal, change_time=timestamp(dt.datetime.now(dt.UTC))
    )
