"""Money as decimal strings: validation against ISO 4217 and exact arithmetic.

Amounts are stored as the canonical strings ``normalize_amount`` gives and summed as
Python integers of micros (millionths), which never overflow: the API allows 18 integer
digits and 6 decimals, 10^24 micros, far beyond int64 (2^63 micros is about 9.2e12 units,
about 570,000 USD in IDR), and sums of many such amounts grow further. Nothing here goes
through a ``decimal`` context, whose 28-digit precision would round large sums.
"""

from __future__ import annotations

import re
from decimal import Decimal

# Active ISO 4217 codes (2024 list, funds and precious metals left out).
ISO_4217 = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD
    TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG""".split()
)
# ASCII digits only and the whole string: \d also matches other scripts' digits ("١٢٣")
# and $ allows a trailing newline, both of which Decimal() then accepted.
AMOUNT_RE = re.compile(r"-?[0-9]{1,18}(\.[0-9]{1,6})?")
_MICROS = 1_000_000


def check_money(currency_code: str, amount: str) -> tuple[str, str] | None:
    """The (field, rule) that ``(currency_code, amount)`` breaks, or None."""
    if currency_code not in ISO_4217:
        return "currency_code", "must be an ISO-4217 code such as USD"
    if not AMOUNT_RE.fullmatch(amount):
        return "amount", "must be a decimal number with at most 18 digits and 6 decimals"
    if Decimal(amount) < 0:
        return "amount", "must be at least 0"
    return None


def normalize_amount(amount: str) -> str:
    """A valid amount in canonical form: no leading zeros, no negative zero, scale kept."""
    value = Decimal(amount)
    return format(abs(value) if value == 0 else value, "f")


def to_micros(amount: str) -> int:
    """A valid amount (``check_money``) as an exact integer number of millionths."""
    if not AMOUNT_RE.fullmatch(amount):
        raise ValueError(f"not a valid amount: {amount!r}")
    whole, _, frac = amount.partition(".")
    micros = int(whole.lstrip("-")) * _MICROS + int(frac.ljust(6, "0"))
    return -micros if whole.startswith("-") else micros


def from_micros(micros: int) -> str:
    """The decimal string of a micros sum, of any size: at least two decimals, at most six,
    no trailing zeros beyond two."""
    whole, frac = divmod(abs(micros), _MICROS)
    sign = "-" if micros < 0 else ""
    return f"{sign}{whole}.{f'{frac:06d}'.rstrip('0').ljust(2, '0')}"
