"""Goal lifecycles (docs/rules.md §2): create, update, activate, deactivate, delete.

Every write is conditional on the revision read just before (optimistic concurrency, no
in-process locks): a write that finds the goal changed re-reads it and tries again, up to
``CONFLICT_RETRIES`` times. Turning a goal active first takes one of the account's active
slots (``slots.ActiveSlots``), released again if the write then fails.

The callers pass ``today`` in the account's time zone (the API works it out once per call,
so the goal it answers with shows the status for the same day the rules were checked on).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid

from config_svc.domain import rules
from config_svc.domain.model import Goal, GoalFields, GoalPatch
from config_svc.domain.slots import ActiveSlots, SlotBusy
from config_svc.store.protocols import DuplicateName, GoalStore
from goalflow_common.clock import Clock
from goalflow_common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    NotFound,
)
from goalflow_common.limits import check_id

CONFLICT_RETRIES = 5
# Back-off when the goal's slot is held by an activation or deactivation still mid-way.
SLOT_BUSY_PAUSE_S = 0.01


def limit_error() -> FailedPrecondition:
    return FailedPrecondition(
        f"the account already has {rules.MAX_ACTIVE_GOALS} active goals (ended goals "
        "included); deactivate or delete one first",
        field="active",
    )


def _name_taken(name: str) -> AlreadyExists:
    return AlreadyExists("name", f"a goal named {name!r} already exists")


def _kept_changing() -> Aborted:
    return Aborted("the goal kept changing concurrently; retry")


class Goals:
    """The goal workflows over a ``GoalStore``; ``clock`` stamps create and update times."""

    def __init__(
        self, store: GoalStore, clock: Clock, slots: ActiveSlots | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        self._slots = slots or ActiveSlots(store)

    async def get(self, account_id: str, goal_id: str) -> Goal:
        check_id("goal_id", goal_id)
        goal = await self._store.get(account_id, goal_id)
        if goal is None:
            raise NotFound(f"goal {goal_id!r} not found")
        return goal

    async def create(
        self, account_id: str, fields: GoalFields, active: bool, today: dt.date
    ) -> Goal:
        now = self._clock.now()
        goal = Goal(
            id=uuid.uuid4().hex, account_id=account_id, name=fields.name,
            description=fields.description, start_date=fields.start_date,
            end_date=fields.end_date, agent_group_ids=fields.agent_group_ids,
            attribution_model=fields.attribution_model,
            attribution_period_days=fields.attribution_period_days,
            transaction_value=fields.transaction_value, goal_type=fields.goal_type,
            conditions=fields.conditions, active=active, create_time=now, update_time=now,
            revision=1,
        )
        rules.check_dates(goal.schedule, today, None)
        token = None
        if active:
            token = await self._slots.claim(account_id, goal.id)
            if token is None:
                raise limit_error()
        try:
            await self._store.insert(goal)
        except DuplicateName:
            if token:
                await self._slots.release(goal.id, token)
            raise _name_taken(goal.name) from None
        return goal

    async def update(
        self,
        account_id: str,
        goal_id: str,
        changes: GoalPatch,
        expected_revision: int,
        today: dt.date,
    ) -> Goal:
        """Apply ``changes``; ``expected_revision`` (0: any) must be the stored revision."""
        for _ in range(CONFLICT_RETRIES):
            old = await self.get(account_id, goal_id)
            if expected_revision and old.revision != expected_revision:
                raise Aborted(
                    f"goal changed: revision is {old.revision}, expected {expected_revision}"
                )
            new = old.patched(changes).stamped(self._clock.now())
            rules.check_dates(new.schedule, today, old.schedule)
            try:
                if await self._store.replace(new, old.revision):
                    return new
            except DuplicateName:
                raise _name_taken(new.name) from None
        raise _kept_changing()

    async def activate(
        self, account_id: str, goal_id: str, dates: GoalPatch, today: dt.date
    ) -> Goal:
        """Turn the goal on, setting the start and end dates ``dates`` sets (if any)."""
        turn_on = dataclasses.replace(dates, active=True)
        for _ in range(CONFLICT_RETRIES):
            old = await self.get(account_id, goal_id)
            changed = old.patched(turn_on)
            new = changed.stamped(self._clock.now())
            rules.check_dates(new.schedule, today, old.schedule)
            if old.active:
                if changed == old:
                    return old  # already on, nothing to change
                if await self._store.replace(new, old.revision):
                    return new
                continue
            try:
                token = await self._slots.claim(account_id, old.id)
            except SlotBusy:
                await asyncio.sleep(SLOT_BUSY_PAUSE_S)
                continue
            if token is None:
                raise limit_error()
            if await self._store.replace(new, old.revision):
                return new
            await self._slots.release(old.id, token)
        raise _kept_changing()

    async def deactivate(self, account_id: str, goal_id: str) -> Goal:
        for _ in range(CONFLICT_RETRIES):
            old = await self.get(account_id, goal_id)
            if not old.active:
                return old
            # The slot is read before the flag goes off and released by its token: a slot
            # claimed afterwards belongs to a later activation of this goal and must stay.
            token = await self._slots.token_of(old.id)
            new = old.patched(GoalPatch(active=False)).stamped(self._clock.now())
            if await self._store.replace(new, old.revision):
                if token is not None:
                    await self._slots.release(old.id, token)
                return new
        raise _kept_changing()

    async def delete(self, account_id: str, goal_id: str) -> None:
        """Delete the goal, leave a tombstone for watchers and free its slot."""
        check_id("goal_id", goal_id)
        goal = await self._store.remove(account_id, goal_id)
        if goal is None:
            raise NotFound(f"goal {goal_id!r} not found")
        await self._store.add_tombstone(goal, goal.revision + 1)
        await self._store.release_slots(goal_id)
