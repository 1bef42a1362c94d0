"""Fixtures every test shares: one real database server for the session (the embedded
nx-27017, or the MongoDB given by MONGODB_URI), a fresh set of database names per test,
and helpers to create accounts and keys."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import structlog
from pymongo import AsyncMongoClient

from config_svc.settings import ConfigSettings
from goalflow_common.auth import KeyStore, Role
from goalflow_common.clock import ManualClock
from goalflow_common.logs import configure_logging
from goalflow_common.tokens import TokenAuthority, parse_token_keys
from goalflow_dev.embedded_mongo import EmbeddedMongo

# The token signing key every test server is configured with (GOALFLOW_TOKEN_KEYS), new per
# session; the ``tokens`` fixture mints with it.
TOKEN_KEYS = f"test-1:{secrets.token_urlsafe(32)}"


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running MongoDB-compatible server: MONGODB_URI if set, else embedded nx-27017."""
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    server = EmbeddedMongo(Path(tmp_path_factory.mktemp("mongo")))
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
async def db_prefix(mongo_uri: str) -> AsyncIterator[str]:
    """Per-test database name prefix, so tests never see each other's data. The test's
    databases are dropped afterwards (nx-27017 also caps how many it keeps open)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    client: AsyncMongoClient = AsyncMongoClient(mongo_uri)
    try:
        for name in await client.list_database_names():
            if name.startswith(f"{prefix}_"):
                await client.drop_database(name)
    finally:
        await client.close()


@pytest.fixture
async def mongo(mongo_uri: str) -> AsyncIterator[AsyncMongoClient]:
    client: AsyncMongoClient = AsyncMongoClient(mongo_uri, tz_aware=True)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC))


@pytest.fixture
async def keys(mongo: AsyncMongoClient, db_prefix: str) -> KeyStore:
    return KeyStore(mongo[f"{db_prefix}_auth"], cache_ttl_s=30)


class Tenant:
    """An account with one key per role."""

    def __init__(self, account_id: str, api_keys: dict[Role, str]) -> None:
        self.account_id = account_id
        self.keys = api_keys

    @property
    def admin(self) -> str:
        return self.keys[Role.ADMIN]


@pytest.fixture
def make_tenant(keys: KeyStore):
    async def make(account_id: str | None = None, time_zone: str = "UTC") -> Tenant:
        account_id = account_id or f"acct-{uuid.uuid4().hex[:8]}"
        await keys.create_account(account_id, time_zone=time_zone)
        api_keys = {}
        for role in (Role.ADMIN, Role.AGENT, Role.INGEST, Role.SERVICE):
            api_keys[role] = await keys.create_key(account_id, role)
        return Tenant(account_id, api_keys)

    return make


@pytest.fixture
async def platform_key(keys: KeyStore) -> str:
    """A platform-wide service key (no account), as the services use between themselves."""
    return await keys.create_key(None, Role.SERVICE, label="tests")


@pytest.fixture
def tokens() -> TokenAuthority:
    """Mints tokens the test servers accept (they verify with ``TOKEN_KEYS``)."""
    return TokenAuthority(parse_token_keys(TOKEN_KEYS))


@pytest.fixture
def config_settings(mongo_uri: str, db_prefix: str) -> ConfigSettings:
    """Config service settings on this test's databases, any free port, no tracker, and
    the tests' token key."""
    return ConfigSettings(
        mongodb_uri=mongo_uri,
        auth_db_name=f"{db_prefix}_auth",
        config_db_name=f"{db_prefix}_config",
        grpc_port=0,
        tracker_address="",
        shutdown_grace_s=1.0,
        token_keys=TOKEN_KEYS,
    )


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict]]]:
    """Logging configured as the services do it (JSON lines on stderr), but uncached, so no
    logger keeps this configuration after the test; returns a reader of the JSON lines
    written to stderr since the last read (every stderr line must be JSON)."""
    configure_logging("INFO", cache=False)
    capsys.readouterr()

    def read() -> list[dict]:
        err = capsys.readouterr().err
        return [json.loads(line) for line in err.splitlines() if line.strip()]

    try:
        yield read
    finally:
        structlog.reset_defaults()
