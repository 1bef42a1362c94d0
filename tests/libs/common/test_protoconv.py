"""goalflow_common.protoconv: timestamps agree with protobuf's own conversion, enum tables
follow the generated descriptors, dates are bounded, and a page token round-trips while a
tampered or foreign one is refused with the caller-facing messages."""

from __future__ import annotations

import base64
import datetime as dt
import json
import unicodedata

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from goalflow_common.errors import InvalidArgument
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, tracker_pb2
from goalflow_common.protoconv import (
    FIRST_DAY,
    LAST_DAY,
    MAX_PAGE_TOKEN_CHARS,
    calendar_date,
    date_between,
    date_message,
    decode_page_token,
    encode_page_token,
    enum_name,
    enum_names,
    enum_numbers,
    enum_prefix,
    from_millis,
    millis,
    page_fingerprint,
    timestamp,
    to_datetime,
)

UTC = dt.UTC
NOT_A_TOKEN = "page_token: not a token from a previous response"
FOREIGN = "page_token: was issued for a different set of filters"


# --- timestamps -----------------------------------------------------------------------------


@given(st.datetimes(timezones=st.just(UTC)))
def test_timestamp_matches_protobuf_and_round_trips(when):
    reference = Timestamp()
    reference.FromDatetime(when)
    assert timestamp(when) == reference
    assert to_datetime(timestamp(when)) == when


def test_naive_datetimes_are_utc():
    naive = dt.datetime(2026, 6, 1, 12, 10, 0, 123_000)
    assert timestamp(naive) == timestamp(naive.replace(tzinfo=UTC))
    assert timestamp(naive).ToJsonString() == "2026-06-01T12:10:00.123Z"


