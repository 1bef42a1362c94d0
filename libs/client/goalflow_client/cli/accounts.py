"""``goalflow accounts ...``, ``goalflow keys ...`` and ``goalflow token mint``: the
AccountService (served by the config service, ``--config-address``).

A platform key may do all of it for any account; an admin key reads its own account and
manages its own account's keys; admin and agent keys mint tokens (README: Accounts and keys).
"""

from __future__ import annotations

import click

from goalflow_client.cli.output import echo_fields, echo_json, echo_records, format_option, note
from goalflow_client.cli.session import Session, read_pages, with_session
from goalflow_client.cli.values import EnumChoice, enum_label, show_time
from goalflow_common.pb.goals.v1 import accounts_pb2

MAX_PAGE = 200  # the largest page ListAccounts and ListKeys give
TOKEN_ROLES = ("agent", "supervisor", "admin")


def _account_fields(account: accounts_pb2.Account) -> list[tuple[str, object]]:
    return [("id", account.id), ("name", account.name), ("time zone", account.time_zone),
            ("created", show_time(account.create_time))]


def _show_account(account: accounts_pb2.Account, fmt: str) -> None:
    if fmt == "json":
        echo_json(account)
    else:
        echo_fields(_account_fields(account))


@click.group()
def accounts() -> None:
    """Create, show and list accounts (a platform key; an admin key shows its own)."""


@accounts.command("create")
@click.argument("account_id")
@click.option("--name", default="", help="Display name (default: the id).")
@click.option("--time-zone", default="UTC", show_default=True,
              help="IANA time zone the account's dates are read in, e.g. Europe/Paris.")
@format_option("table", "json")
@with_session
async def create_account(session: Session, account_id: str, name: str, time_zone: str,
                         fmt: str) -> None:
    """Create an account (needs a platform key)."""
    reply = await session.accounts().CreateAccount(accounts_pb2.CreateAccountRequest(
        account_id=account_id, name=name, time_zone=time_zone))
    _show_account(reply.account, fmt)


@accounts.command("get")
@click.argument("account_id", required=False, default="")
@format_option("table", "json")
@with_session
async def get_account(session: Session, account_id: str, fmt: str) -> None:
    """Show an account (the key's own when no id is given)."""
    reply = await session.accounts().GetAccount(
        accounts_pb2.GetAccountRequest(account_id=account_id))
    _show_account(reply.account, fmt)


@accounts.command("list")
@click.option("--limit", type=click.IntRange(min=0), default=0, show_default=True,
              help="At most this many, by id; 0 for all.")
@format_option("table", "json", "csv")
@with_session
async def list_accounts(session: Session, limit: int, fmt: str) -> None:
    """List every account, by id (needs a platform key)."""
    found, more = await read_pages(session.accounts().ListAccounts,
                                   accounts_pb2.ListAccountsRequest(), "accounts", limit,
                                   MAX_PAGE)
    columns = ("id", "name", "time_zone", "created")
    rows = [(a.id, a.name, a.time_zone, show_time(a.create_time)) for a in found]
    echo_records(fmt, columns, rows, lambda: accounts_pb2.ListAccountsResponse(
        accounts=found, next_page_token=more))
    if more:
        note(f"showing the first {len(found)}; more accounts exist (--limit 0 for all)")


@click.group()
def keys() -> None:
    """Issue, list and revoke API keys (a platform key, or an admin key for its account)."""


def _key_row(key: accounts_pb2.ApiKey) -> tuple[str, ...]:
    revoked = (show_time(key.revoke_time) or "yes") if key.revoked else "no"
    return (key.key_id, key.account_id or "(platform)", enum_label(accounts_pb2.Role, key.role),
            key.label, show_time(key.create_time), revoked)


@keys.command("create")
@click.option("--role", required=True, type=EnumChoice(accounts_pb2.Role),
              help="What the key may do (platform-wide keys: service or platform).")
