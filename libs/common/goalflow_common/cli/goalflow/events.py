"""``goalflow events send``: replay a JSONL file of events into the tracker."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from goalflow_common.cli.goalflow.errors import EXIT_FAILED, EXIT_REFUSED, CliError, exit_code_for
from goalflow_common.cli.goalflow.output import note, stderr_console
from goalflow_common.cli.goalflow.session import Session, with_session


@click.group()
def events() -> None:
    """Send events to the tracker."""


@contextlib.contextmanager
def _progress(total: int, shown: bool) -> Iterator[Callable[[int], None]]:
    """A bar on stderr; yields ``advance(events)``."""
    if not shown:
        yield lambda n: None
        return
    bar = Progress(
        TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TextColumn("events"),
        TimeElapsedColumn(), console=stderr_console(),
    )
    task = bar.add_task("events", total=total)
    with bar:
        yield lambda n: bar.advance(task, n)


@events.command("send")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", type=click.IntRange(1, 1000), default=250, show_default=True,
              help="Events per IngestEvents batch.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar on stderr.")
@with_session
async def send(session: Session, file: Path, batch_size: int, progress: bool) -> None:
    """Stream a JSONL file of events (one goals.v1.Event in proto3 JSON per line).

    The whole file is read before anything is sent, so a broken line sends nothing.
    Prints "accepted N, duplicates N, rejected N, conversions N" and lists each rejected
    event by line number; exits 1 if any was rejected.
    """
    from goalflow_common.producer import EventProducer, ProducerError, read_jsonl_events

    try:
        numbered = list(read_jsonl_events(file))
    except (ValueError, OSError) as exc:
        raise CliError(f"{file}: {exc}", EXIT_REFUSED) from None
    address = session.options.tracker_address
    producer = EventProducer(address, session.key, batch_size=batch_size,
                             credentials=session.credentials)
    try:
        with _progress(len(numbered), progress) as advance:
            summary = await producer.send(
                (event for _, event in numbered), on_ack=lambda ack, sent: advance(sent)
            )
    except ProducerError as exc:
        # Without a status the tracker stayed unreachable through every reconnect.
        raise CliError(f"IngestEvents at {address}: {exc}", exit_code_for(exc.code)) from None
    finally:
        await producer.close()
    for rejection in sorted(summary.rejected, key=lambda r: r.index):
        line = numbered[rejection.index][0]
        note(f"rejected line {line} (event {rejection.event_id or '-'}): "
             f"{rejection.field}: {rejection.reason}")
    if summary.unsupported_channel:
        note(f"{summary.unsupported_channel} events stored without attribution "
             "(third-party bot or Unity SDK channel)")
    if summary.reconnects:
        note(f"reconnected {summary.reconnects} times; {summary.resent_batches} batches resent")
    click.echo(f"accepted {summary.accepted}, duplicates {summary.duplicates}, "
               f"rejected {len(summary.rejected)}, conversions {summary.conversions}")
    if summary.rejected:
        raise CliError(f"{len(summary.rejected)} of {summary.events} events rejected",
                       EXIT_FAILED)
