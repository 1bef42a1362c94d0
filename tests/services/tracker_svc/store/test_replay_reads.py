"""The store's reads for a simulation, on the real database: ``count_events`` and
``events_between`` (every event of the account in [start, end) once, oldest first, same
instants never split between lists, millisecond times at the edges exact)."""

from __future__ import annotations

import datetime as dt
import itertools
import random

import pytest

from tracker_svc.domain.model import StoredEvent

T0 = dt.datetime(2026, 6, 1, 0, 0, tzinfo=dt.UTC)
MS, SECOND = dt.timedelta(milliseconds=1), dt.timedelta(seconds=1)


def event_doc(account_id: str, n: int, at: dt.datetime) -> dict:
    return {"_id": f"{account_id}:e{n:05d}", "account_id": account_id, "event_id": f"e{n:05d}",
            "kind": "message", "at": at, "received_at": at, "conversation_id": f"c{n % 7}",
            "author_type": "AGENT", "author_id": "A"}


async def stored(tracker_db, docs: list[dict]) -> None:
    await tracker_db.store.ensure_indexes()
    shuffled = docs[:]
    random.Random(3).shuffle(shuffled)  # stored in any order
    await tracker_db.events.insert_many(shuffled)


async def read_all(tracker_db, account_id: str, start, end, size) -> list[list[StoredEvent]]:
    return [chunk async for chunk in tracker_db.store.events_between(account_id, start, end,
                                                                      size)]


async def test_every_event_in_the_range_once_in_order(tracker_db):
    rng = random.Random(5)
    # 1,500 events over two days, dense in places (bursts of events at one instant), and a
    # few in another account.
    times = [T0 + dt.timedelta(milliseconds=rng.randrange(0, 2 * 86_400_000))
             for _ in range(1200)]
    times += [T0 + dt.timedelta(hours=5, milliseconds=250)] * 300  # one instant, 300 events
    docs = [event_doc("a", n, at) for n, at in enumerate(times)]
    docs += [event_doc("b", n, T0 + n * SECOND) for n in range(50)]
    await stored(tracker_db, docs)
    start, end = T0 + dt.timedelta(hours=3), T0 + dt.timedelta(hours=40)
    chunks = await read_all(tracker_db, "a", start, end, 100)
    events = [e for chunk in chunks for e in chunk]
    expected = sorted((d["at"], d["_id"]) for d in docs
                      if d["account_id"] == "a" and start <= d["at"] < end)
    assert [(e.at, e.key) for e in events] == expected
    assert await tracker_db.store.count_events("a", start, end) == len(expected)
    assert len(chunks) > 5 and all(chunks)
    # An instant is never split between two lists.
    for before, after in itertools.pairwise(chunks):
        assert before[-1].at < after[0].at
    scanned = [n async for n in tracker_db.store.scan_events("a", start, end, 100)]
    assert sum(scanned) == len(expected)


async def test_edges_are_exact_to_the_millisecond(tracker_db):
    docs = [event_doc("a", 0, T0 - MS), event_doc("a", 1, T0), event_doc("a", 2, T0 + MS),
            event_doc("a", 3, T0 + SECOND - MS), event_doc("a", 4, T0 + SECOND)]
    await stored(tracker_db, docs)
    events = [e for chunk in await read_all(tracker_db, "a", T0, T0 + SECOND, 2) for e in chunk]
    assert [e.event_id for e in events] == ["e00001", "e00002", "e00003"]
    assert await tracker_db.store.count_events("a", T0, T0 + SECOND) == 3


async def test_edges_must_be_whole_seconds(tracker_db):
    # nx-27017 compares these datetimes to the second: a millisecond edge would be inexact.
    with pytest.raises(ValueError, match="whole seconds"):
        await read_all(tracker_db, "a", T0 + MS, T0 + SECOND, 10)


async def test_an_empty_range_and_a_sparse_long_one(tracker_db):
    docs = [event_doc("a", n, T0 + n * dt.timedelta(days=30)) for n in range(4)]
    await stored(tracker_db, docs)
    assert await read_all(tracker_db, "a", T0 + SECOND, T0 + dt.timedelta(days=29), 10) == []
    assert await tracker_db.store.count_events("a", T0 + SECOND, T0 + dt.timedelta(days=29)) == 0
    far = await read_all(tracker_db, "a", T0, T0 + dt.timedelta(days=3650), 10)
    assert [e.event_id for chunk in far for e in chunk] == ["e00000", "e00001", "e00002",
                                                            "e00003"]
