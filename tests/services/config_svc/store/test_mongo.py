"""MongoGoalStore against the real nx-27017: a goal and a slot survive the round trip through
their documents, and the conditional writes answer as the domain expects."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from config_svc.domain.model import (
    AttributionModel,
    Condition,
    Goal,
    GoalType,
    Money,
    Operator,
    Slot,
)
from config_svc.store import DuplicateName
from config_svc.store.mongo import MongoGoalStore

# Millisecond instants: what the database keeps.
NOW = dt.datetime(2026, 6, 1, 9, 30, 15, 123000, tzinfo=dt.UTC)


def goal(goal_id: str = "g1", name: str = "Checkout Ω", **changes: object) -> Goal:
    full = Goal(
        id=goal_id, account_id="acct", name=name, description="Reach it",
        start_date=dt.date(2026, 6, 2), end_date=dt.date(2026, 12, 31),
        agent_group_ids=("sales", "support"), attribution_model=AttributionModel.ALL_TOUCHES,
        attribution_period_days=31, transaction_value=Money("EUR", "12.5"),
        goal_type=GoalType.GENERATE_LEADS,
        conditions=(Condition(Operator.IS, "https://shop.example.com/done"),
                    Condition(Operator.CONTAINS, "/checkout")),
        active=True, create_time=NOW, update_time=NOW, revision=1,
    )
    return dataclasses.replace(full, **changes)


@pytest.fixture
async def store(mongo, db_prefix) -> MongoGoalStore:
    store = MongoGoalStore(mongo[f"{db_prefix}_config"])
    await store.ensure_indexes()
    return store


async def test_a_goal_reads_back_as_written(store):
    written = goal()
    await store.insert(written)
    assert await store.get("acct", "g1") == written
    assert await store.get("other", "g1") is None
    bare = goal("g2", "Bare", end_date=None, start_date=None, transaction_value=None,
                goal_type=None, active=False)
    await store.insert(bare)
    assert await store.get("acct", "g2") == bare


async def test_writes_are_conditional_on_revision_and_names_unique_without_case(store):
    await store.insert(goal())
    with pytest.raises(DuplicateName):
        await store.insert(goal("g2", "CHECKOUT ω"))
    newer = goal(description="v2").stamped(NOW)
    assert await store.replace(newer, expected_revision=1)
    assert not await store.replace(goal(description="stale").stamped(NOW), expected_revision=1)
    assert await store.get("acct", "g1") == newer


async def test_slots_round_trip_and_are_unique_per_number_and_goal(store):
    slot = Slot("acct", 3, "g1", "token-1", NOW)
    assert await store.insert_slot(slot)
    assert not await store.insert_slot(Slot("acct", 3, "g2", "token-2", NOW))
    assert not await store.insert_slot(Slot("acct", 4, "g1", "token-3", NOW))
    assert await store.slots("acct") == [slot]
    assert await store.slot_of("g1") == slot
    assert not await store.release_slot("g1", "token-2")
    assert await store.release_slot("g1", "token-1")
    assert await store.slots("acct") == []
