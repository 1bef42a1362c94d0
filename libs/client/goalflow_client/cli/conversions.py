"""``goalflow conversions ...``: recorded conversions, live or listed (tracker)."""

from __future__ import annotations

import datetime as dt

import click

from goalflow_client.cli.errors import EXIT_UNAVAILABLE, CliError, failing_as
from goalflow_client.cli.output import (
    echo_json_line,
    echo_records,
    format_option,
    note,
)
from goalflow_client.cli.session import Session, read_pages, with_session
from goalflow_client.cli.values import (
    TimeType,
    enum_label,
    show_money,
    show_time,
    time_bound,
)
from goalflow_common.pb.goals.v1 import tracker_pb2
from goalflow_common.protoconv import timestamp

MAX_PAGE = 500  # the largest page ListConversions gives

COLUMNS = ("time", "goal_id", "goal", "conversation", "end_user", "agents", "value",
           "channel", "skill", "url")


def _row(conversion: tracker_pb2.Conversion) -> tuple[str, ...]:
    return (
        show_time(conversion.conversion_time), conversion.goal_id, conversion.goal_name,
        conversion.conversation_id, conversion.end_user_id,
        " ".join(credit.agent.id for credit in conversion.credits),
        show_money(conversion.transaction_value),
        enum_label(tracker_pb2.Channel, conversion.channel), conversion.skill, conversion.url,
    )


@click.group()
def conversions() -> None:
    """Follow and list recorded conversions (tracker)."""


@conversions.command("tail")
@click.option("--conversation", help="Follow this conversation.")
@click.option("--agent", help="Follow the conversions crediting this agent.")
@click.option("--count", type=click.IntRange(min=1), help="Exit after this many conversions.")
@format_option("table", "json")
@with_session
async def tail(
    session: Session, conversation: str | None, agent: str | None, count: int | None, fmt: str
) -> None:
    """Print each new conversion of a conversation or an agent as it is recorded.

    Says on stderr when the subscription is live; runs until Ctrl-C or --count. With
    --format json, one Conversion per line (JSON Lines).
    """
    if (conversation is None) == (agent is None):
        raise click.UsageError("give exactly one of --conversation or --agent")
    if conversation is not None:
        request = tracker_pb2.SubscribeConversionsRequest(conversation_id=conversation)
        target = f"conversation {conversation}"
    else:
        request = tracker_pb2.SubscribeConversionsRequest(agent_id=agent)
        target = f"agent {agent}"
    from goalflow_common.client import SUBSCRIBED_KEY  # a slow import: see Session.key

    address = session.options.tracker_address
    call = session.tracker().SubscribeConversions(request)
    seen = 0
    with failing_as(f"SubscribeConversions at {address}"):
        metadata = await call.initial_metadata()
        if SUBSCRIBED_KEY not in dict(metadata or ()):
            # A refused or failed call: its status says why (raised by the read).
            await call.read()
            raise CliError(f"SubscribeConversions at {address}: the tracker ended the "
                           "subscription before it was live (shutting down?)",
                           EXIT_UNAVAILABLE)
        note(f"following conversions of {target} (Ctrl-C stops)")
        async for reply in call:
            if fmt == "json":
                echo_json_line(reply.conversion)
            else:
                click.echo("  ".join(value for value in _row(reply.conversion) if value))
            seen += 1
            if count is not None and seen >= count:
                call.cancel()
                return
    note("the tracker ended the subscription")


@conversions.command("list")
@click.option("--goal", help="Only this goal's conversions.")
@click.option("--conversation", help="Only this conversation's conversions.")
@click.option("--agent", help="Only conversions crediting this agent.")
@click.option("--from", "start", type=TimeType(),
              help="Conversion time from (a date is its midnight UTC; a time without an "
                   "offset is UTC).")
@click.option("--to", "end", type=TimeType(),
              help="Conversion time until, exclusive (a date covers that whole day).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="At most this many, newest first; 0 for all.")
@format_option("table", "json", "csv")
@with_session
async def list_conversions(
    session: Session, goal: str | None, conversation: str | None, agent: str | None,
    start: dt.date | None, end: dt.date | None, limit: int, fmt: str,
) -> None:
    """List recorded conversions, newest first."""
    request = tracker_pb2.ListConversionsRequest(
        goal_id=goal or "", conversation_id=conversation or "", agent_id=agent or ""
    )
    if start is not None:
        request.start_time.CopyFrom(timestamp(time_bound(start, end=False)))
    if end is not None:
        request.end_time.CopyFrom(timestamp(time_bound(end, end=True)))
    conversions, more = await read_pages(
        session.tracker().ListConversions, request, "conversions", limit, MAX_PAGE)
    # JSON carries the token too, so a script can go on where this stopped.
    found = tracker_pb2.ListConversionsResponse(conversions=conversions, next_page_token=more)
    echo_records(fmt, COLUMNS, [_row(c) for c in found.conversions], lambda: found)
    if more:
        note(f"showing the newest {len(found.conversions)}; more conversions match "
             "(--limit N for more, --limit 0 for all)")
