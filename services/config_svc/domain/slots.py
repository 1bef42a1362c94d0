"""The 15-active-goal limit (docs/rules.md §2) as slot claims.

A goal may turn active only after taking one of its account's 15 numbered slots; the store
refuses a second holder of a number or a second slot for one goal (unique indexes), so the
limit holds across concurrent calls and replicas without a read-then-write race. A claim
returns a token; the slot is released by that token, so a slot taken later by another
activation of the same goal is never freed by mistake.

A crash between taking a slot and setting the goal's flag leaks the slot; a slot whose goal
is not active ``LEAKED_SLOT_AGE`` after its claim is taken to be leaked and freed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from config_svc.domain.model import Slot
from config_svc.domain.rules import MAX_ACTIVE_GOALS
from config_svc.store.protocols import GoalStore
from goalflow_common.clock import Clock, SystemClock

LEAKED_SLOT_AGE = dt.timedelta(seconds=30)


class SlotBusy(Exception):
    """The goal already holds an active slot: another activation is in flight or done."""


class ActiveSlots:
    """Claims and releases of an account's active slots.

    Claim times are real time (``wall_clock``), not the service's possibly shifted clock:
    the leak age is a duration between two writes, whatever "today" the service shows.
    """

    def __init__(self, store: GoalStore, wall_clock: Clock | None = None) -> None:
        self._store = store
        self._clock = wall_clock or SystemClock()

    async def claim(self, account_id: str, goal_id: str) -> str | None:
        """Take a free slot for ``goal_id``; return its claim token, or None if all 15 are
        held. Raises ``SlotBusy`` if the goal already holds a slot that is not leaked (a
        concurrent activation or deactivation is mid-way)."""
        for _ in range(2):
            held = {slot.number: slot for slot in await self._store.slots(account_id)}
            own = next((slot for slot in held.values() if slot.goal_id == goal_id), None)
            if own is not None:
                # A crashed activation or deactivation of this very goal left its slot
                # behind; without this the goal could never be activated again.
                if not await self._free_leaked([own]):
                    raise SlotBusy
                held.pop(own.number)
            token = await self._take_free(account_id, goal_id, set(held))
            if token is not None:
                return token
            if not await self._free_leaked(held.values()):
                return None
        return None

    async def _take_free(self, account_id: str, goal_id: str, held: set[int]) -> str | None:
        """Take the first slot number not in ``held``; None if every one is taken."""
        for number in range(MAX_ACTIVE_GOALS):
            if number in held:
                continue
            slot = Slot(account_id, number, goal_id, uuid.uuid4().hex, self._clock.now())
            if await self._store.insert_slot(slot):
                return slot.token
            if await self._store.slot_of(goal_id) is not None:
                raise SlotBusy  # a concurrent claim for this goal won
        return None

    async def token_of(self, goal_id: str) -> str | None:
        """The claim token of the slot ``goal_id`` holds, if any."""
        slot = await self._store.slot_of(goal_id)
        return slot.token if slot else None

    async def release(self, goal_id: str, token: str) -> None:
        await self._store.release_slot(goal_id, token)

    async def _free_leaked(self, held: Iterable[Slot]) -> bool:
        """Free slots whose goal is gone or inactive well after the claim (a crash between
        claiming the slot and setting the flag). True if any was freed."""
        cutoff = self._clock.now() - LEAKED_SLOT_AGE
        stale = [slot for slot in held if slot.claimed_at < cutoff]
        if not stale:
            return False
        active = await self._store.active_among(slot.goal_id for slot in stale)
        freed = False
        for slot in stale:
            if slot.goal_id not in active:
                freed |= await self._store.release_slot(slot.goal_id, slot.token)
        return freed
