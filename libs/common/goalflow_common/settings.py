"""Settings shared by every service, read from the environment once at start-up.

Each service subclasses :class:`ServiceSettings` with its own fields. Field docstrings are
the documentation (``use_attribute_docstrings``); the README lists the variables.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """What every goalflow server needs."""

    model_config = SettingsConfigDict(
        env_prefix="GOALFLOW_", use_attribute_docstrings=True, extra="ignore", frozen=True
    )

    mongodb_uri: str = Field(
        default="mongodb://127.0.0.1:27117", validation_alias="MONGODB_URI"
    )
    """MongoDB connection string (env ``MONGODB_URI``): the embedded nx-27017 server by
    default, or a real replica set."""

    auth_db_name: str = "goalflow_auth"
    """Database holding accounts and hashed API keys, read by every service."""

    grpc_host: str = "127.0.0.1"
    """Interface the gRPC server binds to."""

    log_level: str = "INFO"
    """Minimum log level: DEBUG, INFO, WARNING or ERROR."""

    shutdown_grace_s: float = 10.0
    """On SIGTERM: seconds in-flight RPCs get to finish after streams are told to end."""

    key_cache_ttl_s: float = 30.0
    """Seconds a verified API key is trusted before it is looked up again (revocation delay)."""

    max_message_bytes: int = 8 * 1024 * 1024
    """Largest gRPC message accepted or sent, in bytes."""

    mongo_connect_attempts: int = 8
    """How many times start-up tries to reach MongoDB before giving up (exponential backoff)."""

    service_api_key: str = ""
    """Platform service key this service uses to call the others (``service`` role)."""
