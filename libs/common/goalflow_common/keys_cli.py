"""``goalflow-keys``: accounts, API keys and tokens, for operators, through the API.

    goalflow-keys bootstrap [--label L] [--again]
    goalflow-keys create-account ID [--name NAME] [--time-zone TZ]
    goalflow-keys get-account ID
    goalflow-keys list-accounts
    goalflow-keys create-key (--account ID | --platform) --role ROLE [--label L]
    goalflow-keys list-keys (--account ID | --platform)
    goalflow-keys revoke KEY_ID
    goalflow-keys mint-token --account ID --role ROLE [--agent ID] [--ttl SECONDS]

Every command but ``bootstrap`` calls the AccountService (served by the config service at
``--address``, default ``GOALFLOW_CONFIG_ADDRESS`` or 127.0.0.1:50051; ``--tls-ca-file`` or
``GOALFLOW_TLS_CA_FILE`` for TLS) with a platform key from ``--key`` or
``GOALFLOW_PLATFORM_KEY``; the service decides what that key may do, hashes and stores.

``bootstrap`` is the one command that writes to the auth database itself (``MONGODB_URI``,
``GOALFLOW_AUTH_DB_NAME``): the API only issues keys to callers holding a platform key, so
the very first platform key cannot come from the API (the chicken and the egg). It refuses
while an unrevoked platform key exists, unless ``--again`` (the only one was lost).

Keys are printed on stdout once (only their hash is stored); notes go to stderr. Errors are
one line on stderr and a non-zero exit. An operator's tool that ships in the production
image beside the services (README: Deployment), so it uses the runtime library only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError, ServerSelectionTimeoutError

from goalflow_common.auth import KEY_RE, KeyStore, Role
from goalflow_common.client import make_channel, tls_credentials
from goalflow_common.db import Client
from goalflow_common.errors import DomainError
from goalflow_common.limits import escape_unprintable
from goalflow_common.pb.goals.v1 import accounts_pb2, accounts_pb2_grpc
from goalflow_common.settings import ServiceSettings

PROG = "goalflow-keys"
DEFAULT_ADDRESS = "127.0.0.1:50051"
TIMEOUT_S = 15.0
KEY_ROLES = ("admin", "agent", "ingest", "service", "platform")
TOKEN_ROLES = ("agent", "supervisor", "admin")


class CliError(Exception):
    """A refusal worth one line to the user."""


def _out(text: str) -> None:
    """The command's answer, on stdout (a CLI, not a service: plain text, no log line)."""
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def _note(text: str) -> None:
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()


def _role(name: str) -> str:
    """A role flag's value as its proto enum name (``admin`` → ``ROLE_ADMIN``)."""
    return f"ROLE_{name.upper()}"


def _role_name(number: int) -> str:
    return accounts_pb2.Role.Name(number).removeprefix("ROLE_").lower()


def _time(stamp: Timestamp, present: bool) -> str:
    return stamp.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ") if present else "-"


# --- bootstrap: the auth database itself ----------------------------------------------


