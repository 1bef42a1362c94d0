"""The export service's typed model: an export job and its state.

States: ``QUEUED`` -> ``BUILDING`` -> ``MAILED``, or ``FAILED``. A worker owns a job while
``lease_owner`` is its id and ``lease_expires`` is in the future; every change bumps
``revision`` (the store writes a change only over the revision it was made from). The
transitions themselves are in ``domain/jobs.py``; documents are ``store/jobs.py``'s.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum


class ExportState(enum.StrEnum):
    QUEUED = "QUEUED"
    BUILDING = "BUILDING"
    MAILED = "MAILED"
    FAILED = "FAILED"


@dataclasses.dataclass(frozen=True, slots=True)
class ExportJob:
    """One requested export of a goal's conversions over ``[start_date, end_date]``."""

    id: str
    account_id: str
    goal_id: str
    goal_name: str
    start_date: dt.date
    end_date: dt.date
    recipient_email: str
    create_time: dt.datetime
    update_time: dt.datetime
    available_at: dt.datetime
    """A QUEUED job is not claimed before this (a retry's backoff)."""
    expire_at: dt.datetime
    """The job record is deleted after this (``JOB_TTL`` after creation)."""
    state: ExportState = ExportState.QUEUED
    request_id: str = ""
    """The client's idempotency key ("" if none): one job per account and key."""
    revision: int = 1
    row_count: int = 0
    size_bytes: int = 0
    file_id: str | None = None
    """The stored zip once built; None before."""
    download_url: str = ""
    link_expire_time: dt.datetime | None = None
    error: str = ""
    attempts: int = 0
    claims: int = 0
    lease_owner: str | None = None
    lease_expires: dt.datetime | None = None
    mail_attempted_at: dt.datetime | None = None
    """Set right before the mail is sent: from then on it is never sent again."""
    mail_time: dt.datetime | None = None
    outage_since: dt.datetime | None = None
    """When the current run of tracker outages began (None when not in one)."""
    outages: int = 0

    def held_by(self, owner: str) -> bool:
        return self.state is ExportState.BUILDING and self.lease_owner == owner

    def revised(self, now: dt.datetime) -> ExportJob:
        """This job as the next revision, updated at ``now``: a change is made with
        ``dataclasses.replace`` (whose field names the type checker checks), then revised."""
        return dataclasses.replace(self, revision=self.revision + 1, update_time=now)
