"""Event validation: a protobuf Event becomes a ``StoredEvent``, or a rejection naming the
field. Limits are documented in the README."""

from __future__ import annotations

import datetime as dt
import re

from goalflow_common.money import check_money, normalize_amount
from goalflow_common.pb.goals.v1 import tracker_pb2
from goalflow_common.protoconv import MAX_ID, enum_names, to_datetime
from tracker_svc.domain.model import Agent, Money, StoredEvent, Transaction, event_key

MAX_NAME = 256
MAX_EMAIL = 254
MAX_URL = 2048
MAX_RATING = 32
MAX_BRAND_EVENT_ID = 256
# Events may be late (retries, replays) but not from before the platform or the far future.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc, exactly
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MAX_CLOCK_SKEW = dt.timedelta(days=1)


CHANNELS = enum_names(tracker_pb2.Channel)
USER_TYPES = enum_names(tracker_pb2.UserType)
AUTHOR_TYPES = enum_names(tracker_pb2.AuthorType)
START_REASONS = enum_names(tracker_pb2.SegmentStartReason)
END_REASONS = enum_names(tracker_pb2.SegmentEndReason)
TRANSACTION_TYPES = enum_names(tracker_pb2.TransactionEventType)


class Rejected(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _text(field: str, value: str, limit: int, *, required: bool = True) -> str:
    if required and not value:
        raise Rejected(field, "required")
    if len(value) > limit:
        raise Rejected(field, f"must be at most {limit} characters")
    if _CONTROL.search(value):
        raise Rejected(field, "must not contain control characters")
    return value


def _enum(field: str, value: int, names: dict[int, str], *, required: bool = True) -> str | None:
    if value == 0:
        if required:
            raise Rejected(field, "required")
        return None
    if value not in names:
        raise Rejected(field, f"unknown value {value}")
    return names[value]


def _required_enum(field: str, value: int, names: dict[int, str]) -> str:
    name = _enum(field, value, names)
    assert name is not None  # required: refused above when missing
    return name


def _agent(msg: tracker_pb2.Agent) -> Agent:
    return Agent(
        id=_text("agent_assigned.agent.id", msg.id, MAX_ID),
        name=_text("agent_assigned.agent.name", msg.name, MAX_NAME, required=False),
        email=_text("agent_assigned.agent.email", msg.email, MAX_EMAIL, required=False),
        group_id=_text("agent_assigned.agent.group_id", msg.group_id, MAX_ID),
        skill=_text("agent_assigned.agent.skill", msg.skill, MAX_ID, required=False),
        user_type=_enum("agent_assigned.agent.user_type", msg.user_type, USER_TYPES),
        survey_bot=msg.survey_bot,
    )


def _transaction(msg: tracker_pb2.Transaction) -> Transaction:
    prefix = "end_user_activity.transaction"
    if not msg.HasField("value"):
        raise Rejected(f"{prefix}.value", "required when a transaction is given")
    problem = check_money(msg.value.currency_code, msg.value.amount)
    if problem:
        raise Rejected(f"{prefix}.value.{problem[0]}", problem[1])
    amount = normalize_amount(msg.value.amount)
    return Transaction(
        value=Money(msg.value.currency_code, amount),
        brand_event_id=_text(
            f"{prefix}.brand_event_id", msg.brand_event_id, MAX_BRAND_EVENT_ID, required=False
        ),
        event_type=_enum(
            f"{prefix}.event_type", msg.event_type, TRANSACTION_TYPES, required=False
        ),
    )


def parse_event(event: tracker_pb2.Event, account_id: str, now: dt.datetime) -> StoredEvent:
    """The stored form of ``event`` for ``account_id`` (the ingest key's), or Rejected."""
    event_id = _text("event_id", event.event_id, MAX_ID)
    if event.account_id and event.account_id != account_id:
        raise Rejected("account_id", "does not match the ingest key's account")
    at = _occurred_at(event, now)
    kind = event.WhichOneof("kind")
    if kind is None:
        raise Rejected("kind", "exactly one event kind is required")
    key = event_key(account_id, event_id)
    if kind == "end_user_activity":
        msg = event.end_user_activity
        # Checked in this order, so a rejection names the first bad field as it always has.
        end_user_id = _text(f"{kind}.end_user_id", msg.end_user_id, MAX_ID)
        url = _text(f"{kind}.url", msg.url, MAX_URL)
        named = _text(f"{kind}.conversation_id", msg.conversation_id, MAX_ID, required=False)
        return StoredEvent(
            key, account_id, event_id, "activity", at, now, named or None,
            end_user_id=end_user_id, url=url,
            transaction=_transaction(msg.transaction) if msg.HasField("transaction") else None,
        )
    conversation_id = _text(
        f"{kind}.conversation_id", getattr(event, kind).conversation_id, MAX_ID
    )
    return _CONVERSATION_KINDS[kind](event, key, account_id, event_id, at, now, conversation_id)


def _occurred_at(event: tracker_pb2.Event, now: dt.datetime) -> dt.datetime:
    if not event.HasField("occurred_at"):
        raise Rejected("occurred_at", "required")
    try:
        at = to_datetime(event.occurred_at)
    except (ValueError, OverflowError):
        raise Rejected("occurred_at", "not a valid timestamp") from None
    if at < EARLIEST or at > now + MAX_CLOCK_SKEW:
        raise Rejected("occurred_at", "must be after 2000-01-01 and at most a day ahead")
    return at.replace(microsecond=at.microsecond // 1000 * 1000)  # BSON dates hold milliseconds


def _opened(event: tracker_pb2.Event, key: str, account_id: str, event_id: str,
            at: dt.datetime, now: dt.datetime, conversation_id: str) -> StoredEvent:
    kind, msg = "conversation_opened", event.conversation_opened
    return StoredEvent(
        key, account_id, event_id, "opened", at, now, conversation_id,
        end_user_id=_text(f"{kind}.end_user_id", msg.end_user_id, MAX_ID),
        channel=_required_enum(f"{kind}.channel", msg.channel, CHANNELS),
        skill=_text(f"{kind}.skill", msg.skill, MAX_ID, required=False),
    )


def _assigned(event: tracker_pb2.Event, key: str, account_id: str, event_id: str,
              at: dt.datetime, now: dt.datetime, conversation_id: str) -> StoredEvent:
    kind, msg = "agent_assigned", event.agent_assigned
    if not msg.HasField("agent"):
        raise Rejected(f"{kind}.agent", "required")
    return StoredEvent(
        key, account_id, event_id, "assigned", at, now, conversation_id,
        agent=_agent(msg.agent),
        start_reason=_enum(f"{kind}.start_reason", msg.start_reason, START_REASONS,
                           required=False),
    )


def _unassigned(event: tracker_pb2.Event, key: str, account_id: str, event_id: str,
                at: dt.datetime, now: dt.datetime, conversation_id: str) -> StoredEvent:
    kind, msg = "agent_unassigned", event.agent_unassigned
    return StoredEvent(
        key, account_id, event_id, "unassigned", at, now, conversation_id,
        agent_id=_text(f"{kind}.agent_id", msg.agent_id, MAX_ID),
        end_reason=_enum(f"{kind}.end_reason", msg.end_reason, END_REASONS, required=False),
    )


def _message(event: tracker_pb2.Event, key: str, account_id: str, event_id: str,
             at: dt.datetime, now: dt.datetime, conversation_id: str) -> StoredEvent:
    kind, msg = "message_sent", event.message_sent
    return StoredEvent(
        key, account_id, event_id, "message", at, now, conversation_id,
        author_type=_required_enum(f"{kind}.author_type", msg.author_type, AUTHOR_TYPES),
        author_id=_text(f"{kind}.author_id", msg.author_id, MAX_ID),
    )


def _closed(event: tracker_pb2.Event, key: str, account_id: str, event_id: str,
            at: dt.datetime, now: dt.datetime, conversation_id: str) -> StoredEvent:
    return StoredEvent(key, account_id, event_id, "closed", at, now, conversation_id)


def _rated(event: tracker_pb2.Event, key: str, account_id: str, event_id: str,
           at: dt.datetime, now: dt.datetime, conversation_id: str) -> StoredEvent:
    rating = _text("satisfaction_rated.rating", event.satisfaction_rated.rating, MAX_RATING)
    return StoredEvent(key, account_id, event_id, "rated", at, now, conversation_id,
                       rating=rating)


_CONVERSATION_KINDS = {
    "conversation_opened": _opened,
    "agent_assigned": _assigned,
    "agent_unassigned": _unassigned,
    "message_sent": _message,
    "conversation_closed": _closed,
    "satisfaction_rated": _rated,
}
