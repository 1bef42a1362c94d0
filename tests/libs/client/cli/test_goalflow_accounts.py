"""``goalflow accounts``, ``keys`` and ``token`` run as subprocesses against the real
services (subprocesses too): accounts with their time zone, keys printed once and listed
without secrets, revocation, tokens, and the refusals with their exit codes."""

from __future__ import annotations

import csv
import io
import json
import uuid

from goalflow_common.auth import Role
from goalflow_common.tokens import TokenAuthority, parse_token_keys
from tests.conftest import TOKEN_KEYS
from tests.libs.client.cli.conftest import CliStack


def _fields(text: str) -> dict[str, str]:
    pairs = (line.split("  ", 1) for line in text.splitlines() if "  " in line)
    return {name.strip(): value.strip() for name, value in pairs}


async def test_accounts_create_get_and_list(cli_stack: CliStack):
    run = cli_stack.run
    new_id = f"acme-{uuid.uuid4().hex[:6]}"
    created = await run("accounts", "create", new_id, "--name", "Acme",
                        "--time-zone", "Europe/Paris", key=Role.PLATFORM)
    assert created.code == 0, created.err
    shown = _fields(created.out)
    assert (shown["id"], shown["name"], shown["time zone"]) == (new_id, "Acme", "Europe/Paris")
    assert shown["created"].endswith("Z")

    got = await run("accounts", "get", new_id, "--format", "json", key=Role.PLATFORM)
    assert json.loads(got.out)["timeZone"] == "Europe/Paris"
    own = await run("accounts", "get")  # an admin key: its own account
    assert _fields(own.out)["id"] == cli_stack.account_id

    listed = await run("accounts", "list", "--format", "csv", key=Role.PLATFORM)
    rows = list(csv.DictReader(io.StringIO(listed.out)))
    assert {r["id"]: r["time_zone"] for r in rows}[new_id] == "Europe/Paris"
    assert cli_stack.account_id in {r["id"] for r in rows}

    bad_zone = await run("accounts", "create", f"{new_id}-2", "--time-zone", "Mars/Base",
                         key=Role.PLATFORM)
    assert bad_zone.code == 3
    assert bad_zone.error_line.startswith(
        "error: CreateAccount at 127.0.0.1:")
    assert "INVALID_ARGUMENT: time_zone: unknown IANA time zone 'Mars/Base'" in bad_zone.error_line
    taken = await run("accounts", "create", new_id, key=Role.PLATFORM)
    assert taken.code == 3 and "ALREADY_EXISTS: account_id: " in taken.error_line
    by_admin = await run("accounts", "create", f"{new_id}-3")
    assert by_admin.code == 4 and "PERMISSION_DENIED" in by_admin.error_line


async def test_keys_create_list_and_revoke(cli_stack: CliStack):
    run = cli_stack.run
    made = await run("keys", "create", "--role", "agent", "--label", "widget backend")
    assert made.code == 0, made.err
    key = made.out.strip()
    key_id = key.split("_")[1]
    assert made.err.strip() == (f"key {key_id}: role agent, account {cli_stack.account_id}; "
                                "shown once, store it now")
    # The new key works.
    works = await run("goals", "list", key=key)
    assert works.code == 0, works.err

    listed = await run("keys", "list", "--format", "csv")
    rows = {r["key_id"]: r for r in csv.DictReader(io.StringIO(listed.out))}
    assert rows[key_id]["role"] == "agent" and rows[key_id]["label"] == "widget backend"
    assert rows[key_id]["revoked"] == "no" and rows[key_id]["account"] == cli_stack.account_id
    assert key.split("_", 2)[2] not in listed.out
    as_json = json.loads((await run("keys", "list", "--format", "json")).out)
    assert {"keyId", "role", "label", "createTime", "revoked"} <= set(as_json["apiKeys"][0])
    assert not any("secret" in name.lower() for k in as_json["apiKeys"] for name in k)

    revoked = await run("keys", "revoke", key)  # the whole key is accepted too
    assert revoked.code == 0, revoked.err
    assert revoked.err.startswith(f"key {key_id} revoked at ")
    again = await run("keys", "revoke", key_id)
    assert again.code == 0, again.err
    after = {r["key_id"]: r for r in csv.DictReader(io.StringIO(
        (await run("keys", "list", "--format", "csv")).out))}
    assert after[key_id]["revoked"].endswith("Z")

    platform_wide = await run("keys", "create", "--role", "service", key=Role.PLATFORM)
    assert platform_wide.code == 0 and "platform-wide" in platform_wide.err
    wide = await run("keys", "list", "--format", "csv", key=Role.PLATFORM)
    assert platform_wide.out.strip().split("_")[1] in wide.out and "(platform)" in wide.out

    for args, code, text in (
        (("keys", "create", "--role", "platform"), 4, "PERMISSION_DENIED: role: "),
        (("keys", "create", "--role", "supervisor"), 3, "INVALID_ARGUMENT: role: "),
        (("keys", "create", "--role", "owner"), 2, "'owner' is not one of"),
        (("keys", "revoke", "0123456789abcdef"), 3, "NOT_FOUND: key_id: no key"),
        (("keys", "list", "--account", "someone-else"), 4, "PERMISSION_DENIED: account_id"),
    ):
        result = await run(*args)
        assert result.code == code, (args, result)
        assert text in result.err, (args, result.err)


