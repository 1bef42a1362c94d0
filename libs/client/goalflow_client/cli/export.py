"""``goalflow export ...``: zipped CSV exports mailed with a signed link (export service)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import click

from goalflow_client.cli.errors import EXIT_FAILED, CliError
from goalflow_client.cli.output import (
    echo_fields,
    echo_json,
    echo_records,
    format_option,
    note,
)
from goalflow_client.cli.session import Session, read_pages, with_session
from goalflow_client.cli.values import DateType, show_date, show_time
from goalflow_common.pb.goals.v1 import export_pb2
from goalflow_common.protoconv import date_message

POLL_S = 0.5
MAX_PAGE = 200  # the largest page ListExports gives
FINAL = (export_pb2.EXPORT_STATE_MAILED, export_pb2.EXPORT_STATE_FAILED)


def _state(job: export_pb2.Export) -> str:
    return export_pb2.ExportState.Name(job.state).removeprefix("EXPORT_STATE_")


async def _wait(export: Any, job: export_pb2.Export) -> export_pb2.Export:
    """Poll GetExport until the job is MAILED or FAILED, noting each new state."""
    state = job.state
    while job.state not in FINAL:
        await asyncio.sleep(POLL_S)
        job = (await export.GetExport(export_pb2.GetExportRequest(export_id=job.id))).export
        if job.state != state:
            state = job.state
            note(f"export {job.id}: {_state(job)}")
    return job


def _show(job: export_pb2.Export, fmt: str) -> None:
    if fmt == "json":
        echo_json(job)
    else:
        echo_fields([
            ("id", job.id),
            ("state", _state(job)),
            ("goal", f"{job.goal_name} ({job.goal_id})"),
            ("dates", f"{show_date(job.start_date)} to {show_date(job.end_date)}"),
            ("recipient", job.recipient_email),
            ("rows", job.row_count),
            ("size", f"{job.size_bytes} bytes"),
            ("link", job.download_url),
            ("expires", show_time(job.link_expire_time)),
            ("mailed", show_time(job.mail_time)),
            ("error", job.error),
        ])
    if job.state == export_pb2.EXPORT_STATE_FAILED:
        raise CliError(f"export {job.id} failed: {job.error}", EXIT_FAILED)


@click.group()
def export() -> None:
    """Request conversion exports and follow them (export service)."""


@export.command("request")
@click.option("--goal", required=True, help="The goal to export.")
@click.option("--from", "start", type=DateType(), required=True,
              help="First day of conversion time, in the account's time zone.")
@click.option("--to", "end", type=DateType(), required=True, help="Last day, inclusive.")
@click.option("--email", required=True, help="Where the link is mailed.")
@click.option("--wait", is_flag=True, help="Wait until it is mailed (or failed) and show it.")
@format_option("table", "json")
@with_session
async def request_export(
    session: Session, goal: str, start: dt.date, end: dt.date, email: str, wait: bool,
    fmt: str,
) -> None:
    """Request an export of a goal's conversions; prints the export id.

    With --wait, prints the finished job (state, rows, size, link, expiry) after the id
    and exits 1 if it failed.
    """
    export_stub = session.export()
    job = (await export_stub.RequestExport(export_pb2.RequestExportRequest(
        goal_id=goal, start_date=date_message(start), end_date=date_message(end),
        recipient_email=email,
    ))).export
    if fmt == "table":
        click.echo(job.id)
    if wait:
        job = await _wait(export_stub, job)
    if wait or fmt == "json":
        _show(job, fmt)


@export.command("status")
@click.argument("export_id")
@click.option("--wait", is_flag=True, help="Wait until it is mailed (or failed).")
@format_option("table", "json")
@with_session
async def export_status(session: Session, export_id: str, wait: bool, fmt: str) -> None:
    """Show an export job: state, rows, size, link and expiry."""
    export_stub = session.export()
    job = (await export_stub.GetExport(export_pb2.GetExportRequest(export_id=export_id))).export
    if wait:
        job = await _wait(export_stub, job)
    _show(job, fmt)


@export.command("list")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="At most this many, newest first; 0 for all.")
@format_option("table", "json", "csv")
@with_session
async def list_exports(session: Session, limit: int, fmt: str) -> None:
    """List the account's export jobs, newest first (they expire after 14 days)."""
    exports, more = await read_pages(
        session.export().ListExports, export_pb2.ListExportsRequest(), "exports", limit, MAX_PAGE)
    found = export_pb2.ListExportsResponse(exports=exports, next_page_token=more)
    columns = ("id", "state", "goal", "dates", "recipient", "rows", "created")
    rows = [
        (job.id, _state(job), job.goal_name,
         f"{show_date(job.start_date)} to {show_date(job.end_date)}", job.recipient_email,
         job.row_count, show_time(job.create_time))
        for job in found.exports
    ]
    echo_records(fmt, columns, rows, lambda: found)
    if more:
        note(f"showing the newest {len(found.exports)}; more exports exist "
             "(--limit N for more, --limit 0 for all)")
