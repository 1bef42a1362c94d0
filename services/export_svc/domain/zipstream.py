"""A CSV written into one deflated zip entry while it streams, in bounded memory.

The CSV: ``csv`` module, QUOTE_MINIMAL, ``\\r\\n`` line endings (RFC 4180), UTF-8 with a
byte-order mark. Excel decodes a BOM-less CSV in the machine's legacy code page and mangles
accented names; with the BOM it reads UTF-8, and other tools skip the BOM.

The zip: ``zipfile`` writing to a write-only, non-seekable sink, so it cannot go back to
patch sizes into the local header; it writes them after the data in a data descriptor
instead, and ``force_zip64`` makes those sizes 64-bit so an export may exceed 4 GiB.
Bytes are handed out as soon as ``chunk_bytes`` have built up: memory holds at most about
one chunk plus zlib's window, whatever the row count.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import IO

from export_svc.domain.csv_rows import HEADERS

BOM = "\ufeff"
# Rows are encoded and fed to the compressor in batches: one zlib call per row costs more
# than the rows themselves.
_ROWS_PER_WRITE = 512


@dataclass
class ZipStats:
    """Filled in as the zip streams: data rows written (header excluded) and zip bytes
    yielded so far. Final once the stream is exhausted."""

    rows: int = 0
    bytes: int = 0


class _Sink:
    """A write-only, non-seekable file object that keeps what is written until taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.pending = 0

    def write(self, data: bytes) -> int:
        if data:
            self._parts.append(bytes(data))
            self.pending += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.pending = 0
        return data


async def zip_csv(
    rows: AsyncIterator[list[str]],
    *,
    entry_name: str,
    chunk_bytes: int = 256 * 1024,
    headers: Iterable[str] = HEADERS,
    stats: ZipStats | None = None,
    compresslevel: int = 6,
) -> AsyncIterator[bytes]:
    """The zip file's bytes, in chunks of about ``chunk_bytes`` (the last may be smaller),
    holding one entry ``entry_name``: the CSV of ``headers`` then ``rows``. Pass ``stats``
    to learn the row count and size."""
    stats = stats if stats is not None else ZipStats()
    sink = _Sink()
    text = io.StringIO()
    writer = csv.writer(text, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")

    def drain_text(entry: IO[bytes]) -> None:
        entry.write(text.getvalue().encode("utf-8"))
        text.seek(0)
        text.truncate()

    def take() -> bytes:
        data = sink.take()
        stats.bytes += len(data)
        return data

    with zipfile.ZipFile(
        sink, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
    ) as archive:
        with archive.open(entry_name, mode="w", force_zip64=True) as entry:
            text.write(BOM)
            writer.writerow(list(headers))
            batched = 0
            async for row in rows:
                writer.writerow(row)
                stats.rows += 1
                batched += 1
                if batched >= _ROWS_PER_WRITE:
                    batched = 0
                    drain_text(entry)
                    if sink.pending >= chunk_bytes:
                        yield take()
            drain_text(entry)
        # Closing the entry wrote its data descriptor; closing the archive writes the
        # central directory. Both land in the sink and go out below.
    while sink.pending:
        data = take()
        for start in range(0, len(data), chunk_bytes):
            yield data[start : start + chunk_bytes]
