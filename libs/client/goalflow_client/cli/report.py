"""``goalflow report``: the tracker's GetReport as a table, CSV or JSON."""

from __future__ import annotations

import datetime as dt

import click

from goalflow_client.cli.output import echo_records, format_option
from goalflow_client.cli.session import Session, with_session
from goalflow_client.cli.values import (
    DateType,
    EnumChoice,
    UtcOffsetType,
    enum_label,
    offset_label,
    show_moneys,
    show_seconds,
)
from goalflow_common.pb.goals.v1 import tracker_pb2
from goalflow_common.protoconv import date_message

DEFAULT_DAYS = 30

METRICS = ("conversions", "transaction_values", "lead_values", "agent_messages",
           "agent_responses", "time_assigned")


def _metrics(metrics: tracker_pb2.ReportMetrics, *, readable: bool) -> tuple:
    assigned = metrics.time_assigned_seconds
    return (
        metrics.conversions, show_moneys(metrics.transaction_values),
        show_moneys(metrics.lead_values), metrics.agent_messages, metrics.agent_responses,
        show_seconds(assigned) if readable else assigned,
    )


@click.command()
@click.option("--from", "start", type=DateType(),
              help=f"First day of conversation open time (default: {DEFAULT_DAYS - 1} days "
                   "before --to).")
@click.option("--to", "end", type=DateType(),
              help="Last day, inclusive (default: today at --utc-offset).")
@click.option("--by", "group_by", type=EnumChoice(tracker_pb2.ReportGrouping),
              default="agent", show_default=True, help="How rows are grouped.")
@click.option("--utc-offset", type=UtcOffsetType(), default="+00:00", show_default=True,
              help="Offset the dates and day/hour buckets are read in.")
@click.option("--goal", "goals", multiple=True, help="Only this goal (repeatable).")
@click.option("--skill", "skills", multiple=True, help="Only this skill (repeatable).")
@click.option("--group", "groups", multiple=True, help="Only this agent group (repeatable).")
@click.option("--agent", "agents", multiple=True, help="Only this agent (repeatable).")
@format_option("table", "csv", "json")
@with_session
async def report(
    session: Session, start: dt.date | None, end: dt.date | None, group_by: str,
    utc_offset: int, goals: tuple[str, ...], skills: tuple[str, ...],
    groups: tuple[str, ...], agents: tuple[str, ...], fmt: str,
) -> None:
    """Report conversions and agent activity over a date range, grouped by --by.

    Covers the conversions whose conversation opened in the range. The table ends with
    the account totals (each conversion once); CSV has one line per row, JSON is the
    GetReportResponse with its totals.
    """
    if end is None:
        end = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=utc_offset)).date()
    if start is None:
        start = end - dt.timedelta(days=DEFAULT_DAYS - 1)
    reply = await session.tracker().GetReport(tracker_pb2.GetReportRequest(
        start_date=date_message(start), end_date=date_message(end),
        utc_offset_minutes=utc_offset, group_by=group_by, goal_ids=goals, skills=skills,
        group_ids=groups, agent_ids=agents,
    ))
    grouping = enum_label(tracker_pb2.ReportGrouping, tracker_pb2.ReportGrouping.Value(group_by))
    readable = fmt == "table"
    rows = [(row.key, row.label, *_metrics(row.metrics, readable=readable))
            for row in reply.rows]
    echo_records(
        fmt, (grouping.replace("-", "_"), "label", *METRICS), rows, lambda: reply,
        title=f"Conversions by {grouping}, {start} to {end} ({offset_label(utc_offset)})",
        totals=("total", "", *_metrics(reply.totals, readable=True)),
    )
