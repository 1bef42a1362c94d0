"""Export jobs in MongoDB: the ``exports`` collection, one document per job.

Every change is a whole-document replace conditional on ``revision`` and ``lease_owner``
(``replace``), so concurrent writers (two replicas, or a worker and a reclaimer) never both
win: the loser's ``replace_one`` matches nothing and it learns it lost. Why not ``$set``:
nx-27017 once stored a ``$set`` datetime as a string; the conditional replace is what
``test_replace_one_conditional_on_revision`` (tests/libs/common/test_mongo_conformance.py)
checks on both servers. What a change means is ``domain/jobs.py``'s business.

nx-27017 workarounds, all here:

- ``request_key`` is a sparse unique index: only jobs with a request id take part.
  nx-27017 lets missing values repeat even without ``sparse`` (MongoDB needs it), see
  ``test_unique_single_field_index``. Never store ``request_key=None``.
- ``list_key`` (newest-first paging on one string key) is digits then the id: nx-27017
  matches nothing for ``$lt`` on a string that starts like an ISO date ("2026-06-01T..."),
  as if it compared it as a date (``test_lt_on_strings_that_look_like_dates``; the form
  used, ``test_lt_on_digit_strings``).
- Date range queries (``due_queued``, ``expired_leases``) are re-checked in Python: the
  server compares dates to the second unless the query holds a ``$in``, see
  ``test_keyset_or_on_millisecond_datetimes_with_eq``.
- Equality on values that come from callers goes through ``eq`` (``$eq``): the same answers
  (``test_eq_operator_and_in_give_the_same_answers_as_bare_equality``), served from an
  index on nx-27017 (a speed gap, see ``goalflow_common.db.eq``).
"""

from __future__ import annotations

import datetime as dt

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from export_svc.domain.model import ExportJob, ExportState
from export_svc.store.protocols import BadPageToken
from goalflow_common.db import Database, Document, aware_utc, eq
from goalflow_common.errors import InvalidArgument
from goalflow_common.protoconv import decode_page_token, encode_page_token

COLLECTION = "exports"


class MongoJobStore:
    """The ``JobStore`` protocol on MongoDB."""

    def __init__(self, db: Database) -> None:
        self._exports = db[COLLECTION]

    async def ensure_indexes(self, *, ttl: bool = True) -> None:
        """``ttl=False`` leaves out the expiry index: the server expires documents by its
        wall clock, so tests whose ManualClock is far in the past would see jobs vanish."""
        await self._exports.create_index("request_key", unique=True, sparse=True)
        await self._exports.create_index([("account_id", ASCENDING), ("list_key", DESCENDING)])
        await self._exports.create_index([("state", ASCENDING), ("available_at", ASCENDING)])
        await self._exports.create_index([("state", ASCENDING), ("lease_expires", ASCENDING)])
        if ttl:
            await self._exports.create_index("expire_at", expireAfterSeconds=0)

    async def insert(self, job: ExportJob) -> ExportJob:
        doc = to_doc(job)
        try:
            await self._exports.insert_one(doc)
        except DuplicateKeyError:
            existing = await self._exports.find_one({"request_key": eq(doc["request_key"])})
            if existing is None:  # expired between the insert and the read
                raise
            return from_doc(existing)
        return job

    async def get(self, account_id: str, export_id: str) -> ExportJob | None:
        doc = await self._exports.find_one({"_id": eq(export_id), "account_id": eq(account_id)})
        return None if doc is None else from_doc(doc)

    async def get_by_id(self, export_id: str) -> ExportJob | None:
        doc = await self._exports.find_one({"_id": eq(export_id)})
        return None if doc is None else from_doc(doc)

    async def page(
        self, account_id: str, page_size: int, page_token: str
    ) -> tuple[list[ExportJob], str]:
        query: Document = {"account_id": eq(account_id)}
        if page_token:
            query["list_key"] = {"$lt": _decode_token(page_token)}
        docs = await self._exports.find(query).sort("list_key", DESCENDING).limit(
            page_size + 1
        ).to_list()
        if len(docs) <= page_size:
            return [from_doc(doc) for doc in docs], ""
        docs = docs[:page_size]
        return [from_doc(doc) for doc in docs], encode_page_token((docs[-1]["list_key"],))

    async def due_queued(self, now: dt.datetime, limit: int) -> list[ExportJob]:
        docs = await self._exports.find(
            {"state": eq(ExportState.QUEUED.value), "available_at": {"$lte": now}}
        ).sort([("available_at", ASCENDING), ("_id", ASCENDING)]).limit(limit).to_list()
        jobs = [from_doc(doc) for doc in docs]
        return [job for job in jobs if job.available_at <= now]

    async def expired_leases(self, now: dt.datetime, limit: int) -> list[ExportJob]:
        docs = await self._exports.find(
            {"state": eq(ExportState.BUILDING.value), "lease_expires": {"$lt": now}}
        ).sort("lease_expires", ASCENDING).limit(limit).to_list()
        jobs = [from_doc(doc) for doc in docs]
        return [job for job in jobs if job.lease_expires is not None and job.lease_expires < now]

    async def replace(self, old: ExportJob, new: ExportJob) -> bool:
        # lease_owner in the filter as well: a stale in-memory job of a previous holder
        # cannot match even if revisions were somehow reused.
        result = await self._exports.replace_one(
            {"_id": eq(old.id), "revision": eq(old.revision), "lease_owner": eq(old.lease_owner)},
            to_doc(new),
        )
        return result.matched_count == 1


