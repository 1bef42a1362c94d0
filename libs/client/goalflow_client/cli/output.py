"""The one place results are written: tables (rich), CSV and JSON on stdout; notes, progress
and errors on stderr. JSON is the proto3 JSON form of the messages, as the services define
them (field names in lowerCamelCase, enums by name, 64-bit integers as strings)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any

import click
from google.protobuf import json_format
from google.protobuf.message import Message
from rich import box
from rich.console import Console
from rich.table import Table

Row = Sequence[Any]


def format_option(*formats: str) -> Callable:
    """``--format`` with the given choices, the first being the default."""
    return click.option(
        "--format", "fmt", type=click.Choice(formats), default=formats[0], show_default=True,
        help="Output format.",
    )


@cache
def stdout_console() -> Console:
    # Piped output is not wrapped at 80 columns: a reader (or a test) gets whole cells.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 10_000)


@cache
def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def message_json(message: Message) -> dict[str, Any]:
    """A message in proto3 JSON form, fields at their default included (a stable shape)."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def echo_json(value: Message | Any) -> None:
    if isinstance(value, Message):
        value = message_json(value)
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def echo_json_line(message: Message) -> None:
    """One message per line (JSON Lines), for streams."""
    click.echo(json.dumps(message_json(message), ensure_ascii=False, separators=(",", ":")))


def echo_table(
    columns: Sequence[str], rows: Iterable[Row], *, title: str | None = None,
    totals: Row | None = None,
) -> None:
    headers = [column.replace("_", " ").upper() for column in columns]
    table = Table(*headers, title=title, box=box.SIMPLE_HEAD, title_justify="left",
                  show_edge=False, pad_edge=False)
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    if totals is not None:
        table.add_section()
        table.add_row(*(_cell(value) for value in totals), style="bold")
    stdout_console().print(table)


def echo_csv(columns: Sequence[str], rows: Iterable[Row]) -> None:
    writer = csv.writer(click.get_text_stream("stdout"), lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)


def echo_records(
    fmt: str, columns: Sequence[str], rows: Iterable[Row], as_json: Callable[[], Any],
    *, title: str | None = None, totals: Row | None = None,
) -> None:
    """Rows as a table or CSV (``totals`` only in the table), or ``as_json()`` as JSON.
    ``columns`` are snake_case names: the CSV header, upper-cased in the table."""
    if fmt == "json":
        echo_json(as_json())
    elif fmt == "csv":
        echo_csv(columns, rows)
    else:
        echo_table(columns, rows, title=title, totals=totals)


def echo_fields(fields: Iterable[tuple[str, Any]]) -> None:
    """One ``name  value`` line per field, names aligned, empty fields left out; never
    wrapped, so a link stays whole; a multi-line value continues under its first line."""
    pairs = [(name, _cell(value)) for name, value in fields if _cell(value)]
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        lines = value.splitlines() or [""]
        click.echo(f"{name:<{width}}  {lines[0]}")
        for line in lines[1:]:
            click.echo(f"{'':<{width}}  {line}")


def note(text: str) -> None:
    """A remark for the person (not part of the result): stderr."""
    click.echo(text, err=True)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value)
