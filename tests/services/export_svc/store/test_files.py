"""Export files stored in the real database, chunk by chunk."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from export_svc.store.files import CHUNKS, FILES, MongoFileStore


@pytest.fixture
async def export_db(mongo, db_prefix):
    return mongo[f"{db_prefix}_export"]


@pytest.fixture
async def store(export_db, clock) -> MongoFileStore:
    files = MongoFileStore(export_db, clock=clock)
    await files.ensure_indexes()
    return files


def _pieces(total: int, piece: int, seed: bytes) -> list[bytes]:
    # Odd-sized pieces so the store has to re-cut them into its own chunks.
    out, n = [], 0
    while sum(map(len, out)) < total:
        size = min(piece, total - sum(map(len, out)))
        out.append(hashlib.shake_256(seed + n.to_bytes(4, "big")).digest(size))
        n += 1
    return out


async def _stream(pieces: list[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def _read_all(stored) -> bytes:
    return b"".join([chunk async for chunk in stored.chunks()])


async def test_multi_mb_round_trip(store, export_db, clock):
    pieces = _pieces(3 * 1024 * 1024 + 12_345, 100_003, b"round-trip")
    expected = b"".join(pieces)
    expire_at = clock.now() + dt.timedelta(days=14)

    size = await store.save(
        "file-1", "acct-1", _stream(pieces), expire_at=expire_at, filename="goal.zip"
    )

    assert size == len(expected)
    stored = await store.open("file-1")
    assert stored is not None
    assert (stored.account_id, stored.size, stored.filename) == ("acct-1", size, "goal.zip")
    assert stored.expire_at == expire_at
    sizes = [len(chunk) async for chunk in stored.chunks()]
    assert max(sizes) <= 255 * 1024 and len(sizes) == -(-size // (255 * 1024))
    assert await _read_all(stored) == expected
    # Every chunk carries the purge time, so the TTL also sweeps leftovers of a broken
    # build. It is on the wall clock, 14 days out whatever the test clock says.
    wall = dt.datetime.now(dt.UTC) + dt.timedelta(days=14)
    async for chunk in export_db[CHUNKS].find({"file_id": "file-1"}, {"purge_at": 1}):
        assert abs(chunk["purge_at"] - wall) < dt.timedelta(minutes=1)


async def test_ttl_indexes_on_purge_at(store, export_db):
    for name in (FILES, CHUNKS):
        ttl = [ix async for ix in await export_db[name].list_indexes()
               if "expireAfterSeconds" in ix]
        assert [(dict(ix["key"]), ix["expireAfterSeconds"]) for ix in ttl] == [
            ({"purge_at": 1}, 0)
        ]


async def test_open_missing_is_none(store):
    assert await store.open("no-such-file") is None


async def test_expired_file_is_not_served(store, clock):
    expire_at = clock.now() + dt.timedelta(days=14)
    await store.save("file-old", "acct-1", _stream([b"zip bytes"]), expire_at=expire_at)
    assert await store.open("file-old") is not None
    clock.advance(dt.timedelta(days=14))
    assert await store.open("file-old") is None


async def test_delete_removes_file_and_chunks(store, export_db, clock):
    expire_at = clock.now() + dt.timedelta(days=14)
    await store.save("keep", "acct-1", _stream([os.urandom(1000)]), expire_at=expire_at)
    await store.save(
        "gone", "acct-1", _stream(_pieces(600_000, 70_000, b"x")), expire_at=expire_at
    )
    assert await export_db[CHUNKS].count_documents({"file_id": "gone"}) == 3

    await store.delete("gone")
    await store.delete("gone")  # twice is fine

    assert await store.open("gone") is None
    assert await export_db[CHUNKS].count_documents({"file_id": "gone"}) == 0
    assert await store.open("keep") is not None


async def test_save_again_replaces_a_half_written_file(store, export_db, clock):
    # A build that crashed left chunks and no file document; the retry writes over them.
    expire_at = clock.now() + dt.timedelta(days=14)

    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * 300_000
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        await store.save("retry", "acct-1", broken(), expire_at=expire_at)
    assert await store.open("retry") is None

    size = await store.save("retry", "acct-1", _stream([b"fresh"]), expire_at=expire_at)
    stored = await store.open("retry")
    assert size == 5 and stored is not None
    assert await _read_all(stored) == b"fresh"
    assert await export_db[CHUNKS].count_documents({"file_id": "retry"}) == 1
