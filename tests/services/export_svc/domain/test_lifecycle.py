"""The export job lifecycle in memory: leases, the at-most-once mail and the outage
deadline, with the worker and ``ExportJobs`` over a small in-memory ``JobStore`` and fake
conversion source, file store and mailer (no gRPC, no database, no SMTP)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from email.message import EmailMessage

from export_svc.domain.jobs import ExportJobs, ExportRequest
from export_svc.domain.lifecycle import (
    WAITING_FOR_TRACKER,
    ExportWorker,
    WorkerDeps,
    WorkerSettings,
)
from export_svc.domain.links import LinkSigner
from export_svc.domain.model import ExportJob, ExportState
from export_svc.domain.sources import ExportConversion, ExportCredit, TrackerOutage
from export_svc.store.protocols import JobStore
from goalflow_common.auth import Account
from goalflow_common.clock import ManualClock
from goalflow_common.lifecycle import Lifecycle

LEASE_S = 30.0  # the lease keeper (every lease_s / 3 real seconds) never runs in a test
SECRET = b"k" * 32


class MemJobStore:
    """Just enough of ``JobStore``: jobs by id, due/expired selection, compare-and-swap."""

    def __init__(self) -> None:
        self.jobs: dict[str, ExportJob] = {}

    async def insert(self, job: ExportJob) -> ExportJob:
        self.jobs[job.id] = job
        return job

    async def get(self, account_id: str, export_id: str) -> ExportJob | None:
        job = self.jobs.get(export_id)
        return job if job is not None and job.account_id == account_id else None

    async def get_by_id(self, export_id: str) -> ExportJob | None:
        return self.jobs.get(export_id)

    async def page(
        self, account_id: str, page_size: int, page_token: str
    ) -> tuple[list[ExportJob], str]:
        raise NotImplementedError  # not needed here

    async def due_queued(self, now: dt.datetime, limit: int) -> list[ExportJob]:
        due = [j for j in self.jobs.values()
               if j.state is ExportState.QUEUED and j.available_at <= now]
        return sorted(due, key=lambda j: (j.available_at, j.id))[:limit]

    async def expired_leases(self, now: dt.datetime, limit: int) -> list[ExportJob]:
        return [j for j in self.jobs.values() if j.state is ExportState.BUILDING
                and j.lease_expires is not None and j.lease_expires < now][:limit]

    async def replace(self, old: ExportJob, new: ExportJob) -> bool:
        stored = self.jobs.get(old.id)
        if (stored is None or stored.revision != old.revision
                or stored.lease_owner != old.lease_owner):
            return False
        self.jobs[old.id] = new
        return True


class MemFiles:
    def __init__(self) -> None:
        self.saved: dict[str, bytes] = {}

    async def save(self, file_id: str, account_id: str, chunks: AsyncIterator[bytes], *,
                   expire_at: dt.datetime, filename: str = "export.zip") -> int:
        data = b"".join([piece async for piece in chunks])
        self.saved[file_id] = data
        return len(data)


class Conversions:
    """Two conversions, or ``TrackerOutage`` while ``down``."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down

    async def conversions(self, account_id: str, goal_id: str, start: dt.datetime,
                          end: dt.datetime) -> AsyncGenerator[ExportConversion, None]:
        if self.down:
            raise TrackerOutage("StreamConversions: UNAVAILABLE")
        for n in range(2):
            yield ExportConversion(
                id=f"c{n}", goal_id=goal_id, goal_name="Checkout", conversation_id="",
                conversion_time=start.astimezone(dt.UTC), transaction_value=None,
                satisfaction_rating=None,
                credits=(ExportCredit(agent_id=f"agent-{n}", agent_name="", agent_email="",
                                      contact_duration=dt.timedelta()),))


class Mailer:
    """Counts send attempts; ``hang`` makes a send never return (the worker dies in it)."""

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.attempts: list[EmailMessage] = []

    async def send_message(self, message: EmailMessage) -> None:
        self.attempts.append(message)
        if self.hang:
            await asyncio.Event().wait()


class Accounts:
    async def get_account(self, account_id: str) -> Account:
        return Account(account_id, account_id, "UTC")


@dataclasses.dataclass
class World:
    store: MemJobStore
    jobs: ExportJobs
    clock: ManualClock
    files: MemFiles
    conversions: Conversions
    mailer: Mailer

    def worker(self, retry_deadline_s: float = 3600.0) -> ExportWorker:
        deps = WorkerDeps(
            jobs=self.jobs, files=self.files, conversions=self.conversions,
            signer=LinkSigner(SECRET, "http://127.0.0.1:8083", self.clock),
            mailer=self.mailer, accounts=Accounts(), clock=self.clock, lifecycle=Lifecycle(),
        )
        return ExportWorker(deps, WorkerSettings(
            sender="goalflow@localhost", lease_s=LEASE_S, concurrency=1,
            retry_deadline_s=retry_deadline_s))

    async def request(self) -> ExportJob:
        return await self.jobs.create(ExportRequest(
            account_id="acct-a", goal_id="goal-1", goal_name="Checkout",
            start_date=dt.date(2026, 5, 1), end_date=dt.date(2026, 5, 31),
            recipient_email="admin@example.com"))


