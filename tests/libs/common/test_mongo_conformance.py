"""MongoDB conformance: every database operation the services rely on, checked against the
server ``mongo_uri`` gives (embedded nx-27017 by default, a real replica set when
MONGODB_URI is set). Nothing here assumes nx-27017; its known gaps are marked xfail only
when it is the server under test."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from bson.decimal128 import Decimal128
from gridfs.asynchronous import AsyncGridFSBucket
from pymongo import ASCENDING, AsyncMongoClient, InsertOne, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

EMBEDDED = not os.environ.get("MONGODB_URI")
DUPLICATE_KEY = 11000
EVENT_TIMEOUT_S = 10.0


def embedded_gap(reason: str) -> pytest.MarkDecorator:
    """A known nx-27017 shortcoming: expected to fail only when nx-27017 is under test."""
    return pytest.mark.xfail(EMBEDDED, reason=f"nx-27017 gap: {reason}", strict=False)


@pytest.fixture
async def db(mongo: AsyncMongoClient, db_prefix: str) -> AsyncIterator[AsyncDatabase]:
    database = mongo[f"{db_prefix}_conf"]
    try:
        yield database
    finally:
        await mongo.drop_database(database.name)


async def _unique_names(db: AsyncDatabase):
    coll = db["goals"]
    await coll.create_index([("account_id", ASCENDING), ("name_key", ASCENDING)], unique=True)
    return coll


# --- writes and uniqueness -------------------------------------------------------------


async def test_unique_compound_index_raises_duplicate_key(db):
    coll = await _unique_names(db)
    await coll.insert_one({"_id": "g1", "account_id": "a", "name_key": "checkout"})
    # The same name in another account is a different key.
    await coll.insert_one({"_id": "g2", "account_id": "b", "name_key": "checkout"})
    with pytest.raises(DuplicateKeyError) as err:
        await coll.insert_one({"_id": "g3", "account_id": "a", "name_key": "checkout"})
    assert err.value.code == DUPLICATE_KEY
    with pytest.raises(DuplicateKeyError) as err:
        await coll.insert_one({"_id": "g1", "account_id": "c", "name_key": "other"})
    assert err.value.code == DUPLICATE_KEY
    assert await coll.count_documents({}) == 2
    assert await coll.find_one({"_id": "g3"}) is None


async def test_unique_single_field_index(db):
    slots = db["slots"]
    await slots.create_index("goal_id", unique=True)
    await slots.insert_one({"_id": "a:0", "goal_id": "g1"})
    with pytest.raises(DuplicateKeyError) as err:
        await slots.insert_one({"_id": "a:1", "goal_id": "g1"})
    assert err.value.code == DUPLICATE_KEY
    assert await slots.count_documents({"goal_id": "g1"}) == 1


async def test_insert_many_unordered_reports_each_duplicate(db):
    coll = await _unique_names(db)
    await coll.insert_one({"_id": "x", "account_id": "a", "name_key": "taken"})
    docs = [
        {"_id": "n1", "account_id": "a", "name_key": "one"},
        {"_id": "n2", "account_id": "a", "name_key": "taken"},  # index duplicate
        {"_id": "n3", "account_id": "a", "name_key": "three"},
        {"_id": "x", "account_id": "a", "name_key": "four"},  # _id duplicate
        {"_id": "n5", "account_id": "a", "name_key": "five"},
    ]
    with pytest.raises(BulkWriteError) as err:
        await coll.insert_many(docs, ordered=False)
    details = err.value.details
    assert details["nInserted"] == 3
    failed = sorted((e["index"], e["code"]) for e in details["writeErrors"])
    assert failed == [(1, DUPLICATE_KEY), (3, DUPLICATE_KEY)]
    # Unordered: the writes after a failure still happened.
    stored = sorted([d["_id"] async for d in coll.find({}, {"_id": 1})])
    assert stored == ["n1", "n3", "n5", "x"]
    assert (await coll.find_one({"_id": "x"}))["name_key"] == "taken"


async def test_replace_one_conditional_on_revision(db):
    coll = await _unique_names(db)
    await coll.insert_one({"_id": "g", "account_id": "a", "name_key": "n", "revision": 1})
    await coll.insert_one({"_id": "h", "account_id": "a", "name_key": "m", "revision": 1})
    new = {"_id": "g", "account_id": "a", "name_key": "n2", "revision": 2}
    ok = await coll.replace_one({"_id": "g", "account_id": "a", "revision": 1}, new)
    assert (ok.matched_count, ok.modified_count) == (1, 1)
    # A writer that read revision 1 loses: nothing matches, nothing changes.
    stale = {"_id": "g", "account_id": "a", "name_key": "lost", "revision": 2}
    lost = await coll.replace_one({"_id": "g", "account_id": "a", "revision": 1}, stale)
    assert lost.matched_count == 0
    assert await coll.find_one({"_id": "g"}) == new
    # Renaming onto another goal's name trips the unique index on replace too.
    clash = {"_id": "g", "account_id": "a", "name_key": "m", "revision": 3}
    with pytest.raises(DuplicateKeyError) as err:
        await coll.replace_one({"_id": "g", "revision": 2}, clash)
    assert err.value.code == DUPLICATE_KEY
    assert await coll.find_one({"_id": "g"}) == new


async def test_replace_one_upsert(db):
    coll = db["tombstones"]
    first = await coll.replace_one({"_id": "g"}, {"_id": "g", "revision": 3}, upsert=True)
    assert first.upserted_id == "g"
    second = await coll.replace_one({"_id": "g"}, {"_id": "g", "revision": 5}, upsert=True)
    assert second.upserted_id is None and second.matched_count == 1
    assert await coll.find_one({"_id": "g"}) == {"_id": "g", "revision": 5}


async def test_find_one_and_update_set_inc_returns_after(db):
    coll = db["goals"]
    await coll.insert_one({"_id": "g", "active": True, "revision": 4, "note": "keep"})
    doc = await coll.find_one_and_update(
        {"_id": "g", "active": True},
        {"$set": {"active": False, "state": "off"}, "$inc": {"revision": 1}},
        return_document=ReturnDocument.AFTER,
    )
    assert doc == {"_id": "g", "active": False, "revision": 5, "note": "keep", "state": "off"}
    # The filter no longer matches, so a second call changes nothing and returns None.
    again = await coll.find_one_and_update(
        {"_id": "g", "active": True},
        {"$set": {"active": False}, "$inc": {"revision": 1}},
        return_document=ReturnDocument.AFTER,
    )
    assert again is None
    assert (await coll.find_one({"_id": "g"}))["revision"] == 5


@embedded_gap(
    "$set of a datetime on an existing document (update_one, update_many, "
    "find_one_and_update, bulk_write UpdateOne, also $max) stores a naive string like "
    "'2026-06-01 12:00:00.123000' instead of a BSON date; inserts, replaces and upserts "
    "that create the document store dates correctly"
)
async def test_set_datetime_on_existing_document(db):
    coll = db["goals"]
    await coll.insert_one({"_id": "g", "active": True, "revision": 1})
    when = dt.datetime(2026, 6, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)
    doc = await coll.find_one_and_update(
        {"_id": "g"},
        {"$set": {"active": False, "update_time": when}, "$inc": {"revision": 1}},
        return_document=ReturnDocument.AFTER,
    )
    assert doc["update_time"] == when
    await coll.update_one({"_id": "g"}, {"$set": {"update_time": when + dt.timedelta(1)}})
    stored = await coll.find_one({"_id": "g"})
    assert stored["update_time"] == when + dt.timedelta(1)
    assert await coll.count_documents({"update_time": {"$gt": when}}) == 1


async def test_find_one_and_delete(db):
    coll = db["goals"]
    await coll.insert_many([{"_id": "g", "account_id": "a"}, {"_id": "h", "account_id": "a"}])
    assert await coll.find_one_and_delete({"_id": "g", "account_id": "b"}) is None
    deleted = await coll.find_one_and_delete({"_id": "g", "account_id": "a"})
    assert deleted == {"_id": "g", "account_id": "a"}
    assert await coll.find_one({"_id": "g"}) is None
    assert await coll.find_one_and_delete({"_id": "g", "account_id": "a"}) is None
    assert await coll.count_documents({}) == 1


async def test_update_one_upsert_set_on_insert(db):
    coll = db["accounts"]
    first = await coll.update_one(
        {"_id": "acct"}, {"$setOnInsert": {"name": "First", "time_zone": "UTC"}}, upsert=True
    )
    assert first.upserted_id == "acct"
    second = await coll.update_one(
        {"_id": "acct"},
        {"$setOnInsert": {"name": "Second", "time_zone": "Europe/Paris"}},
        upsert=True,
    )
    assert second.upserted_id is None and second.matched_count == 1
    assert await coll.find_one({"_id": "acct"}) == {
        "_id": "acct", "name": "First", "time_zone": "UTC"
    }


async def test_update_one_set(db):
    coll = db["api_keys"]
    await coll.insert_one({"_id": "k", "revoked": False, "role": "admin"})
    result = await coll.update_one({"_id": "k"}, {"$set": {"revoked": True}})
    assert result.matched_count == 1
    missing = await coll.update_one({"_id": "nope"}, {"$set": {"revoked": True}})
    assert missing.matched_count == 0 and missing.upserted_id is None
    assert await coll.find_one({"_id": "k"}) == {"_id": "k", "revoked": True, "role": "admin"}
    assert await coll.count_documents({}) == 1


async def test_add_to_set(db):
    coll = db["sets"]
    await coll.insert_one({"_id": "s", "ids": ["a"]})
    for value in ("b", "a", "c", "b"):
        await coll.update_one({"_id": "s"}, {"$addToSet": {"ids": value}})
    await coll.update_one({"_id": "s"}, {"$addToSet": {"ids": {"$each": ["c", "d"]}}})
    # $addToSet with upsert on a missing document creates the array.
    await coll.update_one({"_id": "t"}, {"$addToSet": {"ids": "z"}}, upsert=True)
    assert (await coll.find_one({"_id": "s"}))["ids"] == ["a", "b", "c", "d"]
    assert (await coll.find_one({"_id": "t"}))["ids"] == ["z"]


@embedded_gap(
    "$addToSet on an existing document that lacks the array field is a silent no-op "
    "(matched 1, modified 0) instead of creating the array"
)
async def test_add_to_set_creates_missing_array(db):
    coll = db["sets"]
    await coll.insert_one({"_id": "s", "other": 1})
    result = await coll.update_one({"_id": "s"}, {"$addToSet": {"ids": "a"}})
    assert result.modified_count == 1
    assert (await coll.find_one({"_id": "s"}))["ids"] == ["a"]


async def test_delete_one_delete_many_count_documents(db):
    coll = db["slots"]
    await coll.insert_many(
        [{"_id": f"a:{k}", "account_id": "a", "goal_id": f"g{k % 3}", "token": f"t{k}"}
         for k in range(9)]
    )
    assert await coll.count_documents({"account_id": "a"}) == 9
    assert await coll.count_documents({"goal_id": "g1"}) == 3
    # A delete conditional on a stale token removes nothing.
    assert (await coll.delete_one({"goal_id": "g0", "token": "t1"})).deleted_count == 0
    assert (await coll.delete_one({"goal_id": "g0", "token": "t3"})).deleted_count == 1
    assert (await coll.delete_many({"goal_id": "g1"})).deleted_count == 3
    assert (await coll.delete_many({"goal_id": "none"})).deleted_count == 0
    assert await coll.count_documents({}) == 5
    assert await coll.count_documents({"goal_id": {"$in": ["g0", "g1"]}}) == 2


async def _count_both_ways(db, lo: dt.datetime, hi: dt.datetime) -> tuple[int, int]:
    """(count command, count_documents) of the "count_range" documents of "x" in [lo, hi)."""
    coll = db["count_range"]
    if not await coll.estimated_document_count():
        base = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
        ms = dt.timedelta(milliseconds=1)
        offsets = [k * 250 for k in range(40)]
        offsets += [s * 1000 + d for s in (2, 5) for d in (-501, -500, -499, -1, 1, 499, 500, 501)]
        await coll.create_index([("a", 1), ("t", 1)])
        await coll.insert_many([{"_id": n, "a": "x", "t": base + o * ms}
                                for n, o in enumerate(offsets)])
    query = {"a": {"$eq": "x"}, "t": {"$gte": lo, "$lt": hi}}
    counted = await db.command({"count": "count_range", "query": query})
    return counted["n"], await coll.count_documents(query)


async def test_count_command_on_whole_second_bounds(db):
    """The tracker counts a simulation's events with the ``count`` command between whole
    seconds (TrackerStore.count_events): the same answer as ``count_documents``, events a
    millisecond either side of a bound included; on nx-27017 20x faster (0.02 s against
    0.44 s for 20,000 events, measured: count_documents is an aggregation there)."""
    base = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
    second = dt.timedelta(seconds=1)
    for lo, hi in ((base, base + 2 * second), (base + 2 * second, base + 5 * second),
                   (base - 7 * second, base + dt.timedelta(days=3))):
        command, documents = await _count_both_ways(db, lo, hi)
        assert command == documents > 0, (lo, hi)


@embedded_gap("the count command compares datetimes to the second: a bound inside a second "
              "is inexact (the tracker's count uses whole seconds)")
async def test_count_command_on_millisecond_bounds(db):
    base = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
    ms = dt.timedelta(milliseconds=1)
    command, documents = await _count_both_ways(db, base + ms, base + 4999 * ms)
    assert command == documents


# --- queries ----------------------------------------------------------------------------


async def test_keyset_paging_with_or_gt_two_key_sort_and_limit(db):
    coll = db["goals"]
    # Repeated name_keys force the tie-break on _id.
    names = ["beta", "alpha", "beta", "gamma", "alpha", "beta", "delta", "alpha", "epsilon"]
    docs = [{"_id": f"g{k:02d}", "account_id": "a", "name_key": n} for k, n in enumerate(names)]
    docs.append({"_id": "other", "account_id": "b", "name_key": "alpha"})
    await coll.insert_many(docs[::-1])  # insertion order must not matter
    expected = sorted(
        (d["name_key"], d["_id"]) for d in docs if d["account_id"] == "a"
    )

    seen: list[tuple[str, str]] = []
    after: tuple[str, str] | None = None
    pages = 0
    while True:
        query: dict = {"account_id": "a"}
        if after is not None:
            query["$or"] = [
                {"name_key": {"$gt": after[0]}},
                {"name_key": after[0], "_id": {"$gt": after[1]}},
            ]
        page = await coll.find(query).sort([("name_key", 1), ("_id", 1)]).limit(2).to_list()
        if not page:
            break
        pages += 1
        assert len(page) <= 2
        seen.extend((d["name_key"], d["_id"]) for d in page)
        after = (page[-1]["name_key"], page[-1]["_id"])
    assert seen == expected
    assert pages == 5


async def _times_around_one_millisecond(db: AsyncDatabase):
    coll = db["conversions"]
    when = dt.datetime(2026, 5, 1, 9, 0, 0, 500000, tzinfo=dt.UTC)
    ms = dt.timedelta(milliseconds=1)
    docs = [{"_id": f"tie-{k:02d}", "a": "x", "t": when} for k in range(6)]
    docs += [{"_id": f"near-{k}", "a": "x", "t": when + (k - 2) * ms} for k in (0, 1, 3, 4)]
    docs += [{"_id": f"far-{k}", "a": "x", "t": when + (k - 1) * dt.timedelta(seconds=1)}
             for k in (0, 2)]
    await coll.insert_many(docs[::-1])
    return coll, sorted(docs, key=lambda d: (d["t"], d["_id"]), reverse=True)


async def _page_newest_first(coll, account_filter: dict) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        query: dict = {"a": account_filter}
        if after is not None:
            query["$or"] = [{"t": {"$lt": after[0]}}, {"t": after[0], "_id": {"$lt": after[1]}}]
        page = await coll.find(query).sort([("t", -1), ("_id", -1)]).limit(3).to_list()
        if not page:
            return seen
        seen.extend(d["_id"] for d in page)
        after = (page[-1]["t"], page[-1]["_id"])
        assert len(seen) < 100, "paging does not end"


async def test_keyset_or_on_millisecond_datetimes_with_in(db):
    # ListConversions' page query (TrackerStore.conversions_page): ties at one millisecond and
    # neighbours a millisecond away in the same second.
    coll, expected = await _times_around_one_millisecond(db)
    assert await _page_newest_first(coll, {"$in": ["x"]}) == [d["_id"] for d in expected]


@embedded_gap("find compares datetimes to the second (SQLite datetime()) unless the query "
              "holds a $in, so a $or keyset skips rows earlier in the same second")
async def test_keyset_or_on_millisecond_datetimes_with_eq(db):
    coll, expected = await _times_around_one_millisecond(db)
    assert await _page_newest_first(coll, {"$eq": "x"}) == [d["_id"] for d in expected]


@embedded_gap("a range beside a $or that names the same field is ignored by find")
async def test_range_beside_or_on_the_same_field(db):
    coll, expected = await _times_around_one_millisecond(db)
    lo, hi = expected[-1]["t"], expected[0]["t"]  # the far rows, two seconds apart
    query = {"a": "x", "t": {"$gt": lo}, "$or": [{"t": {"$lt": hi}}, {"_id": "far-0"}]}
    found = await coll.find(query).to_list()
    assert sorted(d["_id"] for d in found) == sorted(
        d["_id"] for d in expected if lo < d["t"] < hi
    )


async def test_find_in_projection_and_sort(db):
    coll = db["goals"]
    await coll.insert_many(
        [{"_id": f"g{k}", "active": k % 2 == 0, "name": f"n{k}"} for k in range(6)]
    )
    found = await coll.find(
        {"_id": {"$in": ["g5", "g0", "g3", "g2", "missing"]}, "active": True}, {"_id": 1}
    ).sort("_id", 1).to_list()
    assert found == [{"_id": "g0"}, {"_id": "g2"}]
    descending = [d["_id"] async for d in coll.find({}).sort("_id", -1)]
    assert descending == [f"g{k}" for k in range(5, -1, -1)]


async def test_tz_aware_datetime_round_trip_millisecond_precision(db):
    coll = db["times"]
    utc = dt.datetime(2026, 6, 1, 12, 34, 56, 789123, tzinfo=dt.UTC)
    paris = dt.datetime(2026, 1, 15, 9, 0, 0, 1999, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    await coll.insert_one({"_id": "t", "utc": utc, "paris": paris, "nested": {"at": utc}})
    doc = await coll.find_one({"_id": "t"})
    for value in (doc["utc"], doc["paris"], doc["nested"]["at"]):
        assert value.tzinfo is not None and value.utcoffset() == dt.timedelta(0)
    # BSON keeps milliseconds: microseconds are truncated, the instant is kept.
    assert doc["utc"] == utc.replace(microsecond=789000)
    assert doc["paris"] == dt.datetime(2026, 1, 15, 8, 0, 0, 1000, tzinfo=dt.UTC)
    assert doc["nested"]["at"] == doc["utc"]
    # Range queries compare instants, whatever zone the bound is written in.
    bound = utc.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert await coll.count_documents({"utc": {"$gt": bound - dt.timedelta(seconds=1)}}) == 1
    assert await coll.count_documents({"utc": {"$lt": bound - dt.timedelta(seconds=1)}}) == 0


@embedded_gap(
    "Decimal128 cannot be stored ('not JSON serializable') nor queried, so money is kept as "
    "decimal strings and summed in Python (goalflow_common.money)"
)
async def test_decimal128_round_trip_and_sum(db):
    # Why not int64 micros: the API's largest amount is 10^24 micros, beyond 2^63. (nx-27017
    # also never answers a $sum that overflows int64: it cannot encode its own result.)
    coll = db["money"]
    amounts = ["999999999999999999.999999", "0.000001", "1.10"]
    await coll.insert_many([{"_id": n, "v": Decimal128(a)} for n, a in enumerate(amounts)])
    stored = [d["v"].to_decimal() async for d in coll.find().sort("_id", 1)]
    assert stored == [Decimal(a) for a in amounts]
    [total] = await (await coll.aggregate(
        [{"$group": {"_id": None, "t": {"$sum": "$v"}}}]
    )).to_list()
    assert total["t"].to_decimal() == Decimal("1000000000000000001.1")


async def test_nested_subdocument_arrays_read_back_as_dicts(db):
    coll = db["goals"]
    conditions = [
        {"kind": "url", "operator": "contains", "value": "/checkout", "extra": {"n": 1}},
        {"kind": "event", "operator": "equals", "value": "purchase", "tags": ["a", "b"]},
    ]
    await coll.insert_one({"_id": "g", "conditions": conditions, "revision": 1})
    doc = await coll.find_one({"_id": "g"})
    assert doc["conditions"] == conditions
    assert all(isinstance(c, dict) for c in doc["conditions"])
    assert isinstance(doc["conditions"][0]["extra"], dict)

    replaced = [*conditions[::-1], {"kind": "url", "operator": "prefix", "value": "/"}]
    await coll.replace_one({"_id": "g", "revision": 1},
                           {"_id": "g", "conditions": replaced, "revision": 2})
    doc = await coll.find_one({"_id": "g"})
    assert doc["conditions"] == replaced
    assert all(isinstance(c, dict) for c in doc["conditions"])
    # And through $set, as find_one_and_update would write it.
    await coll.update_one({"_id": "g"}, {"$set": {"conditions": conditions}})
    doc = await coll.find_one({"_id": "g"})
    assert doc["conditions"] == conditions
    assert all(isinstance(c, dict) for c in doc["conditions"])


@embedded_gap("$push of a sub-document stores it as a JSON string, not an embedded document")
async def test_push_subdocument(db):
    coll = db["goals"]
    await coll.insert_one({"_id": "g", "conditions": []})
    await coll.update_one({"_id": "g"}, {"$push": {"conditions": {"kind": "url", "n": 1}}})
    doc = await coll.find_one({"_id": "g"})
    assert doc["conditions"] == [{"kind": "url", "n": 1}]


async def test_bulk_write_update_one_upserts(db):
    coll = db["counts"]
    await coll.insert_one({"_id": "a|g1", "n": 5})
    ops = [
        UpdateOne({"_id": "a|g1"}, {"$inc": {"n": 2}, "$setOnInsert": {"goal": "g1"}},
                  upsert=True),
        UpdateOne({"_id": "a|g2"}, {"$inc": {"n": 1}, "$setOnInsert": {"goal": "g2"}},
                  upsert=True),
        UpdateOne({"_id": "a|g3"}, {"$inc": {"n": 4}, "$setOnInsert": {"goal": "g3"}},
                  upsert=True),
    ]
    result = await coll.bulk_write(ops, ordered=False)
    assert result.matched_count == 1
    assert result.upserted_count == 2
    assert sorted(result.upserted_ids.values()) == ["a|g2", "a|g3"]
    stored = {d["_id"]: (d["n"], d.get("goal")) async for d in coll.find({})}
    assert stored == {"a|g1": (7, None), "a|g2": (1, "g2"), "a|g3": (4, "g3")}


async def test_bulk_write_unordered_insert_duplicates(db):
    coll = db["events"]
    await coll.insert_one({"_id": "e1"})
    with pytest.raises(BulkWriteError) as err:
        await coll.bulk_write(
            [InsertOne({"_id": "e0"}), InsertOne({"_id": "e1"}), InsertOne({"_id": "e2"})],
            ordered=False,
        )
    errors = err.value.details["writeErrors"]
    assert [(e["index"], e["code"]) for e in errors] == [(1, DUPLICATE_KEY)]
    assert err.value.details["nInserted"] == 2
    assert await coll.count_documents({}) == 3


async def test_aggregate_match_group_sum(db):
    coll = db["conversions"]
    rows = [
        ("a", "g1", 100), ("a", "g1", 250), ("a", "g2", 40),
        ("b", "g1", 999), ("a", "g2", 60), ("a", "g3", 0),
    ]
    await coll.insert_many(
        [{"account_id": acc, "goal_id": g, "value_minor": v} for acc, g, v in rows]
    )
    out = await (
        await coll.aggregate(
            [
                {"$match": {"account_id": "a", "goal_id": {"$in": ["g1", "g2"]}}},
                {"$group": {"_id": "$goal_id", "count": {"$sum": 1},
                            "value": {"$sum": "$value_minor"}}},
            ]
        )
    ).to_list()
    assert sorted((d["_id"], d["count"], d["value"]) for d in out) == [
        ("g1", 2, 350), ("g2", 2, 100)
    ]


async def test_create_index_with_expire_after_seconds(db):
    coll = db["tombstones"]
    ttl = 7 * 24 * 3600
    await coll.create_index("deleted_at", expireAfterSeconds=ttl)
    # Creating the same index again (every service start does) is not an error.
    await coll.create_index("deleted_at", expireAfterSeconds=ttl)
    await coll.insert_one({"_id": "g", "deleted_at": dt.datetime.now(dt.UTC)})
    assert await coll.count_documents({}) == 1  # a fresh document is not expired
    ttl_indexes = [ix async for ix in await coll.list_indexes() if "expireAfterSeconds" in ix]
    assert [(dict(ix["key"]), ix["expireAfterSeconds"]) for ix in ttl_indexes] == [
        ({"deleted_at": 1}, ttl)
    ]


@embedded_gap(
    "create_index ignores the index name the driver sends (deleted_at_1) and names it "
    "idx_<collection>_<field>; nothing in goalflow refers to index names"
)
async def test_create_index_keeps_the_driver_name(db):
    coll = db["tombstones"]
    name = await coll.create_index("deleted_at", expireAfterSeconds=60)
    names = [ix["name"] async for ix in await coll.list_indexes()]
    assert name in names


# --- change streams ---------------------------------------------------------------------


async def _next(stream) -> dict:
    return await asyncio.wait_for(stream.next(), EVENT_TIMEOUT_S)


async def _write_changes(coll) -> None:
    await coll.insert_one({"_id": "g", "account_id": "a", "revision": 1,
                           "conditions": [{"kind": "url"}]})
    await coll.replace_one({"_id": "g"}, {"_id": "g", "account_id": "a", "revision": 2,
                                          "conditions": [{"kind": "event"}]})
    await coll.update_one({"_id": "g"}, {"$set": {"active": True}, "$inc": {"revision": 1}})
    await coll.delete_one({"_id": "g"})


async def test_change_stream_delivers_in_order_with_full_document(db):
    coll = db["goals"]
    await coll.insert_one({"_id": "before", "revision": 1})  # must not be delivered
    stream = await coll.watch(full_document="updateLookup")
    try:
        await _write_changes(coll)
        events = [await _next(stream) for _ in range(4)]
    finally:
        await stream.close()
    # The watcher (config WatchGoals) accepts insert, replace and update alike and acts on
    # fullDocument, so the order and the full documents are what matters.
    assert [e["operationType"] for e in events[:3]] in (
        ["insert", "replace", "update"], ["insert", "update", "update"]
    )
    assert events[3]["operationType"] == "delete"
    assert [e.get("fullDocument") for e in events[:3]] == [
        {"_id": "g", "account_id": "a", "revision": 1, "conditions": [{"kind": "url"}]},
        {"_id": "g", "account_id": "a", "revision": 2, "conditions": [{"kind": "event"}]},
        # updateLookup: an update carries the whole document after the change.
        {"_id": "g", "account_id": "a", "revision": 3, "active": True,
         "conditions": [{"kind": "event"}]},
    ]
    assert all(e["documentKey"] == {"_id": "g"} for e in events)


@embedded_gap("a replace_one is reported with operationType 'update' instead of 'replace'")
async def test_change_stream_reports_replace_as_replace(db):
    coll = db["goals"]
    stream = await coll.watch(full_document="updateLookup")
    try:
        await _write_changes(coll)
        events = [await _next(stream) for _ in range(4)]
    finally:
        await stream.close()
    assert [e["operationType"] for e in events] == ["insert", "replace", "update", "delete"]


@embedded_gap(
    "change-stream fullDocument carries dates as extended JSON ({'$date': "
    "'2026-06-01T12:00:00.123000'}, no offset) instead of datetimes, at any depth"
)
async def test_change_stream_full_document_keeps_datetimes(db):
    coll = db["goals"]
    when = dt.datetime(2026, 6, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)
    stream = await coll.watch(full_document="updateLookup")
    try:
        await coll.insert_one({"_id": "g", "at": when, "nested": {"at": [when]}})
        await coll.update_one({"_id": "g"}, {"$inc": {"revision": 1}})
        events = [await _next(stream) for _ in range(2)]
    finally:
        await stream.close()
    for event in events:
        assert event["fullDocument"]["at"] == when
        assert event["fullDocument"]["nested"] == {"at": [when]}


async def test_change_stream_only_sees_its_collection(db):
    goals, other = db["goals"], db["tombstones"]
    stream = await goals.watch(full_document="updateLookup")
    try:
        await other.insert_one({"_id": "t", "revision": 9})
        await goals.insert_one({"_id": "g", "revision": 1})
        event = await _next(stream)
    finally:
        await stream.close()
    assert event["operationType"] == "insert"
    assert event["fullDocument"] == {"_id": "g", "revision": 1}


@embedded_gap("aggregate $match compares datetimes wrongly ($gte matches every document); find "
              "and count_documents are right, and the tracker's count wraps the $match in $and")
async def test_aggregate_match_on_datetime(db):
    coll = db["agg_dates"]
    base = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
    await coll.insert_many([{"_id": i, "t": base + dt.timedelta(days=d), "g": "a"}
                            for i, d in enumerate((0, 1, 5, 8, 9))])
    since = dt.datetime(2026, 6, 4, tzinfo=dt.UTC)
    assert await coll.count_documents({"t": {"$gte": since}}) == 3
    cursor = await coll.aggregate([{"$match": {"t": {"$gte": since}}},
                                   {"$group": {"_id": "$g", "n": {"$sum": 1}}}])
    assert await cursor.to_list() == [{"_id": "a", "n": 3}]


async def test_aggregate_match_on_datetime_inside_and(db):
    """The form the tracker's CountConversions uses."""
    coll = db["agg_dates_and"]
    base = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
    await coll.insert_many([{"_id": i, "t": base + dt.timedelta(days=d), "g": "a"}
                            for i, d in enumerate((0, 1, 5, 8, 9))])
    since = dt.datetime(2026, 6, 4, tzinfo=dt.UTC)
    cursor = await coll.aggregate([{"$match": {"$and": [{"t": {"$gte": since}}]}},
                                   {"$group": {"_id": "$g", "n": {"$sum": 1}}}])
    assert await cursor.to_list() == [{"_id": "a", "n": 3}]


