"""The limits every service shares, as plain values (no protobuf, no gRPC), so that domain
code can use them; ``protoconv`` re-exports them beside the conversions they bound.

- ``MAX_ID`` (128 characters) bounds every id a caller sends; ``check_id`` enforces it
  (and presence, for a required id), raising ``InvalidArgument`` naming the field.
- ``FIRST_DAY`` and ``LAST_DAY`` (0001-01-02 and 9999-12-30) bound a calendar date whose
  day before and day after must both exist as midnights in every UTC offset.
- ``EPOCH`` is 1970-01-01 UTC.
"""

from __future__ import annotations

import datetime as dt

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
