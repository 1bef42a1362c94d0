"""The export job store against the real database: leases, races between replicas, the
at-most-once MAILED transition, idempotent requests, paging and account isolation."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from export_svc.domain.jobs import ExportJobs, ExportRequest
from export_svc.domain.model import ExportJob, ExportState
from export_svc.store.jobs import MongoJobStore
from export_svc.store.protocols import BadPageToken
from goalflow_common.clock import ManualClock

BUILDING, FAILED, MAILED, QUEUED = (ExportState.BUILDING, ExportState.FAILED,
                                    ExportState.MAILED, ExportState.QUEUED)
LEASE_S = 30.0


@pytest.fixture
def exports(mongo: AsyncMongoClient, db_prefix: str) -> Any:
    """The raw collection, to check what the store wrote."""
    return mongo[f"{db_prefix}_export"]["exports"]


@pytest.fixture
async def store(mongo: AsyncMongoClient, db_prefix: str, clock: ManualClock) -> ExportJobs:
    job_store = MongoJobStore(mongo[f"{db_prefix}_export"])
    # No TTL index: the server expires by its wall clock, and this clock is in the past.
    await job_store.ensure_indexes(ttl=False)
    return ExportJobs(job_store, clock)


async def _create(store: ExportJobs, account: str = "acct-a", **overrides: Any) -> ExportJob:
    fields = {
        "account_id": account,
        "goal_id": "goal-1",
        "goal_name": "Checkout",
        "start_date": dt.date(2026, 5, 1),
        "end_date": dt.date(2026, 5, 31),
        "recipient_email": "admin@example.com",
    }
    return await store.create(ExportRequest(**{**fields, **overrides}))


async def _built(store: ExportJobs, doc: ExportJob, owner: str) -> ExportJob:
    built = await store.mark_built(
        doc, owner, row_count=3, size_bytes=120, file_id="file-1",
        download_url="http://127.0.0.1:8083/d/x", link_expire_time=doc.expire_at,
    )
    assert built is not None
    return built


async def test_two_claimers_take_each_of_20_jobs_exactly_once(store, clock, exports):
    created = []
    for _ in range(20):
        created.append((await _create(store)).id)
        clock.advance(dt.timedelta(milliseconds=1))

    async def worker(owner: str) -> list[str]:
        taken = []
        while (job := await store.claim(owner, LEASE_S)) is not None:
            assert job.state == BUILDING and job.lease_owner == owner
            taken.append(job.id)
            await asyncio.sleep(0)
        return taken

    first, second = await asyncio.gather(worker("w1"), worker("w2"))
    assert sorted(first + second) == sorted(created)
    assert not set(first) & set(second)
    assert first and second  # both really competed
    async for doc in exports.find({}):
        assert doc["state"] == BUILDING
        assert doc["claims"] == 1
        expected_owner = "w1" if doc["_id"] in first else "w2"
        assert doc["lease_owner"] == expected_owner


async def test_oldest_queued_job_is_claimed_first(store, clock):
    older = await _create(store)
    clock.advance(dt.timedelta(seconds=5))
    await _create(store)
    job = await store.claim("w1", LEASE_S)
    assert job.id == older.id


async def test_expired_lease_is_reclaimed_and_old_owner_is_locked_out(store, clock):
    await _create(store)
    held = await store.claim("crashed", LEASE_S)
    assert await store.claim("other", LEASE_S) is None  # lease still running

    clock.advance(dt.timedelta(seconds=LEASE_S + 1))
    taken = await store.claim("other", LEASE_S)
    assert taken.id == held.id
    assert taken.lease_owner == "other" and taken.claims == 2

    # The crashed worker comes back with its stale copy: every write is refused.
    assert await store.renew(held, "crashed", LEASE_S) is None
    assert await store.mark_mailed(held, "crashed", clock.now()) is None
    assert await store.mark_failed(held, "crashed", "boom") is None
    stored = await store.get("acct-a", held.id)
    assert stored.state == BUILDING and stored.lease_owner == "other"


async def test_renew_extends_the_lease_and_refuses_after_loss(store, clock):
    await _create(store)
    job = await store.claim("w1", LEASE_S)
    clock.advance(dt.timedelta(seconds=LEASE_S - 5))
    job = await store.renew(job, "w1", LEASE_S)
    assert job is not None
    clock.advance(dt.timedelta(seconds=10))  # past the first lease, inside the renewed one
    assert await store.claim("w2", LEASE_S) is None

    clock.advance(dt.timedelta(seconds=LEASE_S))
    assert (await store.claim("w2", LEASE_S)).lease_owner == "w2"
    assert await store.renew(job, "w1", LEASE_S) is None
    # Another worker's id with the current document is refused too.
    current = await store.get("acct-a", job.id)
    assert await store.renew(current, "w1", LEASE_S) is None


async def test_mark_mailed_happens_once_even_when_raced(store, clock):
    await _create(store)
    job = await store.claim("w1", LEASE_S)
    job = await _built(store, job, "w1")
    job = await store.begin_mail(job, "w1", LEASE_S)
    results = await asyncio.gather(
        store.mark_mailed(job, "w1", clock.now()), store.mark_mailed(job, "w1", clock.now())
    )
    assert sum(r is not None for r in results) == 1
    mailed = next(r for r in results if r is not None)
    assert await store.mark_mailed(mailed, "w1", clock.now()) is None  # no longer held
    stored = await store.get("acct-a", job.id)
    assert stored.state == MAILED and stored.mail_time == clock.now()
    assert stored.lease_owner is None and stored.row_count == 3
    # A MAILED job is never claimable again, however late it is.
    clock.advance(dt.timedelta(days=1))
    assert await store.claim("w2", LEASE_S) is None


async def test_crash_after_mail_attempt_ends_failed_not_resent(store, clock):
    await _create(store)
    job = await store.claim("w1", LEASE_S)
    job = await _built(store, job, "w1")
    await store.begin_mail(job, "w1", LEASE_S)
    # w1 dies here: SMTP may or may not have accepted the message.
    clock.advance(dt.timedelta(seconds=LEASE_S + 1))
    assert await store.claim("w2", LEASE_S) is None
    stored = await store.get("acct-a", job.id)
    assert stored.state == FAILED
    assert "may or may not have been delivered" in stored.error
    assert "http://127.0.0.1:8083/d/x" in stored.error


async def test_release_for_retry_requeues_with_delay_and_error(store, clock):
    await _create(store)
    job = await store.claim("w1", LEASE_S)
    job = await _built(store, job, "w1")
    job = await store.begin_mail(job, "w1", LEASE_S)
    released = await store.release_for_retry(
        job, "w1", "smtp down", 1, retry_after_s=10, mail_not_sent=True
    )
    assert released.state == QUEUED and released.error == "smtp down"
    assert released.attempts == 1 and released.mail_attempted_at is None
    assert await store.claim("w2", LEASE_S) is None  # not due yet
    clock.advance(dt.timedelta(seconds=11))
    again = await store.claim("w2", LEASE_S)
    assert again.id == job.id and again.file_id == "file-1"


async def test_mark_failed_is_terminal(store, clock):
    await _create(store)
    job = await store.claim("w1", LEASE_S)
    failed = await store.mark_failed(job, "w1", "tracker unavailable")
    assert failed.state == FAILED and failed.error == "tracker unavailable"
    clock.advance(dt.timedelta(hours=1))
    assert await store.claim("w2", LEASE_S) is None


async def test_request_id_is_idempotent_per_account(store, exports):
    first = await _create(store, request_id="r-1")
    concurrent = await asyncio.gather(*(_create(store, request_id="r-1") for _ in range(5)))
    assert {job.id for job in concurrent} == {first.id}
    other_key = await _create(store, request_id="r-2")
    other_account = await _create(store, account="acct-b", request_id="r-1")
    assert len({first.id, other_key.id, other_account.id}) == 3
    # Jobs without a request_id never collide on the unique index (missing field).
    plain = [await _create(store) for _ in range(3)]
    assert len({job.id for job in plain}) == 3
    assert "request_key" not in await exports.find_one({"_id": plain[0].id})
    assert await exports.count_documents({}) == 6


async def test_list_pages_newest_first(store, clock):
    ids = []
    for _ in range(7):
        ids.append((await _create(store)).id)
        clock.advance(dt.timedelta(seconds=1))
    await _create(store, account="acct-b")
    seen, token, pages = [], "", 0
    while True:
        docs, token = await store.list("acct-a", 3, token)
        pages += 1
        assert len(docs) <= 3
        seen += [doc.id for doc in docs]
        if not token:
            break
    assert seen == list(reversed(ids))
    assert pages == 3
    with pytest.raises(BadPageToken):
        await store.list("acct-a", 3, "not-a-token")


async def test_accounts_are_isolated(store):
    job = await _create(store, account="acct-a")
    assert await store.get("acct-b", job.id) is None
    assert (await store.get("acct-a", job.id)).id == job.id
    docs, _ = await store.list("acct-b", 10)
    assert docs == []


async def test_dates_survive_as_datetimes(store, clock):
    job = await _create(store)
    stored = await store.get("acct-a", job.id)
    assert stored.create_time == clock.now()
    assert stored.expire_at == clock.now() + dt.timedelta(days=14)
    claimed = await store.claim("w1", LEASE_S)
    stored = await store.get("acct-a", claimed.id)
    assert stored.lease_expires == clock.now() + dt.timedelta(seconds=LEASE_S)


async def test_jobs_expire_14_days_after_creation(mongo, db_prefix):
    """The TTL index works on the server's wall clock, so this test uses a real instant."""
    clock = ManualClock(dt.datetime.now(dt.UTC))
    job_store = MongoJobStore(mongo[f"{db_prefix}_export"])
    await job_store.ensure_indexes()
    jobs = ExportJobs(job_store, clock)
    fresh = await _create(jobs)
    clock.set(dt.datetime.now(dt.UTC) - dt.timedelta(days=14, minutes=1))
    old = await _create(jobs)
    assert old.expire_at < dt.datetime.now(dt.UTC) < fresh.expire_at
    for _ in range(100):  # the server's expiry pass is not instantaneous everywhere
        if await jobs.get("acct-a", old.id) is None:
            break
        await asyncio.sleep(0.1)
    assert await jobs.get("acct-a", old.id) is None
    assert await jobs.get("acct-a", fresh.id) is not None
