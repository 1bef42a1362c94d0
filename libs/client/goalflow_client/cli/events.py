"""``goalflow events send``: replay a JSONL file of events into the tracker."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import click
import grpc
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from goalflow_client.cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    CliError,
    exit_code_for,
)
from goalflow_client.cli.eventfile import EventFile
from goalflow_client.cli.output import note, stderr_console
from goalflow_client.cli.session import Session, with_session

if TYPE_CHECKING:
    from goalflow_client.producer import IngestSummary, Rejection

KEPT_REJECTIONS = 20  # listed by line; the rest are counted


@click.group()
def events() -> None:
    """Send events to the tracker."""


class _Progress:
    """A bar on stderr: bytes read of the file's size (a pipe has none) and events
    acknowledged, shown from the first read."""

    def __init__(self, size: int | None, shown: bool) -> None:
        self.acknowledged = 0
        self._bar = None
        if shown:
            self._bar = Progress(
                TextColumn("sending"), BarColumn(), DownloadColumn(),
                TextColumn("{task.fields[acked]} events acknowledged"), TimeElapsedColumn(),
                console=stderr_console(),
            )
            self._task = self._bar.add_task("file", total=size or None, acked=0)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def read(self, bytes_read: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=bytes_read)

    def acked(self, events: int) -> None:
        self.acknowledged += events
        if self._bar is not None:
            self._bar.update(self._task, acked=f"{self.acknowledged:,}")


@events.command("send")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", type=click.IntRange(1, 1000), default=250, show_default=True,
              help="Events per IngestEvents batch.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar on stderr.")
@with_session
async def send(session: Session, file: Path, batch_size: int, progress: bool) -> None:
    """Stream a JSONL file of events (one goals.v1.Event in proto3 JSON per line; .gz too).

    Sending starts at once and the file is never held in memory. A line that is not an
    event is not sent: the first 20 such lines are listed with their number and reason,
    the rest counted, and the command exits 3. Prints "accepted N, duplicates N, rejected N,
    conversions N" and lists each event the tracker rejected by line number; exits 1 if
    any was rejected. Interrupted, it says how many events were acknowledged: sending the
    file again is safe (events already stored count as duplicates).
    """
    summary, source, rejected = await _stream(session, file, batch_size, progress)
    _report_problems(summary, source, rejected)
    click.echo(f"accepted {summary.accepted}, duplicates {summary.duplicates}, "
               f"rejected {len(summary.rejected)}, conversions {summary.conversions}")
    failures = []
    if source.bad_line_count:
        failures.append(f"{source.bad_line_count} lines of {file} are not events (not sent)")
    if summary.rejected:
        failures.append(f"{len(summary.rejected)} of {summary.events} events rejected")
    if failures:
        # A broken file is refused input (3), even though its good lines went out.
        raise CliError("; ".join(failures),
                       EXIT_REFUSED if source.bad_line_count else EXIT_FAILED)


async def _stream(
    session: Session, file: Path, batch_size: int, progress: bool
) -> tuple[IngestSummary, EventFile, list[tuple[int, Rejection]]]:
    """Send the file through an EventProducer, with the progress bar if asked. Returns the
    summary, the file as read (its bad lines) and the first KEPT_REJECTIONS rejections
    with their line numbers. A failure to send or read, or Ctrl-C, is a CliError."""
    from goalflow_client.producer import EventProducer, ProducerError

    address = session.options.tracker_address
    info = await asyncio.to_thread(file.stat)
    size = info.st_size if stat.S_ISREG(info.st_mode) else None  # a FIFO has none
    rejected: list[tuple[int, Rejection]] = []  # (line, rejection), the first KEPT only
    with _Progress(size, progress) as shown:
        source = EventFile(file, on_read=shown.read)

        def on_rejected(rejection: Rejection) -> None:
            if len(rejected) < KEPT_REJECTIONS:
                rejected.append((source.line_of(rejection.index), rejection))

        def on_ack(ack: object, sent: int) -> None:
            source.forget(sent)
            shown.acked(sent)

        producer = EventProducer(address, session.key, batch_size=batch_size,
                                 credentials=session.credentials)
        try:
            summary = await producer.send(source, on_ack=on_ack, on_rejected=on_rejected)
        except ProducerError as exc:
            raise CliError(f"IngestEvents at {address}: {_one_line(exc)}",
                           exit_code_for(exc.code)) from None
        except (OSError, EOFError) as exc:  # unreadable, or a broken .gz
            raise CliError(f"{file}: {exc}", EXIT_REFUSED) from None
        except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this task
            raise CliError(
                f"interrupted: {shown.acknowledged} events of {file} were acknowledged; "
                "sending the whole file again is safe (events already stored count as "
                "duplicates)", EXIT_INTERRUPTED,
            ) from None
        finally:
            await producer.close()
    return summary, source, rejected


def _report_problems(
    summary: IngestSummary, source: EventFile, rejected: list[tuple[int, Rejection]]
) -> None:
    """Notes on stderr: rejected events by line, lines not sent, events stored without
    attribution, reconnects."""
    for line, rejection in rejected:
        note(f"rejected line {line} (event {rejection.event_id or '-'}): "
             f"{rejection.field}: {rejection.reason}")
    if len(summary.rejected) > len(rejected):
        note(f"... and {len(summary.rejected) - len(rejected)} more rejected events")
    for bad in source.bad_lines:
        note(f"line {bad.number} not sent: {bad.reason}")
    if source.bad_line_count > len(source.bad_lines):
        note(f"... and {source.bad_line_count - len(source.bad_lines)} more lines not sent")
    if summary.unsupported_channel:
        note(f"{summary.unsupported_channel} events stored without attribution "
             "(third-party bot or Unity SDK channel)")
    if summary.reconnects:
        note(f"reconnected {summary.reconnects} times; {summary.resent_batches} batches resent")


def _one_line(exc: Exception) -> str:
    """A producer failure in one line: a gRPC error as its status and first line of detail
    (the error's own text is a multi-line dump)."""
    cause = exc.__cause__
    if isinstance(cause, grpc.RpcError) and callable(getattr(cause, "code", None)):
        details = ((cause.details() or "").strip().splitlines() or ["(no details)"])[0]
        status = f"{cause.code().name}: {details}"
        return status if getattr(exc, "code", None) else f"gave up reconnecting: {status}"
    return str(exc).strip().splitlines()[0]
