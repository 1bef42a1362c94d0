"""The CSV rows of an export (docs/rules.md §6): fixed headers, one row per credit.

Cell formats, chosen once so every export reads the same:

- ``Timestamp``: the conversion time in UTC, ``YYYY-MM-DDTHH:MM:SSZ``, or
  ``YYYY-MM-DDTHH:MM:SS.mmmZ`` when the milliseconds are not zero (finer digits are cut,
  never rounded, so a row never moves into the next second).
- ``Total transaction value``: ``"<amount> <currency>"`` as recorded, e.g. ``100.00 USD``;
  empty when the conversion has no value. Every credit row carries the conversion's full
  value (an ALL_TOUCHES conversion with three credits gives three rows with the same value).
- ``Satisfaction score``: the conversation's rating, or ``Unoffered`` when there is none.
- ``Contact duration to goal``: whole seconds, rounded down.

Every cell goes through ``neutralize`` (see there) before it reaches the CSV writer.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

from export_svc.domain.sources import ExportConversion

HEADERS = [
    "Timestamp",
    "Goal ID",
    "Goal name",
    "Agent ID",
    "Agent name",
    "Agent email",
    "Ticket ID",
    "Total transaction value",
    "Satisfaction score",
    "Contact duration to goal",
]

UNOFFERED = "Unoffered"

# A spreadsheet runs a cell as a formula (or DDE call) when it starts with one of these;
# Excel and LibreOffice also accept the fullwidth forms of = + - @. A tab or carriage
# return first is how attackers slip past naive checks, so those count too.
FORMULA_PREFIXES = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")

_SECOND = dt.timedelta(seconds=1)


def _skipped_before_formula(ch: str) -> bool:
    """Characters an importer may drop before it looks for a formula: spaces (LibreOffice's
    "trim spaces", Google Sheets), invisible format characters (zero-width space, BOM, bidi
    marks) and double quotes."""
    return ch.isspace() or ch in '"\uff02' or unicodedata.category(ch) == "Cf"


def neutralize(cell: str) -> str:
    """``cell`` made inert for spreadsheets: a cell whose first character, or first one
    after leading spaces, invisible characters and double quotes, is a formula character
    gets a single quote in front (``=1+2`` -> ``'=1+2``, `` =1`` -> ``' =1``), which
    spreadsheets show as text. Any other cell is returned unchanged. Negative numbers never
    come from our data (values are never negative), so quoting one that a name or URL
    happens to start with is harmless."""
    if cell and cell[0] in FORMULA_PREFIXES:
        return "'" + cell
    first = next((ch for ch in cell if not _skipped_before_formula(ch)), "")
    if first and first in FORMULA_PREFIXES:
        return "'" + cell
    return cell


def format_timestamp(moment: dt.datetime) -> str:
    """An aware UTC datetime as ISO-8601 UTC (see the module docstring for the format)."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = moment.microsecond // 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def whole_seconds(duration: dt.timedelta) -> int:
    """``duration`` floored to whole seconds."""
    return duration // _SECOND


def format_value(conversion: ExportConversion) -> str:
    value = conversion.transaction_value
    if value is None:
        return ""
    return f"{value.amount} {value.currency_code}".strip()


def rows_for(conversion: ExportConversion) -> list[list[str]]:
    """The CSV rows of one conversion, one per credit, every cell neutralised. A conversion
    without credits gives no row."""
    timestamp = format_timestamp(conversion.conversion_time)
    value = format_value(conversion)
    rating = conversion.satisfaction_rating or UNOFFERED
    rows = []
    for credit in conversion.credits:
        row = [
            timestamp,
            conversion.goal_id,
            conversion.goal_name,
            credit.agent_id,
            credit.agent_name,
            credit.agent_email,
            conversion.conversation_id,
            value,
            rating,
            str(whole_seconds(credit.contact_duration)),
        ]
        rows.append([neutralize(cell) for cell in row])
    return rows
