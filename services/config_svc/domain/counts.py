"""Seven-day conversion counts shown beside each goal in a listing (docs/rules.md §2).

The counts come from the tracker; the domain asks a ``ConversionCounts`` (the server wiring
provides ``adapters.counts.TrackerCounts``) and works out the window: today and the six
days before, in the account's time zone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from goalflow_common.clock import start_of_day

WINDOW_DAYS = 7


class ConversionCounts(Protocol):
    async def since(
        self, account_id: str, since: dt.datetime, goal_ids: Sequence[str]
    ) -> dict[str, int] | None:
        """Conversions per goal since ``since``; None when they cannot be had now."""
        ...


async def seven_day_counts(
    counts: ConversionCounts,
    account_id: str,
    today: dt.date,
    time_zone: str,
    goal_ids: Sequence[str],
) -> dict[str, int] | None:
    since = start_of_day(today - dt.timedelta(days=WINDOW_DAYS - 1), time_zone)
    return await counts.since(account_id, since, goal_ids)
