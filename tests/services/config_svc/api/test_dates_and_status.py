"""docs/rules.md §2 date rules and status derivation, with the manual clock moved by hand:
no retroactive start date, a passed start date is frozen, status INACTIVE / SCHEDULED /
ACTIVE / ENDING n / ENDED at read time, and all of it in the account's time zone."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from goalflow_common.pb.goals.v1 import config_pb2
from tests.services.config_svc.helpers import date, goal_request

DAY = dt.timedelta(days=1)
UTC = dt.UTC
INACTIVE = config_pb2.GOAL_STATUS_INACTIVE
SCHEDULED = config_pb2.GOAL_STATUS_SCHEDULED
ACTIVE = config_pb2.GOAL_STATUS_ACTIVE
ENDING = config_pb2.GOAL_STATUS_ENDING
ENDED = config_pb2.GOAL_STATUS_ENDED


async def refused_naming(call, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    details = err.value.details() or ""
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details.startswith(f"{field}: "), details


async def get(stub, goal_id: str) -> config_pb2.Goal:
    return (await stub.GetGoal(config_pb2.GetGoalRequest(goal_id=goal_id))).goal


async def listed(stub) -> dict[str, config_pb2.Goal]:
    rows = (await stub.ListGoals(config_pb2.ListGoalsRequest())).goals
    return {row.goal.id: row.goal for row in rows}


async def status_everywhere(stub, goal_id: str) -> tuple[int, int]:
    """(status, days_remaining) from GetGoal, checked to agree with ListGoals."""
    one = await get(stub, goal_id)
    row = (await listed(stub))[goal_id]
    assert (row.status, row.days_remaining) == (one.status, one.days_remaining)
    return one.status, one.days_remaining


def update(goal_id: str, paths: list[str], **fields) -> config_pb2.UpdateGoalRequest:
    return config_pb2.UpdateGoalRequest(
        goal_id=goal_id, goal=config_pb2.Goal(**fields), update_mask=FieldMask(paths=paths)
    )


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# -- no retroactive start date -----------------------------------------------------------


@pytest.mark.parametrize("active", [False, True], ids=["inactive", "active"])
async def test_create_with_start_yesterday_is_refused(config_stub, make_tenant, clock, active):
    stub = config_stub((await make_tenant()).admin)
    today = clock.now().date()
    request = goal_request(active=active, start_date=date(today - DAY))
    await refused_naming(stub.CreateGoal(request), "start_date")
    assert await listed(stub) == {}
    goal = (await stub.CreateGoal(goal_request(active=active, start_date=date(today)))).goal
    assert goal.start_date == date(today)
    assert goal.status == (ACTIVE if active else INACTIVE)


async def test_today_ends_at_midnight(config_stub, make_tenant, clock):
    """The last second of a day still counts as that day; a second later it is yesterday."""
    stub = config_stub((await make_tenant()).admin)
    day = clock.now().date()
    clock.set(utc(day.year, day.month, day.day, 23, 59, 59))
    await stub.CreateGoal(goal_request("Late", active=True, start_date=date(day)))
    clock.advance(dt.timedelta(seconds=1))
    await refused_naming(
        stub.CreateGoal(goal_request("Too late", active=True, start_date=date(day))), "start_date"
    )


async def test_activate_with_start_yesterday_is_refused(config_stub, make_tenant, clock):
    stub = config_stub((await make_tenant()).admin)
    today = clock.now().date()
    created = (await stub.CreateGoal(goal_request())).goal
    yesterday = config_pb2.ActivateGoalRequest(goal_id=created.id, start_date=date(today - DAY))
    await refused_naming(stub.ActivateGoal(yesterday), "start_date")
    assert await get(stub, created.id) == created
    todays = config_pb2.ActivateGoalRequest(goal_id=created.id, start_date=date(today))
    activated = (await stub.ActivateGoal(todays)).goal
    assert activated.active and activated.status == ACTIVE
    assert activated.start_date == date(today)


async def test_activate_after_stored_start_passed_is_refused(config_stub, make_tenant, clock):
    """A goal created inactive with a future start cannot be activated once that start has
    passed, neither as is nor by moving the start date (it has passed, so it is frozen)."""
    stub = config_stub((await make_tenant()).admin)
    today = clock.now().date()
    created = (await stub.CreateGoal(goal_request(start_date=date(today + DAY)))).goal
    clock.advance(2 * DAY)
    await refused_naming(
        stub.ActivateGoal(config_pb2.ActivateGoalRequest(goal_id=created.id)), "start_date"
    )
    moved = config_pb2.ActivateGoalRequest(goal_id=created.id, start_date=date(today + 2 * DAY))
    await refused_naming(stub.ActivateGoal(moved), "start_date")
    assert await get(stub, created.id) == created


async def test_update_cannot_set_start_in_the_past(config_stub, make_tenant, clock):
    stub = config_stub((await make_tenant()).admin)
    today = clock.now().date()
    created = (await stub.CreateGoal(goal_request())).goal
    await refused_naming(
        stub.UpdateGoal(update(created.id, ["start_date"], start_date=date(today - DAY))),
        "start_date",
    )
    assert await get(stub, created.id) == created


# -- a passed start date is frozen -------------------------------------------------------


async def test_start_date_frozen_once_passed(config_stub, make_tenant, clock):
    stub = config_stub((await make_tenant()).admin)
    today = clock.now().date()
    start = today + DAY
    created = (
        await stub.CreateGoal(goal_request(active=True, start_date=date(start)))
    ).goal
    # Before the start date passes it can move freely (forwards or back to today).
    moved = (
        await stub.UpdateGoal(update(created.id, ["start_date"], start_date=date(today)))
    ).goal
    assert moved.start_date == date(today)
    moved = (
        await stub.UpdateGoal(update(created.id, ["start_date"], start_date=date(start)))
    ).goal

    clock.advance(2 * DAY)  # the start date is now yesterday
    for new_start in (start + DAY, start + 5 * DAY):
        await refused_naming(
            stub.UpdateGoal(update(created.id, ["start_date"], start_date=date(new_start))),
            "start_date",
        )
    await refused_naming(stub.UpdateGoal(update(created.id, ["start_date"])), "start_date")
    await refused_naming(
        stub.ActivateGoal(
            config_pb2.ActivateGoalRequest(goal_id=created.id, start_date=date(start + 3 * DAY))
        ),
        "start_date",
    )
    unchanged = await get(stub, created.id)
    assert (unchanged.revision, unchanged.start_date) == (moved.revision, date(start))

    # Every other field still changes, and naming the unchanged start date is harmless.
    end = start + 30 * DAY
    renamed = (
        await stub.UpdateGoal(
            update(
                created.id,
                ["name", "end_date", "attribution_period_days", "start_date"],
                name="Checkout v2",
                end_date=date(end),
                attribution_period_days=14,
                start_date=date(start),
            )
        )
    ).goal
    assert (renamed.name, renamed.end_date, renamed.attribution_period_days) == (
        "Checkout v2",
        date(end),
        14,
    )
    assert renamed.start_date == date(start) and renamed.status == ACTIVE
    # An empty mask writes every field; with the same start date that is allowed too.
    full = config_pb2.Goal()
    full.CopyFrom(renamed)
    full.description = "all fields"
    everything = (
        await stub.UpdateGoal(config_pb2.UpdateGoalRequest(goal_id=created.id, goal=full))
    ).goal
    assert everything.description == "all fields"
    assert everything.revision == renamed.revision + 1
    # Activating the already-active goal again is a no-op, not a start date change.
    again = (
        await stub.ActivateGoal(config_pb2.ActivateGoalRequest(goal_id=created.id))
    ).goal
    assert again == everything


async def test_deactivated_after_start_cannot_be_reactivated(config_stub, make_tenant, clock):
    """docs/rules.md, literally: activating with a start date before today is refused, and a passed
    start date cannot change, so such a goal cannot be turned back on."""
    stub = config_stub((await make_tenant()).admin)
    today = clock.now().date()
    created = (
        await stub.CreateGoal(goal_request(active=True, start_date=date(today)))
    ).goal
    # On the start day itself the start has not passed: off and on again is fine.
    await stub.DeactivateGoal(config_pb2.DeactivateGoalRequest(goal_id=created.id))
    on_again = (
        await stub.ActivateGoal(config_pb2.ActivateGoalRequest(goal_id=created.id))
    ).goal
    assert on_again.active

    clock.advance(DAY)
    off = (
        await stub.DeactivateGoal(config_pb2.DeactivateGoalRequest(goal_id=created.id))
    ).goal
    assert not off.active and off.status == INACTIVE
    await refused_naming(
        stub.ActivateGoal(config_pb2.ActivateGoalRequest(goal_id=created.id)), "start_date"
    )
    await refused_naming(
        stub.ActivateGoal(
            config_pb2.ActivateGoalRequest(goal_id=created.id, start_date=date(today + DAY))
        ),
        "start_date",
    )
    assert await get(stub, created.id) == off
    assert not (await stub.ListActiveGoals(config_pb2.ListActiveGoalsRequest())).goals


# -- status derivation --------------------------------------------------------------------


async def test_status_of_each_kind_of_goal(config_stub, make_tenant, clock):
    stub = config_stub((await make_tenant()).admin)
    today = clock.now().date()

    def active(start: int, end: int | None = None, **kw):
        dates = {"start_date": date(today + start * DAY)}
        if end is not None:
            dates["end_date"] = date(today + end * DAY)
        return {"active": True, **dates, **kw}

    cases = {
        # name: (request fields, expected status, expected days_remaining)
        "inactive": ({}, INACTIVE, 0),
        "inactive ending today": (
            {"start_date": date(today), "end_date": date(today)}, INACTIVE, 0,
        ),
        "scheduled": (active(1), SCHEDULED, 0),
        # Not started yet wins over ending soon.
        "scheduled ending soon": (active(1, 2), SCHEDULED, 0),
        "active open-ended": (active(0), ACTIVE, 0),
        "ends today": (active(0, 0), ENDING, 1),
        "ends tomorrow": (active(0, 1), ENDING, 2),
        "ends in 4 days": (active(0, 4), ENDING, 5),
        "ends in 5 days": (active(0, 5), ACTIVE, 0),
        "ends in a year": (active(0, 365), ACTIVE, 0),
    }
    ids = {}
    for name, (fields, _, _) in cases.items():
        ids[name] = (await stub.CreateGoal(goal_request(name, **fields))).goal.id
    rows = await listed(stub)
    for name, (_, status, remaining) in cases.items():
        goal = await get(stub, ids[name])
        assert (goal.status, goal.days_remaining) == (status, remaining), name
        assert (rows[ids[name]].status, rows[ids[name]].days_remaining) == (status, remaining)


async def test_status_follows_the_clock(config_stub, make_tenant, clock):
    """One goal from tomorrow through six days later, read each day as the clock moves."""
    stub = config_stub((await make_tenant()).admin)
    today = clock.now().date()
    created = (
        await stub.CreateGoal(
            goal_request(
                active=True, start_date=date(today + DAY), end_date=date(today + 7 * DAY)
            )
        )
    ).goal
    expected = [
        (SCHEDULED, 0),  # start tomorrow
        (ACTIVE, 0),  # first day: seven days left
        (ACTIVE, 0),  # six days left
        (ENDING, 5),
        (ENDING, 4),
        (ENDING, 3),
        (ENDING, 2),
        (ENDING, 1),  # the end date itself
        (ENDED, 0),
        (ENDED, 0),
    ]
    seen = []
    for _ in expected:
        seen.append(await status_everywhere(stub, created.id))
        clock.advance(DAY)
    assert seen == expected


async def test_ended_at_midnight_after_end_date(config_stub, make_tenant, clock):
    stub = config_stub((await make_tenant()).admin)
    today = clock.now().date()
    created = (
        await stub.CreateGoal(
            goal_request(active=True, start_date=date(today), end_date=date(today))
        )
    ).goal
    clock.set(utc(today.year, today.month, today.day, 23, 59, 59))
    assert await status_everywhere(stub, created.id) == (ENDING, 1)
    clock.advance(dt.timedelta(seconds=1))
    assert await status_everywhere(stub, created.id) == (ENDED, 0)
    # Ended goals keep their active flag (they still count toward the limit) ...
    active = (await stub.ListActiveGoals(config_pb2.ListActiveGoalsRequest())).goals
    assert [(g.id, g.status) for g in active] == [(created.id, ENDED)]
    # ... until deactivated.
    await stub.DeactivateGoal(config_pb2.DeactivateGoalRequest(goal_id=created.id))
    assert await status_everywhere(stub, created.id) == (INACTIVE, 0)


async def test_tracking_times_in_utc_account(config_stub, make_tenant, clock):
    stub = config_stub((await make_tenant()).admin)
    today = clock.now().date()  # 2026-06-01
    goal = (
        await stub.CreateGoal(
            goal_request(start_date=date(today), end_date=date(today + 9 * DAY))
        )
    ).goal
    assert goal.time_zone == "UTC"
    assert goal.tracking_start_time.ToDatetime(tzinfo=UTC) == utc(2026, 6, 1)
    assert goal.tracking_end_time.ToDatetime(tzinfo=UTC) == utc(2026, 6, 11)
    open_ended = (await stub.CreateGoal(goal_request("No dates"))).goal
    assert not open_ended.HasField("tracking_start_time")
    assert not open_ended.HasField("tracking_end_time")


# -- the account's time zone ------------------------------------------------------------


async def test_today_is_the_accounts_today_ahead_of_utc(config_stub, make_tenant, clock):
    """Auckland (UTC+12 in June): at 13:00 UTC on 1 June it is already 2 June there."""
    tenant = await make_tenant(time_zone="Pacific/Auckland")
    stub = config_stub(tenant.admin)
    clock.set(utc(2026, 6, 1, 13, 0))
    utc_today, nz_today = dt.date(2026, 6, 1), dt.date(2026, 6, 2)
    assert clock.now().date() == utc_today

    await refused_naming(
        stub.CreateGoal(goal_request("UTC today", active=True, start_date=date(utc_today))),
        "start_date",
    )
    goal = (
        await stub.CreateGoal(
            goal_request(active=True, start_date=date(nz_today), end_date=date(nz_today))
        )
    ).goal
    assert goal.time_zone == "Pacific/Auckland"
    # In UTC terms this would be SCHEDULED with two days left; in Auckland it ends today.
    assert (goal.status, goal.days_remaining) == (ENDING, 1)
    assert goal.tracking_start_time.ToDatetime(tzinfo=UTC) == utc(2026, 6, 1, 12)
    assert goal.tracking_end_time.ToDatetime(tzinfo=UTC) == utc(2026, 6, 2, 12)

    clock.set(utc(2026, 6, 2, 11, 59, 59))  # 23:59:59 on 2 June in Auckland
    assert await status_everywhere(stub, goal.id) == (ENDING, 1)
    clock.set(utc(2026, 6, 2, 12, 0))  # midnight in Auckland, still 2 June in UTC
    assert await status_everywhere(stub, goal.id) == (ENDED, 0)


async def test_today_is_the_accounts_today_behind_utc(config_stub, make_tenant, clock):
    """Los Angeles (UTC-7 in June): at 03:00 UTC on 1 June it is still 31 May there."""
    la = config_stub((await make_tenant(time_zone="America/Los_Angeles")).admin)
    utc_account = config_stub((await make_tenant()).admin)
    clock.set(utc(2026, 6, 1, 3, 0))
    la_today = dt.date(2026, 5, 31)
    goal = (await la.CreateGoal(goal_request(active=True, start_date=date(la_today)))).goal
    assert goal.status == ACTIVE
    assert goal.tracking_start_time.ToDatetime(tzinfo=UTC) == utc(2026, 5, 31, 7)
    # The same date is yesterday for a UTC account at the same instant.
    await refused_naming(
        utc_account.CreateGoal(goal_request(active=True, start_date=date(la_today))),
        "start_date",
    )
    # A goal starting on 1 June is scheduled in Los Angeles but would be active in UTC.
    june_first = date(dt.date(2026, 6, 1))
    later = (await la.CreateGoal(goal_request("Later", active=True, start_date=june_first))).goal
    assert later.status == SCHEDULED
    now_utc = (await utc_account.CreateGoal(goal_request(active=True, start_date=june_first)))
    assert now_utc.goal.status == ACTIVE


async def test_tracking_times_follow_daylight_saving(config_stub, make_tenant, clock):
    """Auckland moves from UTC+12 to UTC+13 on 27 September 2026: the start midnight and the
    exclusive end midnight use the offset in force on each day."""
    stub = config_stub((await make_tenant(time_zone="Pacific/Auckland")).admin)
    clock.set(utc(2026, 9, 1))
    goal = (
        await stub.CreateGoal(
            goal_request(
                active=True,
                start_date=date(dt.date(2026, 9, 20)),
                end_date=date(dt.date(2026, 10, 10)),
            )
        )
    ).goal
    assert goal.tracking_start_time.ToDatetime(tzinfo=UTC) == utc(2026, 9, 19, 12)
    assert goal.tracking_end_time.ToDatetime(tzinfo=UTC) == utc(2026, 10, 10, 11)
    assert goal.status == SCHEDULED


@pytest.mark.parametrize(
    ("zone", "end_instant"),
    [
        ("Pacific/Kiritimati", utc(9999, 12, 30, 10)),  # UTC+14
        ("Etc/GMT+12", utc(9999, 12, 31, 12)),  # UTC-12
        ("UTC", utc(9999, 12, 31)),
    ],
)
async def test_latest_end_date_stays_readable(
    config_stub, make_tenant, clock, zone, end_instant
):
    """The latest accepted end date still has a representable tracking end in the zones
    furthest from UTC, so the goal and the account's list stay readable."""
    stub = config_stub((await make_tenant(time_zone=zone)).admin)
    # Tomorrow in UTC is today or later in every zone.
    start = clock.now().date() + DAY
    latest = dt.date(9999, 12, 30)
    goal = (
        await stub.CreateGoal(goal_request(start_date=date(start), end_date=date(latest)))
    ).goal
    assert goal.tracking_end_time.ToDatetime(tzinfo=UTC) == end_instant
    assert goal.id in await listed(stub)
