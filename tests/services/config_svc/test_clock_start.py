"""``GOALFLOW_CLOCK_START``: the config service's clock starts at the given instant instead of
the real time, then runs at normal speed. It is how the demo sets goals up "30 days ago" for
a recorded data set without breaking the no-retroactive-start-date rule."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from pydantic import ValidationError

from config_svc.server import create_server
from config_svc.settings import ConfigSettings
from goalflow_common.client import make_channel
from goalflow_common.pb.goals.v1 import config_pb2, config_pb2_grpc
from tests.services.config_svc.helpers import date, goal_request

DAY = dt.timedelta(days=1)


async def _create(settings: ConfigSettings, admin_key: str, requests):
    """Start a config server with ``settings`` and its own clock (none injected), create
    the goals, stop it. Returns a goal or the refusal for each request."""
    server, port = await create_server(settings)
    await server.start()
    results = []
    try:
        async with make_channel(f"127.0.0.1:{port}", admin_key) as channel:
            stub = config_pb2_grpc.ConfigServiceStub(channel)
            for request in requests:
                try:
                    results.append((await stub.CreateGoal(request)).goal)
                except grpc.aio.AioRpcError as err:
                    results.append(err)
    finally:
        await server.stop(0.5)
    return results


async def test_clock_start_moves_today_back_and_the_clock_runs_on(config_settings, make_tenant):
    admin = (await make_tenant()).admin
    real_today = dt.datetime.now(dt.UTC).date()
    start = dt.datetime.combine(real_today - 30 * DAY, dt.time(9, 30), tzinfo=dt.UTC)
    shifted = config_settings.model_copy(update={"clock_start": start})

    before = dt.datetime.now(dt.UTC)
    month_ago, day_before = await _create(
        shifted, admin,
        [
            goal_request("Started a month ago", active=True, start_date=date(start.date())),
            goal_request("Day before", active=True, start_date=date(start.date() - DAY)),
        ],
    )
    elapsed = dt.datetime.now(dt.UTC) - before

    # "Today" is the clock start's day: that start date is accepted, the day before is not.
    assert month_ago.start_date == date(start.date())
    assert month_ago.status == config_pb2.GOAL_STATUS_ACTIVE
    assert day_before.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert day_before.details().startswith("start_date: ")
    # The clock started at clock_start and ran at normal speed from there.
    created = month_ago.create_time.ToDatetime(tzinfo=dt.UTC)
    assert start <= created <= start + elapsed + dt.timedelta(seconds=1)

    # Without the setting the same start date is a retroactive one and is refused.
    [refused] = await _create(
        config_settings, admin,
        [goal_request("Real clock", active=True, start_date=date(start.date()))],
    )
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details().startswith("start_date: ")


def test_clock_start_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("GOALFLOW_CLOCK_START", "2026-05-02T00:00:00+02:00")
    settings = ConfigSettings()
    assert settings.clock_start == dt.datetime(2026, 5, 1, 22, 0, tzinfo=dt.UTC)
    now = dt.datetime(2026, 6, 1, 22, 0, tzinfo=dt.UTC)
    assert settings.clock_offset(now) == -31 * DAY
    assert ConfigSettings(clock_start=None).clock_offset(now) == dt.timedelta()


def test_clock_start_without_an_offset_is_refused(monkeypatch):
    monkeypatch.setenv("GOALFLOW_CLOCK_START", "2026-05-02T00:00:00")
    with pytest.raises(ValidationError, match="clock_start"):
        ConfigSettings()