def to_doc(job: ExportJob) -> Document:
    doc: Document = {
        "_id": job.id,
        "account_id": job.account_id,
        "goal_id": job.goal_id,
        "goal_name": job.goal_name,
        "start_date": job.start_date.isoformat(),
        "end_date": job.end_date.isoformat(),
        "recipient_email": job.recipient_email,
        "state": job.state.value,
        "row_count": job.row_count,
        "size_bytes": job.size_bytes,
        "file_id": job.file_id,
        "download_url": job.download_url,
        "link_expire_time": job.link_expire_time,
        "error": job.error,
        "attempts": job.attempts,
        "claims": job.claims,
        "lease_owner": job.lease_owner,
        "lease_expires": job.lease_expires,
        "mail_attempted_at": job.mail_attempted_at,
        "revision": job.revision,
        "create_time": job.create_time,
        "update_time": job.update_time,
        "mail_time": job.mail_time,
        "available_at": job.available_at,
        "list_key": _list_key(job),
        "expire_at": job.expire_at,
        "outage_since": job.outage_since,
        "outages": job.outages,
    }
    if job.request_id:
        doc["request_id"] = job.request_id
        doc["request_key"] = f"{job.account_id}:{job.request_id}"
    return doc


def from_doc(doc: Document) -> ExportJob:
    return ExportJob(
        id=doc["_id"],
        account_id=doc["account_id"],
        goal_id=doc["goal_id"],
        goal_name=doc["goal_name"],
        start_date=dt.date.fromisoformat(doc["start_date"]),
        end_date=dt.date.fromisoformat(doc["end_date"]),
        recipient_email=doc["recipient_email"],
        create_time=aware_utc(doc["create_time"]),
        update_time=aware_utc(doc["update_time"]),
        available_at=aware_utc(doc["available_at"]),
        expire_at=aware_utc(doc["expire_at"]),
        state=ExportState(doc["state"]),
        request_id=doc.get("request_id", ""),
        revision=doc["revision"],
        row_count=doc.get("row_count") or 0,
        size_bytes=doc.get("size_bytes") or 0,
        file_id=doc.get("file_id") or None,
        download_url=doc.get("download_url") or "",
        link_expire_time=_maybe_aware(doc.get("link_expire_time")),
        error=doc.get("error") or "",
        attempts=doc.get("attempts", 0),
        claims=doc.get("claims", 0),
        lease_owner=doc.get("lease_owner"),
        lease_expires=_maybe_aware(doc.get("lease_expires")),
        mail_attempted_at=_maybe_aware(doc.get("mail_attempted_at")),
        mail_time=_maybe_aware(doc.get("mail_time")),
        outage_since=_maybe_aware(doc.get("outage_since")),
        outages=doc.get("outages", 0),
    )


def _list_key(job: ExportJob) -> str:
    """Newest-first paging key: UTC creation time as fixed-width digits, then the id.
    Digits only: see the module docstring. Cut to milliseconds, as the database keeps
    ``create_time``, so every rewrite of the job writes the same key."""
    when = job.create_time.astimezone(dt.UTC)
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    return f"{when.strftime('%Y%m%d%H%M%S%f')}|{job.id}"




def _maybe_aware(when: dt.datetime | None) -> dt.datetime | None:
    return None if when is None else aware_utc(when)


def _decode_token(token: str) -> str:
    try:
        (key,) = decode_page_token(token, (str,)) or ("",)
    except InvalidArgument as refused:
        raise BadPageToken(refused.rule) from None
    return str(key)
