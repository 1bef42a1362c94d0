"""Stored values <-> protobuf values, the one way every service does it: page tokens,
timestamps and dates, enum names, and the limits the services share.

Contract:

- **Limits.** ``MAX_ID``, ``FIRST_DAY``, ``LAST_DAY`` and ``EPOCH`` come from
  ``goalflow_common.limits`` (see there), re-exported here.
- **Timestamps.** :func:`timestamp` maps an aware datetime, or a naive one read as UTC (what
  PyMongo returns), to a ``Timestamp``; :func:`to_datetime` maps back to an aware UTC
  datetime and raises ``ValueError``/``OverflowError`` for a value outside years 1-9999.
  :func:`millis` / :func:`from_millis` are the millisecond form stored dates are exact in.
- **Dates.** :func:`date_message` and :func:`calendar_date` convert ``goals.v1.Date``;
  :func:`calendar_date` refuses an impossible date with ``InvalidArgument`` naming the field,
  and :func:`date_between` also enforces ``FIRST_DAY..LAST_DAY``.
- **Enum names.** Stored documents hold an enum value's name without its prefix
  (``FIRST_TOUCH`` for ``ATTRIBUTION_MODEL_FIRST_TOUCH``); the prefix is the zero value's name
  minus ``UNSPECIFIED``. :func:`enum_names` / :func:`enum_numbers` are the two lookup tables,
  :func:`enum_name` one lookup that reads UNSPECIFIED and unknown numbers as None.
- **Page tokens.** A token is the urlsafe base64 of a compact JSON array: the last row's sort
  key (strings, integers; datetimes as :func:`millis`), then, when the listing has filters,
  their :func:`page_fingerprint`. :func:`decode_page_token` returns the key with the types
  asked for, ``None`` for an empty token, and raises ``InvalidArgument("page_token", ...)``
  for anything it did not issue (wrong shape or types: "not a token from a previous
  response") and for a token of another filter set ("was issued for a different set of
  filters"). A token longer than ``MAX_PAGE_TOKEN_CHARS`` is refused the same way before it
  is decoded. Tokens are opaque, not secret: the server re-checks the caller's account on
  every page.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from typing import Any, Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from goalflow_common.errors import InvalidArgument
from goalflow_common.limits import EPOCH as EPOCH
from goalflow_common.limits import FIRST_DAY as FIRST_DAY
from goalflow_common.limits import LAST_DAY as LAST_DAY
from goalflow_common.limits import MAX_ID as MAX_ID
from goalflow_common.pb.goals.v1 import common_pb2

_NOT_A_TOKEN = "not a token from a previous response"
# The longest token issued is ListGoals': a name key of 100 x U+FDFA (NFKC turns each into
# 18 letters, every one \u-escaped) and a 128-character id: 14,460 characters. About twice that is
# refused unread; a 53 KB token of 20,000 nested '[' took json.loads into RecursionError
# (INTERNAL and a logged traceback), and the shorter nestings that still fit are caught below.
MAX_PAGE_TOKEN_CHARS = 32768
_FOREIGN_TOKEN = "was issued for a different set of filters"

TokenValue = str | int | dt.datetime


class ProtoEnum(Protocol):
    """What the generated enum wrappers (``config_pb2.AttributionModel``) offer."""

    def Name(self, number: int) -> str: ...
    def items(self) -> list[tuple[str, int]]: ...


# --- timestamps and dates -----------------------------------------------------------------


def timestamp(when: dt.datetime) -> Timestamp:
    """``when`` as a Timestamp; a naive datetime is UTC."""
    # Plain arithmetic: Timestamp.FromDatetime (timegm and range checks) costs 3x more.
    delta = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)) - EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def to_datetime(stamp: Timestamp) -> dt.datetime:
    """An aware UTC datetime; ValueError/OverflowError outside years 1-9999."""
    return stamp.ToDatetime(tzinfo=dt.UTC)


def millis(when: dt.datetime) -> int:
    """Milliseconds since the epoch, floored; exact for stored (BSON) dates."""
    return (when - EPOCH) // dt.timedelta(milliseconds=1)


def from_millis(value: int) -> dt.datetime:
    """The inverse of :func:`millis`; OverflowError outside years 1-9999."""
    return EPOCH + dt.timedelta(milliseconds=value)


def date_message(day: dt.date) -> common_pb2.Date:
    return common_pb2.Date(year=day.year, month=day.month, day=day.day)


def calendar_date(field: str, message: common_pb2.Date) -> dt.date:
    """``message`` as a date; InvalidArgument naming ``field`` if no such day exists."""
    try:
        return dt.date(message.year, message.month, message.day)
    except ValueError:
        raise InvalidArgument(field, "not a valid calendar date") from None


def date_between(field: str, message: common_pb2.Date) -> dt.date:
    """:func:`calendar_date`, also refused outside ``FIRST_DAY..LAST_DAY``."""
    day = calendar_date(field, message)
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidArgument(
            field, f"must be between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}"
        )
    return day


# --- enum names ---------------------------------------------------------------------------


def enum_prefix(enum: ProtoEnum) -> str:
    """``ATTRIBUTION_MODEL_`` for AttributionModel: its zero value's name minus UNSPECIFIED."""
    return enum.Name(0).removesuffix("UNSPECIFIED")


