"""goalflow_common: the runtime every goalflow service process is built from.

Settings read once at start-up, the gRPC server bootstrap (health, reflection, the
interceptors, graceful SIGTERM), authentication, the database connection, channels to the
other services, the clock, the domain errors, logging and money. Generated protobuf code
lives in ``goalflow_common.pb`` (``make protos``). ``goalflow-keys`` (``keys_cli``) is the
operator's tool for accounts, keys and tokens (through the AccountService), shipped in the
image beside the services.

Only the runtime dependencies of pyproject.toml are needed here. People's tools live in
their own packages: ``goalflow_client`` (the ``goalflow`` CLI, the event producer) and
``goalflow_dev`` (dev stack, demo, embedded database, SMTP sink).

``__all__`` is what services reach for; the rest stays in its module. The names are loaded
on first use (PEP 562) so that importing ``goalflow_common.pb`` alone (the CLI's ``--help``)
does not pull in pymongo and pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from goalflow_common.auth import KeyStore, Principal, Role, current_principal
    from goalflow_common.client import make_channel
    from goalflow_common.clock import Clock, ManualClock, SystemClock
    from goalflow_common.db import connect
    from goalflow_common.errors import (
        DomainError,
        FailedPrecondition,
        InvalidArgument,
        NotFound,
        Unavailable,
    )
    from goalflow_common.logs import configure_logging
    from goalflow_common.server import GoalflowServer, Registration, build_server, run_service
    from goalflow_common.settings import ServiceSettings

_EXPORTS = {
    "ServiceSettings": "settings",
    "GoalflowServer": "server",
    "Registration": "server",
    "build_server": "server",
    "run_service": "server",
    "KeyStore": "auth",
    "Principal": "auth",
    "Role": "auth",
    "current_principal": "auth",
    "connect": "db",
    "make_channel": "client",
    "Clock": "clock",
    "ManualClock": "clock",
    "SystemClock": "clock",
    "DomainError": "errors",
    "FailedPrecondition": "errors",
    "InvalidArgument": "errors",
    "NotFound": "errors",
    "Unavailable": "errors",
    "configure_logging": "logs",
}

__all__ = [
    "Clock",
    "DomainError",
    "FailedPrecondition",
    "GoalflowServer",
    "InvalidArgument",
    "KeyStore",
    "ManualClock",
    "NotFound",
    "Principal",
    "Registration",
    "Role",
    "ServiceSettings",
    "SystemClock",
    "Unavailable",
    "build_server",
    "configure_logging",
    "connect",
    "current_principal",
    "make_channel",
    "run_service",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
