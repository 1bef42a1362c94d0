"""The limits every service shares, as plain values (no protobuf, no gRPC), so that domain
code can use them; ``protoconv`` re-exports them beside the conversions they bound.

- ``MAX_ID`` (128 characters) bounds every id a caller sends; ``check_id`` enforces it
  (and presence, for a required id), raising ``InvalidArgument`` naming the field.
- ``FIRST_DAY`` and ``LAST_DAY`` (0001-01-02 and 9999-12-30) bound a calendar date whose
  day before and day after must both exist as midnights in every UTC offset.
- ``EPOCH`` is 1970-01-01 UTC.
- ``check_printable`` refuses, naming the field, text that carries control or invisible
  format characters (Unicode Cc, Cf, Zl, Zp): names and labels the CLIs print to a
  terminal, where ESC sequences or a U+202E override would rewrite what the operator sees;
  ``escape_unprintable`` shows such characters as ``\\uXXXX`` (for text stored before the
  check, or written to the auth database directly).
"""

from __future__ import annotations

import datetime as dt
import unicodedata

from goalflow_common.errors import InvalidArgument

MAX_ID = 128
FIRST_DAY, LAST_DAY = dt.date(1, 1, 2), dt.date(9999, 12, 30)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def check_id(field: str, value: str, *, required: bool = True) -> str:
    """``value`` if it is a valid id for ``field``: at most ``MAX_ID`` characters, and not
    empty when ``required``; otherwise ``InvalidArgument`` naming ``field``."""
    if not value:
        if required:
            raise InvalidArgument(field, "required")
        return value
    # A longer id cannot exist; refusing it by name before any lookup also keeps the
    # NOT_FOUND details that echo an id small (an echoed 10 KB id overflowed the client's
    # 8 KB metadata limit and the caller saw RESOURCE_EXHAUSTED instead).
    if len(value) > MAX_ID:
        raise InvalidArgument(field, f"at most {MAX_ID} characters")
    return value


# Cc: C0/C1 controls (ESC, NUL, CR...); Cf: invisible format characters (bidi overrides such
# as U+202E, zero-width spaces, BOM); Zl/Zp: line and paragraph separators. ZWNJ and ZWJ
# (U+200C/U+200D) are Cf too but spell words in Persian and Indic scripts and join emoji, so
# they stay allowed: they move no cursor and reorder nothing.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp"})
_JOINERS = frozenset({"\u200c", "\u200d"})


def _unprintable(char: str) -> bool:
    return char not in _JOINERS and unicodedata.category(char) in _UNPRINTABLE


def escape_unprintable(value: str) -> str:
    """``value`` with every character ``check_printable`` refuses written ``\\uXXXX``."""
    return "".join(f"\\u{ord(c):04x}" if _unprintable(c) else c for c in value)


def check_printable(field: str, value: str) -> str:
    """``value`` if it holds no control or format character; otherwise ``InvalidArgument``
    naming ``field`` and the first offending code point (never echoing the text itself)."""
    for position, char in enumerate(value):
        if _unprintable(char):
            raise InvalidArgument(
                field, f"control or format character U+{ord(char):04X} at position "
                f"{position} is not allowed"
            )
    return value
