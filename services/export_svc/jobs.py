"""Export jobs in MongoDB, claimed by workers with leases.

One document per job in the ``exports`` collection. Every change is a whole-document
replace conditional on ``revision`` (nx-27017 stores a ``$set`` datetime as a string), so
concurrent writers (two replicas, or a worker and a reclaimer) never both win: the loser's
``replace_one`` matches nothing and it learns it lost.

States: ``QUEUED`` -> ``BUILDING`` -> ``MAILED``, or ``FAILED``. A worker owns a job while
``lease_owner`` is its id and ``lease_expires`` is in the future; a ``BUILDING`` job whose
lease ran out belongs to a crashed worker and is claimed again.

Never mailed twice
------------------
Only the lease holder mails, and it first records ``mail_attempted_at`` (``begin_mail``)
and only then talks to SMTP; ``mark_mailed`` is conditional on revision and owner, so the
``MAILED`` transition happens at most once. The one window that cannot be closed: the
worker dies after the SMTP server accepted the message but before ``MAILED`` is stored.
Nobody can tell afterwards whether the mail went out, so this store chooses *at most once*:
a job that is claimable again while ``mail_attempted_at`` is set is never handed to a
worker; ``claim`` moves it to ``FAILED`` with an error that says the mail may have been
delivered and gives the still-valid download link. The window is kept small: the mark is
written immediately before the send, the mailer does not retry once DATA was transmitted
(an ambiguous failure there raises instead), and ``mark_mailed`` follows at once. A worker
that learns the mail certainly did not go out (``MailError.maybe_sent`` is false) may call
``release_for_retry(..., mail_not_sent=True)`` to clear the mark.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import structlog
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from goalflow_common.clock import Clock
from goalflow_common.db import eq
from goalflow_common.errors import InvalidArgument
from goalflow_common.protoconv import decode_page_token, encode_page_token

log = structlog.get_logger(__name__)

QUEUED, BUILDING, MAILED, FAILED = "QUEUED", "BUILDING", "MAILED", "FAILED"
JOB_TTL = dt.timedelta(days=14)
# How many of the oldest claimable jobs one claim tries before reading again: a claimer
# that loses a race moves on to the next job instead of re-reading the queue.
CLAIM_BATCH = 8


class BadPageToken(ValueError):
    """The page token is not one ``list`` returned."""


class JobStore:
    def __init__(self, db: AsyncDatabase, clock: Clock) -> None:
        self.exports = db["exports"]
        self._clock = clock

    async def ensure_indexes(self, *, ttl: bool = True) -> None:
        """``ttl=False`` leaves out the expiry index: the server expires documents by its
        wall clock, so tests whose ManualClock is far in the past would see jobs vanish."""
        # sparse: only jobs that carry a request_key take part. (nx-27017 lets missing
        # values repeat even without it; MongoDB needs it.) Never store request_key=None.
        await self.exports.create_index("request_key", unique=True, sparse=True)
        await self.exports.create_index([("account_id", ASCENDING), ("list_key", DESCENDING)])
        await self.exports.create_index([("state", ASCENDING), ("available_at", ASCENDING)])
        await self.exports.create_index([("state", ASCENDING), ("lease_expires", ASCENDING)])
        if ttl:
            await self.exports.create_index("expire_at", expireAfterSeconds=0)

    # --- requests ---------------------------------------------------------------------

    async def create(
        self,
        *,
        account_id: str,
        goal_id: str,
        goal_name: str,
        start_date: str,
        end_date: str,
        recipient_email: str,
        request_id: str = "",
    ) -> dict[str, Any]:
        """Record a QUEUED job. A repeated ``request_id`` of the same account returns the
        job it first created (even under concurrent requests: the unique index decides)."""
        now = self._clock.now()
        export_id = uuid.uuid4().hex
        doc: dict[str, Any] = {
            "_id": export_id,
            "account_id": account_id,
            "goal_id": goal_id,
            "goal_name": goal_name,
            "start_date": start_date,
            "end_date": end_date,
            "recipient_email": recipient_email,
            "state": QUEUED,
            "row_count": 0,
            "size_bytes": 0,
            "file_id": None,
            "download_url": "",
            "link_expire_time": None,
            "error": "",
            "attempts": 0,
            "claims": 0,
            "lease_owner": None,
            "lease_expires": None,
            "mail_attempted_at": None,
            "revision": 1,
            "create_time": now,
            "update_time": now,
            "mail_time": None,
            "available_at": now,
            # Newest-first paging on one string key: UTC time as fixed-width digits, then id.
            "list_key": f"{_sort_stamp(now)}|{export_id}",
            "expire_at": now + JOB_TTL,
        }
        if request_id:
            doc["request_id"] = request_id
            doc["request_key"] = f"{account_id}:{request_id}"
        try:
            await self.exports.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.exports.find_one({"request_key": eq(doc["request_key"])})
            if existing is None:  # expired between the insert and the read
                raise
            return existing
        return doc

    async def get(self, account_id: str, export_id: str) -> dict[str, Any] | None:
        return await self.exports.find_one({"_id": export_id, "account_id": account_id})

    async def list(
        self, account_id: str, page_size: int, page_token: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """The account's jobs, newest first, and the token of the next page ("" at the end)."""
        query: dict[str, Any] = {"account_id": eq(account_id)}
        if page_token:
            query["list_key"] = {"$lt": _decode_token(page_token)}
        docs = await self.exports.find(query).sort("list_key", DESCENDING).limit(
            page_size + 1
        ).to_list()
        if len(docs) <= page_size:
            return docs, ""
        docs = docs[:page_size]
        return docs, encode_page_token((docs[-1]["list_key"],))

    # --- workers ----------------------------------------------------------------------

    async def claim(self, owner: str, lease_s: float) -> dict[str, Any] | None:
        """Take the oldest due QUEUED job, else a BUILDING job whose lease ran out, and hold
        it for ``lease_s``. None if there is nothing to do. Concurrent claimers race on the
        conditional replace: exactly one gets each job."""
        while True:
            now = self._clock.now()
            queued = await self.exports.find(
                {"state": eq(QUEUED), "available_at": {"$lte": now}}
            ).sort([("available_at", ASCENDING), ("_id", ASCENDING)]).limit(
                CLAIM_BATCH
            ).to_list()
            stale = await self.exports.find(
                {"state": eq(BUILDING), "lease_expires": {"$lt": now}}
            ).sort("lease_expires", ASCENDING).limit(CLAIM_BATCH).to_list()
            # The server compares dates coarsely; the lease must really be over.
            candidates = [d for d in queued if _aware(d["available_at"]) <= now] + [
                d for d in stale if _aware(d["lease_expires"]) < now
            ]
            if not candidates:
                return None
            for doc in candidates:
                if doc.get("mail_attempted_at") is not None:
                    await self._give_up_uncertain(doc)
                    continue
                new = self._next(
                    doc,
                    state=BUILDING,
                    lease_owner=owner,
                    lease_expires=now + dt.timedelta(seconds=lease_s),
                    claims=doc.get("claims", 0) + 1,
                )
                if await self._replace(doc, new):
                    if doc["state"] == BUILDING:
                        log.warning("export_lease_reclaimed", export_id=doc["_id"],
                                    previous_owner=doc["lease_owner"], owner=owner)
                    return new
            # Lost every race in this batch: read the queue again.

    async def renew(self, doc: dict[str, Any], owner: str, lease_s: float) -> dict[str, Any] | None:
        """Extend the lease; None if it was lost (the caller must stop working on the job)."""
        if not self._holds(doc, owner):
            return None
        lease = self._clock.now() + dt.timedelta(seconds=lease_s)
        return await self._apply(doc, owner, lease_expires=lease)

    async def mark_built(
        self,
        doc: dict[str, Any],
        owner: str,
        *,
        row_count: int,
        size_bytes: int,
        file_id: Any,
        download_url: str,
        link_expire_time: dt.datetime,
    ) -> dict[str, Any] | None:
        """Record the stored file; the job stays BUILDING (held) until it is mailed."""
        return await self._apply(
            doc, owner, row_count=row_count, size_bytes=size_bytes, file_id=file_id,
            download_url=download_url, link_expire_time=link_expire_time,
        )

    async def begin_mail(
        self, doc: dict[str, Any], owner: str, lease_s: float
    ) -> dict[str, Any] | None:
        """Record that the mail is about to be sent (and renew the lease to cover the send).
        Call right before SMTP; None means the lease was lost and nothing may be sent."""
        lease = self._clock.now() + dt.timedelta(seconds=lease_s)
        return await self._apply(
            doc, owner, mail_attempted_at=self._clock.now(), lease_expires=lease
        )

    async def mark_mailed(
        self, doc: dict[str, Any], owner: str, mail_time: dt.datetime
    ) -> dict[str, Any] | None:
        """BUILDING -> MAILED, at most once (conditional on revision and owner)."""
        return await self._apply(
            doc, owner, state=MAILED, mail_time=mail_time, error="",
            lease_owner=None, lease_expires=None,
        )

    async def mark_failed(
        self, doc: dict[str, Any], owner: str, error: str
    ) -> dict[str, Any] | None:
        return await self._apply(
            doc, owner, state=FAILED, error=error, lease_owner=None, lease_expires=None
        )

    async def release_for_retry(
        self,
        doc: dict[str, Any],
        owner: str,
        error: str,
        attempts: int,
        *,
        retry_after_s: float = 0.0,
        mail_not_sent: bool = False,
        outage_since: dt.datetime | None = None,
        outages: int = 0,
    ) -> dict[str, Any] | None:
        """Give the job back to the queue (due after ``retry_after_s``) with the last error.
        The stored file, if any, is kept. ``mail_not_sent=True`` clears the mail mark; pass
        it only when the mail certainly did not go out, or the job will end FAILED.
        ``outage_since``/``outages``: when the current run of dependency outages began and
        how many there were (the worker's retry deadline); other releases clear them."""
        fields: dict[str, Any] = {
            "state": QUEUED, "error": error, "attempts": attempts,
            "lease_owner": None, "lease_expires": None,
            "available_at": self._clock.now() + dt.timedelta(seconds=retry_after_s),
            "outage_since": outage_since, "outages": outages,
        }
        if mail_not_sent:
            fields["mail_attempted_at"] = None
        return await self._apply(doc, owner, **fields)

    # --- internals --------------------------------------------------------------------

    async def _give_up_uncertain(self, doc: dict[str, Any]) -> None:
        """A job whose mail may already have been delivered: end it without mailing again."""
        link = doc.get("download_url") or "none"
        error = (
            "the worker stopped while sending the e-mail, so it may or may not have been "
            "delivered; it is not sent again to avoid a duplicate. Download link: " + link
        )
        new = self._next(doc, state=FAILED, error=error, lease_owner=None, lease_expires=None)
        if await self._replace(doc, new):
            log.warning("export_mail_uncertain", export_id=doc["_id"])

    def _holds(self, doc: dict[str, Any], owner: str) -> bool:
        return doc.get("state") == BUILDING and doc.get("lease_owner") == owner

    async def _apply(
        self, doc: dict[str, Any], owner: str, **fields: Any
    ) -> dict[str, Any] | None:
        """Replace ``doc`` with ``fields`` changed if ``owner`` still holds it unchanged."""
        if not self._holds(doc, owner):
            return None
        new = self._next(doc, **fields)
        return new if await self._replace(doc, new) else None

    def _next(self, doc: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return {**doc, **fields, "revision": doc["revision"] + 1,
                "update_time": self._clock.now()}

    async def _replace(self, old: dict[str, Any], new: dict[str, Any]) -> bool:
        # lease_owner in the filter as well: a stale in-memory doc of a previous holder
        # cannot match even if revisions were somehow reused.
        result = await self.exports.replace_one(
            {"_id": old["_id"], "revision": old["revision"], "lease_owner": old["lease_owner"]},
            new,
        )
        return result.matched_count == 1


def _sort_stamp(when: dt.datetime) -> str:
    # Digits only: nx-27017 matches nothing for $lt on a string that starts like an ISO
    # date ("2026-06-01T..."), as if it compared it as a date.
    return when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S%f")


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _decode_token(token: str) -> str:
    try:
        (key,) = decode_page_token(token, (str,)) or ("",)
    except InvalidArgument as refused:
        raise BadPageToken(refused.rule) from None
    return str(key)
