"""The limits every service shares, as plain values (no protobuf, no gRPC), so that domain
code can use them; ``protoconv`` re-exports them beside the conversions they bound.

- ``MAX_ID`` (128 characters) bounds every id a caller sends.
- ``FIRST_DAY`` and ``LAST_DAY`` (0001-01-02 and 9999-12-30) bound a calendar date whose
  day before and day after must both exist as midnights in every UTC offset.
- ``EPOCH`` is 1970-01-01 UTC.
"""

from __future__ import annotations

import datetime as dt

MAX_ID = 128
FIRST_DAY, LAST_DAY = dt.date(1, 1, 2), dt.date(9999, 12, 30)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
