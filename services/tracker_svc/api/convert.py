"""The tracker's own protobuf messages from its model (conversions out).

Config's ``Goal`` message is mapped by its adapter, ``tracker_svc.adapters.goal_feed``."""

from __future__ import annotations

from typing import TypeVar, cast

from google.protobuf.duration_pb2 import Duration

from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, tracker_pb2
from goalflow_common.protoconv import enum_numbers, timestamp
from tracker_svc.domain.model import Agent, ConversionRecord, RecordedCredit

# The generated stubs type enum fields by their enum class; the tables hold its numbers.
_CHANNEL = cast("dict[str, tracker_pb2.Channel]", enum_numbers(tracker_pb2.Channel))
_GOAL_TYPE = cast("dict[str, config_pb2.GoalType]", enum_numbers(config_pb2.GoalType))
_MODEL = cast("dict[str, config_pb2.AttributionModel]",
              enum_numbers(config_pb2.AttributionModel))
_EVENT_TYPE = cast("dict[str, tracker_pb2.TransactionEventType]",
                   enum_numbers(tracker_pb2.TransactionEventType))
_USER_TYPE = cast("dict[str, tracker_pb2.UserType]", enum_numbers(tracker_pb2.UserType))
_E = TypeVar("_E", bound=int)


def _enum(table: dict[str, _E], name: str | None) -> _E:
    # Unknown or missing names read as UNSPECIFIED: history stays readable if an enum
    # value is ever retired.
    found = table.get(name or "")
    return found if found is not None else cast(_E, 0)


def agent_to_proto(agent: Agent) -> tracker_pb2.Agent:
    return tracker_pb2.Agent(
        id=agent.id,
        name=agent.name,
        email=agent.email,
        group_id=agent.group_id,
        skill=agent.skill,
        user_type=_enum(_USER_TYPE, agent.user_type),
        survey_bot=agent.survey_bot,
    )


def credit_to_proto(credit: RecordedCredit) -> tracker_pb2.Credit:
    duration = Duration()
    duration.FromMilliseconds(credit.contact_duration_ms)
    return tracker_pb2.Credit(
        agent=agent_to_proto(credit.agent),
        assignment_time=timestamp(credit.assignment_time),
        contact_duration_to_goal=duration,
    )


def conversion_to_proto(
    record: ConversionRecord, satisfaction_rating: str = ""
) -> tracker_pb2.Conversion:
    conversion = tracker_pb2.Conversion(
        id=record.id,
        account_id=record.account_id,
        goal_id=record.goal_id,
        goal_name=record.goal_name,
        goal_type=_enum(_GOAL_TYPE, record.goal_type),
        attribution_model=_enum(_MODEL, record.attribution_model),
        conversation_id=record.conversation_id,
        end_user_id=record.end_user_id,
        conversion_time=timestamp(record.conversion_time),
        channel=_enum(_CHANNEL, record.channel),
        skill=record.skill,
        event_type=_enum(_EVENT_TYPE, record.event_type),
        brand_event_id=record.brand_event_id,
        url=record.url,
        credits=[credit_to_proto(c) for c in record.credits],
        hit_event_id=record.hit_event_id,
        satisfaction_rating=satisfaction_rating,
    )
    if record.conversation_open_time is not None:
        conversion.conversation_open_time.CopyFrom(timestamp(record.conversation_open_time))
    value = record.transaction_value
    if value:
        conversion.transaction_value.CopyFrom(
            common_pb2.Money(currency_code=value.currency_code, amount=value.amount)
        )
    return conversion