async def test_eq_operator_and_in_give_the_same_answers_as_bare_equality(db):
    """The services write indexed equalities as {"$eq": v} (goalflow_common.db.eq) and batch
    look-ups as concurrent $eq queries: same results as the plain forms."""
    coll = db["eq_forms"]
    await coll.create_index([("account_id", 1), ("conversation_id", 1)])
    await coll.insert_many([{"_id": i, "account_id": f"a{i % 3}", "conversation_id": f"c{i % 7}"}
                            for i in range(200)])
    bare = await coll.find({"account_id": "a1", "conversation_id": "c2"}).sort("_id").to_list()
    op = await coll.find({"account_id": {"$eq": "a1"},
                          "conversation_id": {"$eq": "c2"}}).sort("_id").to_list()
    within = await coll.find({"account_id": {"$eq": "a1"},
                              "conversation_id": {"$in": ["c2"]}}).sort("_id").to_list()
    assert bare == op == within and len(bare) > 0


# --- gaps the stores work around --------------------------------------------------------


@embedded_gap("equality on an array field does not match the array's elements, bare or $eq; "
              "$in does (test_in_matches_array_elements, the tracker's credited_agent_ids)")
async def test_equality_matches_array_elements(db):
    coll = db["arrays"]
    await coll.insert_many([{"_id": 1, "ids": ["a", "b"]}, {"_id": 2, "ids": ["c"]},
                            {"_id": 3, "ids": "b"}])
    for condition in ("b", {"$eq": "b"}):
        found = await coll.find({"ids": condition}).sort("_id").to_list()
        assert [d["_id"] for d in found] == [1, 3]


