"""The export worker: claims a job, streams the goal's conversions from the tracker into a
zipped CSV in the database, signs a link, mails it, and records each step.

Jobs are claimed with a lease (``jobs.py``), renewed while the worker is busy, so with any
number of replicas each job is built by one worker at a time and mailed at most once; a
job whose worker died is picked up when its lease runs out.

Outages of the tracker (unreachable, a deadline exceeded, or no chunk for
``read_timeout_s``, as when its process is frozen) do not fail a job: it goes back to the
queue with a growing delay, where any replica may claim it, for up to ``retry_deadline_s``
after the first outage; only then does it fail. Other errors fail it after
``MAX_ATTEMPTS``. A failed job's stored reason is one human sentence, never a gRPC dump.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog

from export_svc.csv_rows import rows_for
from export_svc.files import FileStore
from export_svc.jobs import JobStore
from export_svc.links import LinkSigner
from export_svc.mailer import Mailer, MailError, build_message
from export_svc.zipstream import ZipStats, zip_csv
from goalflow_common.auth import KeyStore
from goalflow_common.clock import Clock, start_of_day
from goalflow_common.pb.goals.v1 import tracker_pb2, tracker_pb2_grpc
from goalflow_common.server import Lifecycle, cancel_and_wait

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 5
IDLE_POLL_S = 1.0  # other replicas' and restarted jobs are found at least this often
# Codes that mean the tracker is down or overloaded, not that the request is wrong.
OUTAGE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
OUTAGE_BACKOFF_MAX_S = 60.0
WAITING_FOR_TRACKER = "The tracker service cannot be reached at the moment; the export is retried."


class LeaseLost(Exception):
    """Another worker holds the job now; stop touching it."""


class TrackerOutage(Exception):
    """The tracker could not be reached or stopped answering; the job is retried later."""


class ExportWorker:
    def __init__(
        self,
        jobs: JobStore,
        files: FileStore,
        tracker: tracker_pb2_grpc.TrackerServiceStub,
        signer: LinkSigner,
        mailer: Mailer,
        keys: KeyStore,
        clock: Clock,
        lifecycle: Lifecycle,
        *,
        sender: str,
        lease_s: float,
        concurrency: int,
        retry_deadline_s: float = 3600.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        self._jobs = jobs
        self._files = files
        self._tracker = tracker
        self._signer = signer
        self._mailer = mailer
        self._keys = keys
        self._clock = clock
        self._lifecycle = lifecycle
        self._sender = sender
        self._lease_s = lease_s
        self._concurrency = concurrency
        self._retry_deadline_s = retry_deadline_s
        self._read_timeout_s = read_timeout_s
        self._owner = f"worker-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        """A job was just queued here: look now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self._concurrency)]

    async def stop(self) -> None:
        """Stop claiming; a job being built is abandoned and its lease lets another worker
        (or this one after a restart) finish it."""
        await cancel_and_wait(*self._tasks)

    async def _loop(self) -> None:
        while not self._lifecycle.stopping.is_set():
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

    async def _run(self, job: dict[str, Any]) -> None:
        structlog.contextvars.bind_contextvars(export_id=job["_id"])
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
                renewed = await self._jobs.renew(holder.doc, self._owner, self._lease_s)
                if renewed is None:
                    holder.lost = True
                    return
                holder.doc = renewed

    async def _update(self, holder: _Holder, change: Any) -> None:
        """Apply a JobStore transition to the latest document, or raise LeaseLost."""
        async with holder.lock:
            if holder.lost:
                raise LeaseLost
            updated = await change(holder.doc)
            if updated is None:
                holder.lost = True
                raise LeaseLost
            holder.doc = updated

    async def _build_and_mail(self, holder: _Holder, keeper: asyncio.Task[None]) -> None:
        job = holder.doc
        expires = self._signer.new_expiry()
        if not job.get("file_id"):
            stats = ZipStats()
            zipped = zip_csv(self._rows(job), entry_name=_entry_name(job), stats=stats)
            size = await self._files.save(
                job["_id"], job["account_id"], zipped, expire_at=expires,
                filename=f"{_entry_name(job)[:-4]}.zip",
            )
            link = self._signer.url(job["_id"], job["account_id"], expires)
            await self._update(holder, lambda doc: self._jobs.mark_built(
                doc, self._owner, row_count=stats.rows, size_bytes=size, file_id=job["_id"],
                download_url=link, link_expire_time=expires,
            ))
            log.info("export_built", rows=stats.rows, bytes=size)
        job = holder.doc
        message = build_message(
            job["goal_name"], job["start_date"], job["end_date"], job["row_count"],
            job["download_url"], job["link_expire_time"], job["recipient_email"], self._sender,
        )
        await self._update(holder, lambda doc: self._jobs.begin_mail(
            doc, self._owner, self._lease_s))
        keeper.cancel()  # no renewals while the mail goes out: its lease covers the send
        try:
            await self._mailer.send_message(message)
        except MailError as exc:
            reason, final = f"mail: {exc}", exc.permanent or exc.maybe_sent
        else:
            reason, final = "", False
        if reason and final:
            # Refused for good, or perhaps delivered: never send it again.
            await self._update(holder, lambda doc: self._jobs.mark_failed(
                doc, self._owner, reason))
            return
        if reason:
            await self._update(holder, lambda doc: self._jobs.release_for_retry(
                doc, self._owner, reason, doc.get("attempts", 0) + 1,
                retry_after_s=_backoff(doc.get("attempts", 0)), mail_not_sent=True))
            return
        await self._update(holder, lambda doc: self._jobs.mark_mailed(
            doc, self._owner, self._clock.now()))
        log.info("export_mailed")

    async def _rows(self, job: dict[str, Any]) -> AsyncIterator[list[str]]:
        account = await self._keys.get_account(job["account_id"])
        start = start_of_day(dt.date.fromisoformat(job["start_date"]), account.time_zone)
        end = start_of_day(
            dt.date.fromisoformat(job["end_date"]) + dt.timedelta(days=1), account.time_zone
        )
        request = tracker_pb2.StreamConversionsRequest(
            account_id=job["account_id"], goal_id=job["goal_id"]
        )
        request.start_time.FromDatetime(start)
        request.end_time.FromDatetime(end)
        call = self._tracker.StreamConversions(request)
        try:
            while True:
                # No deadline on the whole call (a large export streams for minutes), but
                # one on each chunk: a frozen tracker (SIGSTOP, a stuck host) keeps its
                # connection open and answers nothing, which would hold the build for as
                # long as the connection lives.
                try:
                    chunk = await asyncio.wait_for(call.read(), self._read_timeout_s)
                except TimeoutError:
                    raise TrackerOutage(
                        f"no conversions from the tracker for {self._read_timeout_s:g} s"
                    ) from None
                except grpc.RpcError as exc:
                    if exc.code() in OUTAGE_CODES:
                        raise TrackerOutage(f"StreamConversions: {exc.code().name}") from None
                    raise
                if chunk is grpc.aio.EOF:
                    return
                for conversion in chunk.conversions:
                    for row in rows_for(conversion):
                        yield row
        finally:
            call.cancel()

    async def _retry_after_outage(self, holder: _Holder) -> None:
        """Queue the job again after a tracker outage, with a growing delay, or fail it
        once the outage has lasted ``retry_deadline_s`` since its first failure."""
        doc = holder.doc
        now = self._clock.now()
        since = doc.get("outage_since") or now  # read back time-zone aware
        remaining = self._retry_deadline_s - (now - since).total_seconds()
        outages = doc.get("outages", 0) + 1
        with contextlib.suppress(LeaseLost):
            if remaining <= 0:
                reason = (f"The tracker service could not be reached for "
                          f"{_span(self._retry_deadline_s)}, so the export was abandoned; "
                          "please request it again.")
                log.error("export_abandoned_tracker_unavailable", outages=outages)
                await self._update(holder, lambda d: self._jobs.mark_failed(
                    d, self._owner, reason))
                return
            delay = min(OUTAGE_BACKOFF_MAX_S, 0.5 * 2**outages, remaining)
            await self._update(holder, lambda d: self._jobs.release_for_retry(
                d, self._owner, WAITING_FOR_TRACKER, d.get("attempts", 0),
                retry_after_s=delay, outage_since=since, outages=outages))

    async def _retry_or_fail(self, holder: _Holder, error: str) -> None:
        attempts = holder.doc.get("attempts", 0) + 1
        with contextlib.suppress(LeaseLost):
            if attempts >= MAX_ATTEMPTS:
                await self._update(holder, lambda doc: self._jobs.mark_failed(
                    doc, self._owner, f"Gave up after {attempts} attempts: {error}."))
            else:
                await self._update(holder, lambda doc: self._jobs.release_for_retry(
                    doc, self._owner, error, attempts, retry_after_s=_backoff(attempts)))


class _Holder:
    """The worker's latest copy of its job (each transition bumps the revision)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.lost = False
        self.lock = asyncio.Lock()


def _reason(exc: Exception) -> str:
    """A clause for the job's record: never a gRPC error's multi-line dump."""
    if isinstance(exc, grpc.aio.AioRpcError):
        details = " ".join((exc.details() or "").split())[:200]
        return f"the tracker refused the request ({exc.code().name}{': ' * bool(details)}{details})"
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
    return min(60.0, 0.5 * 2**attempts)


def _entry_name(job: dict[str, Any]) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in job["goal_name"])[:60]
    return f"{safe or 'goal'}_{job['start_date']}_{job['end_date']}.csv"
