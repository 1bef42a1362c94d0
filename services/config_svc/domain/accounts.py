"""Who may do what with accounts, keys and tokens (AccountService), pure.

``auth.METHOD_ROLES`` lets platform and admin callers (and agent keys, for MintToken) reach
the AccountService; the rules here decide, per request, which account and which key or
token role each may act on:

- a platform key (role platform, no account) may do everything for any account;
- an account's admin key reads its own account and issues, lists and revokes admin, agent
  and ingest keys of its own account: no accounts, no platform or service keys; another
  account's key is NOT_FOUND (the store looks keys up within the caller's account, so
  nothing says whether it exists elsewhere);
- an admin token reads its account and lists its keys, but CreateKey, RevokeKey and
  MintToken take an API key only, never a token: a token issuing keys or tokens would
  outlive any expiry (a stolen 15-minute browser token became a permanent admin key), and
  one revoking keys could lock the account's owner out;
- admin keys mint agent, supervisor and admin tokens of their account, agent keys agent
  tokens only (a supervisor token reads GetReport, which the agent key itself may not),
  platform keys any of them for the account they name.

Every refusal is PermissionDenied or InvalidArgument, its message starting with the field.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from dataclasses import dataclass

from goalflow_common.auth import ACCOUNT_ID_RE, Principal, Role
from goalflow_common.errors import InvalidArgument, PermissionDenied
from goalflow_common.limits import check_printable

MAX_NAME = 100
MAX_LABEL = 200
KEY_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_ACCOUNT_ID_RULE = "1-63 of a-z 0-9 _ -, starting with a letter or digit"
ACCOUNT_KEY_ROLES = frozenset({Role.ADMIN, Role.AGENT, Role.INGEST})
"""What an admin may issue for its account."""
PLATFORM_ISSUED_ACCOUNT_ROLES = ACCOUNT_KEY_ROLES | {Role.SERVICE}
PLATFORM_WIDE_KEY_ROLES = frozenset({Role.SERVICE, Role.PLATFORM})
TOKEN_GRANTS: dict[Role, frozenset[Role]] = {
    Role.PLATFORM: frozenset({Role.AGENT, Role.SUPERVISOR, Role.ADMIN}),
    Role.ADMIN: frozenset({Role.AGENT, Role.SUPERVISOR, Role.ADMIN}),
    Role.AGENT: frozenset({Role.AGENT}),
}
"""The token roles each key role may mint: never more than the key itself may read."""


def is_token(principal: Principal) -> bool:
    """Whether the caller presented a token rather than an API key."""
    return principal.via_token


def _require_key(principal: Principal, action: str) -> None:
    if is_token(principal):
        raise PermissionDenied(f"authorization: a token cannot {action}; use an API key")


def _named_account(requested: str) -> str:
    """An account id a platform caller names, checked before any lookup: '../x' is not an
    id that could exist, which the caller hears as such, not as NOT_FOUND."""
    if requested and not ACCOUNT_ID_RE.fullmatch(requested):
        raise InvalidArgument("account_id", _ACCOUNT_ID_RULE)
    return requested


def is_platform(principal: Principal) -> bool:
    return principal.role is Role.PLATFORM and principal.account_id is None


def require_platform(principal: Principal, action: str) -> None:
    if not is_platform(principal):
        raise PermissionDenied(f"{action}: needs a platform key")


def _own_account(principal: Principal, requested: str) -> str:
    """An account caller's own account; naming another one is refused without saying
    whether it exists."""
    if principal.account_id is None:
        raise PermissionDenied("account_id: this key belongs to no account")
    if requested and requested != principal.account_id:
        raise PermissionDenied("account_id: this key cannot act on another account")
    return principal.account_id


# --- accounts -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewAccount:
    id: str
    name: str
    time_zone: str


@functools.cache
def _time_zones() -> frozenset[str]:
    # "localtime" is this machine's zone under another name, not an IANA zone.
    return frozenset(zoneinfo.available_timezones() - {"localtime"})


def new_account(account_id: str, name: str, time_zone: str) -> NewAccount:
    """A CreateAccount request's values, checked field by field in declaration order."""
    if not ACCOUNT_ID_RE.fullmatch(account_id):
        raise InvalidArgument("account_id", _ACCOUNT_ID_RULE)
    name = name.strip()
    if len(name) > MAX_NAME:
        raise InvalidArgument("name", f"at most {MAX_NAME} characters")
    check_printable("name", name)
    time_zone = time_zone.strip() or "UTC"
    if time_zone not in _time_zones():
        raise InvalidArgument(
            "time_zone", f"unknown IANA time zone {time_zone[:64]!r} (e.g. Europe/Paris)"
        )
    return NewAccount(account_id, name or account_id, time_zone)


