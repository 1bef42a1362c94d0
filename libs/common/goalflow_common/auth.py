"""Accounts, API keys and roles.

A key looks like ``gf_<key id>_<secret>``. Only the SHA-256 of the secret is stored (the
secret is 256 random bits, so a slow hash buys nothing); the comparison is constant-time.
Keys belong to one account, except platform service keys (account ``None``), which the
services use to call each other on behalf of any account.

Accounts and keys live in their own database (``GOALFLOW_AUTH_DB_NAME``), the identity
store every service reads; no service reads another service's data.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import enum
import functools
import hashlib
import hmac
import re
import secrets
import time
import zoneinfo
from dataclasses import dataclass
from typing import TYPE_CHECKING

from goalflow_common.errors import AlreadyExists, NotFound, PermissionDenied, Unauthenticated

if TYPE_CHECKING:  # only annotations: Account and Principal stay usable without PyMongo
    from goalflow_common.db import Client, Database

KEY_RE = re.compile(r"^gf_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
ACCOUNT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Role(enum.StrEnum):
    ADMIN = "admin"
    AGENT = "agent"
    INGEST = "ingest"
    SERVICE = "service"
    PLATFORM = "platform"  # provisions accounts and keys (AccountService); no account
    SUPERVISOR = "supervisor"  # tokens only (goalflow_common.tokens): a team lead, read-only


VIA_EDGE = ("x-goalflow-via", "edge")
"""Metadata the edge adds to every call it forwards (replacing the browser's headers, so a
page cannot drop it). It only ever restricts: a caller without it is one that reached the
service directly, as it always could."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's account (None for a platform-wide key) and role, for an
    agent token the one agent whose conversions it may see (``agent_id``), and whether the
    credential was a token (``via_token``: set by ``goalflow_common.tokens`` only), which
    the AccountService needs: a short-lived token must not turn itself into a lasting key."""

    key_id: str
    account_id: str | None
    role: Role
    agent_id: str | None = None
    via_token: bool = False
    via_edge: bool = False
    """The call came through the browser edge (its :data:`VIA_EDGE` mark)."""

    def resolve_account(self, requested: str = "") -> str | None:
        """The account a request acts on.

        An account key acts on its own account only; naming another one is refused without
        saying whether it exists. A platform service key acts on the account it names, or
        on all accounts (None) if it names none.
        """
        if self.account_id is None:
            return requested or None
        if requested and requested != self.account_id:
            raise PermissionDenied("this key cannot act on that account")
        return self.account_id

    def require_account(self, requested: str = "") -> str:
        account = self.resolve_account(requested)
        if account is None:
            raise PermissionDenied("account_id: required with a platform service key")
        return account


_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("goalflow_principal")


def current_principal() -> Principal:
    """The caller of the RPC being served (set by the auth interceptor)."""
    return _principal.get()


def set_principal(principal: Principal) -> contextvars.Token[Principal]:
    return _principal.set(principal)


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    time_zone: str
    create_time: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown of an issued key: never its secret or the secret's hash."""

    key_id: str
    account_id: str | None
    role: Role
    label: str
    create_time: dt.datetime | None
    revoked: bool
    revoke_time: dt.datetime | None = None


def _key_info(doc: dict[str, object]) -> KeyInfo:
    account, label = doc.get("account_id"), doc.get("label", "")
    created, revoked_at = doc.get("create_time"), doc.get("revoke_time")
    return KeyInfo(
        key_id=str(doc["_id"]),
        account_id=account if isinstance(account, str) else None,
        role=Role(str(doc["role"])),
        label=label if isinstance(label, str) else "",
        create_time=_aware(created) if isinstance(created, dt.datetime) else None,
        revoked=bool(doc.get("revoked")),
        revoke_time=_aware(revoked_at) if isinstance(revoked_at, dt.datetime) else None,
    )


