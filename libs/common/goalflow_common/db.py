"""The MongoDB connection, through PyMongo's async API."""

from __future__ import annotations

import structlog
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

log = structlog.get_logger(__name__)


async def connect(uri: str, *, app_name: str, attempts: int = 8) -> AsyncMongoClient:
    """Open a client and wait until the server answers a ping.

    Start-up is the one place a database that is still booting is expected, so the ping is
    retried with bounded exponential backoff; after ``attempts`` the error is raised.
    """
    client: AsyncMongoClient = AsyncMongoClient(
        uri, appname=app_name, tz_aware=True, serverSelectionTimeoutMS=2000
    )
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(ConnectionFailure),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        ):
            with attempt:
                await client.admin.command("ping")
    except BaseException:
        await client.close()
        raise
    log.info("mongodb_connected", app=app_name)
    return client
