"""``goalflow-keys`` (goalflow_common.keys_cli) as an operator runs it: a real subprocess
against the real database; the keys it issues authenticate through the real KeyStore."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from goalflow_common.auth import KeyStore, Role
from goalflow_common.errors import Unauthenticated
from goalflow_dev.embedded_mongo import free_port


def _keys_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goalflow_common.keys_cli", *args],
        capture_output=True, text=True, env=env, timeout=30,
    )


async def test_keys_cli_creates_accounts_and_keys_that_authenticate(mongo_uri, db_prefix, mongo):
    env = {**os.environ, "MONGODB_URI": mongo_uri, "GOALFLOW_AUTH_DB_NAME": f"{db_prefix}_auth"}
    store = KeyStore(mongo[f"{db_prefix}_auth"], cache_ttl_s=0)

    created = await asyncio.to_thread(
        _keys_cli, env, "create-account", "acme", "--time-zone", "Europe/Paris"
    )
    assert created.returncode == 0, created.stderr
    assert (await store.get_account("acme")).time_zone == "Europe/Paris"

    issued = await asyncio.to_thread(
        _keys_cli, env, "create-key", "--account", "acme", "--role", "admin", "--label", "ci"
    )
    assert issued.returncode == 0, issued.stderr
    key = issued.stdout.strip()
    principal = await store.authenticate(key)
    assert (principal.account_id, principal.role) == ("acme", Role.ADMIN)

    platform = await asyncio.to_thread(
        _keys_cli, env, "create-key", "--platform", "--role", "service"
    )
    assert platform.returncode == 0, platform.stderr
    service = await store.authenticate(platform.stdout.strip())
    assert (service.account_id, service.role) == (None, Role.SERVICE)

    revoked = await asyncio.to_thread(_keys_cli, env, "revoke", principal.key_id)
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(Unauthenticated):
        await store.authenticate(key)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create-key", "--account", "nobody", "--role", "admin"), "account 'nobody' not found"),
        (("create-key", "--platform", "--role", "admin"), "--role service"),
        (("create-account", "Not Valid"), "account id"),
        (("revoke", "0123456789abcdef"), "no key with id"),
    ],
)
async def test_keys_cli_errors_are_one_line_and_non_zero(mongo_uri, db_prefix, args, message):
    env = {**os.environ, "MONGODB_URI": mongo_uri, "GOALFLOW_AUTH_DB_NAME": f"{db_prefix}_auth"}
    result = await asyncio.to_thread(_keys_cli, env, *args)
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("goalflow-keys: error:") and message in line


async def test_keys_cli_reports_an_unreachable_database():
    env = {**os.environ, "MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}"}
    result = await asyncio.to_thread(_keys_cli, env, "create-account", "acme")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"goalflow-keys: error: cannot reach the database at {env['MONGODB_URI']} "
        "(is `make run` running?)"
    ]