def test_offsets_are_honoured():
    plus_two = dt.datetime(2026, 6, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert timestamp(plus_two).ToJsonString() == "2026-06-01T12:00:00Z"


def test_to_datetime_refuses_out_of_range():
    with pytest.raises((ValueError, OverflowError)):
        to_datetime(Timestamp(seconds=10**12))


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (dt.datetime(1970, 1, 1, tzinfo=UTC), 0),
        (dt.datetime(1970, 1, 1, 0, 0, 1, 999, tzinfo=UTC), 1000),  # floored
        (dt.datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC), -1),
        (dt.datetime(2026, 6, 1, tzinfo=UTC), 1_780_272_000_000),
    ],
)
def test_millis(when, expected):
    assert millis(when) == expected
    assert from_millis(expected) == when.replace(microsecond=when.microsecond // 1000 * 1000)


# --- dates ----------------------------------------------------------------------------------


def test_date_message_round_trips():
    day = dt.date(2026, 2, 28)
    assert date_message(day) == common_pb2.Date(year=2026, month=2, day=28)
    assert calendar_date("start_date", date_message(day)) == day


@pytest.mark.parametrize(
    ("year", "month", "day", "error"),
    [
        (2026, 2, 29, "start_date: not a valid calendar date"),
        (0, 0, 0, "start_date: not a valid calendar date"),
        (1, 1, 1, "start_date: must be between 0001-01-02 and 9999-12-30"),
        (9999, 12, 31, "start_date: must be between 0001-01-02 and 9999-12-30"),
        (1, 1, 2, None),
        (9999, 12, 30, None),
    ],
)
def test_date_between(year, month, day, error):
    message = common_pb2.Date(year=year, month=month, day=day)
    if error is None:
        assert date_between("start_date", message) == dt.date(year, month, day)
        return
    with pytest.raises(InvalidArgument) as refused:
        date_between("start_date", message)
    assert str(refused.value) == error
    assert refused.value.field == "start_date"


def test_day_limits_have_their_bounding_midnights_in_every_offset():
    """A range's first midnight and the midnight after its last day exist in UTC from -12:00
    to +14:00 at the limits; one day further they do not."""
    for hours in (-12, 14):
        zone = dt.timezone(dt.timedelta(hours=hours))
        start = dt.datetime.combine(FIRST_DAY, dt.time(), zone)
        end = dt.datetime.combine(LAST_DAY + dt.timedelta(days=1), dt.time(), zone)
        assert timestamp(start.astimezone(UTC)).seconds < timestamp(end.astimezone(UTC)).seconds
    too_early = dt.datetime.combine(FIRST_DAY - dt.timedelta(days=1), dt.time(),
                                    dt.timezone(dt.timedelta(hours=14)))
    with pytest.raises(OverflowError):
        too_early.astimezone(UTC)


# --- enum names -----------------------------------------------------------------------------


def test_enum_tables():
    assert enum_prefix(config_pb2.AttributionModel) == "ATTRIBUTION_MODEL_"
    assert enum_names(config_pb2.AttributionModel) == {
        config_pb2.ATTRIBUTION_MODEL_FIRST_TOUCH: "FIRST_TOUCH",
        config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH: "LAST_TOUCH",
        config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES: "ALL_TOUCHES",
    }
    numbers = enum_numbers(tracker_pb2.Channel)
    assert numbers["UNSPECIFIED"] == 0
    assert numbers["WEB_WIDGET"] == tracker_pb2.CHANNEL_WEB_WIDGET


@pytest.mark.parametrize("enum", [tracker_pb2.Channel, config_pb2.GoalType,
                                  tracker_pb2.SegmentEndReason, config_pb2.ConditionOperator])
def test_enum_names_and_numbers_are_inverse(enum):
    names = enum_names(enum)
    assert set(names) == {n for n in enum.values() if n}
    assert {name: number for number, name in names.items()} == {
        name: number for name, number in enum_numbers(enum).items() if number
    }
    for number, name in names.items():
        assert enum_name(enum, number) == name


def test_enum_name_reads_unspecified_and_unknown_as_none():
    assert enum_name(config_pb2.GoalType, 0) is None
    assert enum_name(config_pb2.GoalType, 999) is None


# --- page tokens ----------------------------------------------------------------------------

WHEN = dt.datetime(2026, 6, 1, 12, 0, 0, 5000, tzinfo=UTC)  # whole milliseconds


@pytest.mark.parametrize(
    ("key", "types", "fingerprint"),
    [
        (("Sales", "goal-1"), (str, str), None),
        (("20260601120000000000",), (str,), None),
        ((WHEN, "conv-1"), (dt.datetime, str), page_fingerprint("acct", "", None)),
        ((42, "ü/+=?"), (int, str), "f"),
    ],
)
def test_page_token_round_trips(key, types, fingerprint):
    token = encode_page_token(key, fingerprint)
    assert token.isascii() and "/" not in token and "+" not in token  # urlsafe
    assert decode_page_token(token, types, fingerprint) == key


def test_empty_token_is_the_first_page():
    assert decode_page_token("", (str,)) is None
    assert decode_page_token("", (str,), "f") is None


def _raw(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


@pytest.mark.parametrize(
    ("token", "types", "fingerprint"),
    [
        ("not-a-token", (str,), None),
        ("%%%", (str, str), None),
        (_raw(None), (str,), None),
        (_raw(1), (str,), None),
        (_raw(True), (str, str), None),
        (_raw({"a": "b"}), (str,), None),
        (_raw(["a", "b"]), (str,), None),  # too long
        (_raw(["a"]), (str, str), None),  # too short
        (_raw([1]), (str,), None),  # wrong type
        (_raw([True, "x", "f"]), (dt.datetime, str), "f"),  # bool is not a time
        (_raw([1.5, "x", "f"]), (dt.datetime, str), "f"),
        (_raw([10**18, "x", "f"]), (dt.datetime, str), "f"),  # past year 9999
        (_raw([0, "x", 0, "f"]), (dt.datetime, str), "f"),  # the earlier tie-counting form
        (_raw([0, "x", 7]), (dt.datetime, str), "f"),  # fingerprint not a string
        (_raw(["x"]), (str,), "f"),  # no fingerprint where one is required
    ],
)
def test_tampered_tokens_are_refused(token, types, fingerprint):
    with pytest.raises(InvalidArgument) as refused:
        decode_page_token(token, types, fingerprint)
    assert str(refused.value) == NOT_A_TOKEN


@pytest.mark.parametrize("depth", [20_000, 3_000, 1_100])
def test_a_deeply_nested_token_is_refused_not_an_internal_error(depth):
    """I12-A3: 20,000 nested '[' (53 KB, under every body limit) raised RecursionError out
    of json.loads: INTERNAL and a logged traceback on every List RPC. Over the length cap it
    is refused unread; a nesting that fits under the cap still recurses too deep."""
    token = base64.urlsafe_b64encode(b"[" * depth + b"]" * depth).decode()
    with pytest.raises(InvalidArgument) as refused:
        decode_page_token(token, (str,), "fingerprint")
    assert str(refused.value) == NOT_A_TOKEN


def test_the_longest_token_issued_fits_under_the_cap():
    """The largest sort key a listing issues (ListGoals: a name key NFKC-expanded 18-fold,
    every character escaped, and a 128-character id) still decodes."""
    key = ("\ufdfa" * 100, "\U0001f600" * 128)
    wide = (unicodedata.normalize("NFKC", key[0]).casefold(), key[1])
    token = encode_page_token(wide, "f" * 16)
    assert len(token) <= MAX_PAGE_TOKEN_CHARS
    assert decode_page_token(token, (str, str), "f" * 16) == wide
    with pytest.raises(InvalidArgument):
        decode_page_token("A" * (MAX_PAGE_TOKEN_CHARS + 4), (str,))


def test_a_token_of_other_filters_is_refused():
    mine, theirs = page_fingerprint("acct-a", "goal-1"), page_fingerprint("acct-a", "goal-2")
    assert mine != theirs
    token = encode_page_token((WHEN, "conv-1"), theirs)
    with pytest.raises(InvalidArgument) as refused:
        decode_page_token(token, (dt.datetime, str), mine)
    assert str(refused.value) == FOREIGN


def test_wire_form_is_unchanged():
    """Tokens issued before the codec was shared still decode (and vice versa)."""
    assert encode_page_token(("k", "id")) == _raw(["k", "id"])
    assert encode_page_token((WHEN, "c"), "f") == _raw([millis(WHEN), "c", "f"])
