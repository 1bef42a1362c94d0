"""``goalflow-keys``: create accounts, issue and revoke API keys.

    goalflow-keys create-account ID [--name NAME] [--time-zone TZ]
    goalflow-keys create-key (--account ID | --platform) --role ROLE [--label L]
    goalflow-keys revoke KEY_ID

Talks to the auth database directly (``MONGODB_URI``, ``GOALFLOW_AUTH_DB_NAME``), the same
identity store the services read. ``create-key`` prints the key on stdout, once: only its
hash is stored. Errors are one line on stderr and a non-zero exit.

An operator's tool that ships in the production image beside the services (README:
Deployment runs it with ``docker compose run``), so it uses the runtime library only.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfoNotFoundError

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError, ServerSelectionTimeoutError

from goalflow_common.auth import KEY_RE, KeyStore, Role
from goalflow_common.db import Client
from goalflow_common.errors import DomainError
from goalflow_common.settings import ServiceSettings

PROG = "goalflow-keys"


class CliError(Exception):
    """A refusal worth one line to the user."""


def _out(text: str) -> None:
    """The command's answer, on stdout (a CLI, not a service: plain text, no log line)."""
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def _note(text: str) -> None:
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()


async def _create_account(store: KeyStore, args: argparse.Namespace) -> None:
    try:
        account = await store.create_account(args.id, name=args.name, time_zone=args.time_zone)
    except ZoneInfoNotFoundError as err:
        raise CliError(f"unknown time zone {args.time_zone!r}") from err
    if account.time_zone != args.time_zone:
        # create_account never changes an existing account; say so instead of pretending.
        _note(f"account {account.id!r} already exists with time zone {account.time_zone}")
    _out(f"account {account.id} ({account.time_zone})")


async def _create_key(store: KeyStore, args: argparse.Namespace) -> None:
    role = Role(args.role)
    account = None if args.platform else args.account
    if account is None and role is not Role.SERVICE:
        raise CliError("--platform keys must have --role service")
    key = await store.create_key(account, role, label=args.label)
    key_id = key.split("_")[1]  # gf_<key id>_<secret>; the id has no underscore
    scope = "platform-wide" if account is None else f"account {account}"
    _note(f"key {key_id}: role {role.value}, {scope}; shown once, store it now")
    _out(key)


async def _revoke(store: KeyStore, args: argparse.Namespace) -> None:
    # A full key is accepted too, so a leaked key can be pasted as it is.
    match = KEY_RE.match(args.key_id)
    key_id = match.group(1) if match else args.key_id
    # A typo is reported rather than silently "revoked".
    if not await store.revoke_key(key_id):
        raise CliError(f"no key with id {key_id!r}")
    _out(f"key {key_id} revoked (services stop accepting it within their key cache TTL)")


Command = Callable[[KeyStore, argparse.Namespace], Awaitable[None]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Manage goalflow accounts and API keys (uses MONGODB_URI and "
        "GOALFLOW_AUTH_DB_NAME).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    account = commands.add_parser("create-account", help="create an account (idempotent)")
    account.add_argument("id", metavar="ID", help="account id: a-z 0-9 _ -, up to 63")
    account.add_argument("--name", default="", help="display name (default: the id)")
    account.add_argument("--time-zone", default="UTC", help="IANA time zone (default: UTC)")
    account.set_defaults(run=_create_account)

    key = commands.add_parser("create-key", help="issue a key and print it once")
    owner = key.add_mutually_exclusive_group(required=True)
    owner.add_argument("--account", metavar="ID", help="the account the key belongs to")
    owner.add_argument(
        "--platform", action="store_true", help="a platform-wide service key (no account)"
    )
    key.add_argument("--role", required=True, choices=[role.value for role in Role])
    key.add_argument("--label", default="", help="a note saying what the key is for")
    key.set_defaults(run=_create_key)

    revoke = commands.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key id (or the whole key)")
    revoke.set_defaults(run=_revoke)
    return parser


async def _run(args: argparse.Namespace, uri: str, db: str) -> None:
    client: Client = AsyncMongoClient(
        uri, appname=PROG, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    try:
        command: Command = args.run
        await command(KeyStore(client[db], cache_ttl_s=0), args)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = ServiceSettings()
    try:
        asyncio.run(_run(args, settings.mongodb_uri, settings.auth_db_name))
    except (CliError, ValueError, DomainError) as err:
        _note(f"{PROG}: error: {err}")
        return 1
    except ServerSelectionTimeoutError:
        uri = re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", settings.mongodb_uri)
        _note(f"{PROG}: error: cannot reach the database at {uri} (is `make run` running?)")
        return 1
    except PyMongoError as err:
        _note(f"{PROG}: error: database: {str(err).splitlines()[0] if str(err) else err!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