async def test_token_mint(cli_stack: CliStack):
    authority = TokenAuthority(parse_token_keys(TOKEN_KEYS))
    minted = await cli_stack.run("token", "mint", "--role", "agent", "--agent", "agent-7",
                                 "--ttl", "120", key=Role.AGENT)
    assert minted.code == 0, minted.err
    principal = authority.verify(minted.out.strip())
    assert (principal.account_id, principal.role, principal.agent_id) == (
        cli_stack.account_id, Role.AGENT, "agent-7")
    assert minted.err.startswith("agent token, expires ")

    as_json = await cli_stack.run("token", "mint", "--role", "supervisor", "--account",
                                  cli_stack.account_id, "--format", "json", key=Role.PLATFORM)
    reply = json.loads(as_json.out)
    assert authority.verify(reply["token"]).role is Role.SUPERVISOR and reply["expireTime"]

    for args, key, code, text in (
        (("--role", "admin"), Role.AGENT, 4, "PERMISSION_DENIED: role: "),
        (("--role", "agent"), Role.ADMIN, 3, "INVALID_ARGUMENT: agent_id: "),
        (("--role", "supervisor", "--ttl", "999999"), Role.ADMIN, 3,
         "INVALID_ARGUMENT: ttl_seconds: "),
        (("--role", "supervisor"), Role.PLATFORM, 3, "INVALID_ARGUMENT: account_id: "),
        (("--role", "supervisor"), Role.INGEST, 4, "PERMISSION_DENIED"),
    ):
        result = await cli_stack.run("token", "mint", *args, key=key)
        assert result.code == code, (args, result)
        assert text in result.error_line, (args, result.err)


async def test_a_token_is_accepted_wherever_a_key_is(cli_stack: CliStack):
    """The README: a token is sent exactly like a key. The CLI refused one in GOALFLOW_KEY
    and --key ("malformed API key ... expected gf_..."); the services decide what it may do,
    and a token issues no keys (I12-A4)."""
    admin = (await cli_stack.run("token", "mint", "--role", "admin", key=Role.ADMIN)).out.strip()
    agent = (await cli_stack.run("token", "mint", "--role", "agent", "--agent", "agent-7",
                                 key=Role.ADMIN)).out.strip()
    listed = await cli_stack.run("keys", "list", key=admin)
    assert listed.code == 0, listed.err
    assert cli_stack.keys[Role.ADMIN].split("_")[1] in listed.out
    goals = await cli_stack.run("--key", agent, "goals", "list", key=None)
    assert goals.code == 0, goals.err
    issued = await cli_stack.run("keys", "create", "--role", "agent", key=admin)
    assert issued.code == 4 and issued.out == ""
    assert "PERMISSION_DENIED: authorization: a token cannot issue keys" in issued.error_line
    for bad in ("a.b", "x" * 3000 + ".y.z", "one.two.three four"):
        refused = await cli_stack.run("goals", "list", key=bad)
        assert refused.code == 4
        assert refused.error_line.startswith("error: malformed API key (--key / GOALFLOW_KEY)")
