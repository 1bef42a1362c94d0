"""The tracker's data in MongoDB (database ``GOALFLOW_TRACKER_DB_NAME``).

One document per record, written in bulk once per batch; never arrays that grow.

``events`` — every accepted event, as stored (the source of truth for conversation state)::

    _id             "<account_id>:<event_id>"   (unique: a resent event is a duplicate)
    account_id, event_id
    kind            "opened" | "assigned" | "unassigned" | "message" | "closed" | "rated"
                    | "activity"
    at              occurred_at (aware datetime, UTC)
    received_at     arrival time
    conversation_id str, or None for an activity that names none
    end_user_id     opened, activity
    channel, skill  opened (channel is the Channel enum name without prefix: "WEB_WIDGET")
    agent           assigned: {id, name, email, group_id, skill, user_type, survey_bot}
    start_reason    assigned;   agent_id, end_reason: unassigned
    author_type, author_id      message (author_type: "END_USER" | "AGENT" | "BOT" | "SYSTEM")
    rating          rated
    url, transaction            activity; transaction: {currency_code, amount, brand_event_id,
                                event_type} or None

    indexes (account_id, conversation_id, at), (account_id, at)

``opens`` — one document per "opened" event, to find an end user's latest conversation::

    _id "<account_id>:<event_id>", account_id, end_user_id, conversation_id, at
    index (account_id, end_user_id, at)

``conversions`` — one document per (goal, conversation); the _id makes "at most once per
conversation" hold across replicas::

    _id             "<account_id>:<goal_id>:<conversation_id>"
    account_id, goal_id, goal_name, goal_type ("SELL_PRODUCT_OR_SERVICE"... or None)
    attribution_model ("FIRST_TOUCH" | "LAST_TOUCH" | "ALL_TOUCHES")
    conversation_id, end_user_id, channel, skill
    conversion_time, conversation_open_time          aware datetimes
    event_type ("PURCHASE" | "LEAD" | ... or None), brand_event_id, url, hit_event_id
    transaction_value {currency_code, amount} or None
    credits         [{agent: {...as in events}, assignment_time, contact_duration_ms}]
    credited_agent_ids, credited_group_ids           lists of str (for filters)
    recorded_at
    batch_id        id of the ingest batch that recorded it ("" if none or over 128 chars):
                    a resend of that batch counts it in its ack again

    indexes (account_id, conversion_time), (account_id, goal_id, conversion_time),
            (account_id, conversation_id), (account_id, conversation_open_time),
            (account_id, credited_agent_ids)

``ratings`` — each conversation's latest satisfaction rating (by time, then event id), kept
at ingest so a reader needs one look-up per conversation instead of a search of its events::

    _id "<account_id>:<conversation_id>", account_id, conversation_id, rating, at, event_id

Amounts are kept only as the canonical decimal strings the API accepted
(``money.normalize_amount``), never as numbers: the API allows 18 integer digits and 6
decimals, which int64 micros cannot hold (2^63 micros is about 9.2e12 units), and nx-27017
cannot store Decimal128. Reports sum them in Python, exactly (``money.to_micros``).

nx-27017 stores a datetime given to ``$set`` on an existing document as a string, so
documents with dates are only ever inserted or replaced whole
(tests/libs/common/test_mongo_conformance.py::test_set_datetime_on_existing_document).

Every query of the tracker is a named method here; the collections are private. Documents
become the typed model (``tracker_svc.domain.model``) in ``store.documents``. Each nx-27017
workaround is written once, beside the query it shapes, naming its conformance test in
tests/libs/common/test_mongo_conformance.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import structlog
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from goalflow_common.db import (
    Collection,
    Database,
    Document,
    decode_change_document,
    eq,
    next_change,
)
from tracker_svc.domain.model import (
    STATE_KINDS,
    ConversionFilter,
    ConversionRecord,
    EventKind,
    Opening,
    ReportConversion,
    ReportFilter,
    StoredEvent,
    rating_key,
    rating_supersedes,
)
from tracker_svc.store.documents import (
    REPORT_PROJECTION,
    conversion_document,
    conversion_from_document,
    event_document,
    event_from_document,
    opening_document,
    opening_from_document,
    report_conversion_from_document,
)
from tracker_svc.store.protocols import WatchLost
from tracker_svc.store.windows import in_windows

log = structlog.get_logger(__name__)

DUPLICATE_KEY = 11000
INSERT_CHUNK = 200
_NEWEST_FIRST = [("conversion_time", DESCENDING), ("_id", DESCENDING)]
_OLDEST_FIRST = [("conversion_time", ASCENDING), ("_id", ASCENDING)]


class TrackerStore:
    """The tracker's four collections, behind the queries the service makes."""

    def __init__(self, db: Database) -> None:
        self._events: Collection = db["events"]
        self._opens: Collection = db["opens"]
        self._conversions: Collection = db["conversions"]
        self._ratings: Collection = db["ratings"]

    async def ensure_indexes(self) -> None:
        await self._events.create_index(
            [("account_id", ASCENDING), ("conversation_id", ASCENDING), ("at", ASCENDING)]
        )
        # A simulation's scan of an account's events by time (``events_between``).
        await self._events.create_index([("account_id", ASCENDING), ("at", ASCENDING)])
        await self._opens.create_index(
            [("account_id", ASCENDING), ("end_user_id", ASCENDING), ("at", ASCENDING)]
        )
        for keys in (
            [("account_id", ASCENDING), ("conversion_time", ASCENDING)],
            [("account_id", ASCENDING), ("goal_id", ASCENDING), ("conversion_time", ASCENDING)],
            [("account_id", ASCENDING), ("conversation_id", ASCENDING)],
            [("account_id", ASCENDING), ("conversation_open_time", ASCENDING)],
            [("account_id", ASCENDING), ("credited_agent_ids", ASCENDING)],
        ):
            await self._conversions.create_index(keys)

    # -- writes ----------------------------------------------------------------------------

    async def insert_new_events(self, events: Sequence[StoredEvent]) -> set[str]:
        """Insert ``events``; return the keys of those already stored (duplicates)."""
        return await _insert_new(self._events, [event_document(e) for e in events])

    async def insert_openings(self, openings: Sequence[Opening]) -> None:
        """Keep these "opened" records (one already kept is left as it is)."""
        await _insert_new(self._opens, [opening_document(o) for o in openings])

    async def insert_conversions(self, records: Sequence[ConversionRecord]) -> set[str]:
        """Insert ``records``; return the ids of those already recorded (by this attempt's
        earlier try, another batch or another replica)."""
        return await _insert_new(self._conversions, [conversion_document(r) for r in records])

    async def record_ratings(self, account_id: str, rated: Sequence[StoredEvent]) -> None:
        """Keep, per conversation, the rating among these "rated" events and the one held
        that the domain's rule picks (``domain.model.rating_supersedes``).

        Idempotent and safe under concurrent writers (other batches, other replicas): each
        conversation's document is replaced only if it still holds the rating that was
        read (compare-and-set on its event id), else the read is repeated."""
        latest: dict[str | None, StoredEvent] = {}
        for event in rated:
            seen = latest.get(event.conversation_id)
            if seen is None or rating_supersedes(_order(event), _order(seen)):
                latest[event.conversation_id] = event
        await asyncio.gather(*(self._keep_latest(account_id, e) for e in latest.values()))

    async def _keep_latest(self, account_id: str, event: StoredEvent) -> None:
        assert event.conversation_id is not None  # a rating always names its conversation
        key = rating_key(account_id, event.conversation_id)
        new = {
            "_id": key, "account_id": account_id, "conversation_id": event.conversation_id,
            "rating": event.rating, "at": event.at, "event_id": event.event_id,
        }
        while True:
            held = await self._ratings.find_one({"_id": eq(key)}, {"at": 1, "event_id": 1})
            if held is None:
                try:
                    await self._ratings.insert_one(new)
                    return
                except DuplicateKeyError:
                    continue  # another writer got there first: compare with theirs
            if not rating_supersedes(_order(event), (held["at"], held["event_id"])):
                return
            done = await self._ratings.replace_one(
                {"_id": eq(key), "event_id": eq(held["event_id"])}, new
            )
            if done.matched_count:
                return

    # -- reads for ingest ------------------------------------------------------------------

    async def events_by_key(self, keys: Iterable[str]) -> list[StoredEvent]:
        """The stored events with these keys (``$in`` on ``_id``: see ``latest_ratings``)."""
        wanted = sorted(set(keys))
        if not wanted:
            return []
        docs = await self._events.find({"_id": {"$in": wanted}}).to_list()
        return [event_from_document(d) for d in docs]

    async def conversation_events(
        self, account_id: str, conversation_ids: Iterable[str],
        kinds: Iterable[EventKind] = STATE_KINDS,
    ) -> list[StoredEvent]:
        """Events of the given kinds of the given conversations, each conversation's oldest
        first (same instant: by key)."""
        docs = await self._find_each(
            self._events, account_id, "conversation_id", conversation_ids,
            {"kind": {"$in": list(kinds)}}, [("at", ASCENDING), ("_id", ASCENDING)],
        )
        return [event_from_document(d) for d in docs]

    async def latest_opens(self, account_id: str, end_user_ids: Iterable[str]) -> list[Opening]:
        """Every "opened" record of the given end users, each end user's newest first."""
        docs = await self._find_each(
            self._opens, account_id, "end_user_id", end_user_ids, sort=[("at", DESCENDING)]
        )
        return [opening_from_document(d) for d in docs]

    async def conversion_origins(self, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """(batch id, hit event id) of each of these recorded conversions."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        # ``$in`` on ``_id`` is served from the primary key (see ``latest_ratings``).
        cursor = self._conversions.find({"_id": {"$in": wanted}},
                                        {"batch_id": 1, "hit_event_id": 1})
        return {doc["_id"]: (doc.get("batch_id") or "", doc.get("hit_event_id") or "")
                async for doc in cursor}

    async def _find_each(
        self,
        collection: Collection,
        account_id: str,
        field: str,
        keys: Iterable[str],
        extra: Mapping[str, Any] | None = None,
        sort: list[tuple[str, int]] | None = None,
    ) -> list[Document]:
        """The account's documents whose ``field`` is one of ``keys``: one indexed equality
        query per key, all in flight at once. On nx-27017 ``$in`` scans the collection (and
        a bare equality does too, see ``goalflow_common.db.eq``; the forms agree:
        test_mongo_conformance.py::test_eq_operator_and_in_give_the_same_answers_as_bare_equality),
        so a batch of keys is one concurrent round of index look-ups rather than one scan."""

        async def one(key: str) -> list[Document]:
            query = {"account_id": eq(account_id), field: eq(key), **(extra or {})}
            cursor = collection.find(query)
            if sort:
                cursor = cursor.sort(sort)
            return await cursor.to_list()

        found = await asyncio.gather(*(one(key) for key in sorted(set(keys))))
        return [doc for docs in found for doc in docs]

    # -- reads for a simulation (domain.replay) --------------------------------------------

    async def count_events(self, account_id: str, start: dt.datetime, end: dt.datetime) -> int:
        """How many of the account's events occurred in [start, end) (whole seconds, as
        for ``events_between``).

        The ``count`` command, not ``count_documents``: nx-27017 runs the latter as an
        aggregation over every matching document (0.44 s for 20,000 events, as long as
        reading them) and answers the former from the index in 0.02 s. It compares the
        datetimes to the second, so the bounds must be whole seconds; then the counts agree
        (test_mongo_conformance.py::test_count_command_on_whole_second_bounds,
        ::test_count_command_on_millisecond_bounds)."""
        if start.microsecond or end.microsecond:
            raise ValueError("a count's start and end must be whole seconds")
        reply = await self._events.database.command({
            "count": self._events.name,
            "query": {"account_id": eq(account_id), "at": {"$gte": start, "$lt": end}},
        })
        return int(reply["n"])

    async def events_between(
        self, account_id: str, start: dt.datetime, end: dt.datetime, size: int
    ) -> AsyncIterator[list[StoredEvent]]:
        """Every event of the account that occurred in [start, end), each once, oldest first
        (same instant: by key), in lists of about ``size``: one query per time window,
        without a limit, the window sized to the density of the last one.

        No limit because nx-27017 materialises and sorts everything a query matches before
        applying one (``store.windows``); window edges are whole seconds because it
        compares these datetimes to the second
        (test_mongo_conformance.py::test_keyset_or_on_millisecond_datetimes_with_eq), so
        ``start`` and ``end`` must be whole seconds too. Events sharing an instant are
        never split between two lists."""
        async for docs in _windows(self._events, account_id, start, end, size):
            yield [event_from_document(d) for d in docs]

    async def scan_events(
        self, account_id: str, start: dt.datetime, end: dt.datetime, size: int
    ) -> AsyncIterator[int]:
        """The reads of ``events_between`` without building events: how many documents
        each window held (the simulation benchmark's plain scan, its baseline)."""
        async for docs in _windows(self._events, account_id, start, end, size):
            yield len(docs)

    # -- reads of conversions --------------------------------------------------------------

    async def latest_ratings(
        self, account_id: str, conversation_ids: Iterable[str]
    ) -> dict[str, str]:
        """Each given conversation's latest rating (conversations never rated are absent).

        One ``$in`` on ``_id``: nx-27017 serves it from its primary key (500 of 100,000
        documents in 18 ms, 11x faster than a look-up each), unlike ``$in`` on other fields."""
        keys = {rating_key(account_id, c): c for c in conversation_ids}
        if not keys:
            return {}
        cursor = self._ratings.find({"_id": {"$in": list(keys)}}, {"rating": 1})
        return {keys[doc["_id"]]: doc["rating"] async for doc in cursor}

    async def conversions_page(
        self, which: ConversionFilter, after: tuple[dt.datetime, str] | None, limit: int
    ) -> list[ConversionRecord]:
        """Up to ``limit`` conversions, newest first (conversion time, then id), after the
        keyset position ``after`` (the last row of the previous page)."""
        query: dict[str, Any] = {"account_id": eq(which.account_id)}
        for stored, value in (("conversation_id", which.conversation_id),
                              ("goal_id", which.goal_id),
                              ("credited_agent_ids", which.agent_id)):
            if value:
                # $in, not equality: nx-27017 does not match an array field's elements on
                # equality (credited_agent_ids), bare or $eq
                # (test_mongo_conformance.py::test_equality_matches_array_elements).
                query[stored] = {"$in": [value]}
        times: dict[str, dt.datetime] = {}
        if which.start is not None:
            times["$gte"] = which.start
        if which.end is not None:
            times["$lt"] = which.end
        if after is not None:
            query["$or"] = _older_than(after, times)
            # See _older_than: a $in makes nx-27017 evaluate the query exactly.
            query["account_id"] = {"$in": [which.account_id]}
        elif times:
            query["conversion_time"] = times
        docs = await self._conversions.find(query).sort(_NEWEST_FIRST).limit(limit).to_list()
        return [conversion_from_document(d) for d in docs]

    async def goal_conversions(
        self, account_id: str, goal_id: str, start: dt.datetime, end: dt.datetime, size: int
    ) -> AsyncIterator[list[ConversionRecord]]:
        """A goal's conversions with ``start <= time < end``, each once, oldest first (then
        by id), in non-empty lists of at most ``size``: one bounded query per list, in time
        windows (``store.windows`` says why)."""

        async def fetch(lo: dt.datetime, hi: dt.datetime, limit: int) -> list[ConversionRecord]:
            query = {"account_id": eq(account_id), "goal_id": eq(goal_id),
                     "conversion_time": {"$gte": lo, "$lt": hi}}
            docs = await self._conversions.find(query).sort(_OLDEST_FIRST).limit(limit).to_list()
            return [conversion_from_document(d) for d in docs]

        async for rows in in_windows(fetch, start, end, size):
            yield rows

    async def count_by_goal(self, account_id: str, since: dt.datetime) -> dict[str, int]:
        """The account's conversions at or after ``since``, counted per goal (goals with
        none are absent).

        One document per conversion, so counting documents counts each conversion once,
        whatever the model. Measured on nx-27017 with 10,000 conversions over 10 goals:
        this $match/$group takes ~0.12 s, count_documents ~1 s per goal. The $match is
        wrapped in $and because nx-27017 mis-evaluates a date range written directly in an
        aggregation $match (test_mongo_conformance.py::test_aggregate_match_on_datetime,
        ::test_aggregate_match_on_datetime_inside_and); the caller filters goals on the
        grouped rows (a handful per account) because a $in in that $match makes nx-27017 ten
        times slower."""
        cursor = await self._conversions.aggregate([
            {"$match": {"$and": [{"account_id": eq(account_id)},
                                 {"conversion_time": {"$gte": since}}]}},
            {"$group": {"_id": "$goal_id", "count": {"$sum": 1}}},
        ])
        return {row["_id"]: row["count"] async for row in cursor if row["count"]}

    async def report_rows(self, which: ReportFilter) -> AsyncIterator[ReportConversion]:
        """The conversions a report reads, in the order their conversations opened (then by
        id). The credit filters only narrow the read; the caller re-checks each credit."""
        selector: dict[str, Any] = {
            "account_id": eq(which.account_id),
            "conversation_open_time": {"$gte": which.start, "$lt": which.end},
        }
        for stored, values in (("skill", which.skills), ("goal_id", which.goal_ids),
                               ("credited_agent_ids", which.agent_ids),
                               ("credited_group_ids", which.group_ids)):
            if values:
                selector[stored] = {"$in": sorted(values)}
        cursor = self._conversions.find(selector, REPORT_PROJECTION).sort(
            [("conversation_open_time", ASCENDING), ("_id", ASCENDING)])
        async for doc in cursor:
            yield report_conversion_from_document(doc)

    def watch_conversions(self, idle_s: float = 0.02) -> ConversionChanges:
        """A follower of conversion inserts (any replica's), opened by its first ``next``;
        ``next`` waits up to about ``idle_s`` for one (``goalflow_common.db.next_change``)."""
        return ConversionChanges(self._conversions, idle_s)


_SCAN_FIRST_WINDOW = dt.timedelta(minutes=10)
_SCAN_MIN_WINDOW = dt.timedelta(seconds=1)


async def _windows(
    events: Collection, account_id: str, start: dt.datetime, end: dt.datetime, size: int
) -> AsyncIterator[list[Document]]:
    """The account's event documents in [start, end), oldest first, window by window
    (non-empty lists only); see ``TrackerStore.events_between``."""
    if start.microsecond or end.microsecond:
        raise ValueError("a scan's start and end must be whole seconds")
    lo, window = start, _SCAN_FIRST_WINDOW
    while lo < end:
        hi = end if window >= end - lo else min(end, _ceil_second(lo + window))
        docs = await events.find(
            {"account_id": eq(account_id), "at": {"$gte": lo, "$lt": hi}}
        ).sort([("at", ASCENDING), ("_id", ASCENDING)]).to_list()
        if docs:
            yield docs
        scale = 8.0 if not docs else min(8.0, max(0.25, 0.8 * size / len(docs)))
        window = max(_SCAN_MIN_WINDOW, (hi - lo) * scale)
        lo = hi


def _ceil_second(when: dt.datetime) -> dt.datetime:
    floor = when.replace(microsecond=0)
    return floor if floor == when else floor + dt.timedelta(seconds=1)


def _order(rated: StoredEvent) -> tuple[dt.datetime, str]:
    return rated.at, rated.event_id


def _older_than(
    after: tuple[dt.datetime, str], times: dict[str, dt.datetime]
) -> list[dict[str, Any]]:
    """The $or keyset condition for rows after ``after`` in newest-first order, on the
    total order (conversion_time, _id): no counting of rows that share a time.

    Two nx-27017 gaps shape the query: it drops a range on a field that the $or also names
    (test_mongo_conformance.py::test_range_beside_or_on_the_same_field), so ``times`` goes
    inside the first branch; and its SQL path compares datetimes to the second, so rows
    earlier in the same second would be skipped
    (::test_keyset_or_on_millisecond_datetimes_with_eq). A query that also holds a $in is
    evaluated in Python instead, exactly (::test_keyset_or_on_millisecond_datetimes_with_in),
    so the caller writes the account filter as a $in. Measured on nx-27017: ~0.3 s a page
    among 12,600 documents, ~1 s among 32,600; a real MongoDB answers both branches from
    the (account_id, conversion_time) index."""
    when, last_id = after
    bound = min(when, times["$lt"]) if "$lt" in times else when
    return [
        {"conversion_time": {**times, "$lt": bound}},
        {"conversion_time": when, "_id": {"$lt": last_id}},
    ]


async def _insert_new(
    collection: Collection, docs: list[Document], chunk: int = INSERT_CHUNK
) -> set[str]:
    """Insert ``docs`` (unordered); return the ``_id``s that already existed.

    Large inserts go as concurrent commands of ``chunk`` documents: one round trip, but
    a store that runs one command at a time (nx-27017) can interleave other requests
    (another producer's reads, a conversion insert) instead of queueing them behind
    a thousand-document command."""
    if not docs:
        return set()
    parts = [docs[i:i + chunk] for i in range(0, len(docs), chunk)]
    found = await asyncio.gather(*(_insert_part(collection, part) for part in parts))
    return set().union(*found)


async def _insert_part(collection: Collection, docs: list[Document]) -> set[str]:
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        duplicates = set()
        for error in exc.details.get("writeErrors", ()):
            if error.get("code") != DUPLICATE_KEY:
                raise
            duplicates.add(docs[error["index"]]["_id"])
        return duplicates
    return set()


class ConversionChanges:
    """Inserts into ``conversions`` as they happen, from one change stream that resumes
    after the last change seen when it is reopened."""

    def __init__(self, conversions: Collection, idle_s: float) -> None:
        self._conversions = conversions
        self._idle_s = idle_s
        self._stream: Any = None
        self._resume_token: Any = None

    async def open(self) -> None:
        """Open the change stream now, so every insert from here on is seen."""
        if self._stream is None:
            self._stream = await self._open()

    async def _open(self) -> Any:
        pipeline = [{"$match": {"operationType": "insert"}}]
        if self._resume_token is not None:
            try:
                return await self._conversions.watch(pipeline, resume_after=self._resume_token)
            except OperationFailure as exc:
                # The history is gone (pruned, or a new database): start from now.
                log.warning("conversion_feed_resume_failed", error=str(exc))
                self._resume_token = None
        return await self._conversions.watch(pipeline)

    async def next(self) -> ConversionRecord | None:
        """The next inserted conversion, or None if none came within about ``idle_s`` (or
        it could not be read: logged and skipped), so a caller may loop on it. Raises
        ``WatchLost`` when the stream failed; the next call reopens it, resuming after the
        last change seen."""
        try:
            if self._stream is None:
                self._stream = await self._open()
                log.info("conversion_feed_reopened")
            change = await next_change(self._stream, self._idle_s)
            self._resume_token = self._stream.resume_token
            alive = self._stream.alive
        except PyMongoError as exc:
            await self.close()
            raise WatchLost(str(exc)) from exc
        if change is None:
            if not alive:
                # nx-27017 answers a getMore on a cursor it no longer knows (a restart or
                # failover) with an empty, closed one
                # (test_mongo_conformance.py::test_change_stream_survives_a_forgotten_cursor).
                await self.close()
                raise WatchLost("the server closed the change stream")
            return None
        try:
            # nx-27017 sends the document's dates as extended JSON
            # (test_mongo_conformance.py::test_change_stream_full_document_keeps_datetimes).
            doc = decode_change_document(change.get("fullDocument"))
            return conversion_from_document(doc) if doc else None
        except (KeyError, TypeError, ValueError) as exc:
            log.error("conversion_feed_bad_document", error=str(exc))
            return None

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(PyMongoError):  # a broken stream: nothing to release
                await stream.close()
