"""``EventFile``, the ``events send`` source, reading real files: the offset it reports
(for the progress bar) reaches the file's size, plain and gzipped."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
from pathlib import Path

import pytest
from google.protobuf import json_format

from goalflow_client.cli.eventfile import READ_BYTES, EventFile
from tests.services.tracker_svc.builders import message

EVENTS = 15_000  # about 3.2 MB: some fifty reads


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
async def test_bytes_read_reaches_the_file_size(tmp_path: Path, name: str):
    """Before, the event loop overwrote the offset the reader thread was adding to with an
    older one whenever the thread was ahead (the consumer slower than the reads): a 3.3 MB
    file ended its progress bar at 1.2 MB."""
    at = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
    text = "".join(
        json_format.MessageToJson(message(f"c{n // 10}", at, "a1", event_id=f"e{n}"),
                                  indent=None) + "\n"
        for n in range(EVENTS)
    ).encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(text) if name.endswith(".gz") else text)
    size = path.stat().st_size
    assert size > 10 * READ_BYTES or name.endswith(".gz")
    seen: list[int] = []
    source = EventFile(path, on_read=seen.append)
    ids = []
    async for event in source:  # as slowly as a producer waiting for acknowledgements
        ids.append(event.event_id)
        if len(ids) % 500 == 0:
            await asyncio.sleep(0.01)
    assert ids == [f"e{n}" for n in range(EVENTS)]
    assert (source.bytes_read, seen[-1]) == (size, size)
    assert seen == sorted(seen)  # the bar never goes back
