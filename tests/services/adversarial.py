"""Shared pieces of the property-based (hypothesis) tests of bad input: adversarial value
strategies, independent oracles that say whether a value is valid, and the checks every
example ends with (the error names the field; the server still serves).

Oracles are written from the contracts (docs/rules.md, the protos' field comments and the README's
limits), not from the services' code, so a service that drifts from them fails a test.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import unicodedata
from collections.abc import Iterable
from decimal import Decimal

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from goalflow_common.pb.goals.v1 import common_pb2

VALID, INVALID, EITHER = "valid", "invalid", "either"

# Examples run inside one test function against servers its fixtures started once, so
# hypothesis' check against function-scoped fixtures does not apply. No example database:
# runs leave nothing behind in the working tree.
# Shrinking is left out: against live servers it can outlast the 60 s test timeout, and
# each example here is one readable request anyway.
def property_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large],
    )


@st.composite
def some_spoiled(draw, good: dict[str, st.SearchStrategy], bad: dict[str, st.SearchStrategy],
                 most: int = 2) -> dict:
    """A value for every field of ``good``: each from its ``good`` strategy, except one or a
    few fields drawn from ``bad`` (adversarial, often invalid). About a third of the draws
    spoil nothing, so correct answers are checked as often as refusals."""
    spoiled = draw(st.one_of(
        st.just(frozenset()),
        st.frozensets(st.sampled_from(sorted(bad)), min_size=1, max_size=most),
        st.frozensets(st.sampled_from(sorted(bad)), min_size=1, max_size=1),
    ))
    return {name: draw(bad[name] if name in spoiled else strategy)
            for name, strategy in good.items()}


def worst(*verdicts: str) -> str:
    """The combined verdict of several fields: any INVALID wins, then EITHER."""
    if INVALID in verdicts:
        return INVALID
    return EITHER if EITHER in verdicts else VALID


# -- text --------------------------------------------------------------------------------

# Strings that have broken real systems: NUL, bidi overrides, zero-width characters, a
# byte-order mark, line breaks, emoji sequences (joiners), fullwidth and combining forms.
SPECIAL_STRINGS = (
    "", " ", "   ", "\x00", "a\x00b", "\t", "\r\n", "line\nbreak", "\u202eevil\u202c",
    "\u200b", "zero\u200bwidth", "\u200d", "\ufeff", "\ufeffbom", "👩‍👩‍👧‍👦", "😀",
    "\uff46\uff55\uff4c\uff4c", "e\u0301", "مرحبا", "שלום", "\u0000\u0000", "\x7f", "\x85",
    "\u2028",
    "'; drop table goals; --", '{"$gt": ""}', "$where", "a.b", "../../etc/passwd",
    "%00", "=1+1", "@SUM(A1)",
)


def has_cc(text: str) -> bool:
    """True when ``text`` holds a C0/C1 control character (Unicode category Cc)."""
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def has_format_char(text: str) -> bool:
    """True when ``text`` holds an invisible format or separator character (bidi overrides,
    zero-width space, BOM, line/paragraph separators), joiners excepted."""
    return any(
        unicodedata.category(ch) in ("Cf", "Zl", "Zp") and ch not in "\u200c\u200d"
        for ch in text
    )


def printable_text(min_size: int = 1, max_size: int = 40) -> st.SearchStrategy[str]:
    """Text without control or surrogate characters: letters, digits, symbols, emoji."""
    return st.text(
        st.characters(exclude_categories=("Cc", "Cs", "Cf", "Zl", "Zp", "Co", "Cn")),
        min_size=min_size, max_size=max_size,
    )


def huge_text(more_than: int) -> st.SearchStrategy[str]:
    """Strings longer than ``more_than`` characters (up to 40 times more), built by
    repetition so generating them stays cheap; multi-byte characters included."""
    return st.builds(
        lambda unit, n: unit * n,
        st.sampled_from(["x", "é", "😀", "\u202e", " "]),
        st.integers(more_than + 1, max(more_than * 40, more_than + 2)),
    )


def adversarial_text(limit: int) -> st.SearchStrategy[str]:
    """Any string a hostile or broken client could send for a field of at most ``limit``
    characters: plausible values, arbitrary unicode, special strings, exactly the limit,
    and beyond every limit."""
    return st.one_of(
        printable_text(1, min(limit, 40)),
        st.text(max_size=60),
        st.sampled_from(SPECIAL_STRINGS),
        st.builds(lambda c: c * limit, st.sampled_from(["y", "ü", "😀"])),
        huge_text(limit),
    )


def text_verdict(value: str, limit: int, *, required: bool) -> str:
    """A producer-given text field (ids, names, URLs): required ones non-empty, at most
    ``limit`` characters, no control characters. Other unicode (RTL, emoji, zero-width)
    is data and is kept as sent."""
    if required and not value:
        return INVALID
    if len(value) > limit or has_cc(value):
        return INVALID
    return VALID


# -- enums -------------------------------------------------------------------------------


def enum_values(valid: Iterable[int]) -> st.SearchStrategy[int]:
    """Known numbers of an enum, or any int32 (proto3 enums are open: unknown numbers
    reach the server as they are)."""
    return st.one_of(
        st.sampled_from(sorted(valid)),
        st.integers(-(2**31), 2**31 - 1),
        st.sampled_from([-1, 0, 99, 2**31 - 1, -(2**31)]),
    )


# -- money -------------------------------------------------------------------------------

_AMOUNT = re.compile(r"[0-9]{1,18}(\.[0-9]{1,6})?")


def amount_verdict(amount: str) -> str:
    """Proto: a decimal string, at most 18 digits before the point and 6 after, never
    negative. Only ASCII digits; no sign but a harmless "-" on zero; no exponent, no
    spaces."""
    body = amount[1:] if amount.startswith("-") else amount
    if not _AMOUNT.fullmatch(body):
        return INVALID
    if amount.startswith("-") and Decimal(body) != 0:
        return INVALID
    return VALID


# Amounts at and past every edge: the limits, negative, exponent forms, words, padding,
# non-ASCII digits (Arabic-Indic, fullwidth), separators.
SPECIAL_AMOUNTS = (
    "0", "-0", "0.000001", "999999999999999999.999999", "1000000000000000000",
    "-1", "-0.01", "1.0000001", "1e5", "1E+2", "1.5e-3", "Infinity", "NaN", "-inf",
    "", " ", " 1", "1 ", "1\n", "+1", "1.", ".5", "1,000.00", "0x10", "١٢٣",
    "\uff11\uff12", "1_000", "00000000000000000001", "12.34.56", "--1", "1-",
)


def amounts() -> st.SearchStrategy[str]:
    valid = st.builds(
        lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
        st.integers(0, 10**18 - 1),
        st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=6)),
    )
    return st.one_of(
        valid,
        st.sampled_from(SPECIAL_AMOUNTS),
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.text(max_size=12),
    )


def currencies(valid: Iterable[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(sorted(valid)[:40]),
        st.sampled_from(["", "usd", "US", "USDX", "XXX", "US$", "€", " USD", "123"]),
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3),
        st.text(max_size=5),
    )


# -- dates and timestamps ----------------------------------------------------------------


def dates(near: dt.date) -> st.SearchStrategy[common_pb2.Date]:
    """Calendar dates: around ``near``, at the edges of the calendar, invalid ones (month
    13, 30 February, year 0 or 10000) and any int32 triple."""
    around = st.integers(-5, 400).map(lambda days: near + dt.timedelta(days=days))
    return st.one_of(
        around.map(lambda d: common_pb2.Date(year=d.year, month=d.month, day=d.day)),
        st.sampled_from([
            (1, 1, 1), (1, 1, 2), (9999, 12, 31), (9999, 12, 30), (0, 1, 1), (10000, 1, 1),
            (2026, 2, 29), (2028, 2, 29), (2026, 2, 30), (2026, 13, 1), (2026, 0, 10),
            (2026, 6, 0), (2026, 6, 31), (-1, 6, 1), (0, 0, 0), (2**31 - 1, 12, 31),
        ]).map(lambda t: common_pb2.Date(year=t[0], month=t[1], day=t[2])),
        st.builds(
            common_pb2.Date,
            year=st.integers(-(2**31), 2**31 - 1),
            month=st.integers(-(2**31), 2**31 - 1),
            day=st.integers(-(2**31), 2**31 - 1),
        ),
    )


def calendar_date(msg: common_pb2.Date) -> dt.date | None:
    """The date ``msg`` stands for, or None if there is no such day."""
    try:
        return dt.date(msg.year, msg.month, msg.day)
    except (ValueError, OverflowError):
        return None


MIN_TIMESTAMP_S, MAX_TIMESTAMP_S = -62135596800, 253402300799  # 0001-01-01 .. 9999-12-31


def timestamps(near: dt.datetime) -> st.SearchStrategy[Timestamp]:
    """Timestamps: around ``near``, the protobuf range's edges and beyond, negative
    seconds, nanos out of range."""
    base = int(near.timestamp())
    return st.one_of(
        st.builds(Timestamp, seconds=st.integers(base - 3 * 86400, base + 3 * 86400),
                  nanos=st.integers(0, 999_999_999)),
        st.builds(Timestamp, seconds=st.sampled_from([
            0, -1, 946684799, 946684800, MIN_TIMESTAMP_S, MIN_TIMESTAMP_S - 1,
            MAX_TIMESTAMP_S, MAX_TIMESTAMP_S + 1, 2**62, -(2**62), base + 86400,
            base + 86401,
        ]), nanos=st.sampled_from([0, 999_999_999])),
        st.builds(Timestamp, seconds=st.integers(base - 10, base + 10),
                  nanos=st.sampled_from([-1, 1_000_000_000, 2**31 - 1, -(2**31)])),
        st.builds(Timestamp, seconds=st.integers(-(2**63), 2**63 - 1),
                  nanos=st.integers(-(2**31), 2**31 - 1)),
    )


def timestamp_value(ts: Timestamp) -> dt.datetime | None:
    """The instant ``ts`` stands for, or None if it is not a valid protobuf Timestamp."""
    if not 0 <= ts.nanos <= 999_999_999:
        return None
    if not MIN_TIMESTAMP_S <= ts.seconds <= MAX_TIMESTAMP_S:
        return None
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
        seconds=ts.seconds, microseconds=ts.nanos // 1000
    )


def ts(when: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


def page_tokens() -> st.SearchStrategy[str]:
    """Tokens a client could make up: text, base64 of arbitrary JSON (scalars, lists,
    objects), truncated base64."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    json_values = st.one_of(
        scalars,
        st.lists(scalars, max_size=4),
        st.dictionaries(st.text(max_size=4), scalars, max_size=3),
    )
    as_token = json_values.map(
        lambda value: base64.urlsafe_b64encode(json.dumps(value).encode()).decode()
    )
    return st.one_of(as_token, adversarial_text(64), as_token.map(lambda t: t[:-3]))


# -- checks ------------------------------------------------------------------------------


def field_of(error: grpc.aio.AioRpcError) -> str:
    """The field path an INVALID_ARGUMENT names: its details read ``<path>: <rule>``."""
    return (error.details() or "").partition(": ")[0]


def root_of(path: str) -> str:
    """``conditions[3].value`` -> ``conditions``: the request field a path starts at."""
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def assert_names_field(error: grpc.aio.AioRpcError, fields: Iterable[str]) -> None:
    """The error is INVALID_ARGUMENT and its details start with the path of one of
    ``fields`` (a request field name, or a path prefix such as ``transaction_value``)."""
    allowed = set(fields)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    path = field_of(error)
    assert path and (path in allowed or root_of(path) in allowed), (path, allowed,
                                                                     error.details())
    # The rule follows the field: the caller learns what to fix, not only where.
    assert len(error.details()) > len(path) + 2, error.details()


async def call(coro) -> tuple[object | None, grpc.aio.AioRpcError | None]:
    """(response, None) or (None, the gRPC error) of one awaited RPC."""
    try:
        return await coro, None
    except grpc.aio.AioRpcError as error:
        return None, error


async def assert_serving(address: str) -> None:
    """The server at ``address`` still answers its health check with SERVING."""
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