async def test_in_matches_array_elements(db):
    """The form the tracker's conversion filters use on an array field."""
    coll = db["arrays"]
    await coll.insert_many([{"_id": 1, "ids": ["a", "b"]}, {"_id": 2, "ids": ["c"]}])
    found = await coll.find({"ids": {"$in": ["b"]}}).sort("_id").to_list()
    assert [d["_id"] for d in found] == [1]


@embedded_gap("$lt on a string that starts like an ISO date ('2026-06-01T...') matches "
              "nothing, as if it compared dates; the export list key starts with digits")
async def test_lt_on_strings_that_look_like_dates(db):
    coll = db["strings"]
    keys = ["2026-06-01T10:00:00Z|a", "2026-06-01T11:00:00Z|b", "2026-06-02T09:00:00Z|c"]
    await coll.insert_many([{"_id": k, "k": k} for k in keys])
    found = [d["k"] async for d in coll.find({"k": {"$lt": keys[2]}}).sort("k", -1)]
    assert found == keys[1::-1]


async def test_lt_on_digit_strings(db):
    """The export list key's form: digits, then the id."""
    coll = db["strings"]
    keys = ["20260601100000000000|a", "20260601110000000000|b", "20260602090000000000|c"]
    await coll.insert_many([{"_id": k, "k": k} for k in keys])
    found = [d["k"] async for d in coll.find({"k": {"$lt": keys[2]}}).sort("k", -1)]
    assert found == keys[1::-1]