def _world(*, tracker_down: bool = False, mail_hangs: bool = False) -> World:
    store = MemJobStore()
    clock = ManualClock(dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC))
    # The fake satisfies the protocol the domain is written against.
    protocol_store: JobStore = store
    return World(store, ExportJobs(protocol_store, clock), clock, MemFiles(),
                 Conversions(down=tracker_down), Mailer(hang=mail_hangs))


async def _until(check: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    for _ in range(1000):
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_job_is_built_and_mailed_once():
    world = _world()
    job = await world.request()
    worker = world.worker()
    await worker.start()
    try:
        await _until(lambda: world.store.jobs[job.id].state is ExportState.MAILED, "MAILED")
    finally:
        await worker.stop()
    mailed = world.store.jobs[job.id]
    assert mailed.row_count == 2 and mailed.lease_owner is None and mailed.claims == 1
    body = world.mailer.attempts[0].get_body(("plain",))
    assert body is not None and mailed.download_url in body.get_content()
    assert len(world.mailer.attempts) == 1
    assert world.files.saved[job.id].startswith(b"PK")


async def test_a_job_whose_mail_was_attempted_is_never_mailed_again_after_a_takeover():
    world = _world(mail_hangs=True)
    job = await world.request()
    first = world.worker()
    await first.start()
    try:
        await _until(lambda: len(world.mailer.attempts) == 1, "the first send")
    finally:
        await first.stop()  # the worker dies inside the SMTP conversation
    stranded = world.store.jobs[job.id]
    assert stranded.state is ExportState.BUILDING and stranded.mail_attempted_at is not None

    world.clock.advance(dt.timedelta(seconds=LEASE_S + 1))  # its lease runs out
    world.mailer.hang = False
    second = world.worker()
    await second.start()
    try:
        await _until(lambda: world.store.jobs[job.id].state is ExportState.FAILED, "FAILED")
        await asyncio.sleep(0.05)  # a second send would have happened by now
    finally:
        await second.stop()
    failed = world.store.jobs[job.id]
    assert len(world.mailer.attempts) == 1
    assert "may or may not have been delivered" in failed.error
    assert failed.download_url and failed.download_url in failed.error
    # Nothing claims it again, however late.
    world.clock.advance(dt.timedelta(days=1))
    assert await world.jobs.claim("w3", LEASE_S) is None


async def test_a_stale_lease_holder_cannot_mail_after_a_takeover():
    world = _world()
    await world.request()
    held = await world.jobs.claim("w1", LEASE_S)
    assert held is not None
    world.clock.advance(dt.timedelta(seconds=LEASE_S + 1))
    taken = await world.jobs.claim("w2", LEASE_S)
    assert taken is not None and taken.lease_owner == "w2" and taken.claims == 2
    assert await world.jobs.begin_mail(held, "w1", LEASE_S) is None
    assert await world.jobs.mark_mailed(held, "w1", world.clock.now()) is None
    assert world.store.jobs[held.id].lease_owner == "w2"


async def test_an_outage_requeues_until_the_deadline_then_fails_with_one_sentence():
    world = _world(tracker_down=True)
    job = await world.request()
    worker = world.worker(retry_deadline_s=3600.0)
    await worker.start()
    requeues = 0
    try:
        while world.store.jobs[job.id].state is not ExportState.FAILED:
            current = world.store.jobs[job.id]
            if current.state is ExportState.QUEUED and current.outages > requeues:
                requeues = current.outages
                assert current.error == WAITING_FOR_TRACKER
                assert current.available_at > world.clock.now()  # a backoff, not a spin
                world.clock.advance(dt.timedelta(seconds=1000))
                worker.wake()
            await asyncio.sleep(0.01)
    finally:
        await worker.stop()
    failed = world.store.jobs[job.id]
    # Started at 12:00; retried at +1000 s, +2000 s, +3000 s; at +4000 s the hour is over.
    assert requeues == 4 and failed.outages == 4
    assert failed.error == (
        "The tracker service could not be reached for 1 hour, so the export was "
        "abandoned; please request it again.")
    assert "\n" not in failed.error
    assert failed.attempts == 0 and world.mailer.attempts == []