def account_to_read(principal: Principal, requested: str) -> str:
    """The account GetAccount reads: any named one for a platform key, else the caller's."""
    if is_platform(principal):
        if principal.via_edge:
            raise PermissionDenied("platform keys may not mint tokens through the edge "
                                   "(browsers); call the config service directly")
        if not requested:
            raise InvalidArgument("account_id", "required with a platform key")
        return _named_account(requested)
    return _own_account(principal, requested)


# --- keys -----------------------------------------------------------------------------


def _check_key_role(role: Role | None) -> Role:
    if role is None:
        raise InvalidArgument("role", "required: admin, agent, ingest, service or platform")
    if role is Role.SUPERVISOR:
        raise InvalidArgument("role", "supervisor is a token role: mint a token instead")
    return role


def key_owner(
    principal: Principal, requested: str, role: Role | None
) -> tuple[str | None, Role]:
    """The account a CreateKey request issues a key for (None: platform-wide) and the
    key's role, once the caller may issue a key of that role there."""
    _require_key(principal, "issue keys")
    role = _check_key_role(role)
    if is_platform(principal):
        _named_account(requested)
        if requested and role not in PLATFORM_ISSUED_ACCOUNT_ROLES:
            raise InvalidArgument("role", "platform keys are platform-wide: leave account_id "
                                  "empty")
        if not requested and role not in PLATFORM_WIDE_KEY_ROLES:
            raise InvalidArgument("account_id", f"required for a {role.value} key")
        return requested or None, role
    account = _own_account(principal, requested)
    if role not in ACCOUNT_KEY_ROLES:
        raise PermissionDenied("role: an admin issues admin, agent and ingest keys only")
    return account, role


def check_label(label: str) -> str:
    label = label.strip()
    if len(label) > MAX_LABEL:
        raise InvalidArgument("label", f"at most {MAX_LABEL} characters")
    return check_printable("label", label)  # `keys list` prints it to a terminal


def keys_to_list(principal: Principal, requested: str) -> str | None:
    """Whose keys ListKeys shows: a platform key, the named account's (the platform-wide
    keys if it names none); an admin, its own account's."""
    if is_platform(principal):
        return _named_account(requested) or None
    return _own_account(principal, requested)


def revoke_scope(principal: Principal) -> str | None:
    """The account a revoked key must belong to (None: any, for a platform key). A key
    outside it is looked up as if it did not exist: NOT_FOUND, whoever owns it."""
    _require_key(principal, "revoke keys")
    if is_platform(principal):
        return None
    return _own_account(principal, "")


def check_key_id(key_id: str) -> str:
    if not KEY_ID_RE.fullmatch(key_id):
        raise InvalidArgument("key_id", "16 hex digits (the part after gf_ in the key)")
    return key_id


# --- tokens ---------------------------------------------------------------------------


def token_grant(
    principal: Principal, requested: str, role: Role | None, agent_id: str
) -> tuple[str, Role]:
    """The account a MintToken request mints for and the token's role, once the caller may
    mint a token of that role there. The token's own limits (agent id, lifetime) are the
    TokenAuthority's."""
    _require_key(principal, "mint tokens")
    if role is None or role not in TOKEN_GRANTS[Role.PLATFORM]:
        raise InvalidArgument("role", "required: agent, supervisor or admin")
    if agent_id and role is not Role.AGENT:
        raise InvalidArgument("agent_id", "only agent tokens name an agent")
    grants = TOKEN_GRANTS.get(principal.role, frozenset())
    if role not in grants:
        allowed = ", ".join(sorted(r.value for r in grants)) or "no"
        raise PermissionDenied(f"role: {principal.role.value} keys mint {allowed} tokens only")
    if is_platform(principal):
        if principal.via_edge:
            raise PermissionDenied("platform keys may not mint tokens through the edge "
                                   "(browsers); call the config service directly")
        if not requested:
            raise InvalidArgument("account_id", "required with a platform key")
        return _named_account(requested), role
    return _own_account(principal, requested), role


def token_lifetime(ttl_seconds: int, longest: bool, max_ttl_s: int) -> int:
    """The lifetime a MintToken request asks for, in seconds (0: the deployment's default;
    more than ``max_ttl_s`` is the TokenAuthority's to refuse). ``longest`` asks for the
    maximum itself, so that a caller that wants the longest session (the web console) need
    not know the deployment's limit."""
    if ttl_seconds < 0:
        raise InvalidArgument("ttl_seconds", "must not be negative (0: the default)")
    if longest:
        if ttl_seconds:
            raise InvalidArgument("ttl_seconds", "must be 0 when longest is set")
        return max_ttl_s
    return ttl_seconds
