"""Settings of the config service (env prefix ``GOALFLOW_``)."""

from __future__ import annotations

import datetime as dt

from pydantic import AwareDatetime, Field

from goalflow_common.settings import ServiceSettings


class ConfigSettings(ServiceSettings):
    """The config service: goals and their limits."""

    grpc_port: int = 50051
    """Port of the config gRPC server (0 picks a free one)."""

    config_db_name: str = "goalflow_config"
    """Database of the config service."""

    tracker_address: str = "127.0.0.1:50052"
    """Tracker gRPC address, asked for the 7-day conversion counts; empty to never ask."""

    tracker_timeout_s: float = 0.5
    """Deadline of the 7-day count call; past it the list answers without counts."""

    simulation_max_days: int = Field(92, ge=1, le=3660)
    """SimulateGoal: the longest date range simulated, in days (both ends included); a
    longer one is refused with INVALID_ARGUMENT naming this limit."""

    clock_start: AwareDatetime | None = None
    """The instant the service's clock starts from instead of the real time (ISO 8601 with
    an offset, e.g. ``2026-05-01T00:00:00Z``); it then runs at normal speed. For demos and
    replays of recorded traffic, so goals can start on the recording's first day. Never set
    in production: "today" would be wrong for every account."""

    def clock_offset(self, now: dt.datetime) -> dt.timedelta:
        """How far the service's clock is from ``now`` (the real time at start-up)."""
        return self.clock_start - now if self.clock_start is not None else dt.timedelta()
