"""The one injectable clock: every "now" and "today" in the services comes from here."""

from __future__ import annotations

import datetime as dt
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current instant, timezone-aware in UTC."""
        ...


class SystemClock:
    """Wall-clock time, optionally shifted by a fixed offset (for demos and soak runs)."""

    def __init__(self, offset: dt.timedelta = dt.timedelta()) -> None:
        self._offset = offset

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self._offset


class ManualClock:
    """A clock that tests set and move by hand."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(dt.UTC)

    def now(self) -> dt.datetime:
        return self._now

    def set(self, when: dt.datetime) -> None:
        self._now = when.astimezone(dt.UTC)

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta


def today_in(clock: Clock, time_zone: str) -> dt.date:
    """Today's calendar date in the given IANA time zone."""
    return clock.now().astimezone(ZoneInfo(time_zone)).date()


def start_of_day(day: dt.date, time_zone: str) -> dt.datetime:
    """The UTC instant at which ``day`` begins in ``time_zone``."""
    local = dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(time_zone))
    return local.astimezone(dt.UTC)
