"""Where an export's rows come from: the contract of the conversion source (the tracker's
``StreamConversions``, adapters/tracker.py) and of the account directory (time zones)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator
from typing import Protocol

from goalflow_common.auth import Account
from goalflow_common.pb.goals.v1 import tracker_pb2


class TrackerOutage(Exception):
    """The tracker could not be reached or stopped answering; the job is retried later."""


class ConversionsRefused(Exception):
    """The tracker refused the request itself; ``str()`` is a clause a person reads."""


class ConversionSource(Protocol):
    def conversions(
        self, account_id: str, goal_id: str, start: dt.datetime, end: dt.datetime
    ) -> AsyncGenerator[tracker_pb2.Conversion, None]:
        """The goal's conversions in ``[start, end)``, in order. Raises ``TrackerOutage``
        or ``ConversionsRefused``; closing the generator early cancels the read."""
        ...


class Accounts(Protocol):
    async def get_account(self, account_id: str) -> Account: ...