async def _bootstrap(args: argparse.Namespace) -> None:
    settings = ServiceSettings()
    client: Client = AsyncMongoClient(
        settings.mongodb_uri, appname=PROG, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    try:
        store = KeyStore(client[settings.auth_db_name], cache_ttl_s=0)
        live = [k for k in await store.list_keys(None, None, 1000)
                if k.role is Role.PLATFORM and not k.revoked]
        if live and not args.again:
            raise CliError(
                f"{len(live)} platform key(s) exist already (e.g. {live[0].key_id}): issue "
                "more with `create-key --platform --role platform`, or pass --again if "
                "none is at hand"
            )
        key, info = await store.issue_key(None, Role.PLATFORM, label=args.label)
    finally:
        await client.close()
    _note(f"platform key {info.key_id}: shown once, store it now "
          "(GOALFLOW_PLATFORM_KEY for goalflow-keys)")
    _out(key)


# --- everything else: the AccountService ----------------------------------------------

Stub = accounts_pb2_grpc.AccountServiceStub
ApiCommand = Callable[[Stub, argparse.Namespace], Awaitable[None]]


async def _call(method: Any, request: Any) -> Any:
    return await method(request, timeout=TIMEOUT_S)


def _show_account(account: accounts_pb2.Account) -> str:
    return f"account {account.id} ({account.time_zone}) {account.name!r}"


async def _create_account(stub: Stub, args: argparse.Namespace) -> None:
    reply = await _call(stub.CreateAccount, accounts_pb2.CreateAccountRequest(
        account_id=args.id, name=args.name, time_zone=args.time_zone))
    _out(_show_account(reply.account))


async def _get_account(stub: Stub, args: argparse.Namespace) -> None:
    reply = await _call(stub.GetAccount, accounts_pb2.GetAccountRequest(account_id=args.id))
    _out(_show_account(reply.account))


async def _list_accounts(stub: Stub, args: argparse.Namespace) -> None:
    request = accounts_pb2.ListAccountsRequest(page_size=200)
    while True:
        page = await _call(stub.ListAccounts, request)
        for account in page.accounts:
            _out(f"{account.id}\t{account.time_zone}\t{account.name}")
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token


async def _create_key(stub: Stub, args: argparse.Namespace) -> None:
    account = "" if args.platform else args.account
    reply = await _call(stub.CreateKey, accounts_pb2.CreateKeyRequest(
        account_id=account, role=_role(args.role), label=args.label))
    scope = "platform-wide" if not account else f"account {account}"
    _note(f"key {reply.api_key.key_id}: role {args.role}, {scope}; shown once, store it now")
    _out(reply.key)


async def _list_keys(stub: Stub, args: argparse.Namespace) -> None:
    request = accounts_pb2.ListKeysRequest(
        account_id="" if args.platform else args.account, page_size=200)
    _out("KEY_ID\tROLE\tCREATED\tREVOKED\tLABEL")
    while True:
        page = await _call(stub.ListKeys, request)
        for key in page.api_keys:
            revoked = _time(key.revoke_time, key.HasField("revoke_time")) if key.revoked \
                else "no"
            _out(f"{key.key_id}\t{_role_name(key.role)}\t"
                 f"{_time(key.create_time, key.HasField('create_time'))}\t{revoked}\t"
                 f"{escape_unprintable(key.label)}")  # no terminal escapes, even old ones
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token


async def _revoke(stub: Stub, args: argparse.Namespace) -> None:
    # A full key is accepted too, so a leaked key can be pasted as it is.
    match = KEY_RE.match(args.key_id)
    key_id = match.group(1) if match else args.key_id
    await _call(stub.RevokeKey, accounts_pb2.RevokeKeyRequest(key_id=key_id))
    _out(f"key {key_id} revoked (services stop accepting it within their key cache TTL)")


async def _mint_token(stub: Stub, args: argparse.Namespace) -> None:
    reply = await _call(stub.MintToken, accounts_pb2.MintTokenRequest(
        account_id=args.account, role=_role(args.role), agent_id=args.agent,
        ttl_seconds=args.ttl))
    _note(f"token for {args.role} of account {args.account}, expires "
          f"{_time(reply.expire_time, True)}")
    _out(reply.token)


def _api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", default=os.environ.get("GOALFLOW_CONFIG_ADDRESS", DEFAULT_ADDRESS),
        help="config service (AccountService) address (env GOALFLOW_CONFIG_ADDRESS; "
        f"default {DEFAULT_ADDRESS})")
    parser.add_argument(
        "--key", default=os.environ.get("GOALFLOW_PLATFORM_KEY", ""),
        help="platform key (env GOALFLOW_PLATFORM_KEY); `bootstrap` prints the first")
    parser.add_argument(
        "--tls-ca-file", default=os.environ.get("GOALFLOW_TLS_CA_FILE", ""),
        help="connect with TLS, trusting this PEM CA (env GOALFLOW_TLS_CA_FILE)")


