"""Where an export's rows come from: the contract of the conversion source (the tracker's
``StreamConversions``, adapters/tracker.py) and of the account directory (time zones).

A conversion reaches the domain as an :class:`ExportConversion`, holding only what the CSV
shows (domain/csv_rows.py); the adapter converts the tracker's messages into it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncGenerator
from typing import Protocol

from goalflow_common.auth import Account


@dataclasses.dataclass(frozen=True, slots=True)
class ExportCredit:
    """One credited agent of a conversion."""

    agent_id: str
    agent_name: str
    agent_email: str
    """Empty for bots."""
    contact_duration: dt.timedelta
    """Conversion time minus the agent's first assignment in the conversation."""


@dataclasses.dataclass(frozen=True, slots=True)
class TransactionValue:
    amount: str
    """As recorded, e.g. ``100.00``; never empty."""
    currency_code: str


@dataclasses.dataclass(frozen=True, slots=True)
class ExportConversion:
    """A recorded conversion, as an export reads it."""

    id: str
    goal_id: str
    goal_name: str
    """The goal's name at the time of the conversion."""
    conversation_id: str
    """The ticket id."""
    conversion_time: dt.datetime
    """Aware, UTC."""
    transaction_value: TransactionValue | None
    satisfaction_rating: str | None
    """None when the conversation has no rating."""
    credits: tuple[ExportCredit, ...]


class TrackerOutage(Exception):
    """The tracker could not be reached or stopped answering; the job is retried later."""


class ConversionsRefused(Exception):
    """The tracker refused the request itself; ``str()`` is a clause a person reads."""


class ConversionSource(Protocol):
    def conversions(
        self, account_id: str, goal_id: str, start: dt.datetime, end: dt.datetime
    ) -> AsyncGenerator[ExportConversion, None]:
        """The goal's conversions in ``[start, end)``, in order. Raises ``TrackerOutage``
        or ``ConversionsRefused``; closing the generator early cancels the read."""
        ...


class Accounts(Protocol):
    async def get_account(self, account_id: str) -> Account: ...
