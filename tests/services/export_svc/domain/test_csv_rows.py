"""The CSV rows of an export: headers, order and exact cells (docs/rules.md §6)."""

from __future__ import annotations

import datetime as dt

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from export_svc.adapters.tracker import export_conversion
from export_svc.domain.csv_rows import HEADERS, format_timestamp, neutralize, rows_for
from export_svc.domain.sources import ExportConversion
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, tracker_pb2


def _ts(when: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _credit(agent_id: str, name: str, email: str, seconds: int, nanos: int = 0):
    return tracker_pb2.Credit(
        agent=tracker_pb2.Agent(id=agent_id, name=name, email=email, group_id="grp"),
        contact_duration_to_goal=Duration(seconds=seconds, nanos=nanos),
    )


def _conversion(**fields) -> ExportConversion:
    """A tracker message as the export reads it (through the adapter, so these tables pin
    the cells from the message the tracker sends to the CSV)."""
    base = dict(
        id="cv-1",
        account_id="acct",
        goal_id="goal-1",
        goal_name="Checkout",
        conversation_id="conv-1",
        conversion_time=_ts(dt.datetime(2026, 5, 3, 9, 15, 30, tzinfo=dt.UTC)),
    )
    base.update(fields)
    return export_conversion(tracker_pb2.Conversion(**base))


def test_headers_are_the_spec_columns_in_order():
    assert HEADERS == [
        "Timestamp", "Goal ID", "Goal name", "Agent ID", "Agent name", "Agent email",
        "Ticket ID", "Total transaction value", "Satisfaction score",
        "Contact duration to goal",
    ]


def test_known_scenario_rows_exactly():
    # One ALL_TOUCHES conversion credited to three agents, rated; one LAST_TOUCH conversion
    # without a rating nor a value; one conversion without credits.
    all_touches = _conversion(
        id="cv-all",
        attribution_model=config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES,
        conversation_id="conv-7",
        conversion_time=_ts(dt.datetime(2026, 5, 3, 9, 15, 30, 250_000, tzinfo=dt.UTC)),
        transaction_value=common_pb2.Money(currency_code="USD", amount="100.00"),
        satisfaction_rating="5",
        credits=[
            _credit("ag-1", "Ana Núñez", "ana@example.com", 600),
            _credit("ag-2", "Bob", "bob@example.com", 61, 999_999_999),
            _credit("bot-1", "Helper bot", "", 0, 400_000_000),
        ],
    )
    unrated = _conversion(
        id="cv-last",
        goal_id="goal-2",
        goal_name="Lead form",
        attribution_model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH,
        conversation_id="conv-8",
        conversion_time=_ts(dt.datetime(2026, 5, 4, 23, 59, 59, tzinfo=dt.UTC)),
        credits=[_credit("ag-2", "Bob", "bob@example.com", 3599)],
    )
    uncredited = _conversion(id="cv-none", credits=[])

    rows = [row for c in (all_touches, unrated, uncredited) for row in rows_for(c)]

    assert rows == [
        ["2026-05-03T09:15:30.250Z", "goal-1", "Checkout", "ag-1", "Ana Núñez",
         "ana@example.com", "conv-7", "100.00 USD", "5", "600"],
        ["2026-05-03T09:15:30.250Z", "goal-1", "Checkout", "ag-2", "Bob",
         "bob@example.com", "conv-7", "100.00 USD", "5", "61"],
        ["2026-05-03T09:15:30.250Z", "goal-1", "Checkout", "bot-1", "Helper bot",
         "", "conv-7", "100.00 USD", "5", "0"],
        ["2026-05-04T23:59:59Z", "goal-2", "Lead form", "ag-2", "Bob",
         "bob@example.com", "conv-8", "", "Unoffered", "3599"],
    ]


@pytest.mark.parametrize(
    ("seconds", "nanos", "expected"),
    [
        (0, 0, "0"),
        (0, 999_999_999, "0"),
        (59, 500_000_000, "59"),
        (60, 0, "60"),
        (86_399, 1, "86399"),
    ],
)
def test_contact_duration_is_floored_to_whole_seconds(seconds, nanos, expected):
    conversion = _conversion(credits=[_credit("a", "A", "a@x.io", seconds, nanos)])
    assert rows_for(conversion)[0][-1] == expected


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "2026-01-02T03:04:05Z"),
        (dt.datetime(2026, 1, 2, 3, 4, 5, 7_000, tzinfo=dt.UTC), "2026-01-02T03:04:05.007Z"),
        # Sub-millisecond digits are cut, never rounded up into the next second.
        (dt.datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=dt.UTC), "2026-01-02T03:04:05.999Z"),
        (dt.datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=dt.UTC), "2026-01-02T03:04:05Z"),
        (dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.UTC), "1999-12-31T23:59:59Z"),
    ],
)
def test_timestamp_is_iso_8601_utc(when, expected):
    assert format_timestamp(_conversion(conversion_time=_ts(when)).conversion_time) == expected


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=HYPERLINK(\"http://evil\")", "'=HYPERLINK(\"http://evil\")"),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("\uff1d1+1", "'\uff1d1+1"),
        ("\uff0b1", "'\uff0b1"),
        ("\uff0d1", "'\uff0d1"),
        ("\uff20SUM(1)", "'\uff20SUM(1)"),
        # Importers that trim spaces (or drop quotes) would run these: quoted too.
        (" =1", "' =1"),
        # Harmless cells stay as they are, including dangerous characters further in.
        ("", ""),
        ("Ana", "Ana"),
        ("a=b", "a=b"),
        ("'=already", "'=already"),
        ("100.00 USD", "100.00 USD"),
        ("https://shop.example.com/?a=1", "https://shop.example.com/?a=1"),
        ("ana+tag@example.com", "ana+tag@example.com"),
    ],
)
def test_neutralize_table(cell, expected):
    assert neutralize(cell) == expected


def test_every_cell_of_a_row_is_neutralised():
    conversion = _conversion(
        goal_id="=goal",
        goal_name="+name",
        conversation_id="@ticket",
        satisfaction_rating="-1",
        credits=[_credit("\tagent", "\uff1dname", "=mail@x.io", 5)],
    )
    assert rows_for(conversion) == [
        ["2026-05-03T09:15:30Z", "'=goal", "'+name", "'\tagent", "'\uff1dname",
         "'=mail@x.io", "'@ticket", "", "'-1", "5"],
    ]