@embedded_gap("getMore on an idle change stream answers at once instead of waiting up to "
              "maxAwaitTimeMS, so a loop over try_next spins (goalflow_common.db pauses)")
async def test_change_stream_get_more_waits_for_data(db):
    coll = db["goals"]
    stream = await coll.watch(max_await_time_ms=1000)
    try:
        assert await stream.try_next() is None  # the first answer may come at once
        started = asyncio.get_running_loop().time()
        assert await stream.try_next() is None
        waited = asyncio.get_running_loop().time() - started
    finally:
        await stream.close()
    assert waited >= 0.5  # MongoDB holds it ~1 s; nx-27017 answers in milliseconds


@embedded_gap("a getMore on a change-stream cursor the server no longer knows (a restart, a "
              "failover, here killCursors) comes back empty and closed; MongoDB answers "
              "CursorNotFound, which the driver resumes from")
async def test_change_stream_survives_a_forgotten_cursor(db):
    coll = db["goals"]
    stream = await coll.watch()
    try:
        await stream.try_next()
        cursor_id = stream._cursor.cursor_id  # no public accessor; the server's cursor id
        await db.command("killCursors", coll.name, cursors=[cursor_id])
        await stream.try_next()
        assert stream.alive
        await coll.insert_one({"_id": "after"})
        event = await asyncio.wait_for(stream.next(), EVENT_TIMEOUT_S)
    finally:
        await stream.close()
    assert event["documentKey"] == {"_id": "after"}


@embedded_gap("GridFS: uploadDate is stored as a string, a datetime in metadata is refused "
              "('not JSON serializable'), and the (files_id, n) chunk index is mangled into "
              "one field files_id_n; export_svc/store/files.py keeps its own two collections")
async def test_gridfs_round_trip_with_dates(db):
    bucket = AsyncGridFSBucket(db, bucket_name="conf", chunk_size_bytes=1024)
    expire = dt.datetime(2026, 6, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)
    data = bytes(range(256)) * 10  # three chunks
    file_id = await bucket.upload_from_stream("x.zip", data, metadata={"expire_at": expire})
    out = await bucket.open_download_stream(file_id)
    assert await out.read() == data
    stored = await db["conf.files"].find_one({"_id": file_id})
    assert isinstance(stored["uploadDate"], dt.datetime)
    assert stored["metadata"]["expire_at"] == expire
    keys = [dict(ix["key"]) async for ix in await db["conf.chunks"].list_indexes()]
    assert {"files_id": 1, "n": 1} in keys
