"""What the domain needs from goal storage, as a ``Protocol`` (the MongoDB store implements it;
domain tests use an in-memory fake), and the errors a store raises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from config_svc.domain.model import Goal, GoalChange, Slot


class DuplicateName(Exception):
    """Another goal of the account has this name."""


class GoalStore(Protocol):
    # -- goals -------------------------------------------------------------------------

    async def get(self, account_id: str, goal_id: str) -> Goal | None:
        """The goal, if it exists in that account."""
        ...

    async def insert(self, goal: Goal) -> None:
        """Store a new goal; ``DuplicateName`` if the account has a goal of that name."""
        ...

    async def replace(self, goal: Goal, expected_revision: int) -> bool:
        """Store ``goal`` if the stored revision is still ``expected_revision`` (False if
        not); ``DuplicateName`` if another goal of the account has its name."""
        ...

    async def remove(self, account_id: str, goal_id: str) -> Goal | None:
        """Delete the goal and return it (None if there was none)."""
        ...

    async def add_tombstone(self, goal: Goal, revision: int) -> None:
        """Remember that ``goal`` was deleted, at ``revision``, for watchers."""
        ...

    async def page(
        self, account_id: str, after: tuple[str, str] | None, limit: int
    ) -> list[Goal]:
        """Up to ``limit`` goals ordered by name key, after the (name key, id) given."""
        ...

    async def active_goals(self, account_id: str | None) -> list[Goal]:
        """The active goals of an account (of every account for None), by id."""
        ...

    def all_goals(self, account_id: str | None) -> AsyncIterator[Goal]:
        """Every goal of an account (of every account for None), by id."""
        ...

    async def active_among(self, goal_ids: Iterable[str]) -> set[str]:
        """Those of ``goal_ids`` whose goal exists and is active."""
        ...

    def watch(
        self, account_id: str | None, stop: asyncio.Event
    ) -> AbstractAsyncContextManager[AsyncIterator[GoalChange]]:
        """Changes to an account's goals (every account's for None) from the moment the
        context is entered, until ``stop`` is set."""
        ...

    # -- active slots ------------------------------------------------------------------

    async def slots(self, account_id: str) -> list[Slot]:
        """The slots an account's goals hold."""
        ...

    async def slot_of(self, goal_id: str) -> Slot | None:
        """The slot ``goal_id`` holds, if any."""
        ...

    async def insert_slot(self, slot: Slot) -> bool:
        """Take ``slot``; False if its number is taken or its goal already holds one."""
        ...

    async def release_slot(self, goal_id: str, token: str) -> bool:
        """Free the slot ``goal_id`` holds under claim ``token``; True if one was freed."""
        ...

    async def release_slots(self, goal_id: str) -> None:
        """Free whatever slot ``goal_id`` holds (the goal is gone)."""
        ...


__all__ = ["DuplicateName", "GoalStore"]
