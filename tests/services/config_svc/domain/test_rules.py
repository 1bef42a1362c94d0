"""Fast unit tests of the pure docs/rules.md §2 rules in config_svc.domain.rules: status
derivation, date rules and the duplicate-name key, at their edges."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from config_svc.domain.model import GoalStatus, Schedule
from config_svc.domain.rules import check_dates, derive_status, name_key
from goalflow_common.errors import InvalidArgument

TODAY = dt.date(2026, 6, 1)
INACTIVE = GoalStatus.INACTIVE
SCHEDULED = GoalStatus.SCHEDULED
ACTIVE = GoalStatus.ACTIVE
ENDING = GoalStatus.ENDING
ENDED = GoalStatus.ENDED


def day(offset: int, base: dt.date = TODAY) -> str:
    """An ISO date ``offset`` days from ``base``, as goals are stored."""
    return (base + dt.timedelta(days=offset)).isoformat()


def goal(active: bool = True, start: int | None = 0, end: int | None = None) -> dict[str, Any]:
    return {
        "active": active,
        "start_date": None if start is None else day(start),
        "end_date": None if end is None else day(end),
    }


def schedule(doc: dict[str, Any]) -> Schedule:
    """The cases below are written as stored goal fields; the rules read a Schedule."""
    start, end = doc.get("start_date"), doc.get("end_date")
    return Schedule(
        bool(doc.get("active")),
        None if start is None else dt.date.fromisoformat(start),
        None if end is None else dt.date.fromisoformat(end),
    )


# -- derive_status -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(goal(active=False), (INACTIVE, 0), id="inactive"),
        pytest.param(goal(active=False, start=None), (INACTIVE, 0), id="inactive-no-dates"),
        pytest.param(goal(active=False, start=-9, end=-3), (INACTIVE, 0), id="inactive-ended"),
        pytest.param(goal(active=False, start=0, end=0), (INACTIVE, 0), id="inactive-ending"),
        pytest.param(goal(start=1), (SCHEDULED, 0), id="starts-tomorrow"),
        pytest.param(goal(start=1, end=1), (SCHEDULED, 0), id="scheduled-beats-ending"),
        pytest.param(goal(start=0), (ACTIVE, 0), id="starts-today-no-end"),
        pytest.param(goal(start=-30), (ACTIVE, 0), id="started-long-ago-no-end"),
        # No start date cannot be stored while active; read it as running, not scheduled.
        pytest.param(goal(start=None), (ACTIVE, 0), id="active-without-start"),
        pytest.param(goal(start=-3, end=-1), (ENDED, 0), id="ended-yesterday"),
        pytest.param(goal(start=-400, end=-365), (ENDED, 0), id="ended-last-year"),
    ],
)
def test_derive_status(doc, expected):
    assert derive_status(schedule(doc), TODAY) == expected


@pytest.mark.parametrize(
    ("end_in_days", "expected"),
    [
        (0, (ENDING, 1)),  # the end date is today: today counts as 1
        (1, (ENDING, 2)),
        (2, (ENDING, 3)),
        (3, (ENDING, 4)),
        (4, (ENDING, 5)),
        (5, (ACTIVE, 0)),  # six days including today: outside the window
        (6, (ACTIVE, 0)),
        (-1, (ENDED, 0)),
    ],
)
def test_ending_window(end_in_days: int, expected):
    assert derive_status(schedule(goal(start=-10, end=end_in_days)), TODAY) == expected


@pytest.mark.parametrize(
    ("today", "end", "remaining"),
    [
        pytest.param(dt.date(2026, 12, 29), "2027-01-02", 5, id="across-new-year"),
        pytest.param(dt.date(2026, 6, 27), "2026-07-01", 5, id="across-month-end"),
        pytest.param(dt.date(2028, 2, 26), "2028-03-01", 5, id="leap-february"),
        pytest.param(dt.date(2027, 2, 26), "2027-03-01", 4, id="common-february"),
        pytest.param(dt.date(2028, 2, 29), "2028-02-29", 1, id="leap-day-itself"),
    ],
)
def test_days_remaining_counts_calendar_days(today: dt.date, end: str, remaining: int):
    doc = {"active": True, "start_date": "2026-01-01", "end_date": end}
    assert derive_status(schedule(doc), today) == (ENDING, remaining)


def test_status_does_not_depend_on_stored_status_or_other_fields():
    doc = {**goal(start=0, end=2), "status": "ENDED", "name": "x", "revision": 9}
    assert derive_status(schedule(doc), TODAY) == (ENDING, 3)


def test_ended_precedes_scheduled_even_for_inconsistent_dates():
    # Not storable (end before start), but a read must still give one definite answer.
    assert derive_status(schedule(goal(start=3, end=-1)), TODAY) == (ENDED, 0)


# -- check_dates ---------------------------------------------------------------------------

OK = None

CREATE_CASES = [
    pytest.param(goal(active=False, start=None), OK, id="inactive-no-dates"),
    pytest.param(goal(active=True, start=None), "start_date", id="active-needs-start"),
    pytest.param(goal(active=False, start=0), OK, id="start-today"),
    pytest.param(goal(active=True, start=0), OK, id="active-start-today"),
    pytest.param(goal(active=True, start=3650), OK, id="start-in-ten-years"),
    pytest.param(goal(active=False, start=-1), "start_date", id="start-yesterday"),
    pytest.param(goal(active=True, start=-1), "start_date", id="active-start-yesterday"),
    pytest.param(goal(active=True, start=-3650), "start_date", id="start-ten-years-ago"),
    pytest.param(goal(active=False, start=None, end=2), "end_date", id="end-without-start"),
    pytest.param(goal(active=True, start=None, end=2), "start_date", id="active-end-no-start"),
    pytest.param(goal(start=2, end=1), "end_date", id="end-before-start"),
    pytest.param(goal(start=2, end=2), OK, id="end-equals-start"),
    pytest.param(goal(start=0, end=400), OK, id="end-next-year"),
]


def outcome(doc, today: dt.date, previous) -> str | None:
    """The field named by check_dates' refusal, or None if it accepts."""
    try:
        check_dates(schedule(doc), today, None if previous is None else schedule(previous))
    except InvalidArgument as exc:
        assert exc.rule, "a refusal must state the rule"
        assert str(exc).startswith(f"{exc.field}: ")
        return exc.field
    return None


