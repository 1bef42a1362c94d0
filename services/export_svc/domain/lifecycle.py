"""The export worker: claims a job, streams the goal's conversions into a zipped CSV in
the file store, signs a link, mails it, and records each step.

Jobs are claimed with a lease (``domain/jobs.py``), renewed while the worker is busy, so
with any number of replicas each job is built by one worker at a time and mailed at most
once; a job whose worker died is picked up when its lease runs out.

Outages of the tracker (``TrackerOutage``: unreachable, a deadline exceeded, or no chunk
for a while, as when its process is frozen) do not fail a job: it goes back to the queue
with a growing delay, where any replica may claim it, for up to ``retry_deadline_s`` after
the first outage; only then does it fail. Other errors fail it after ``MAX_ATTEMPTS``. A
failed job's stored reason is one human sentence, never a gRPC dump.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

from export_svc.domain.csv_rows import rows_for
from export_svc.domain.jobs import ExportJobs
from export_svc.domain.links import LinkSigner
from export_svc.domain.mail import MailError, MailSender, build_message
from export_svc.domain.model import ExportJob
from export_svc.domain.sources import Accounts, ConversionSource, ConversionsRefused, TrackerOutage
from export_svc.domain.zipstream import ZipStats, zip_csv
from export_svc.store.protocols import FileStore
from goalflow_common.clock import Clock, start_of_day
from goalflow_common.lifecycle import Lifecycle, cancel_and_wait

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 5
IDLE_POLL_S = 1.0  # other replicas' and restarted jobs are found at least this often
OUTAGE_BACKOFF_MAX_S = 60.0
WAITING_FOR_TRACKER = "The tracker service cannot be reached at the moment; the export is retried."


class LeaseLost(Exception):
    """Another worker holds the job now; stop touching it."""


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerSettings:
    sender: str
    """The From address of export e-mails."""
    lease_s: float
    concurrency: int
    """Jobs built at once."""
    retry_deadline_s: float = 3600.0
    """How long tracker outages are retried, from the first one."""


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerDeps:
    """What a worker works with (the wiring in server.py gives the real ones)."""

    jobs: ExportJobs
    files: FileStore
    conversions: ConversionSource
    signer: LinkSigner
    mailer: MailSender
    accounts: Accounts
    clock: Clock
    lifecycle: Lifecycle


class ExportWorker:
    def __init__(self, deps: WorkerDeps, settings: WorkerSettings) -> None:
        self._deps = deps
        self._jobs = deps.jobs
        self._clock = deps.clock
        self._settings = settings
        self._lease_s = settings.lease_s
        self._owner = f"worker-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        """A job was just queued here: look now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop()) for _ in range(self._settings.concurrency)
        ]

    async def stop(self) -> None:
        """Stop claiming; a job being built is abandoned and its lease lets another worker
        (or this one after a restart) finish it."""
        await cancel_and_wait(*self._tasks)

    async def _loop(self) -> None:
        while not self._deps.lifecycle.stopping.is_set():
            try:
                job = await self._jobs.claim(self._owner, self._lease_s)
            except Exception:
                log.exception("export_claim_failed")
                job = None
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
                continue
            await self._run(job)

    async def _run(self, job: ExportJob) -> None:
        structlog.contextvars.bind_contextvars(export_id=job.id)
        holder = _Holder(job)
        keeper = asyncio.create_task(self._keep_lease(holder))
        try:
            await self._build_and_mail(holder, keeper)
        except LeaseLost:
            log.warning("export_lease_lost")
        except TrackerOutage as exc:
            log.warning("export_tracker_unavailable", error=str(exc))
            await self._retry_after_outage(holder)
        except Exception as exc:  # the job records why; the worker carries on
            log.exception("export_failed")
            await self._retry_or_fail(holder, _reason(exc))
        finally:
            await cancel_and_wait(keeper)
            structlog.contextvars.unbind_contextvars("export_id")

    async def _keep_lease(self, holder: _Holder) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            async with holder.lock:
                renewed = await self._jobs.renew(holder.job, self._owner, self._lease_s)
                if renewed is None:
                    holder.lost = True
                    return
                holder.job = renewed

    async def _update(
        self, holder: _Holder, change: Callable[[ExportJob], Awaitable[ExportJob | None]]
    ) -> None:
        """Apply a job transition to the latest copy of the job, or raise LeaseLost."""
        async with holder.lock:
            if holder.lost:
                raise LeaseLost
            updated = await change(holder.job)
            if updated is None:
                holder.lost = True
                raise LeaseLost
            holder.job = updated

    async def _build_and_mail(self, holder: _Holder, keeper: asyncio.Task[None]) -> None:
        if not holder.job.file_id:
            await self._build(holder)
        await self._mail(holder, keeper)

    async def _build(self, holder: _Holder) -> None:
        job = holder.job
        signer = self._deps.signer
        expires = signer.new_expiry()
        stats = ZipStats()
        zipped = zip_csv(self._rows(job), entry_name=_entry_name(job), stats=stats)
        size = await self._deps.files.save(
            job.id, job.account_id, zipped, expire_at=expires,
            filename=f"{_entry_name(job)[:-4]}.zip",
        )
        link = signer.url(job.id, job.account_id, expires)
        await self._update(holder, lambda current: self._jobs.mark_built(
            current, self._owner, row_count=stats.rows, size_bytes=size, file_id=job.id,
            download_url=link, link_expire_time=expires,
        ))
        log.info("export_built", rows=stats.rows, bytes=size)

    async def _mail(self, holder: _Holder, keeper: asyncio.Task[None]) -> None:
        """Mail the built job at most once (see ``domain/jobs.py``)."""
        job = holder.job
        assert job.link_expire_time is not None  # set with the file
        message = build_message(
            job.goal_name, job.start_date, job.end_date, job.row_count, job.download_url,
            job.link_expire_time, job.recipient_email, self._settings.sender,
        )
        await self._update(holder, lambda current: self._jobs.begin_mail(
            current, self._owner, self._lease_s))
        keeper.cancel()  # no renewals while the mail goes out: its lease covers the send
        try:
            await self._deps.mailer.send_message(message)
        except MailError as exc:
            await self._mail_failed(holder, exc)
            return
        await self._update(holder, lambda current: self._jobs.mark_mailed(
            current, self._owner, self._clock.now()))
        log.info("export_mailed")

    async def _mail_failed(self, holder: _Holder, exc: MailError) -> None:
        reason = f"mail: {exc}"
        if exc.permanent or exc.maybe_sent:
            # Refused for good, or perhaps delivered: never send it again.
            await self._update(holder, lambda current: self._jobs.mark_failed(
                current, self._owner, reason))
            return
        await self._update(holder, lambda current: self._jobs.release_for_retry(
            current, self._owner, reason, current.attempts + 1,
            retry_after_s=_backoff(current.attempts), mail_not_sent=True))

    async def _rows(self, job: ExportJob) -> AsyncIterator[list[str]]:
        # [start 00:00, the day after the end 00:00) in the account's time zone.
        account = await self._deps.accounts.get_account(job.account_id)
        start = start_of_day(job.start_date, account.time_zone)
        end = start_of_day(job.end_date + dt.timedelta(days=1), account.time_zone)
        source = self._deps.conversions
        async with contextlib.aclosing(
            source.conversions(job.account_id, job.goal_id, start, end)
        ) as conversions:
            async for conversion in conversions:
                for row in rows_for(conversion):
                    yield row

    async def _retry_after_outage(self, holder: _Holder) -> None:
        """Queue the job again after a tracker outage, with a growing delay, or fail it
        once the outage has lasted ``retry_deadline_s`` since its first failure."""
        job = holder.job
        now = self._clock.now()
        since = job.outage_since or now
        deadline_s = self._settings.retry_deadline_s
        remaining = deadline_s - (now - since).total_seconds()
        outages = job.outages + 1
        with contextlib.suppress(LeaseLost):
            if remaining <= 0:
                reason = (f"The tracker service could not be reached for "
                          f"{_span(deadline_s)}, so the export was abandoned; "
                          "please request it again.")
                log.error("export_abandoned_tracker_unavailable", outages=outages)
                await self._update(holder, lambda current: self._jobs.mark_failed(
                    current, self._owner, reason))
                return
            delay = min(OUTAGE_BACKOFF_MAX_S, 0.5 * 2.0**outages, remaining)
            await self._update(holder, lambda current: self._jobs.release_for_retry(
                current, self._owner, WAITING_FOR_TRACKER, current.attempts,
                retry_after_s=delay, outage_since=since, outages=outages))

    async def _retry_or_fail(self, holder: _Holder, error: str) -> None:
        attempts = holder.job.attempts + 1
        with contextlib.suppress(LeaseLost):
            if attempts >= MAX_ATTEMPTS:
                await self._update(holder, lambda current: self._jobs.mark_failed(
                    current, self._owner, f"Gave up after {attempts} attempts: {error}."))
            else:
                await self._update(holder, lambda current: self._jobs.release_for_retry(
                    current, self._owner, error, attempts, retry_after_s=_backoff(attempts)))


class _Holder:
    """The worker's latest copy of its job (each transition bumps the revision)."""

    def __init__(self, job: ExportJob) -> None:
        self.job = job
        self.lost = False
        self.lock = asyncio.Lock()


def _reason(exc: Exception) -> str:
    """A clause for the job's record: never a multi-line dump."""
    if isinstance(exc, ConversionsRefused):
        return str(exc)
    return f"the export could not be built ({type(exc).__name__})"


def _span(seconds: float) -> str:
    """``3600`` -> ``1 hour``, ``90`` -> ``90 seconds``, for a reason a person reads."""
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


def _backoff(attempts: int) -> float:
    return min(60.0, 0.5 * 2.0**attempts)


def _entry_name(job: ExportJob) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in job.goal_name)[:60]
    return f"{safe or 'goal'}_{job.start_date.isoformat()}_{job.end_date.isoformat()}.csv"
