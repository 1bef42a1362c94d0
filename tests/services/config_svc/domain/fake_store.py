"""An in-memory ``GoalStore`` for domain tests: dictionaries keyed the way the real store's
unique indexes are (goal id, (account, name key), slot number, slot goal), and nothing more.
The listing and watch methods are not needed by the workflows and are left out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager

from config_svc.domain.model import Goal, GoalChange, Slot
from config_svc.store import DuplicateName


class FakeGoalStore:
    def __init__(self) -> None:
        self.goals: dict[str, Goal] = {}
        self.slots_by_key: dict[tuple[str, int], Slot] = {}
        self.tombstones: dict[str, int] = {}
        self.reads = 0

    def _name_taken(self, goal: Goal) -> bool:
        return any(
            other.id != goal.id and other.account_id == goal.account_id
            and other.name_key == goal.name_key
            for other in self.goals.values()
        )

    async def get(self, account_id: str, goal_id: str) -> Goal | None:
        self.reads += 1
        goal = self.goals.get(goal_id)
        return goal if goal is not None and goal.account_id == account_id else None

    async def insert(self, goal: Goal) -> None:
        if self._name_taken(goal):
            raise DuplicateName
        self.goals[goal.id] = goal

    async def replace(self, goal: Goal, expected_revision: int) -> bool:
        stored = self.goals.get(goal.id)
        if stored is None or stored.revision != expected_revision:
            return False
        if self._name_taken(goal):
            raise DuplicateName
        self.goals[goal.id] = goal
        return True

    async def remove(self, account_id: str, goal_id: str) -> Goal | None:
        goal = await self.get(account_id, goal_id)
        if goal is not None:
            del self.goals[goal_id]
        return goal

    async def add_tombstone(self, goal: Goal, revision: int) -> None:
        self.tombstones[goal.id] = revision

    async def page(self, account_id: str, after: tuple[str, str] | None, limit: int) -> list[Goal]:
        raise NotImplementedError

    async def active_goals(self, account_id: str | None) -> list[Goal]:
        raise NotImplementedError

    def all_goals(self, account_id: str | None) -> AsyncIterator[Goal]:
        raise NotImplementedError

    def watch(
        self, account_id: str | None, stop: asyncio.Event
    ) -> AbstractAsyncContextManager[AsyncIterator[GoalChange]]:
        raise NotImplementedError

    async def active_among(self, goal_ids: Iterable[str]) -> set[str]:
        return {i for i in goal_ids if i in self.goals and self.goals[i].active}

    async def slots(self, account_id: str) -> list[Slot]:
        return [s for (account, _), s in self.slots_by_key.items() if account == account_id]

    async def slot_of(self, goal_id: str) -> Slot | None:
        return next((s for s in self.slots_by_key.values() if s.goal_id == goal_id), None)

    async def insert_slot(self, slot: Slot) -> bool:
        key = (slot.account_id, slot.number)
        if key in self.slots_by_key or await self.slot_of(slot.goal_id) is not None:
            return False
        self.slots_by_key[key] = slot
        return True

    async def release_slot(self, goal_id: str, token: str) -> bool:
        for key, slot in list(self.slots_by_key.items()):
            if slot.goal_id == goal_id and slot.token == token:
                del self.slots_by_key[key]
                return True
        return False

    async def release_slots(self, goal_id: str) -> None:
        for key, slot in list(self.slots_by_key.items()):
            if slot.goal_id == goal_id:
                del self.slots_by_key[key]
