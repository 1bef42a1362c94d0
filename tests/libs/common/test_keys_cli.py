"""``goalflow-keys`` (goalflow_common.keys_cli) as an operator runs it: a real subprocess.
``bootstrap`` against the real auth database; every other command through a real config
server's AccountService, the keys it prints authenticating through the real KeyStore."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from config_svc.server import create_server as create_config
from goalflow_common.auth import KeyStore, Role
from goalflow_common.errors import Unauthenticated
from goalflow_dev.embedded_mongo import free_port
from tests.conftest import TOKEN_KEYS


def _keys_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goalflow_common.keys_cli", *args],
        capture_output=True, text=True, env=env, timeout=30,
    )


async def keys_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_keys_cli, env, *args)


def _clean() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("GOALFLOW_") and k != "MONGODB_URI"}


@pytest.fixture
def db_env(mongo_uri, db_prefix) -> dict[str, str]:
    return {**_clean(), "MONGODB_URI": mongo_uri, "GOALFLOW_AUTH_DB_NAME": f"{db_prefix}_auth"}


@pytest.fixture
async def api_env(config_settings, db_env) -> AsyncIterator[dict[str, str]]:
    """A config server on the test's databases; the environment of an operator holding a
    platform key that ``bootstrap`` printed."""
    server, port = await create_config(config_settings)
    await server.start()
    try:
        booted = await keys_cli(db_env, "bootstrap")
        assert booted.returncode == 0, booted.stderr
        yield {**_clean(), "GOALFLOW_CONFIG_ADDRESS": f"127.0.0.1:{port}",
               "GOALFLOW_PLATFORM_KEY": booted.stdout.strip()}
    finally:
        await server.stop(0.5)


async def test_bootstrap_writes_the_first_platform_key_once(db_env, keys: KeyStore):
    first = await keys_cli(db_env, "bootstrap", "--label", "ops")
    assert first.returncode == 0, first.stderr
    principal = await keys.authenticate(first.stdout.strip())
    assert (principal.account_id, principal.role) == (None, Role.PLATFORM)
    assert "shown once" in first.stderr and first.stdout.strip() not in first.stderr

    again = await keys_cli(db_env, "bootstrap")
    assert again.returncode == 1 and again.stdout == ""
    [line] = again.stderr.splitlines()
    assert line.startswith("goalflow-keys: error: 1 platform key(s) exist already")
    assert principal.key_id in line

    forced = await keys_cli(db_env, "bootstrap", "--again")
    assert forced.returncode == 0, forced.stderr
    assert (await keys.authenticate(forced.stdout.strip())).role is Role.PLATFORM
    listed = [k for k in await keys.list_keys(None, None, 10) if k.role is Role.PLATFORM]
    assert [k.label for k in listed if k.key_id == principal.key_id] == ["ops"]


async def test_accounts_keys_and_tokens_go_through_the_api(api_env, keys: KeyStore):
    created = await keys_cli(api_env, "create-account", "acme", "--name", "Acme",
                             "--time-zone", "Europe/Paris")
    assert created.returncode == 0, created.stderr
    assert created.stdout == "account acme (Europe/Paris) 'Acme'\n"
    assert (await keys.get_account("acme")).time_zone == "Europe/Paris"
    shown = await keys_cli(api_env, "get-account", "acme")
    assert shown.stdout == created.stdout
    listed = await keys_cli(api_env, "list-accounts")
    assert listed.stdout == "acme\tEurope/Paris\tAcme\n"

    issued = await keys_cli(api_env, "create-key", "--account", "acme", "--role", "admin",
                            "--label", "ci")
    assert issued.returncode == 0, issued.stderr
    key = issued.stdout.strip()
    principal = await keys.authenticate(key)
    assert (principal.account_id, principal.role) == ("acme", Role.ADMIN)
    assert f"key {principal.key_id}: role admin, account acme; shown once" in issued.stderr

    service = await keys_cli(api_env, "create-key", "--platform", "--role", "service")
    assert service.returncode == 0, service.stderr
    assert (await keys.authenticate(service.stdout.strip())).account_id is None

    key_list = await keys_cli(api_env, "list-keys", "--account", "acme")
    header, *rows = key_list.stdout.splitlines()
    assert header == "KEY_ID\tROLE\tCREATED\tREVOKED\tLABEL"
    [row] = rows
    assert row.split("\t")[:2] == [principal.key_id, "admin"]
    assert row.endswith("\tno\tci")
    assert key.split("_", 2)[2] not in key_list.stdout

    token = await keys_cli(api_env, "mint-token", "--account", "acme", "--role", "agent",
                           "--agent", "agent-7", "--ttl", "120")
    assert token.returncode == 0, token.stderr
    from goalflow_common.tokens import TokenAuthority, parse_token_keys

    minted = TokenAuthority(parse_token_keys(TOKEN_KEYS)).verify(token.stdout.strip())
    assert (minted.account_id, minted.role, minted.agent_id) == ("acme", Role.AGENT, "agent-7")

    # A leaked key can be pasted whole; revoking twice is fine.
    for _ in range(2):
        revoked = await keys_cli(api_env, "revoke", key)
        assert revoked.returncode == 0, revoked.stderr
        assert revoked.stdout.startswith(f"key {principal.key_id} revoked")
    with pytest.raises(Unauthenticated):
        await KeyStore(keys._keys.database, cache_ttl_s=0).authenticate(key)
    after = await keys_cli(api_env, "list-keys", "--account", "acme")
    assert "\tno\t" not in after.stdout.splitlines()[1]


@pytest.mark.parametrize(
    ("args", "env_change", "message"),
    [
        (("create-key", "--account", "nobody", "--role", "admin"), {},
         "create-key: NOT_FOUND: account 'nobody' not found"),
        (("create-key", "--platform", "--role", "admin"), {},
         "create-key: INVALID_ARGUMENT: account_id: required for a admin key"),
        (("create-account", "Not Valid"), {}, "INVALID_ARGUMENT: account_id: "),
        (("create-account", "acme", "--time-zone", "Mars/Base"), {},
         "INVALID_ARGUMENT: time_zone: unknown IANA time zone 'Mars/Base'"),
        (("revoke", "0123456789abcdef"), {}, "revoke: NOT_FOUND: key_id: no key"),
        (("mint-token", "--account", "nobody", "--role", "supervisor"), {},
         "mint-token: NOT_FOUND"),
        (("list-accounts",), {"GOALFLOW_PLATFORM_KEY": ""}, "no platform key: pass --key"),
        (("list-accounts",), {"GOALFLOW_PLATFORM_KEY": "gf_nope"}, "malformed key"),
        (("list-accounts",), {"GOALFLOW_PLATFORM_KEY": "gf_0123456789abcdef_" + "a" * 43},
         "list-accounts: UNAUTHENTICATED: invalid API key"),
    ],
)
async def test_keys_cli_errors_are_one_line_and_non_zero(api_env, args, env_change, message):
    result = await keys_cli({**api_env, **env_change}, *args)
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("goalflow-keys: error:") and message in line, line


async def test_an_admin_key_cannot_create_accounts(api_env, make_tenant):
    tenant = await make_tenant()
    result = await keys_cli({**api_env, "GOALFLOW_PLATFORM_KEY": tenant.admin},
                            "create-account", "sneaky")
    assert result.returncode == 1
    assert "create-account: PERMISSION_DENIED: role 'admin' may not call " in result.stderr


async def test_keys_cli_reports_an_unreachable_service_or_database(db_env):
    address = f"127.0.0.1:{free_port()}"
    some_key = "gf_" + "0" * 16 + "_" + "a" * 43
    result = await keys_cli({**_clean(), "GOALFLOW_PLATFORM_KEY": some_key},
                            "list-accounts", "--address", address)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"goalflow-keys: error: cannot reach the config service at {address} "
        "(is `make run` running?)"
    ]
    env = {**db_env, "MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}"}
    result = await keys_cli(env, "bootstrap")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"goalflow-keys: error: cannot reach the database at {env['MONGODB_URI']} "
        "(is `make run` running?)"
    ]


async def test_list_keys_escapes_control_characters_stored_before_the_check(api_env,
                                                                             keys: KeyStore):
    """I12-A5: labels with control characters are refused now, but one stored earlier (or
    by a direct write to the auth database) must still not reach the operator's terminal
    raw: ``list-keys`` shows it as \\u escapes."""
    await keys.create_account("acme")
    await keys.create_key("acme", Role.INGEST, label="ok\x1b[2J\x1b[32mALL KEYS REVOKED\u202e")
    listed = await keys_cli(api_env, "list-keys", "--account", "acme")
    assert listed.returncode == 0, listed.stderr
    assert "\x1b" not in listed.stdout and "\u202e" not in listed.stdout
    assert listed.stdout.splitlines()[1].endswith(
        "\tok\\u001b[2J\\u001b[32mALL KEYS REVOKED\\u202e")
    refused = await keys_cli(api_env, "create-key", "--account", "acme", "--role", "agent",
                             "--label", "a\x1b[2Jb")
    assert refused.returncode != 0 and "label: control or format character U+001B" in (
        refused.stderr)
