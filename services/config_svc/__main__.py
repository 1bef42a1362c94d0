"""``python -m config_svc``: run the config service until SIGTERM."""

from __future__ import annotations

import asyncio

import structlog

from config_svc.server import create_server
from config_svc.settings import ConfigSettings
from goalflow_common.logs import configure_logging


async def _serve(settings: ConfigSettings) -> None:
    server, port = await create_server(settings)
    await server.start()
    structlog.get_logger("config_svc").info(
        "listening", service="config", address=f"{settings.grpc_host}:{port}"
    )
    await server.serve_until_signal()


def main() -> None:
    settings = ConfigSettings()
    configure_logging(settings.log_level)
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
