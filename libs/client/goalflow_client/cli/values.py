"""Command-line values <-> protobuf values: enum names, dates, times, UTC offsets, money.

Enum choices come from the generated descriptors, so a value added to a proto enum shows up
here without an edit: ``ATTRIBUTION_MODEL_FIRST_TOUCH`` is offered as ``first-touch``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

import click
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.timestamp_pb2 import Timestamp

from goalflow_common.pb.goals.v1 import common_pb2
from goalflow_common.protoconv import enum_name, enum_prefix


def enum_label(enum: EnumTypeWrapper, number: int) -> str:
    """``first-touch`` for ATTRIBUTION_MODEL_FIRST_TOUCH; the number itself if unknown."""
    name = enum_name(enum, number) if number else "UNSPECIFIED"
    return str(number) if name is None else name.lower().replace("_", "-")


class EnumChoice(click.Choice):
    """A protobuf enum's values (UNSPECIFIED left out) as ``lower-case-with-dashes`` choices;
    converts to the enum value's full name, which proto constructors and JSON accept."""

    def __init__(self, enum: EnumTypeWrapper) -> None:
        self.enum = enum
        super().__init__([enum_label(enum, n) for n in enum.values() if n != 0])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        label = super().convert(value, param, ctx)
        return enum_prefix(self.enum) + str(label).upper().replace("-", "_")


class DateType(click.ParamType):
    """``YYYY-MM-DD`` as a ``datetime.date``."""

    name = "DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not a date (YYYY-MM-DD)", param, ctx)


class TimeType(click.ParamType):
    """A date (``YYYY-MM-DD``) or an ISO-8601 time; a time without an offset is UTC."""

    name = "DATE|TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, dt.date):
            return value
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                return dt.date.fromisoformat(value)
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not a date or an ISO-8601 time", param, ctx)
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def time_bound(value: dt.date | dt.datetime, *, end: bool) -> dt.datetime:
    """A ``TimeType`` value as an instant; a date starts at midnight UTC and, as an end
    bound, covers its whole day (the bound is the next midnight)."""
    if isinstance(value, dt.datetime):
        return value
    midnight = dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    return midnight + dt.timedelta(days=1) if end else midnight


class UtcOffsetType(click.ParamType):
    """``+02:00``, ``-05:30``, ``Z`` as whole minutes east of UTC."""

    name = "±HH:MM"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, int):
            return value
        if value in ("Z", "z"):
            return 0
        match = re.fullmatch(r"([+-])(\d{1,2}):?(\d{2})", value)
        if not match:
            self.fail(f"{value!r} is not an offset like +02:00 or -05:30", param, ctx)
        sign, hours, minutes = match.groups()
        if int(minutes) >= 60:
            self.fail(f"{value!r}: minutes must be below 60", param, ctx)
        total = int(hours) * 60 + int(minutes)
        return -total if sign == "-" else total


def offset_label(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def date_json(day: dt.date) -> dict[str, int]:
    """A date in the proto3 JSON form of goals.v1.Date."""
    return {"year": day.year, "month": day.month, "day": day.day}


def show_date(date: common_pb2.Date) -> str:
    return f"{date.year:04d}-{date.month:02d}-{date.day:02d}" if date.year else ""


def show_time(stamp: Timestamp) -> str:
    """ISO-8601 UTC (``2026-06-01T12:10:00Z``); empty when unset."""
    return stamp.ToJsonString() if stamp.seconds or stamp.nanos else ""


def show_money(money: common_pb2.Money) -> str:
    return f"{money.amount} {money.currency_code}" if money.currency_code else ""


def show_moneys(moneys: Iterable[common_pb2.Money]) -> str:
    """Per-currency sums, ``49.90 USD; 10.00 EUR``."""
    return "; ".join(show_money(m) for m in moneys)


def show_seconds(seconds: float) -> str:
    """``1:02:03``."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
