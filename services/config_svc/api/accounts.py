"""The AccountService servicer: accounts, API keys and browser tokens over the API.

Thin: each RPC reads the request, asks ``domain.accounts`` whether the caller may act on
that account and role, calls the KeyStore (the auth database every service reads) or the
TokenAuthority, and maps the result. Keys are shown in full once, in CreateKey's answer;
everything else shows ``ApiKey``, which has no field for a secret or its hash.
"""

from __future__ import annotations

from typing import Any

from config_svc.domain import accounts as rules
from goalflow_common.auth import Account, KeyInfo, KeyStore, Role, current_principal
from goalflow_common.errors import InvalidArgument, NotFound
from goalflow_common.pb.goals.v1 import accounts_pb2, accounts_pb2_grpc
from goalflow_common.protoconv import (
    decode_page_token,
    encode_page_token,
    page_fingerprint,
    timestamp,
)
from goalflow_common.tokens import TokenAuthority

DEFAULT_PAGE, MAX_PAGE = 50, 200
Context = Any  # grpc ships no type information: the servicer context is untyped.

_ROLE_TO_PROTO: dict[Role, accounts_pb2.Role] = {
    Role.ADMIN: accounts_pb2.ROLE_ADMIN,
    Role.AGENT: accounts_pb2.ROLE_AGENT,
    Role.INGEST: accounts_pb2.ROLE_INGEST,
    Role.SERVICE: accounts_pb2.ROLE_SERVICE,
    Role.PLATFORM: accounts_pb2.ROLE_PLATFORM,
    Role.SUPERVISOR: accounts_pb2.ROLE_SUPERVISOR,
}
_ROLE_FROM_PROTO: dict[int, Role] = {int(number): role for role, number in _ROLE_TO_PROTO.items()}


def role_from_proto(number: int) -> Role | None:
    """The role a request names; None for UNSPECIFIED (the domain says it is required)."""
    if number == accounts_pb2.ROLE_UNSPECIFIED:
        return None
    role = _ROLE_FROM_PROTO.get(number)
    if role is None:
        raise InvalidArgument("role", f"unknown value {number}")
    return role


def account_to_proto(account: Account) -> accounts_pb2.Account:
    message = accounts_pb2.Account(id=account.id, name=account.name, time_zone=account.time_zone)
    if account.create_time is not None:
        message.create_time.CopyFrom(timestamp(account.create_time))
    return message


def key_to_proto(key: KeyInfo) -> accounts_pb2.ApiKey:
    message = accounts_pb2.ApiKey(
        key_id=key.key_id, account_id=key.account_id or "", role=_ROLE_TO_PROTO[key.role],
        label=key.label, revoked=key.revoked,
    )
    if key.create_time is not None:
        message.create_time.CopyFrom(timestamp(key.create_time))
    if key.revoke_time is not None:
        message.revoke_time.CopyFrom(timestamp(key.revoke_time))
    return message


def _page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE, MAX_PAGE)


class AccountServicer(accounts_pb2_grpc.AccountServiceServicer):
    def __init__(self, keys: KeyStore, tokens: TokenAuthority) -> None:
        self._keys = keys
        self._tokens = tokens

    async def CreateAccount(
        self, request: accounts_pb2.CreateAccountRequest, context: Context
    ) -> accounts_pb2.CreateAccountResponse:
        rules.require_platform(current_principal(), "CreateAccount")
        new = rules.new_account(request.account_id, request.name, request.time_zone)
        account = await self._keys.add_account(new.id, new.name, new.time_zone)
        return accounts_pb2.CreateAccountResponse(account=account_to_proto(account))

    async def GetAccount(
        self, request: accounts_pb2.GetAccountRequest, context: Context
    ) -> accounts_pb2.GetAccountResponse:
        account_id = rules.account_to_read(current_principal(), request.account_id)
        account = await self._keys.get_account(account_id)
        return accounts_pb2.GetAccountResponse(account=account_to_proto(account))

    async def ListAccounts(
        self, request: accounts_pb2.ListAccountsRequest, context: Context
    ) -> accounts_pb2.ListAccountsResponse:
        rules.require_platform(current_principal(), "ListAccounts")
        size = _page_size(request.page_size)
        after = decode_page_token(request.page_token, (str,))
        found = await self._keys.list_accounts(after[0] if after else None, size + 1)
        page = found[:size]
        token = encode_page_token((page[-1].id,)) if len(found) > size else ""
        return accounts_pb2.ListAccountsResponse(
            accounts=[account_to_proto(a) for a in page], next_page_token=token
        )

    async def CreateKey(
        self, request: accounts_pb2.CreateKeyRequest, context: Context
    ) -> accounts_pb2.CreateKeyResponse:
        principal = current_principal()
        account_id, role = rules.key_owner(
            principal, request.account_id, role_from_proto(request.role)
        )
        label = rules.check_label(request.label)
        key, info = await self._keys.issue_key(account_id, role, label)
        return accounts_pb2.CreateKeyResponse(key=key, api_key=key_to_proto(info))

    async def ListKeys(
        self, request: accounts_pb2.ListKeysRequest, context: Context
    ) -> accounts_pb2.ListKeysResponse:
        account_id = rules.keys_to_list(current_principal(), request.account_id)
        size = _page_size(request.page_size)
        # A token only pages the list it was issued for.
        fingerprint = page_fingerprint("keys", account_id)
        after = decode_page_token(request.page_token, (str,), fingerprint)
        found = await self._keys.list_keys(account_id, after[0] if after else None, size + 1)
        page = found[:size]
        token = encode_page_token((page[-1].key_id,), fingerprint) if len(found) > size else ""
        return accounts_pb2.ListKeysResponse(
            api_keys=[key_to_proto(k) for k in page], next_page_token=token
        )

    async def RevokeKey(
        self, request: accounts_pb2.RevokeKeyRequest, context: Context
    ) -> accounts_pb2.RevokeKeyResponse:
        within = rules.revoke_scope(current_principal())
        key_id = rules.check_key_id(request.key_id)
        info = await self._keys.revoke_key_within(key_id, within)
        if info is None:
            raise NotFound(f"key_id: no key {key_id!r}")
        return accounts_pb2.RevokeKeyResponse(api_key=key_to_proto(info))

    async def MintToken(
        self, request: accounts_pb2.MintTokenRequest, context: Context
    ) -> accounts_pb2.MintTokenResponse:
        principal = current_principal()
        account_id, role = rules.token_grant(
            principal, request.account_id, role_from_proto(request.role), request.agent_id
        )
        ttl_s = rules.token_lifetime(request.ttl_seconds, request.longest,
                                     self._tokens.max_ttl_s)
        await self._keys.get_account(account_id)  # NOT_FOUND for a platform key's typo
        minted = self._tokens.mint(
            account_id, role, agent_id=request.agent_id, ttl_s=ttl_s,
            minted_by=principal.key_id,
        )
        return accounts_pb2.MintTokenResponse(
            token=minted.token, expire_time=timestamp(minted.expire_time)
        )
