"""A JSONL file of events read while it is sent: constant memory, bad lines set aside.

``EventFile`` is an async iterable of ``goals.v1.Event`` for ``EventProducer.send``. A
thread reads the file a chunk at a time, at most two chunks ahead (a pipe or FIFO may
block; the event loop keeps reading acknowledgements meanwhile), so sending starts with the
first chunk and memory stays bounded whatever the file's size (a 190 MB file read whole
took 68 s and 1.1 GB before the first batch went out). ``.gz`` is decompressed on the fly.

A line that is not valid UTF-8 or not a ``goals.v1.Event`` in proto3 JSON is not sent:
its number and reason are kept (the first ``KEPT_BAD_LINES``) and counted, and sending
goes on. ``bytes_read`` is the offset in the file as stored (compressed for ``.gz``), for
a progress bar against the file's size. Blank lines are skipped but keep their number.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gzip
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from google.protobuf import json_format

from goalflow_common.pb.goals.v1 import tracker_pb2

KEPT_BAD_LINES = 20
READ_BYTES = 1 << 16  # per hop to the worker thread: about 150 events of 400 bytes


class _Lines:
    """Splits reads into numbered lines, keeping a line that is not yet complete."""

    def __init__(self) -> None:
        self._partial = b""
        self._number = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        *whole, self._partial = (self._partial + data).split(b"\n")
        return self._numbered(whole)

    def finish(self) -> list[tuple[int, bytes]]:
        last, self._partial = self._partial, b""
        return self._numbered([last] if last else [])

    def _numbered(self, lines: list[bytes]) -> list[tuple[int, bytes]]:
        first = self._number + 1
        self._number += len(lines)
        return list(enumerate(lines, start=first))


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
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[Any, int]] = asyncio.Queue(maxsize=2)
        stop = threading.Event()
        threading.Thread(target=self._read_all, args=(loop, chunks, stop), daemon=True,
                         name="goalflow-events-file").start()
        try:
            while True:
                chunk, bytes_read = await chunks.get()
                if isinstance(chunk, BaseException):
                    raise chunk
                self.bytes_read = bytes_read  # only here: the thread counts its own offset
                if self._on_read is not None:
                    self._on_read(bytes_read)
                if chunk is None:
                    return
                for number, event in chunk:
                    self._lines.append(number)
                    yield event
        finally:
            stop.set()
            while not chunks.empty():  # a reader waiting for room takes its leave
                chunks.get_nowait()

    def _read_all(self, loop: asyncio.AbstractEventLoop,
                  chunks: asyncio.Queue[tuple[Any, int]], stop: threading.Event) -> None:
        """The reader thread: puts each chunk of events with the offset after it, then
        None (or the error). A daemon thread rather than the loop's executor, whose shutdown
        waits for a read blocked on a pipe whose writer stalls: Ctrl-C must end the command
        at once. It ends quietly once nobody reads (``stop``, the put cancelled, the loop
        gone): Ctrl-C printed its traceback above the command's own message."""
        offset = 0

        def put(item: Any) -> bool:
            """False once nobody reads any more."""
            if stop.is_set():
                return False
            try:
                asyncio.run_coroutine_threadsafe(chunks.put((item, offset)), loop).result()
            except (RuntimeError, concurrent.futures.CancelledError):  # loop gone/stopping
                return False
            return not stop.is_set()

        try:
            with self.path.open("rb") as raw:
                stream: BinaryIO = gzip.GzipFile(fileobj=raw) if self.path.suffix == ".gz" else raw
                reading = _Lines()
                more = True
                while more:
                    chunk, more, offset = self._read_chunk(stream, raw, reading, offset)
                    if not put(chunk):
                        return
        except (OSError, EOFError) as exc:  # unreadable, or a broken .gz
            put(exc)
            return
        put(None)

    def _read_chunk(self, stream: BinaryIO, raw: BinaryIO, reading: _Lines, offset: int
                    ) -> tuple[list[tuple[int, tracker_pb2.Event]], bool, int]:
        """The events of the whole lines in the next read, whether the file goes on, and
        the offset after the read. ``read1`` returns what one read gives: from a pipe, what
        the writer has written so far, so its lines are sent without waiting for more."""
        data = stream.read1(READ_BYTES)
        if stream is not raw:
            # The compressed offset; a pipe has none (and no size to compare it with).
            with contextlib.suppress(OSError):
                offset = raw.tell()
        else:
            offset += len(data)
        lines = reading.feed(data) if data else reading.finish()
        chunk = []
        for number, line in lines:
            event = self._parse(number, line)
            if event is not None:
                chunk.append((number, event))
        return chunk, bool(data), offset

    def _parse(self, number: int, line: bytes) -> tracker_pb2.Event | None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._bad(number, f"invalid UTF-8 at byte {exc.start + 1} of the line")
            return None
        if not text.strip():
            return None
        try:
            return json_format.Parse(text.rstrip("\r"), tracker_pb2.Event())
        except json_format.ParseError as exc:
            # protobuf's messages may span lines (available fields): keep the first.
            self._bad(number, str(exc).strip().splitlines()[0])
            return None

    def _bad(self, number: int, reason: str) -> None:
        self.bad_line_count += 1
        if len(self.bad_lines) < KEPT_BAD_LINES:
            self.bad_lines.append(BadLine(number, reason))
