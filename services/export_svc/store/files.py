"""Stored export files (the ``FileStore`` protocol): the zip in the export database, one
document per chunk, in the ``export_files`` and ``export_chunks`` collections.

Not GridFS. This is the store's nx-27017 workaround
(tests/libs/common/test_mongo_conformance.py::test_gridfs_round_trip_with_dates shows the
gaps; tests/services/export_svc/store/test_files.py checks this layout on both servers):
against nx-27017 PyMongo's
``AsyncGridFSBucket`` stores ``uploadDate`` as a string, refuses a datetime inside
``metadata`` ("Object of type datetime is not JSON serializable") and mangles the compound
``(files_id, n)`` index into a field ``files_id_n``, so neither a TTL on the file nor an
indexed chunk read would work. The layout below is as simple and works on both nx-27017
and MongoDB:

- ``export_chunks``: ``{_id: "<file_id>:<n:06d>", file_id, n, data: bytes, purge_at}``,
  each written by insert as the stream arrives (so a file is never whole in memory) and
  read back one by one by ``_id``.
- ``export_files``: ``{_id: file_id, account_id, filename, size, chunks, expire_at,
  purge_at, created_at}``, written by whole-document replace after the last chunk: a file without
  this document is unfinished and invisible.

``expire_at`` is the logical expiry on the injected clock: ``open`` refuses a file past it.
Both collections also carry ``purge_at``, the same instant on the wall clock (equal to
``expire_at`` in production), under a TTL index, so files and leftovers of an interrupted
build vanish on their own. The TTL monitor only knows the wall clock: keyed on
``expire_at``, a file built under a test clock set in the past would be reaped at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from goalflow_common.clock import Clock, SystemClock
from goalflow_common.db import Database, aware_utc, eq

log = structlog.get_logger(__name__)

FILES = "export_files"
CHUNKS = "export_chunks"
CHUNK_BYTES = 255 * 1024


def _chunk_id(file_id: str, n: int) -> str:
    return f"{file_id}:{n:06d}"


@dataclass
class StoredFile:
    """A finished file. ``chunks()`` reads it from the database one chunk at a time."""

    file_id: str
    account_id: str
    filename: str
    size: int
    expire_at: dt.datetime
    chunk_count: int
    _store: MongoFileStore

    async def chunks(self) -> AsyncIterator[bytes]:
        for n in range(self.chunk_count):
            yield await self._store.read_chunk(self.file_id, n)


class MongoFileStore:
    """Export files in ``db``. ``clock`` decides when a file counts as expired before the
    TTL monitor (which runs about once a minute) has removed it."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._files = db[FILES]
        self._chunks = db[CHUNKS]
        self._clock = clock or SystemClock()
        self._chunk_bytes = chunk_bytes

    async def ensure_indexes(self) -> None:
        # purge_at is the absolute expiry, hence expireAfterSeconds=0.
        await self._files.create_index("purge_at", expireAfterSeconds=0)
        await self._chunks.create_index("purge_at", expireAfterSeconds=0)
        await self._chunks.create_index("file_id")

    async def save(
        self,
        file_id: str,
        account_id: str,
        chunks: AsyncIterator[bytes],
        *,
        expire_at: dt.datetime,
        filename: str = "export.zip",
    ) -> int:
        """Store the stream as ``file_id`` (replacing any earlier or half-written file of
        that id, e.g. from a build that crashed) and return its size in bytes."""
        await self.delete(file_id)
        purge_at = dt.datetime.now(dt.UTC) + (expire_at - self._clock.now())
        buffer = bytearray()
        size = 0
        count = 0

        async def put(data: bytes) -> None:
            nonlocal count
            await self._chunks.insert_one(
                {
                    "_id": _chunk_id(file_id, count),
                    "file_id": file_id,
                    "n": count,
                    "data": data,
                    "purge_at": purge_at,
                }
            )
            count += 1

        async for piece in chunks:
            size += len(piece)
            buffer += piece
            while len(buffer) >= self._chunk_bytes:
                await put(bytes(buffer[: self._chunk_bytes]))
                del buffer[: self._chunk_bytes]
        if buffer:
            await put(bytes(buffer))
        await self._files.replace_one(
            {"_id": eq(file_id)},
            {
                "_id": file_id,
                "account_id": account_id,
                "filename": filename,
                "size": size,
                "chunks": count,
                "expire_at": expire_at,
                "purge_at": purge_at,
                "created_at": self._clock.now(),
            },
            upsert=True,
        )
        log.info("export_file_saved", file_id=file_id, size=size, chunks=count)
        return size

    async def open(self, file_id: str) -> StoredFile | None:
        """The finished, unexpired file ``file_id``, or None."""
        doc = await self._files.find_one({"_id": eq(file_id)})
        if doc is None:
            return None
        expire_at = aware_utc(doc["expire_at"])
        if expire_at <= self._clock.now():
            return None
        return StoredFile(
            file_id=file_id,
            account_id=doc["account_id"],
            filename=doc["filename"],
            size=doc["size"],
            expire_at=expire_at,
            chunk_count=doc["chunks"],
            _store=self,
        )

    async def read_chunk(self, file_id: str, n: int) -> bytes:
        """Chunk ``n`` of the file; FileNotFoundError if it is gone (expired or deleted
        while being read)."""
        doc = await self._chunks.find_one({"_id": eq(_chunk_id(file_id, n))})
        if doc is None:
            raise FileNotFoundError(f"export file {file_id} lost chunk {n}")
        return bytes(doc["data"])

    async def delete(self, file_id: str) -> None:
        """Remove the file and its chunks; a missing file is not an error. The file document
        goes first so nobody opens a file whose chunks are being removed."""
        await self._files.delete_one({"_id": eq(file_id)})
        await self._chunks.delete_many({"file_id": eq(file_id)})
