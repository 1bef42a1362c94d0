"""Seven-day conversion counts shown beside each goal in a listing (docs/rules.md §2).

The counts come from the tracker; the domain asks a ``ConversionCounts`` (the server wiring
provides ``adapters.counts.TrackerCounts``) and works out the window: today and the six
days before, in the account's time zone.

The counts are account-wide, so a caller scoped to one agent (an agent token) gets none:
they would include other agents' conversions, which D22 keeps from it (docs/rules.md §7).
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
    agent_id: str | None = None,
) -> dict[str, int] | None:
    """Conversions per goal in the window; None when the tracker cannot answer, and for a
    caller scoped to ``agent_id`` (the tracker is not asked)."""
    if agent_id is not None:
        # Per-agent counts would need a query per listing the tracker does not offer; an
        # agent's workspace shows its own conversions (ListConversions) instead.
        return None
    since = start_of_day(today - dt.timedelta(days=WINDOW_DAYS - 1), time_zone)
    return await counts.since(account_id, since, goal_ids)