def _now() -> dt.datetime:
    """Now, at the millisecond precision BSON stores: what is returned is what is read."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _aware(when: dt.datetime) -> dt.datetime:
    # A client opened without tz_aware reads naive UTC datetimes.
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _account(doc: dict[str, object]) -> Account:
    account_id, name, tz = str(doc["_id"]), doc.get("name"), doc.get("time_zone")
    created = doc.get("create_time")
    return Account(
        account_id,
        name if isinstance(name, str) else account_id,
        tz if isinstance(tz, str) else "UTC",
        _aware(created) if isinstance(created, dt.datetime) else None,
    )


@functools.cache
def _known_time_zones() -> frozenset[str]:
    # "localtime" is this machine's zone under another name, not an IANA zone.
    return frozenset(zoneinfo.available_timezones() - {"localtime"})


def _check_time_zone(name: str) -> None:
    """Raise ValueError unless ``name`` is an IANA zone (not a file such as 'localtime')."""
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, KeyError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"time zone: unknown IANA time zone {name!r}") from exc
    if name not in _known_time_zones():
        raise ValueError(f"time zone: unknown IANA time zone {name!r}")


PLATFORM_WIDE_ROLES = frozenset({Role.SERVICE, Role.PLATFORM})
_NO_SECRET = {"secret_sha256": False}  # listing keys never reads the secrets' hashes


def _eq(value: object) -> dict[str, object]:
    """``goalflow_common.db.eq`` (why every equality on a caller's value is written this
    way), without loading PyMongo for the users of Principal and Account."""
    return {"$eq": value}


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """Accounts and keys in the auth database, with a short-lived cache of verified keys."""

    def __init__(self, db: Database, cache_ttl_s: float = 30.0) -> None:
        self._accounts = db["accounts"]
        self._keys = db["api_keys"]
        self._ttl = cache_ttl_s
        self._cache: dict[str, tuple[float, str, Principal]] = {}
        self._tz_cache: dict[str, tuple[float, Account]] = {}

    @classmethod
    def for_client(cls, client: Client, db_name: str, cache_ttl_s: float = 30.0) -> KeyStore:
        return cls(client[db_name], cache_ttl_s)

    async def create_account(
        self, account_id: str, name: str = "", time_zone: str = "UTC"
    ) -> Account:
        """Create the account if it does not exist; return it either way."""
        if not ACCOUNT_ID_RE.fullmatch(account_id):
            raise ValueError("account id: 1-63 of a-z 0-9 _ -, starting with a letter or digit")
        _check_time_zone(time_zone)
        await self._accounts.update_one(
            {"_id": account_id},
            {"$setOnInsert": {"name": name or account_id, "time_zone": time_zone,
                              "create_time": _now()}},
            upsert=True,
        )
        return await self.get_account(account_id)

    async def add_account(self, account_id: str, name: str, time_zone: str) -> Account:
        """Create a new account; AlreadyExists (naming ``account_id``) if the id is taken.
        The caller has checked the values (``create_account`` raises ValueError)."""
        _check_time_zone(time_zone)
        doc = {"_id": account_id, "name": name or account_id, "time_zone": time_zone,
               "create_time": _now()}
        # Imported here: Principal and Account stay usable without PyMongo.
        from pymongo.errors import DuplicateKeyError

        try:
            await self._accounts.insert_one(doc)
        except DuplicateKeyError:
            raise AlreadyExists("account_id", f"account {account_id!r} already exists") from None
        return _account(doc)

    async def list_accounts(self, after: str | None, limit: int) -> list[Account]:
        """Up to ``limit`` accounts by id, those after ``after`` (a page's last id)."""
        query = {} if after is None else {"_id": {"$gt": after}}
        cursor = self._accounts.find(query).sort("_id", 1).limit(limit)
        return [_account(doc) async for doc in cursor]

    async def get_account(self, account_id: str) -> Account:
        hit = self._tz_cache.get(account_id)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        doc = await self._accounts.find_one({"_id": account_id})
        if doc is None:
            raise NotFound(f"account {account_id!r} not found")
        account = _account(doc)
        self._tz_cache[account_id] = (time.monotonic() + self._ttl, account)
        return account

    async def create_key(self, account_id: str | None, role: Role, label: str = "") -> str:
        """Issue a key and return it in full; only its hash is kept."""
        key, _ = await self.issue_key(account_id, role, label)
        return key

    async def issue_key(
        self, account_id: str | None, role: Role, label: str = ""
    ) -> tuple[str, KeyInfo]:
        """Issue a key: the whole key (shown once; only its hash is kept) and its KeyInfo."""
        if account_id is not None:
            await self.get_account(account_id)
            if role is Role.PLATFORM:
                raise ValueError("platform keys are platform-wide (no account)")
        elif role not in PLATFORM_WIDE_ROLES:
            raise ValueError("only service and platform keys may be platform-wide")
        if role is Role.SUPERVISOR:
            raise ValueError("supervisor is a token role, not a key role")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        doc: dict[str, object] = {
            "_id": key_id,
            "account_id": account_id,
            "role": role.value,
            "secret_sha256": _hash_secret(secret),
            "label": label,
            "create_time": _now(),
            "revoked": False,
        }
        await self._keys.insert_one(doc)
        return f"gf_{key_id}_{secret}", _key_info(doc)

    async def revoke_key(self, key_id: str) -> bool:
        """Revoke ``key_id``; False if no such key exists (revoking twice is still True)."""
        return await self.revoke_key_within(key_id, None) is not None

    async def revoke_key_within(self, key_id: str, within: str | None) -> KeyInfo | None:
        """Revoke ``key_id`` if it belongs to account ``within`` (any key when None: a
        platform caller) and return it; None when there is no such key there. Revoking
        twice keeps the first revocation's time."""
        scope = self._key_filter(key_id, within)
        doc = await self._keys.find_one(scope)
        if doc is None:
            return None
        if not doc.get("revoked"):
            # A whole-document replace, conditional on "not revoked yet" (one concurrent
            # revocation wins): nx-27017 stores a datetime written by $set as a string
            # (test_mongo_conformance.py::test_set_datetime_on_existing_document).
            await self._keys.replace_one(
                {**scope, "revoked": False}, {**doc, "revoked": True, "revoke_time": _now()}
            )
        self._cache.pop(key_id, None)
        return await self.find_key(key_id, within)

    async def find_key(self, key_id: str, within: str | None) -> KeyInfo | None:
        """The key ``key_id`` if it belongs to account ``within`` (any account when None)."""
        doc = await self._keys.find_one(self._key_filter(key_id, within), _NO_SECRET)
        return None if doc is None else _key_info(doc)

    async def list_keys(self, account_id: str | None, after: str | None, limit: int
                        ) -> list[KeyInfo]:
        """Up to ``limit`` keys of ``account_id`` (None: the platform-wide keys) by key id,
        those after ``after``; revoked keys included, secrets' hashes never read."""
        query: dict[str, object] = {"account_id": _eq(account_id)}
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self._keys.find(query, _NO_SECRET).sort("_id", 1).limit(limit)
        return [_key_info(doc) async for doc in cursor]

    @staticmethod
    def _key_filter(key_id: str, within: str | None) -> dict[str, object]:
        query: dict[str, object] = {"_id": _eq(key_id)}
        if within is not None:
            query["account_id"] = _eq(within)
        return query

    async def authenticate(self, key: str) -> Principal:
        """The principal of a presented key, or Unauthenticated."""
        match = KEY_RE.fullmatch(key)
        if match is None:
            raise Unauthenticated("malformed API key")
        key_id, secret = match.groups()
        presented = _hash_secret(secret)
        hit = self._cache.get(key_id)
        if hit is not None and hit[0] > time.monotonic():
            if hmac.compare_digest(hit[1], presented):
                return hit[2]
            raise Unauthenticated("invalid API key")
        doc = await self._keys.find_one({"_id": key_id})
        if doc is None or doc.get("revoked") or not hmac.compare_digest(
            doc["secret_sha256"], presented
        ):
            raise Unauthenticated("invalid API key")
        principal = Principal(key_id, doc["account_id"], Role(doc["role"]))
        self._cache[key_id] = (time.monotonic() + self._ttl, doc["secret_sha256"], principal)
        return principal


# Which roles may call which method. A method missing here is refused for everyone, so a
# new RPC is closed until it is given roles. Health is open; reflection needs any key.
_A, _G, _I, _S, _V = Role.ADMIN, Role.AGENT, Role.INGEST, Role.SERVICE, Role.SUPERVISOR
_P = Role.PLATFORM
METHOD_ROLES: dict[str, frozenset[Role]] = {
    "/goals.v1.ConfigService/CreateGoal": frozenset({_A}),
    "/goals.v1.ConfigService/GetGoal": frozenset({_A, _G, _S, _V}),
    "/goals.v1.ConfigService/UpdateGoal": frozenset({_A}),
    "/goals.v1.ConfigService/ListGoals": frozenset({_A, _G, _V}),
    "/goals.v1.ConfigService/ActivateGoal": frozenset({_A}),
    "/goals.v1.ConfigService/DeactivateGoal": frozenset({_A}),
    "/goals.v1.ConfigService/DeleteGoal": frozenset({_A}),
    "/goals.v1.ConfigService/ListActiveGoals": frozenset({_A, _S}),
    "/goals.v1.ConfigService/WatchGoals": frozenset({_A, _S}),
    "/goals.v1.ConfigService/SimulateGoal": frozenset({_A}),
    "/goals.v1.TrackerService/IngestEvents": frozenset({_I}),
    "/goals.v1.TrackerService/SubscribeConversions": frozenset({_A, _G, _V}),
    "/goals.v1.TrackerService/ListConversions": frozenset({_A, _G, _V}),
    "/goals.v1.TrackerService/StreamConversions": frozenset({_A, _S}),
    "/goals.v1.TrackerService/CountConversions": frozenset({_A, _S}),
    "/goals.v1.TrackerService/GetReport": frozenset({_A, _V}),
    # Internal: config's SimulateGoal calls it with the goal it validated.
    "/goals.v1.TrackerService/ReplayGoal": frozenset({_S}),
    "/goals.v1.ExportService/RequestExport": frozenset({_A}),
    "/goals.v1.ExportService/GetExport": frozenset({_A}),
    "/goals.v1.ExportService/ListExports": frozenset({_A}),
    # AccountService: which account and which key or token role a caller may act on is
    # decided per request (config_svc.domain.accounts); these are the roles that get that far.
    "/goals.v1.AccountService/CreateAccount": frozenset({_P}),
    "/goals.v1.AccountService/GetAccount": frozenset({_P, _A}),
    "/goals.v1.AccountService/ListAccounts": frozenset({_P}),
    "/goals.v1.AccountService/CreateKey": frozenset({_P, _A}),
    "/goals.v1.AccountService/ListKeys": frozenset({_P, _A}),
    "/goals.v1.AccountService/RevokeKey": frozenset({_P, _A}),
    "/goals.v1.AccountService/MintToken": frozenset({_P, _A, _G}),
}
ANY_ROLE = frozenset(Role)
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
REFLECTION_PREFIXES = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def roles_for(method: str) -> frozenset[Role] | None:
    """Roles allowed on a method; None means no key is needed."""
    if method.startswith(OPEN_PREFIXES):
        return None
    if method.startswith(REFLECTION_PREFIXES):
        return ANY_ROLE
    return METHOD_ROLES.get(method, frozenset())
