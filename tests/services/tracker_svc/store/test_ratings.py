"""The tracker store's kept ratings: latest by (time, event id), idempotent, race-free."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

from tests.services.tracker_svc.documents import SECOND, T0, rated_doc


async def test_the_latest_rating_wins_whatever_the_arrival_order(tracker_db):
    ratings = [rated_doc("acct", "conv", str(k), T0 + k * SECOND) for k in range(40)]
    random.Random(7).shuffle(ratings)
    # Forty writers at once, as from concurrent batches or replicas.
    await asyncio.gather(*(tracker_db.record_ratings("acct", [r]) for r in ratings))
    assert await tracker_db.latest_ratings("acct", ["conv"]) == {"conv": "39"}
    assert await tracker_db.ratings.count_documents({}) == 1


async def test_same_time_ratings_are_ordered_by_event_id(tracker_db):
    first, second = (rated_doc("acct", "conv", r, T0) for r in ("bad", "good"))
    assert first["event_id"] < second["event_id"]
    await tracker_db.record_ratings("acct", [second])
    await tracker_db.record_ratings("acct", [first])
    assert await tracker_db.latest_ratings("acct", ["conv"]) == {"conv": "good"}


async def test_a_resent_rating_changes_nothing(tracker_db):
    old, new = rated_doc("acct", "conv", "1", T0), rated_doc("acct", "conv", "5", T0 + SECOND)
    await tracker_db.record_ratings("acct", [old, new])
    await tracker_db.record_ratings("acct", [old])
    await tracker_db.record_ratings("acct", [new])
    assert await tracker_db.latest_ratings("acct", ["conv"]) == {"conv": "5"}


async def test_ratings_are_per_account_and_unrated_conversations_are_absent(tracker_db):
    await tracker_db.record_ratings("a", [rated_doc("a", "conv", "good", T0)])
    await tracker_db.record_ratings("b", [rated_doc("b", "conv", "bad", T0 + dt.timedelta(1))])
    assert await tracker_db.latest_ratings("a", ["conv", "never"]) == {"conv": "good"}
    assert await tracker_db.latest_ratings("b", ["conv"]) == {"conv": "bad"}
    assert await tracker_db.latest_ratings("c", ["conv"]) == {}