def _owner(parser: argparse.ArgumentParser, platform_help: str) -> None:
    owner = parser.add_mutually_exclusive_group(required=True)
    owner.add_argument("--account", metavar="ID", help="the account")
    owner.add_argument("--platform", action="store_true", help=platform_help)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Manage goalflow accounts, API keys and tokens through the config "
        "service's AccountService (bootstrap: the auth database, MONGODB_URI and "
        "GOALFLOW_AUTH_DB_NAME).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    boot = commands.add_parser(
        "bootstrap", help="write the first platform key to the auth database, print it once")
    boot.add_argument("--label", default="bootstrap", help="a note saying what it is for")
    boot.add_argument("--again", action="store_true",
                      help="issue one even though unrevoked platform keys exist")
    boot.set_defaults(run=None)

    def api(name: str, run: ApiCommand, **kwargs: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, **kwargs)
        _api_options(sub)
        sub.set_defaults(run=run)
        return sub

    account = api("create-account", _create_account, help="create an account")
    account.add_argument("id", metavar="ID", help="account id: a-z 0-9 _ -, up to 63")
    account.add_argument("--name", default="", help="display name (default: the id)")
    account.add_argument("--time-zone", default="UTC", help="IANA time zone (default: UTC)")
    api("get-account", _get_account, help="show an account").add_argument("id", metavar="ID")
    api("list-accounts", _list_accounts, help="list every account")

    key = api("create-key", _create_key, help="issue a key and print it once")
    _owner(key, "a platform-wide key (role service or platform)")
    key.add_argument("--role", required=True, choices=KEY_ROLES)
    key.add_argument("--label", default="", help="a note saying what the key is for")
    _owner(api("list-keys", _list_keys, help="list keys (never their secrets)"),
           "the platform-wide keys")
    revoke = api("revoke", _revoke, help="revoke a key")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key id (or the whole key)")

    token = api("mint-token", _mint_token, help="mint a short-lived browser token")
    token.add_argument("--account", required=True, metavar="ID")
    token.add_argument("--role", required=True, choices=TOKEN_ROLES)
    token.add_argument("--agent", default="", metavar="ID", help="agent id (agent tokens)")
    token.add_argument("--ttl", type=int, default=0, metavar="SECONDS",
                       help="lifetime (default: the deployment's, 15 minutes)")
    return parser


async def _run_api(args: argparse.Namespace) -> None:
    if not args.key:
        raise CliError("no platform key: pass --key or set GOALFLOW_PLATFORM_KEY "
                       f"(`{PROG} bootstrap` prints the first)")
    if not KEY_RE.fullmatch(args.key):
        raise CliError("malformed key (--key / GOALFLOW_PLATFORM_KEY): expected "
                       "gf_<16 hex digits>_<43-character secret>")
    credentials = tls_credentials(args.tls_ca_file) if args.tls_ca_file else None
    async with make_channel(args.address, args.key, credentials=credentials) as channel:
        command: ApiCommand = args.run
        try:
            await command(Stub(channel), args)
        except grpc.RpcError as exc:
            raise _rpc_error(args, exc) from None


def _rpc_error(args: argparse.Namespace, exc: grpc.RpcError) -> CliError:
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return CliError(f"cannot reach the config service at {args.address} "
                        "(is `make run` running?)")
    name = code.name if code is not None else "UNKNOWN"
    details = (exc.details() or "").strip() or "(no details)"
    return CliError(f"{args.command}: {name}: {details}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_bootstrap(args) if args.run is None else _run_api(args))
    except (CliError, ValueError, DomainError) as err:
        _note(f"{PROG}: error: {err}")
        return 1
    except ServerSelectionTimeoutError:
        uri = re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", ServiceSettings().mongodb_uri)
        _note(f"{PROG}: error: cannot reach the database at {uri} (is `make run` running?)")
        return 1
    except PyMongoError as err:
        _note(f"{PROG}: error: database: {str(err).splitlines()[0] if str(err) else err!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
