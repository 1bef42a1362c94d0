"""Money as decimal strings: validation against ISO 4217 and exact arithmetic."""

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
    """An amount as an integer number of millionths, for exact sums in the database."""
    return int(Decimal(amount).scaleb(6))


def from_micros(micros: int) -> str:
    """The decimal string of a micros sum, without trailing zeros beyond two decimals."""
    value = Decimal(micros).scaleb(-6)
    text = format(value.quantize(Decimal("0.000001")), "f").rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"
