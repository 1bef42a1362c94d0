"""Settings of the tracker service (env prefix ``GOALFLOW_``)."""

from __future__ import annotations

from pydantic import Field

from goalflow_common.settings import ServiceSettings


class TrackerSettings(ServiceSettings):
    """The tracker: events, attribution, conversions, reports."""

    grpc_port: int = 50052
    """Port of the tracker gRPC server (0 picks a free one)."""

    tracker_db_name: str = "goalflow_tracker"
    """Database of the tracker service."""

    config_address: str = "127.0.0.1:50051"
    """Config gRPC address: goals come from ListActiveGoals/WatchGoals there."""

    max_batch_events: int = 1000
    """Most events accepted in one IngestEvents batch."""

    goal_resync_max_backoff_s: float = 5.0
    """Longest wait between attempts to reconnect to config's goal feed."""

    stream_chunk_size: int = 500
    """Conversions per StreamConversions message."""

    subscriber_max_lag_s: float = Field(10.0, gt=0)
    """SubscribeConversions: a subscriber whose oldest undelivered conversion has waited this
    many seconds is dropped (RESOURCE_EXHAUSTED); a burst it keeps up with is delivered."""

    subscriber_max_queued: int = Field(20_000, gt=0)
    """SubscribeConversions: most undelivered conversions held for one subscriber (a hard
    memory bound besides the time limit); reaching it drops the subscriber too."""

    simulation_max_days: int = Field(92, ge=1, le=3660)
    """ReplayGoal (config's SimulateGoal): the longest range replayed, in days (config
    refuses a longer date range; the tracker allows one day more for time zones)."""
