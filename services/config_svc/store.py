"""Goals in MongoDB.

Collections of the config database:

- ``goals``: one document per goal, ``_id`` a string id; ``revision`` grows with every change
  and every write is conditional on it (optimistic concurrency, no in-process locks).
- ``active_slots``: the 15-active-goal limit. A goal may turn active only after inserting
  one of its account's 15 slot documents (``_id`` = ``<account>:<0..14>``, unique
  ``goal_id``), so the unique index, not a read-then-write, enforces the limit across
  concurrent calls and replicas.
- ``goal_tombstones``: one document per deleted goal, so watchers learn the account and
  last revision of a goal that no longer exists.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from config_svc.rules import MAX_ACTIVE_GOALS
from goalflow_common.db import eq

# A slot whose goal is not active after this long was left by a crashed activation.
LEAKED_SLOT_AGE = dt.timedelta(seconds=30)
TOMBSTONE_TTL_S = 7 * 24 * 3600


class DuplicateName(Exception):
    """Another goal of the account has this name."""


class GoalStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.goals = db["goals"]
        self.slots = db["active_slots"]
        self.tombstones = db["goal_tombstones"]

    async def ensure_indexes(self) -> None:
        await self.goals.create_index(
            [("account_id", ASCENDING), ("name_key", ASCENDING)], unique=True
        )
        await self.goals.create_index([("account_id", ASCENDING), ("active", ASCENDING)])
        await self.slots.create_index("goal_id", unique=True)
        await self.slots.create_index("account_id")
        await self.tombstones.create_index("deleted_at", expireAfterSeconds=TOMBSTONE_TTL_S)

    async def get(self, account_id: str, goal_id: str) -> dict[str, Any] | None:
        return await self.goals.find_one({"_id": goal_id, "account_id": account_id})

    async def insert(self, doc: dict[str, Any]) -> None:
        try:
            await self.goals.insert_one(doc)
        except DuplicateKeyError as exc:
            raise DuplicateName from exc

    async def replace(self, doc: dict[str, Any], expected_revision: int) -> bool:
        """Store ``doc`` if the stored revision is still ``expected_revision``."""
        try:
            result = await self.goals.replace_one(
                {"_id": doc["_id"], "account_id": doc["account_id"],
                 "revision": expected_revision},
                doc,
            )
        except DuplicateKeyError as exc:
            raise DuplicateName from exc
        return result.matched_count == 1

    async def delete(self, account_id: str, goal_id: str) -> dict[str, Any] | None:
        doc = await self.goals.find_one_and_delete({"_id": goal_id, "account_id": account_id})
        if doc is None:
            return None
        await self.tombstones.replace_one(
            {"_id": goal_id},
            {"_id": goal_id, "account_id": account_id, "revision": doc["revision"] + 1,
             "deleted_at": dt.datetime.now(dt.UTC)},
            upsert=True,
        )
        await self.slots.delete_many({"goal_id": goal_id})
        return doc

    async def slot_token(self, goal_id: str) -> str | None:
        """The claim token of the slot ``goal_id`` holds, if any."""
        slot = await self.slots.find_one({"goal_id": goal_id})
        return slot["token"] if slot else None

    async def claim_slot(self, account_id: str, goal_id: str) -> str | None:
        """Take a free active slot for ``goal_id``; return its claim token, or None if all
        15 are held. Raises ``SlotBusy`` if the goal already holds a slot that is not leaked
        (a concurrent activation or deactivation is mid-way)."""
        for _ in range(2):
            cursor = self.slots.find({"account_id": eq(account_id)})
            held = {doc["_id"]: doc async for doc in cursor}
            own = next((doc for doc in held.values() if doc["goal_id"] == goal_id), None)
            if own is not None:
                # A crashed activation or deactivation of this very goal left its slot
                # behind; without this the goal could never be activated again.
                if not await self._free_leaked([own]):
                    raise SlotBusy
                held.pop(own["_id"])
            for k in range(MAX_ACTIVE_GOALS):
                slot_id = f"{account_id}:{k}"
                if slot_id in held:
                    continue
                token = uuid.uuid4().hex
                try:
                    await self.slots.insert_one(
                        {"_id": slot_id, "account_id": account_id, "goal_id": goal_id,
                         "token": token, "claimed_at": dt.datetime.now(dt.UTC)}
                    )
                except DuplicateKeyError:
                    if await self.slots.find_one({"goal_id": goal_id}) is not None:
                        raise SlotBusy from None
                    continue
                return token
            if not await self._free_leaked(held.values()):
                return None
        return None

    async def release_slot(self, goal_id: str, token: str) -> None:
        await self.slots.delete_one({"goal_id": goal_id, "token": token})

    async def _free_leaked(self, held: Any) -> bool:
        """Free slots whose goal is gone or inactive well after the claim (a crash between
        claiming the slot and setting the flag). True if any was freed."""
        cutoff = dt.datetime.now(dt.UTC) - LEAKED_SLOT_AGE
        stale = [s for s in held if _aware(s["claimed_at"]) < cutoff]
        if not stale:
            return False
        active = {
            doc["_id"]
            async for doc in self.goals.find(
                {"_id": {"$in": [s["goal_id"] for s in stale]}, "active": True}, {"_id": 1}
            )
        }
        freed = False
        for slot in stale:
            if slot["goal_id"] not in active:
                result = await self.slots.delete_one({"_id": slot["_id"], "token": slot["token"]})
                freed |= result.deleted_count == 1
        return freed

    async def count_active(self, account_id: str) -> int:
        return await self.goals.count_documents({"account_id": eq(account_id), "active": True})

    async def page(
        self, account_id: str, after: tuple[str, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        """Goals ordered by name_key (unique within an account), after the given key.

        ``$eq`` rather than a bare value: nx-27017 turns a bare equality into a json_each
        scan of the whole collection, but runs ``$eq`` and ``$gt`` on the
        (account_id, name_key) index. No ``_id`` tie-break is needed for the same reason.
        """
        query: dict[str, Any] = {"account_id": eq(account_id)}
        if after is not None:
            query["name_key"] = {"$gt": after[0]}
        cursor = self.goals.find(query).sort("name_key", 1).limit(limit)
        return await cursor.to_list()

    async def active_goals(self, account_id: str | None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"active": True}
        if account_id is not None:
            query["account_id"] = eq(account_id)
        return await self.goals.find(query).sort("_id", 1).to_list()

    async def all_goals(self, account_id: str | None) -> AsyncIterator[dict[str, Any]]:
        query = {} if account_id is None else {"account_id": eq(account_id)}
        async for doc in self.goals.find(query).sort("_id", 1):
            yield doc


class SlotBusy(Exception):
    """The goal already holds an active slot: another activation is in flight or done."""


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
