"""Export jobs and their leases: requesting, claiming, and every state change of a job.

Workers claim jobs with a lease over a ``JobStore`` (store/protocols.py); each change
is written only over the revision it was made from, so concurrent claimers and a crashed
worker's stale copy never both win.

Never mailed twice
------------------
Only the lease holder mails, and it first records ``mail_attempted_at`` (``begin_mail``)
and only then talks to SMTP; ``mark_mailed`` is conditional on revision and owner, so the
``MAILED`` transition happens at most once. The one window that cannot be closed: the
worker dies after the SMTP server accepted the message but before ``MAILED`` is stored.
Nobody can tell afterwards whether the mail went out, so this chooses *at most once*:
a job that is claimable again while ``mail_attempted_at`` is set is never handed to a
worker; ``claim`` moves it to ``FAILED`` with an error that says the mail may have been
delivered and gives the still-valid download link. The window is kept small: the mark is
written immediately before the send, the mailer does not retry once DATA was transmitted
(an ambiguous failure there raises instead), and ``mark_mailed`` follows at once. A worker
that learns the mail certainly did not go out (``MailError.maybe_sent`` is false) may call
``release_for_retry(..., mail_not_sent=True)`` to clear the mark.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import structlog

from export_svc.domain.model import ExportJob, ExportState
from export_svc.store.protocols import JobStore
from goalflow_common.clock import Clock

log = structlog.get_logger(__name__)

JOB_TTL = dt.timedelta(days=14)
# How many of the oldest claimable jobs one claim tries before reading again: a claimer
# that loses a race moves on to the next job instead of re-reading the queue.
CLAIM_BATCH = 8


@dataclasses.dataclass(frozen=True, slots=True)
class ExportRequest:
    """A validated export request of an account."""

    account_id: str
    goal_id: str
    goal_name: str
    start_date: dt.date
    end_date: dt.date
    recipient_email: str
    request_id: str = ""


class ExportJobs:
    """The jobs of every account: requests, and the lease-holding worker's transitions.
    Each transition returns the job as stored, or None if ``owner`` no longer holds it
    unchanged (the caller must stop working on the job)."""

    def __init__(self, store: JobStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    # --- requests ---------------------------------------------------------------------

    async def create(self, request: ExportRequest) -> ExportJob:
        """Record a QUEUED job. A repeated ``request_id`` of the same account returns the
        job it first created (even under concurrent requests: the store decides)."""
        now = self._clock.now()
        job = ExportJob(
            id=uuid.uuid4().hex, account_id=request.account_id, goal_id=request.goal_id,
            goal_name=request.goal_name, start_date=request.start_date,
            end_date=request.end_date, recipient_email=request.recipient_email,
            create_time=now, update_time=now, available_at=now, expire_at=now + JOB_TTL,
            request_id=request.request_id,
        )
        return await self._store.insert(job)

    async def get(self, account_id: str, export_id: str) -> ExportJob | None:
        return await self._store.get(account_id, export_id)

    async def list(
        self, account_id: str, page_size: int, page_token: str = ""
    ) -> tuple[list[ExportJob], str]:
        """The account's jobs, newest first, and the token of the next page ("" at the end)."""
        return await self._store.page(account_id, page_size, page_token)

    # --- workers ----------------------------------------------------------------------

    async def claim(self, owner: str, lease_s: float) -> ExportJob | None:
        """Take the oldest due QUEUED job, else a BUILDING job whose lease ran out, and hold
        it for ``lease_s``. None if there is nothing to do. Concurrent claimers race on the
        conditional replace: exactly one gets each job."""
        while True:
            now = self._clock.now()
            candidates = await self._store.due_queued(now, CLAIM_BATCH)
            candidates += await self._store.expired_leases(now, CLAIM_BATCH)
            if not candidates:
                return None
            for job in candidates:
                if job.mail_attempted_at is not None:
                    await self._give_up_uncertain(job)
                    continue
                new = dataclasses.replace(
                    job, state=ExportState.BUILDING, lease_owner=owner,
                    lease_expires=now + dt.timedelta(seconds=lease_s), claims=job.claims + 1,
                ).revised(self._clock.now())
                if await self._store.replace(job, new):
                    if job.state is ExportState.BUILDING:
                        log.warning("export_lease_reclaimed", export_id=job.id,
                                    previous_owner=job.lease_owner, owner=owner)
                    return new
            # Lost every race in this batch: read the queue again.

    async def renew(self, job: ExportJob, owner: str, lease_s: float) -> ExportJob | None:
        """Extend the lease."""
        return await self._apply(
            job, owner, dataclasses.replace(job, lease_expires=self._lease_end(lease_s))
        )

    async def mark_built(
        self,
        job: ExportJob,
        owner: str,
        *,
        row_count: int,
        size_bytes: int,
        file_id: str,
        download_url: str,
        link_expire_time: dt.datetime,
    ) -> ExportJob | None:
        """Record the stored file; the job stays BUILDING (held) until it is mailed."""
        return await self._apply(job, owner, dataclasses.replace(
            job, row_count=row_count, size_bytes=size_bytes, file_id=file_id,
            download_url=download_url, link_expire_time=link_expire_time,
        ))

    async def begin_mail(self, job: ExportJob, owner: str, lease_s: float) -> ExportJob | None:
        """Record that the mail is about to be sent (and renew the lease to cover the send).
        Call right before SMTP; None means the lease was lost and nothing may be sent."""
        lease = self._lease_end(lease_s)
        return await self._apply(job, owner, dataclasses.replace(
            job, mail_attempted_at=self._clock.now(), lease_expires=lease
        ))

    async def mark_mailed(
        self, job: ExportJob, owner: str, mail_time: dt.datetime
    ) -> ExportJob | None:
        """BUILDING -> MAILED, at most once (conditional on revision and owner)."""
        return await self._apply(job, owner, dataclasses.replace(
            job, state=ExportState.MAILED, mail_time=mail_time, error="",
            lease_owner=None, lease_expires=None,
        ))

    async def mark_failed(self, job: ExportJob, owner: str, error: str) -> ExportJob | None:
        return await self._apply(job, owner, dataclasses.replace(
            job, state=ExportState.FAILED, error=error, lease_owner=None,
            lease_expires=None,
        ))

    async def release_for_retry(
        self,
        job: ExportJob,
        owner: str,
        error: str,
        attempts: int,
        *,
        retry_after_s: float = 0.0,
        mail_not_sent: bool = False,
        outage_since: dt.datetime | None = None,
        outages: int = 0,
    ) -> ExportJob | None:
        """Give the job back to the queue (due after ``retry_after_s``) with the last error.
        The stored file, if any, is kept. ``mail_not_sent=True`` clears the mail mark; pass
        it only when the mail certainly did not go out, or the job will end FAILED.
        ``outage_since``/``outages``: when the current run of dependency outages began and
        how many there were (the worker's retry deadline); other releases clear them."""
        available_at = self._clock.now() + dt.timedelta(seconds=retry_after_s)
        mail_attempted_at = None if mail_not_sent else job.mail_attempted_at
        return await self._apply(job, owner, dataclasses.replace(
            job, state=ExportState.QUEUED, error=error, attempts=attempts,
            lease_owner=None, lease_expires=None, available_at=available_at,
            outage_since=outage_since, outages=outages, mail_attempted_at=mail_attempted_at,
        ))

    # --- internals --------------------------------------------------------------------

    async def _give_up_uncertain(self, job: ExportJob) -> None:
        """A job whose mail may already have been delivered: end it without mailing again."""
        link = job.download_url or "none"
        error = (
            "the worker stopped while sending the e-mail, so it may or may not have been "
            "delivered; it is not sent again to avoid a duplicate. Download link: " + link
        )
        new = dataclasses.replace(job, state=ExportState.FAILED, error=error,
                                  lease_owner=None, lease_expires=None).revised(self._clock.now())
        if await self._store.replace(job, new):
            log.warning("export_mail_uncertain", export_id=job.id)

    def _lease_end(self, lease_s: float) -> dt.datetime:
        return self._clock.now() + dt.timedelta(seconds=lease_s)

    async def _apply(self, job: ExportJob, owner: str, change: ExportJob) -> ExportJob | None:
        """Store ``change`` (``job`` changed by ``dataclasses.replace``) as the next
        revision if ``owner`` still holds ``job`` unchanged."""
        if not job.held_by(owner):
            return None
        new = change.revised(self._clock.now())
        return new if await self._store.replace(job, new) else None
