"""``goalflow goals simulate``: config's SimulateGoal, a what-if over stored history.

A progress bar on stderr follows the stream's progress messages (events read of the
range's total, conversions so far per model); the result is a table of the three models
side by side (conversions, values per currency, the top agents), or with ``--format json``
the SimulationResult."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click
from google.protobuf import field_mask_pb2
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from goalflow_client.cli.errors import failing_as
from goalflow_client.cli.goals import _parse, _read_file
from goalflow_client.cli.output import echo_json, echo_table, note, stderr_console
from goalflow_client.cli.session import Session, with_session
from goalflow_client.cli.values import DateType, enum_label, show_moneys
from goalflow_common.pb.goals.v1 import config_pb2
from goalflow_common.protoconv import date_message


class _Bar:
    """The progress bar on stderr (none when not ``shown``), from the first progress
    message: a refused request shows none."""

    def __init__(self, shown: bool) -> None:
        self._bar: Progress | None = None
        self._started = False
        if shown:
            self._bar = Progress(
                TextColumn("simulating"), BarColumn(), MofNCompleteColumn(),
                TextColumn("events, conversions {task.fields[conversions]}"),
                TimeElapsedColumn(), console=stderr_console())
            self._task = self._bar.add_task("replay", total=None, conversions="-")

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None and self._started:
            self._bar.stop()

    def update(self, progress: config_pb2.SimulationProgress) -> None:
        if self._bar is None:
            return
        if not self._started:
            self._bar.start()
            self._started = True
        counts = " / ".join(
            f"{_model(c.attribution_model)} {c.conversions:,}" for c in progress.conversions)
        self._bar.update(self._task, total=progress.events_total or None,
                         completed=progress.events_scanned, conversions=counts)


def _model(model: int) -> str:
    return enum_label(config_pb2.AttributionModel, model)


def _request(
    goal_id: str | None, file: Path | None, start: dt.date, end: dt.date
) -> config_pb2.SimulateGoalRequest:
    request = config_pb2.SimulateGoalRequest(start_date=date_message(start),
                                             end_date=date_message(end))
    fields: dict[str, Any] = _read_file(file) if file else {}
    source = str(file or "goal")
    if goal_id is None:
        if file is None:
            raise click.UsageError("give --file (a goal definition) or --goal ID")
        request.definition.CopyFrom(_parse(fields, config_pb2.CreateGoalRequest(), source))
        return request
    request.goal_id = goal_id
    if fields:
        request.overrides.CopyFrom(_parse(fields, config_pb2.CreateGoalRequest(), source))
        request.override_mask.CopyFrom(field_mask_pb2.FieldMask(paths=list(fields)))
    return request


def _side_by_side(result: config_pb2.SimulationResult, top: int, title: str) -> None:
    models = list(result.models)
    rows: list[list[Any]] = [
        ["conversions", *(f"{m.conversions:,}" for m in models)],
        ["transaction values", *(show_moneys(m.transaction_values) or "-" for m in models)],
        ["lead values", *(show_moneys(m.lead_values) or "-" for m in models)],
    ]
    for rank in range(top):
        cells = []
        for m in models:
            if rank < len(m.agents):
                row = m.agents[rank]
                cells.append(f"{row.label} ({row.conversions:,})")
            else:
                cells.append("")
        if any(cells):
            rows.append([f"agent #{rank + 1}", *cells])
    echo_table(["", *(_model(m.attribution_model) for m in models)], rows, title=title)


@click.command("simulate")
@click.option("--from", "start", type=DateType(), required=True,
              help="First day of the range, in the account's time zone.")
@click.option("--to", "end", type=DateType(), required=True,
              help="Last day of the range, inclusive (today at the latest).")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A goal definition (CreateGoalRequest fields, JSON or YAML); with --goal, "
                   "the fields to override.")
@click.option("--goal", "goal_id", help="Simulate this existing goal (with --file: changed).")
@click.option("--top", type=click.IntRange(0, 100), default=5, show_default=True,
              help="Agents shown per model.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar on stderr.")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table",
              show_default=True, help="Output format.")
@with_session
async def simulate(
    session: Session, start: dt.date, end: dt.date, file: Path | None, goal_id: str | None,
    top: int, progress: bool, fmt: str,
) -> None:
    """What a goal would have recorded over past days, under each attribution model.

    Replays the stored events of --from..--to (days in the account's time zone) under a
    goal definition (--file) or an existing goal (--goal, optionally changed by --file).
    Nothing is created or written; the goal need not be active.
    """
    request = _request(goal_id, file, start, end)
    result: config_pb2.SimulationResult | None = None
    call = session.config().SimulateGoal(request)
    with failing_as(f"SimulateGoal at {session.options.config_address}"), _Bar(progress) as bar:
        async for update in call:
            if update.HasField("progress"):
                bar.update(update.progress)
            elif update.HasField("result"):
                result = update.result
    if result is None:
        note("the config service ended the simulation without a result")
        raise click.exceptions.Exit(1)
    if fmt == "json":
        echo_json(result)
        return
    note(f"{result.events_scanned:,} events read, {result.hits:,} goal hits")
    _side_by_side(result, top, f"Simulated conversions, {start} to {end}")
