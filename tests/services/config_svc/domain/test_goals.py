"""The goal workflows of config_svc.domain (docs/rules.md §2) against an in-memory store: the
15-active limit through slot claims, and the optimistic retry on a revision conflict."""

from __future__ import annotations

import datetime as dt

import pytest

from config_svc.domain.goals import CONFLICT_RETRIES, Goals
from config_svc.domain.model import (
    AttributionModel,
    Condition,
    Goal,
    GoalFields,
    GoalPatch,
    Operator,
)
from config_svc.domain.rules import MAX_ACTIVE_GOALS
from config_svc.domain.slots import LEAKED_SLOT_AGE, ActiveSlots
from goalflow_common.clock import ManualClock
from goalflow_common.errors import Aborted, AlreadyExists, FailedPrecondition
from tests.services.config_svc.domain.fake_store import FakeGoalStore

NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
TODAY = NOW.date()
ACCOUNT = "acct"


def fields(name: str) -> GoalFields:
    return GoalFields(
        name=name, description="", start_date=TODAY, end_date=None,
        agent_group_ids=("sales",), attribution_model=AttributionModel.LAST_TOUCH,
        attribution_period_days=7, transaction_value=None, goal_type=None,
        conditions=(Condition(Operator.CONTAINS, "/checkout"),),
    )


@pytest.fixture
def store() -> FakeGoalStore:
    return FakeGoalStore()


@pytest.fixture
def wall() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def goals(store: FakeGoalStore, wall: ManualClock) -> Goals:
    return Goals(store, ManualClock(NOW), ActiveSlots(store, wall))


async def create(goals: Goals, count: int, active: bool, prefix: str = "g") -> list[Goal]:
    return [await goals.create(ACCOUNT, fields(f"{prefix}{i}"), active, TODAY)
            for i in range(count)]


async def test_the_sixteenth_activation_is_refused_and_changes_nothing(goals, store):
    await create(goals, MAX_ACTIVE_GOALS, active=True)
    [extra] = await create(goals, 1, active=False, prefix="extra")

    with pytest.raises(FailedPrecondition) as refused:
        await goals.activate(ACCOUNT, extra.id, GoalPatch(), TODAY)

    assert refused.value.field == "active"
    assert not store.goals[extra.id].active
    assert store.goals[extra.id].revision == 1
    assert len(store.slots_by_key) == MAX_ACTIVE_GOALS
    assert await store.slot_of(extra.id) is None


async def test_a_deactivation_frees_the_slot_for_the_next_activation(goals, store):
    first, *_ = await create(goals, MAX_ACTIVE_GOALS, active=True)
    [extra] = await create(goals, 1, active=False, prefix="extra")

    await goals.deactivate(ACCOUNT, first.id)
    activated = await goals.activate(ACCOUNT, extra.id, GoalPatch(), TODAY)

    assert activated.active and activated.revision == 2
    assert {s.goal_id for s in store.slots_by_key.values()} == {
        g.id for g in store.goals.values() if g.active
    }


async def test_a_create_that_loses_on_the_name_gives_its_slot_back(goals, store):
    await create(goals, 1, active=True, prefix="same")
    with pytest.raises(AlreadyExists):
        await goals.create(ACCOUNT, fields("SAME0"), True, TODAY)
    assert len(store.slots_by_key) == 1


async def test_a_leaked_slot_is_reclaimed_only_once_it_is_old(goals, store, wall):
    await create(goals, MAX_ACTIVE_GOALS - 1, active=True)
    [crashed, extra] = await create(goals, 2, active=False, prefix="x")
    # A claim whose activation crashed before the goal's flag was set.
    token = await ActiveSlots(store, wall).claim(ACCOUNT, crashed.id)
    assert token is not None

    wall.advance(LEAKED_SLOT_AGE - dt.timedelta(seconds=1))
    with pytest.raises(FailedPrecondition):
        await goals.activate(ACCOUNT, extra.id, GoalPatch(), TODAY)
    wall.advance(dt.timedelta(seconds=2))
    await goals.activate(ACCOUNT, extra.id, GoalPatch(), TODAY)

    assert await store.slot_of(crashed.id) is None
    assert (await store.slot_of(extra.id)) is not None


class ConcurrentWriter(FakeGoalStore):
    """A store where another replica renames the goal just before each of our first
    ``conflicts`` conditional writes, so those writes find a newer revision."""

    def __init__(self, conflicts: int) -> None:
        super().__init__()
        self.conflicts = conflicts

    async def replace(self, goal: Goal, expected_revision: int) -> bool:
        if self.conflicts:
            self.conflicts -= 1
            theirs = self.goals[goal.id]
            self.goals[goal.id] = theirs.patched(
                GoalPatch(description=f"edited elsewhere at {theirs.revision}")
            ).stamped(NOW)
        return await super().replace(goal, expected_revision)


async def test_an_update_rereads_after_a_revision_conflict_and_keeps_the_other_write():
    store = ConcurrentWriter(conflicts=1)
    goals = Goals(store, ManualClock(NOW))
    [goal] = await create(goals, 1, active=False)
    store.reads = 0

    updated = await goals.update(ACCOUNT, goal.id, GoalPatch(name="renamed"), 0, TODAY)

    assert store.reads == 2  # read, conflict, read again, write
    assert updated.revision == 3  # ours follows the concurrent revision 2
    assert store.goals[goal.id] == updated
    assert updated.name == "renamed" and updated.description == "edited elsewhere at 1"


async def test_an_update_gives_up_after_the_retry_budget():
    store = ConcurrentWriter(conflicts=CONFLICT_RETRIES)
    goals = Goals(store, ManualClock(NOW))
    [goal] = await create(goals, 1, active=False)
    store.reads = 0

    with pytest.raises(Aborted):
        await goals.update(ACCOUNT, goal.id, GoalPatch(name="renamed"), 0, TODAY)
    assert store.reads == CONFLICT_RETRIES
    assert store.goals[goal.id].name == "g0"


async def test_an_expected_revision_that_is_not_current_is_refused_without_a_write():
    store = ConcurrentWriter(conflicts=0)
    goals = Goals(store, ManualClock(NOW))
    [goal] = await create(goals, 1, active=False)
    with pytest.raises(Aborted, match="revision is 1, expected 7"):
        await goals.update(ACCOUNT, goal.id, GoalPatch(name="renamed"), 7, TODAY)
    assert store.goals[goal.id] == goal


async def test_an_activation_that_loses_the_race_releases_its_claim_and_retries(wall):
    store = ConcurrentWriter(conflicts=1)
    goals = Goals(store, ManualClock(NOW), ActiveSlots(store, wall))
    [goal] = await create(goals, 1, active=False)

    activated = await goals.activate(ACCOUNT, goal.id, GoalPatch(), TODAY)

    assert activated.active and activated.revision == 3
    [slot] = store.slots_by_key.values()
    assert slot.goal_id == goal.id