@pytest.mark.parametrize(("doc", "field"), CREATE_CASES)
def test_check_dates_on_create(doc, field):
    assert outcome(doc, TODAY, None) == field


def test_end_date_compared_as_dates_across_years():
    # ISO strings compare correctly only while zero-padded; 9999 vs 10000 never arises.
    doc = {"active": False, "start_date": "2026-12-31", "end_date": "2027-01-01"}
    assert outcome(doc, TODAY, None) is None
    doc = {"active": False, "start_date": "2027-01-01", "end_date": "2026-12-31"}
    assert outcome(doc, TODAY, None) == "end_date"


def change(previous: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``previous`` with some stored fields replaced (start/end given as day offsets)."""
    new = dict(previous)
    for name in ("start", "end"):
        if name in fields:
            offset = fields.pop(name)
            new[f"{name}_date"] = None if offset is None else day(offset)
    new.update(fields)
    return new


UPDATE_CASES = [
    # (previous stored goal, the goal about to be stored, expected refused field)
    pytest.param(goal(False, 2), change(goal(False, 2), start=5), OK, id="future-start-moves"),
    pytest.param(goal(False, 2), change(goal(False, 2), start=0), OK, id="future-start-to-today"),
    pytest.param(
        goal(False, 2), change(goal(False, 2), start=-1), "start_date", id="future-to-past"
    ),
    pytest.param(goal(False, 2), change(goal(False, 2), start=None), OK, id="future-start-cleared"),
    pytest.param(goal(True, 0), change(goal(True, 0), start=1), OK, id="start-today-not-passed"),
    pytest.param(goal(True, -1), change(goal(True, -1), start=1), "start_date", id="passed-moves"),
    pytest.param(
        goal(False, -1), change(goal(False, -1), start=None), "start_date", id="passed-cleared"
    ),
    pytest.param(
        goal(False, -1), change(goal(False, -1), start=0), "start_date", id="passed-to-today"
    ),
    pytest.param(goal(True, -5), change(goal(True, -5), end=3), OK, id="passed-unchanged-end-set"),
    pytest.param(
        goal(True, -5), change(goal(True, -5), end=-6), "end_date", id="passed-end-before-start"
    ),
    pytest.param(goal(True, -5, 9), change(goal(True, -5, 9), end=None), OK, id="end-cleared"),
    pytest.param(goal(True, -5), change(goal(True, -5), name="x"), OK, id="passed-other-fields"),
    pytest.param(
        goal(False, -5), change(goal(False, -5), name="x"), OK, id="inactive-passed-other-fields"
    ),
    # Activation: the flag goes from off to on.
    pytest.param(goal(False, 0), change(goal(False, 0), active=True), OK, id="activate-today"),
    pytest.param(goal(False, 3), change(goal(False, 3), active=True), OK, id="activate-future"),
    pytest.param(
        goal(False, -1), change(goal(False, -1), active=True), "start_date",
        id="activate-passed-start",
    ),
    pytest.param(
        goal(False, None), change(goal(False, None), active=True), "start_date",
        id="activate-without-start",
    ),
    pytest.param(
        goal(False, None), change(goal(False, None), active=True, start=0), OK,
        id="activate-setting-start-today",
    ),
    pytest.param(
        goal(False, None), change(goal(False, None), active=True, start=-1), "start_date",
        id="activate-setting-start-yesterday",
    ),
    pytest.param(
        goal(False, -2), change(goal(False, -2), active=True, start=1), "start_date",
        id="activate-moving-passed-start",
    ),
    # Re-activating a goal that is already on is not an activation.
    pytest.param(goal(True, -9), change(goal(True, -9), active=True), OK, id="already-active"),
]


@pytest.mark.parametrize(("previous", "new", "field"), UPDATE_CASES)
def test_check_dates_on_update(previous, new, field):
    assert outcome(new, TODAY, previous) == field


def test_check_dates_does_not_mutate_its_arguments():
    previous, new = goal(True, -1), change(goal(True, -1), start=3)
    snapshot = (dict(previous), dict(new))
    assert outcome(new, TODAY, previous) == "start_date"
    assert (previous, new) == snapshot


# -- name_key ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param("Checkout", "checkout", id="case"),
        pytest.param("Checkout", "CHECKOUT", id="upper"),
        pytest.param("Straße", "STRASSE", id="sharp-s-casefold"),
        pytest.param("Café", "Cafe\u0301", id="composed-vs-decomposed"),
        pytest.param("Checkout", "\uff23heckout", id="fullwidth-letter"),
        pytest.param("ﬁnal", "FINAL", id="ligature"),
        pytest.param("Ωmega", "ωMEGA", id="greek"),
    ],
)
def test_name_key_equal(a: str, b: str):
    assert name_key(a) == name_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param("Checkout", "Check out", id="inner-space"),
        pytest.param("Check out", "Check  out", id="inner-spaces-count"),
        pytest.param("Checkout 1", "Checkout 2", id="digits"),
        pytest.param("Café", "Cafe", id="accent-matters"),
        pytest.param("Checkout", "Checkout.", id="punctuation"),
    ],
)
def test_name_key_distinct(a: str, b: str):
    assert name_key(a) != name_key(b)


def test_name_key_is_idempotent():
    for name in ("Checkout", "Straße", "ＣＨＥＣＫ", "Café ☕", "ΐ"):  # noqa: RUF001
        assert name_key(name_key(name)) == name_key(name)
