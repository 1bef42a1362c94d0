"""goalflow_common.money: micros conversions and sums are exact at any size (table and
property tests against Python's Decimal with enough precision for the sums)."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from goalflow_common.money import check_money, from_micros, normalize_amount, to_micros

MAX = "999999999999999999.999999"
INT64_MAX = 2**63 - 1
# Enough digits for a sum of up to 10^26 amounts of 24 digits: an exact oracle.
EXACT = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation])


@pytest.mark.parametrize(("amount", "micros"), [
    ("0", 0),
    ("0.000001", 1),
    ("49.90", 49_900_000),
    ("100", 100_000_000),
    ("99999999999999.99", 99_999_999_999_999_990_000),  # the amount: > int64
    (MAX, 10**24 - 1),
])
def test_to_micros_is_exact(amount, micros):
    assert to_micros(amount) == micros
    assert check_money("USD", amount) is None


@pytest.mark.parametrize(("micros", "text"), [
    (0, "0.00"),
    (1, "0.000001"),
    (49_900_000, "49.90"),
    (1_500_000, "1.50"),
    (123_456_789, "123.456789"),
    (10**24 - 1, MAX),
    (3 * (10**24 - 1), "2999999999999999999.999997"),
    # 100,001 maximal amounts: 30 digits, which a 28-digit decimal context rounded
    # (and quantize refused).
    (100_001 * (10**24 - 1), "100000999999999999999999.899999"),
    (10**40 + 7, "10000000000000000000000000000000000.000007"),
])
def test_from_micros_is_exact_at_any_size(micros, text):
    assert micros > INT64_MAX or micros < 10**9  # the table holds both kinds
    assert from_micros(micros) == text


@pytest.mark.parametrize(
    "bad", ["", "1e3", "-", "1.1234567", "1234567890123456789", " 1", "\u0661"]
)
def test_to_micros_refuses_what_check_money_refuses(bad):
    assert check_money("USD", bad) is not None
    with pytest.raises(ValueError, match="amount"):
        to_micros(bad)


valid_amounts = st.builds(
    lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
    st.integers(0, 10**18 - 1) | st.just(10**18 - 1),
    st.text("0123456789", max_size=6),
).map(normalize_amount)


@given(st.lists(valid_amounts, min_size=1, max_size=50), st.integers(1, 10**6))
def test_sums_of_micros_match_exact_decimal_sums(amounts, repeat):
    """Any valid amounts, each counted ``repeat`` times (many conversions), sum exactly, and
    each amount survives the round trip through micros."""
    with decimal.localcontext(EXACT):
        expected = sum((Decimal(a) for a in amounts), Decimal(0)) * repeat
    assert Decimal(from_micros(sum(to_micros(a) for a in amounts) * repeat)) == expected
    assert [to_micros(from_micros(to_micros(a))) for a in amounts] == [
        to_micros(a) for a in amounts]
