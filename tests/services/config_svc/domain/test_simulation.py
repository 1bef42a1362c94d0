"""The simulation's range rules (``config_svc.domain.simulation``), pure."""

from __future__ import annotations

import datetime as dt

import pytest

from config_svc.domain.simulation import simulation_range
from goalflow_common.errors import InvalidArgument

TODAY = dt.date(2026, 6, 30)


def test_days_in_the_time_zone_both_included():
    span = simulation_range(dt.date(2026, 3, 28), dt.date(2026, 3, 29), TODAY,
                            "Europe/Paris", 92)
    # Paris moves to summer time on 29 March 2026: the second day is 23 hours long.
    assert span.start == dt.datetime(2026, 3, 27, 23, tzinfo=dt.UTC)
    assert span.end == dt.datetime(2026, 3, 29, 22, tzinfo=dt.UTC)


@pytest.mark.parametrize(("first", "last", "field", "rule"), [
    (dt.date(2026, 6, 2), dt.date(2026, 6, 1), "end_date", "must not be before start_date"),
    (dt.date(2026, 6, 2), dt.date(2026, 7, 1), "end_date", "must not be after today"),
    (dt.date(2026, 3, 30), dt.date(2026, 6, 30), "end_date", "at most 92 days"),
])
def test_refusals_name_the_field(first, last, field, rule):
    with pytest.raises(InvalidArgument) as err:
        simulation_range(first, last, TODAY, "UTC", 92)
    assert err.value.field == field and rule in err.value.rule


def test_the_limit_is_inclusive():
    span = simulation_range(dt.date(2026, 3, 31), TODAY, TODAY, "UTC", 92)
    assert span.end - span.start == dt.timedelta(days=92)
    assert simulation_range(TODAY, TODAY, TODAY, "UTC", 1).first_day == TODAY
