"""A JSONL file of events read while it is sent: constant memory, bad lines set aside.

``EventFile`` is an async iterable of ``goals.v1.Event`` for ``EventProducer.send``. It
reads the file in chunks of lines in a worker thread (a pipe or FIFO may block; the event
loop keeps reading acknowledgements meanwhile), so sending starts with the first chunk and
memory stays bounded by the producer's window, whatever the file's size (a 190 MB file
read whole took 68 s and 1.1 GB before the first batch went out). ``.gz`` files are
decompressed on the fly.

A line that is not valid UTF-8 or not a ``goals.v1.Event`` in proto3 JSON is not sent:
its number and reason are kept (the first ``KEPT_BAD_LINES``) and counted, and sending
goes on. ``bytes_read`` is the offset in the file as stored (compressed for ``.gz``), for
a progress bar against the file's size. Blank lines are skipped but keep their number.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from google.protobuf import json_format

from goalflow_common.pb.goals.v1 import tracker_pb2

KEPT_BAD_LINES = 20
LINES_PER_READ = 250  # lines parsed per hop to the worker thread


@dataclass(frozen=True)
class BadLine:
    number: int
    reason: str


class EventFile:
    """Iterate once; ``line_of(index)`` is the line number of the index-th event yielded
    that is not yet forgotten (``forget`` drops the oldest, once acknowledged)."""

    def __init__(self, path: Path, on_read: Callable[[int], None] | None = None) -> None:
        """``on_read(bytes_read)`` is called after each chunk is read."""
        self.path = path
        self.bad_lines: list[BadLine] = []
        self.bad_line_count = 0
        self.bytes_read = 0
        self._on_read = on_read
        self._lines: deque[int] = deque()  # line numbers of yielded, unforgotten events
        self._forgotten = 0

    def line_of(self, index: int) -> int:
        return self._lines[index - self._forgotten]

    def forget(self, count: int) -> None:
        for _ in range(count):
            self._lines.popleft()
        self._forgotten += count

    async def __aiter__(self) -> AsyncIterator[tracker_pb2.Event]:
        raw = await asyncio.to_thread(self.path.open, "rb")
        try:
            packed = self.path.suffix == ".gz"
            lines: BinaryIO = gzip.GzipFile(fileobj=raw) if packed else raw
            numbered = enumerate(lines, start=1)
            while True:
                chunk, more = await asyncio.to_thread(self._read_chunk, numbered, raw, packed)
                if self._on_read is not None:
                    self._on_read(self.bytes_read)
                for number, event in chunk:
                    self._lines.append(number)
                    yield event
                if not more:
                    return
        finally:
            raw.close()

    def _read_chunk(self, numbered: Iterator[tuple[int, bytes]], raw: BinaryIO, packed: bool
                    ) -> tuple[list[tuple[int, tracker_pb2.Event]], bool]:
        """The events of the next LINES_PER_READ lines, and whether lines may remain.
        Runs in a worker thread."""
        chunk: list[tuple[int, tracker_pb2.Event]] = []
        lines = 0
        for number, line in itertools.islice(numbered, LINES_PER_READ):
            lines += 1
            if not packed:
                self.bytes_read += len(line)
            event = self._parse(number, line)
            if event is not None:
                chunk.append((number, event))
        if packed:
            # The compressed offset; a pipe has none (and no size to compare it with).
            with contextlib.suppress(OSError):
                self.bytes_read = raw.tell()
        return chunk, lines == LINES_PER_READ

    def _parse(self, number: int, line: bytes) -> tracker_pb2.Event | None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._bad(number, f"invalid UTF-8 at byte {exc.start + 1} of the line")
            return None
        if not text.strip():
            return None
        try:
            return json_format.Parse(text.rstrip("\r\n"), tracker_pb2.Event())
        except json_format.ParseError as exc:
            # protobuf's messages may span lines (available fields): keep the first.
            self._bad(number, str(exc).strip().splitlines()[0])
            return None

    def _bad(self, number: int, reason: str) -> None:
        self.bad_line_count += 1
        if len(self.bad_lines) < KEPT_BAD_LINES:
            self.bad_lines.append(BadLine(number, reason))
