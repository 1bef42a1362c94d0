"""Settings of the config service (env prefix ``GOALFLOW_``)."""

from __future__ import annotations

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