@click.option("--account", "account_id", default="",
              help="The key's account (default: the caller's; with a platform key and no "
                   "account, a platform-wide key).")
@click.option("--label", default="", help="A note saying what the key is for.")
@format_option("table", "json")
@with_session
async def create_key(session: Session, role: str, account_id: str, label: str,
                     fmt: str) -> None:
    """Issue a key and print it, the one time it is shown (only a hash is stored)."""
    reply = await session.accounts().CreateKey(accounts_pb2.CreateKeyRequest(
        account_id=account_id, role=role, label=label))
    if fmt == "json":
        echo_json(reply)
        return
    info = reply.api_key
    scope = f"account {info.account_id}" if info.account_id else "platform-wide"
    note(f"key {info.key_id}: role {enum_label(accounts_pb2.Role, info.role)}, {scope}; "
         "shown once, store it now")
    click.echo(reply.key)


@keys.command("list")
@click.option("--account", "account_id", default="",
              help="Whose keys (default: the caller's account; with a platform key, the "
                   "platform-wide keys).")
@click.option("--limit", type=click.IntRange(min=0), default=0, show_default=True,
              help="At most this many, by key id; 0 for all.")
@format_option("table", "json", "csv")
@with_session
async def list_keys(session: Session, account_id: str, limit: int, fmt: str) -> None:
    """List keys, revoked ones included: ids, roles, labels, times, never a secret."""
    found, more = await read_pages(session.accounts().ListKeys,
                                   accounts_pb2.ListKeysRequest(account_id=account_id),
                                   "api_keys", limit, MAX_PAGE)
    columns = ("key_id", "account", "role", "label", "created", "revoked")
    echo_records(fmt, columns, [_key_row(k) for k in found],
                 lambda: accounts_pb2.ListKeysResponse(api_keys=found, next_page_token=more))
    if more:
        note(f"showing the first {len(found)}; more keys exist (--limit 0 for all)")


@keys.command("revoke")
@click.argument("key_id")
@with_session
async def revoke_key(session: Session, key_id: str) -> None:
    """Revoke a key (its id, or the whole key); revoking it again changes nothing."""
    from goalflow_common.auth import KEY_RE  # see session.Session.key

    match = KEY_RE.fullmatch(key_id)
    key_id = match.group(1) if match else key_id
    reply = await session.accounts().RevokeKey(accounts_pb2.RevokeKeyRequest(key_id=key_id))
    note(f"key {reply.api_key.key_id} revoked at {show_time(reply.api_key.revoke_time)}; "
         "services stop accepting it within their key cache TTL")


@click.group()
def token() -> None:
    """Short-lived tokens for browsers (minted with an API key, never with a token)."""


@token.command("mint")
@click.option("--role", required=True, type=click.Choice(TOKEN_ROLES),
              help="agent: one agent's conversions; supervisor: the account, read-only; "
                   "admin: the web console.")
@click.option("--agent", "agent_id", default="", help="The agent (agent tokens).")
@click.option("--account", "account_id", default="",
              help="The account (default: the key's; required with a platform key).")
@click.option("--ttl", "ttl_seconds", type=click.IntRange(min=0), default=0,
              help="Lifetime in seconds (default: the deployment's, 15 minutes).")
@format_option("table", "json")
@with_session
async def mint_token(session: Session, role: str, agent_id: str, account_id: str,
                     ttl_seconds: int, fmt: str) -> None:
    """Mint a token and print it (sent as `authorization: Bearer <token>`)."""
    reply = await session.accounts().MintToken(accounts_pb2.MintTokenRequest(
        account_id=account_id, role=f"ROLE_{role.upper()}", agent_id=agent_id,
        ttl_seconds=ttl_seconds))
    if fmt == "json":
        echo_json(reply)
        return
    note(f"{role} token, expires {show_time(reply.expire_time)}")
    click.echo(reply.token)
