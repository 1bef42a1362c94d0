"""The zipped CSV stream: readable by zipfile and csv, bounded in memory."""

from __future__ import annotations

import csv
import hashlib
import io
import tracemalloc
import zipfile
from collections.abc import AsyncIterator

from export_svc.domain.csv_rows import HEADERS
from export_svc.domain.zipstream import ZipStats, zip_csv


async def _aiter(rows: list[list[str]]) -> AsyncIterator[list[str]]:
    for row in rows:
        yield row


def _read_entry(data: bytes, name: str) -> tuple[bytes, list[list[str]]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == [name]
        assert archive.getinfo(name).compress_type == zipfile.ZIP_DEFLATED
        assert archive.testzip() is None  # every CRC checks out
        raw = archive.read(name)
    text = raw.decode("utf-8-sig")
    return raw, list(csv.reader(io.StringIO(text, newline="")))


async def test_zip_opens_and_parses_back_into_exactly_the_rows():
    rows = [
        ["2026-05-03T09:15:30Z", "g1", "Café, \"deluxe\"", "a1", "Ana Núñez", "ana@x.io",
         "t1", "100.00 USD", "5", "60"],
        ["2026-05-03T09:16:00Z", "g1", "multi\nline", "a2", "Bob", "", "t2", "", "Unoffered",
         "0"],
        ["2026-05-03T09:17:00Z", "g1", "'=safe", "a3", "Zoë", "z@x.io", "t3", "1.5 EUR", "3",
         "7"],
    ]
    stats = ZipStats()
    chunks = [c async for c in zip_csv(_aiter(rows), entry_name="export.csv", stats=stats)]
    data = b"".join(chunks)

    raw, parsed = _read_entry(data, "export.csv")
    assert parsed == [HEADERS, *rows]
    assert raw.startswith(b"\xef\xbb\xbfTimestamp,")  # UTF-8 BOM, then the header
    assert raw.endswith(b"\r\n") and raw.count(b"\r\n") == 4  # header + 3 rows, CRLF
    assert raw.split(b"\r\n")[1].startswith(b"2026-05-03T09:15:30Z,g1,\"Caf\xc3\xa9, ")
    assert stats.rows == 3
    assert stats.bytes == len(data)


async def test_empty_export_still_has_the_header():
    stats = ZipStats()
    data = b"".join([c async for c in zip_csv(_aiter([]), entry_name="e.csv", stats=stats)])
    raw, parsed = _read_entry(data, "e.csv")
    assert parsed == [HEADERS]
    assert raw == ("\ufeff" + ",".join(HEADERS) + "\r\n").encode("utf-8")
    assert stats.rows == 0 and stats.bytes == len(data)


def _row(i: int) -> list[str]:
    # Hex digests compress poorly, so the zip stays large and memory can be compared to it.
    digest = hashlib.sha256(str(i).encode()).hexdigest()
    return [
        f"2026-05-03T09:{i % 60:02d}:00Z", "goal-1", "Checkout", f"ag-{digest[:12]}",
        f"Agent {digest[12:30]}", f"{digest[30:44]}@example.com", f"conv-{digest[44:]}",
        f"{i % 1000}.00 USD", "Unoffered", str(i % 3600),
    ]


async def test_200k_rows_stream_in_bounded_memory(tmp_path):
    count = 200_000

    async def rows() -> AsyncIterator[list[str]]:
        for i in range(count):
            yield _row(i)

    path = tmp_path / "big.zip"
    stats = ZipStats()
    largest_chunk = 0
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with path.open("wb") as out:
            async for chunk in zip_csv(
                rows(), entry_name="big.csv", chunk_bytes=256 * 1024, stats=stats
            ):
                largest_chunk = max(largest_chunk, len(chunk))
                out.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    size = path.stat().st_size
    assert stats.rows == count and stats.bytes == size
    assert size > 8 * 1024 * 1024, "the test needs an output much larger than the bound"
    assert peak < 3 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte zip"
    assert largest_chunk < 2 * 256 * 1024

    # The file is whole: it opens, and the CSV holds every row in order.
    with zipfile.ZipFile(path) as archive, archive.open("big.csv") as entry:
        reader = csv.reader(io.TextIOWrapper(entry, encoding="utf-8-sig", newline=""))
        assert next(reader) == HEADERS
        seen = 0
        for i, parsed in enumerate(reader):
            if i % 9973 == 0:
                assert parsed == _row(i)
            seen += 1
    assert seen == count
