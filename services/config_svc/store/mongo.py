"""Goals in MongoDB: the ``GoalStore`` the service runs on.

Collections of the config database (private to this module):

- ``goals``: one document per goal, ``_id`` a string id; ``revision`` grows with every change
  and every write is conditional on it (optimistic concurrency, no in-process locks).
  Dates are ISO strings; ``name_key`` (the case-free name) is unique per account.
- ``active_slots``: the 15-active-goal limit. A goal may turn active only after inserting
  one of its account's 15 slot documents (``_id`` = ``<account>:<0..14>``, unique
  ``goal_id``), so the unique index, not a read-then-write, enforces the limit across
  concurrent calls and replicas (see ``domain/slots.py``).
- ``goal_tombstones``: one document per deleted goal, so watchers learn the account and
  last revision of a goal that no longer exists.

nx-27017 workarounds, each checked by tests/libs/common/test_mongo_conformance.py:

- Equalities on a caller's value are written ``{"$eq": v}`` (``goalflow_common.db.eq``):
  the same answers (``test_eq_operator_and_in_give_the_same_answers_as_bare_equality``),
  but nx-27017 serves them from an index instead of a scan (a speed gap only, see ``eq``).
- Every goal write replaces the whole document conditionally on its revision
  (``test_replace_one_conditional_on_revision``): nx-27017 stores a datetime given to
  ``$set`` as a string (``test_set_datetime_on_existing_document``).
- Change streams: nx-27017 answers a ``getMore`` at once rather than waiting
  (``test_change_stream_get_more_waits_for_data``), and sends the full document's dates as
  extended JSON (``test_change_stream_full_document_keeps_datetimes``);
  ``goalflow_common.db.change_events`` and ``decode_change_document`` cover both.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.errors import DuplicateKeyError

from config_svc.domain.model import (
    AttributionModel,
    ChangeKind,
    Condition,
    Goal,
    GoalChange,
    GoalType,
    Money,
    Operator,
    Slot,
)
from config_svc.store.protocols import DuplicateName
from goalflow_common.db import (
    Database,
    Document,
    aware_utc,
    change_events,
    decode_change_document,
    eq,
)
from goalflow_common.lifecycle import cancel_and_wait

TOMBSTONE_TTL_S = 7 * 24 * 3600

class MongoGoalStore:
    def __init__(self, db: Database) -> None:
        self._goals = db["goals"]
        self._slots = db["active_slots"]
        self._tombstones = db["goal_tombstones"]

    async def ensure_indexes(self) -> None:
        await self._goals.create_index(
            [("account_id", ASCENDING), ("name_key", ASCENDING)], unique=True
        )
        await self._goals.create_index([("account_id", ASCENDING), ("active", ASCENDING)])
        await self._slots.create_index("goal_id", unique=True)
        await self._slots.create_index("account_id")
        await self._tombstones.create_index("deleted_at", expireAfterSeconds=TOMBSTONE_TTL_S)

    # -- goals -------------------------------------------------------------------------

    async def get(self, account_id: str, goal_id: str) -> Goal | None:
        doc = await self._goals.find_one({"_id": eq(goal_id), "account_id": eq(account_id)})
        return None if doc is None else _goal_from_doc(doc)

    async def insert(self, goal: Goal) -> None:
        try:
            await self._goals.insert_one(_goal_to_doc(goal))
        except DuplicateKeyError as exc:
            raise DuplicateName from exc

    async def replace(self, goal: Goal, expected_revision: int) -> bool:
        try:
            result = await self._goals.replace_one(
                {"_id": eq(goal.id), "account_id": eq(goal.account_id),
                 "revision": eq(expected_revision)},
                _goal_to_doc(goal),
            )
        except DuplicateKeyError as exc:
            raise DuplicateName from exc
        return result.matched_count == 1

    async def remove(self, account_id: str, goal_id: str) -> Goal | None:
        doc = await self._goals.find_one_and_delete(
            {"_id": eq(goal_id), "account_id": eq(account_id)})
        return None if doc is None else _goal_from_doc(doc)

    async def add_tombstone(self, goal: Goal, revision: int) -> None:
        # Real time, not the service's clock: the TTL index expires tombstones by it.
        await self._tombstones.replace_one(
            {"_id": eq(goal.id)},
            {"_id": goal.id, "account_id": goal.account_id, "revision": revision,
             "deleted_at": dt.datetime.now(dt.UTC)},
            upsert=True,
        )

    async def page(
        self, account_id: str, after: tuple[str, str] | None, limit: int
    ) -> list[Goal]:
        """Goals ordered by name_key (unique within an account), after the given key.

        ``$eq`` rather than a bare value: nx-27017 turns a bare equality into a json_each
        scan of the whole collection, but runs ``$eq`` and ``$gt`` on the
        (account_id, name_key) index. No ``_id`` tie-break is needed for the same reason.
        """
        query: Document = {"account_id": eq(account_id)}
        if after is not None:
            query["name_key"] = {"$gt": after[0]}
        cursor = self._goals.find(query).sort("name_key", 1).limit(limit)
        return [_goal_from_doc(doc) async for doc in cursor]

    async def active_goals(self, account_id: str | None) -> list[Goal]:
        query: Document = {"active": True}
        if account_id is not None:
            query["account_id"] = eq(account_id)
        return [_goal_from_doc(doc) async for doc in self._goals.find(query).sort("_id", 1)]

    async def all_goals(self, account_id: str | None) -> AsyncIterator[Goal]:
        query = {} if account_id is None else {"account_id": eq(account_id)}
        async for doc in self._goals.find(query).sort("_id", 1):
            yield _goal_from_doc(doc)

    async def active_among(self, goal_ids: Iterable[str]) -> set[str]:
        query = {"_id": {"$in": list(goal_ids)}, "active": True}
        return {doc["_id"] async for doc in self._goals.find(query, {"_id": 1})}

    @contextlib.asynccontextmanager
    async def watch(
        self, account_id: str | None, stop: asyncio.Event
    ) -> AsyncIterator[AsyncIterator[GoalChange]]:
        # Streams are opened on entry, so a snapshot read inside the context misses nothing.
        goal_stream = await self._goals.watch(full_document="updateLookup")
        tomb_stream = await self._tombstones.watch()
        feed = _ChangeFeed(stop)
        feed.follow(goal_stream, account_id, ChangeKind.UPSERTED)
        feed.follow(tomb_stream, account_id, ChangeKind.DELETED)
        changes = feed.changes()
        try:
            yield changes
        finally:
            await changes.aclose()  # the consumer may have left it suspended mid-feed
            await feed.close()
            await goal_stream.close()
            await tomb_stream.close()

    # -- active slots ------------------------------------------------------------------

    async def slots(self, account_id: str) -> list[Slot]:
        cursor = self._slots.find({"account_id": eq(account_id)})
        return [_slot_from_doc(doc) async for doc in cursor]

    async def slot_of(self, goal_id: str) -> Slot | None:
        doc = await self._slots.find_one({"goal_id": eq(goal_id)})
        return None if doc is None else _slot_from_doc(doc)

    async def insert_slot(self, slot: Slot) -> bool:
        try:
            await self._slots.insert_one(
                {"_id": _slot_id(slot.account_id, slot.number), "account_id": slot.account_id,
                 "goal_id": slot.goal_id, "token": slot.token, "claimed_at": slot.claimed_at}
            )
        except DuplicateKeyError:
            return False
        return True

    async def release_slot(self, goal_id: str, token: str) -> bool:
        result = await self._slots.delete_one({"goal_id": eq(goal_id), "token": eq(token)})
        return result.deleted_count == 1

    async def release_slots(self, goal_id: str) -> None:
        await self._slots.delete_many({"goal_id": eq(goal_id)})


class _ChangeFeed:
    """Two change streams (goals and tombstones) merged into one feed of goal changes, which
    ends when ``stop`` is set or a stream ends, and raises what a stream raised."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._queue: asyncio.Queue[GoalChange] = asyncio.Queue()
        self._readers: list[asyncio.Task[None]] = []

    def follow(
        self, stream: AsyncChangeStream[Document], account_id: str | None, kind: ChangeKind
    ) -> None:
        self._readers.append(asyncio.create_task(self._read(stream, account_id, kind)))

    async def _read(
        self, stream: AsyncChangeStream[Document], account_id: str | None, kind: ChangeKind
    ) -> None:
        async for event in change_events(stream):
            if event.get("operationType") not in ("insert", "replace", "update"):
                continue
            doc = decode_change_document(event.get("fullDocument"))
            if not doc or (account_id is not None and doc.get("account_id") != account_id):
                continue
            self._queue.put_nowait(_change_from_doc(doc, kind))

    async def changes(self) -> AsyncGenerator[GoalChange, None]:
        stopping = asyncio.ensure_future(self._stop.wait())
        getter: asyncio.Future[GoalChange] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait(
                    {getter, stopping, *self._readers}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    for task in self._readers:
                        failure = task.exception() if task.done() else None
                        if failure is not None:
                            raise failure
                    return  # stopping, or a stream ended: end the feed cleanly
                yield getter.result()
        finally:
            if getter is not None:  # the consumer went away while we waited for a change
                getter.cancel()
            stopping.cancel()

    async def close(self) -> None:
        await cancel_and_wait(*self._readers)


# -- documents ---------------------------------------------------------------------------


def _goal_to_doc(goal: Goal) -> Document:
    return {
        "_id": goal.id,
        "account_id": goal.account_id,
        "name": goal.name,
        "description": goal.description,
        "start_date": _iso(goal.start_date),
        "end_date": _iso(goal.end_date),
        "agent_group_ids": list(goal.agent_group_ids),
        "attribution_model": goal.attribution_model.value,
        "attribution_period_days": goal.attribution_period_days,
        "transaction_value": (
            None if goal.transaction_value is None
            else {"currency_code": goal.transaction_value.currency_code,
                  "amount": goal.transaction_value.amount}
        ),
        "goal_type": None if goal.goal_type is None else goal.goal_type.value,
        "conditions": [
            {"category": "URL", "operator": c.operator.value, "value": c.value}
            for c in goal.conditions
        ],
        "name_key": goal.name_key,
        "active": goal.active,
        "create_time": goal.create_time,
        "update_time": goal.update_time,
        "revision": goal.revision,
    }


def _goal_from_doc(doc: Mapping[str, Any]) -> Goal:
    money = doc.get("transaction_value")
    return Goal(
        id=doc["_id"],
        account_id=doc["account_id"],
        name=doc["name"],
        description=doc.get("description", ""),
        start_date=_date(doc.get("start_date")),
        end_date=_date(doc.get("end_date")),
        agent_group_ids=tuple(doc["agent_group_ids"]),
        attribution_model=AttributionModel(doc["attribution_model"]),
        attribution_period_days=doc["attribution_period_days"],
        transaction_value=Money(money["currency_code"], money["amount"]) if money else None,
        goal_type=GoalType(doc["goal_type"]) if doc.get("goal_type") else None,
        conditions=tuple(
            Condition(Operator(c["operator"]), c["value"]) for c in doc["conditions"]
        ),
        active=bool(doc.get("active")),
        create_time=aware_utc(doc["create_time"]),
        update_time=aware_utc(doc["update_time"]),
        revision=doc["revision"],
    )


def _change_from_doc(doc: Mapping[str, Any], kind: ChangeKind) -> GoalChange:
    goal = _goal_from_doc(doc) if kind is ChangeKind.UPSERTED else None
    return GoalChange(kind, doc["_id"], doc["account_id"], doc["revision"], goal)


def _slot_id(account_id: str, number: int) -> str:
    return f"{account_id}:{number}"


def _slot_from_doc(doc: Mapping[str, Any]) -> Slot:
    number = int(doc["_id"].rsplit(":", 1)[1])
    return Slot(doc["account_id"], number, doc["goal_id"], doc["token"],
                aware_utc(doc["claimed_at"]))


def _iso(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