def enum_names(enum: ProtoEnum) -> dict[int, str]:
    """Number -> short name (``FIRST_TOUCH``) of every value but UNSPECIFIED."""
    prefix = enum_prefix(enum)
    return {number: name.removeprefix(prefix) for name, number in enum.items() if number}


def enum_numbers(enum: ProtoEnum) -> dict[str, int]:
    """Short name -> number of every value, UNSPECIFIED included."""
    prefix = enum_prefix(enum)
    return {name.removeprefix(prefix): number for name, number in enum.items()}


def enum_name(enum: ProtoEnum, number: int) -> str | None:
    """The short name of ``number``; None when unspecified or unknown (a newer peer may send
    values this build does not know)."""
    if number == 0:
        return None
    try:
        name = enum.Name(number)
    except ValueError:
        return None
    return name.removeprefix(enum_prefix(enum))


# --- page tokens --------------------------------------------------------------------------


def page_fingerprint(*filters: object) -> str:
    """Ties a page token to the filters it was issued for (``str()`` of non-JSON values)."""
    return hashlib.sha256(json.dumps(filters, default=str).encode()).hexdigest()[:16]


def encode_page_token(key: Sequence[TokenValue], fingerprint: str | None = None) -> str:
    """The token of the page after the row whose sort key is ``key``."""
    values: list[Any] = [millis(v) if isinstance(v, dt.datetime) else v for v in key]
    if fingerprint is not None:
        values.append(fingerprint)
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def decode_page_token(
    token: str, types: Sequence[type[TokenValue]], fingerprint: str | None = None
) -> tuple[Any, ...] | None:
    """The sort key a token of :func:`encode_page_token` carries, typed as ``types``; None
    for an empty token. ``fingerprint`` must be the one it was issued with (see above)."""
    if not token:
        return None
    if len(token) > MAX_PAGE_TOKEN_CHARS:
        raise InvalidArgument("page_token", _NOT_A_TOKEN)
    width = len(types) + (fingerprint is not None)
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(values, list) or len(values) != width:
            raise ValueError
        key = tuple(_typed(value, kind) for value, kind in zip(values, types, strict=False))
        given = values[-1] if fingerprint is not None else None
        if fingerprint is not None and not isinstance(given, str):
            raise ValueError
    except (ValueError, TypeError, OverflowError, RecursionError):
        # RecursionError: under the length cap ~3,000 nested arrays still fit, and json.loads
        # gives up on them past the interpreter's recursion limit (1,000 by default).
        raise InvalidArgument("page_token", _NOT_A_TOKEN) from None
    if given != fingerprint:
        raise InvalidArgument("page_token", _FOREIGN_TOKEN)
    return key


def _typed(value: object, kind: type[TokenValue]) -> TokenValue:
    if kind is dt.datetime:
        if type(value) is not int:  # not bool, not float
            raise ValueError
        return from_millis(value)
    if type(value) is not kind:
        raise ValueError
    return value
