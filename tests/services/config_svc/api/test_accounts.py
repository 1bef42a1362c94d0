"""AccountService against real servers (config hosting it, a tracker beside it) and the real
database: accounts with their time zone, keys shown once, listed without secrets and revoked
(then refused by every service within the key cache TTL), who may act on which account, and
MintToken's role and lifetime rules, its tokens verified by the TokenAuthority."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from config_svc.server import create_server as create_config
from config_svc.settings import ConfigSettings
from goalflow_common.auth import KeyStore, Role
from goalflow_common.pb.goals.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    config_pb2,
    config_pb2_grpc,
    tracker_pb2,
    tracker_pb2_grpc,
)
from goalflow_common.server import GoalflowServer
from goalflow_common.tokens import TokenAuthority
from goalflow_dev.embedded_mongo import free_port
from tracker_svc.server import create_server as create_tracker
from tracker_svc.settings import TrackerSettings

KEY_TTL_S = 0.5  # the services' key cache: how long a revoked key may still pass
TOKEN_KEYS = "k1:" + "s" * 40
MAX_TTL_S = 1800
P = accounts_pb2


@dataclass
class Outcome:
    code: str
    details: str
    response: Any = None


@dataclass
class Accounts:
    """Config (hosting AccountService) and a tracker on the test's databases; a platform
    key, and tenants A and B with admin, agent, ingest and service keys."""

    config_address: str
    tracker_address: str
    store: KeyStore
    platform: str
    a: dict[Role, str]
    b: dict[Role, str]
    a_id: str
    b_id: str
    tokens: TokenAuthority
    channels: list[aio.Channel] = field(default_factory=list)

    def _channel(self, address: str) -> aio.Channel:
        channel = aio.insecure_channel(address)
        self.channels.append(channel)
        return channel

    async def call(self, credential: str | None, rpc: str, request: Any) -> Outcome:
        """``AccountService.<rpc>`` sending ``authorization: Bearer <credential>``."""
        stub = accounts_pb2_grpc.AccountServiceStub(self._channel(self.config_address))
        return await _outcome(getattr(stub, rpc), request, credential)

    async def ok(self, credential: str, rpc: str, request: Any) -> Any:
        outcome = await self.call(credential, rpc, request)
        assert outcome.code == "OK", f"{rpc}: {outcome.code} {outcome.details}"
        return outcome.response

    async def list_goals(self, credential: str) -> Outcome:
        stub = config_pb2_grpc.ConfigServiceStub(self._channel(self.config_address))
        return await _outcome(stub.ListGoals, config_pb2.ListGoalsRequest(), credential)

    async def list_conversions(self, credential: str) -> Outcome:
        stub = tracker_pb2_grpc.TrackerServiceStub(self._channel(self.tracker_address))
        return await _outcome(stub.ListConversions, tracker_pb2.ListConversionsRequest(),
                              credential)


async def _outcome(method: Any, request: Any, credential: str | None) -> Outcome:
    metadata = None if credential is None else (("authorization", f"Bearer {credential}"),)
    try:
        response = await method(request, metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        return Outcome(exc.code().name, exc.details() or "")
    return Outcome("OK", "", response)


@pytest.fixture
async def accounts(mongo_uri: str, db_prefix: str, clock) -> AsyncIterator[Accounts]:
    client: AsyncMongoClient = AsyncMongoClient(mongo_uri, tz_aware=True)
    store = KeyStore(client[f"{db_prefix}_auth"], cache_ttl_s=0)
    platform = await store.create_key(None, Role.PLATFORM, label="tests")
    service = await store.create_key(None, Role.SERVICE, label="tests")
    tenants = []
    for name in ("alpha", "bravo"):
        account_id = f"{name}-{uuid.uuid4().hex[:8]}"
        await store.create_account(account_id)
        tenants.append((account_id, {role: await store.create_key(account_id, role)
                                     for role in (Role.ADMIN, Role.AGENT, Role.INGEST,
                                                  Role.SERVICE)}))
    tracker_port = free_port()
    settings = ConfigSettings(
        mongodb_uri=mongo_uri, auth_db_name=f"{db_prefix}_auth",
        config_db_name=f"{db_prefix}_config", grpc_port=0, shutdown_grace_s=1.0,
        tracker_address=f"127.0.0.1:{tracker_port}", service_api_key=service,
        key_cache_ttl_s=KEY_TTL_S, token_keys=TOKEN_KEYS, token_max_ttl_s=MAX_TTL_S,
    )
    config, config_port = await create_config(settings, clock=clock)
    await config.start()
    servers: list[GoalflowServer] = [config]
    try:
        tracker, _ = await create_tracker(TrackerSettings(
            mongodb_uri=mongo_uri, auth_db_name=f"{db_prefix}_auth",
            tracker_db_name=f"{db_prefix}_tracker", grpc_port=tracker_port,
            config_address=f"127.0.0.1:{config_port}", shutdown_grace_s=1.0,
            service_api_key=service, key_cache_ttl_s=KEY_TTL_S,
        ), clock=clock)
        await tracker.start()
        servers.append(tracker)
        (a_id, a), (b_id, b) = tenants
        world = Accounts(f"127.0.0.1:{config_port}", f"127.0.0.1:{tracker_port}", store,
                         platform, a, b, a_id, b_id, settings.token_authority())
        try:
            yield world
        finally:
            for channel in world.channels:
                await channel.close()
    finally:
        for server in reversed(servers):
            await server.stop(0.5)
        await client.close()


def _key_id(key: str) -> str:
    return key.split("_")[1]


# --- accounts -------------------------------------------------------------------------


async def test_a_platform_key_creates_reads_and_lists_accounts(accounts: Accounts):
    new_id = f"acme-{uuid.uuid4().hex[:6]}"
    created = (await accounts.ok(accounts.platform, "CreateAccount", P.CreateAccountRequest(
        account_id=new_id, name=" Acme Ltd ", time_zone="Europe/Paris"))).account
    assert (created.id, created.name, created.time_zone) == (new_id, "Acme Ltd", "Europe/Paris")
    assert abs(created.create_time.ToDatetime(dt.UTC) - dt.datetime.now(dt.UTC)) < dt.timedelta(
        seconds=10)
    read = (await accounts.ok(accounts.platform, "GetAccount",
                              P.GetAccountRequest(account_id=new_id))).account
    assert read == created
    # The services read the time zone from the same store.
    assert (await accounts.store.get_account(new_id)).time_zone == "Europe/Paris"

    again = await accounts.call(accounts.platform, "CreateAccount",
                                P.CreateAccountRequest(account_id=new_id, time_zone="UTC"))
    assert (again.code, again.details) == (
        "ALREADY_EXISTS", f"account_id: account {new_id!r} already exists")
    assert (await accounts.store.get_account(new_id)).time_zone == "Europe/Paris"

    defaulted = (await accounts.ok(accounts.platform, "CreateAccount", P.CreateAccountRequest(
        account_id=f"{new_id}-2"))).account
    assert (defaulted.name, defaulted.time_zone) == (f"{new_id}-2", "UTC")

    seen: list[str] = []
    request = P.ListAccountsRequest(page_size=2)
    while True:
        page = await accounts.ok(accounts.platform, "ListAccounts", request)
        assert len(page.accounts) <= 2
        seen += [a.id for a in page.accounts]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert seen == sorted([accounts.a_id, accounts.b_id, new_id, f"{new_id}-2"])


@pytest.mark.parametrize(("request_fields", "field_name"), [
    ({"account_id": "Not Valid"}, "account_id"),
    ({"account_id": ""}, "account_id"),
    ({"account_id": "x" * 64}, "account_id"),
    ({"account_id": "ok", "name": "n" * 101}, "name"),
    ({"account_id": "ok", "name": "Acme\x1b[2J\x1b[H"}, "name"),  # I12-A5
    ({"account_id": "ok", "name": "\u202eemca"}, "name"),
    ({"account_id": "ok", "time_zone": "Mars/Olympus"}, "time_zone"),
    ({"account_id": "ok", "time_zone": "localtime"}, "time_zone"),
    ({"account_id": "ok", "time_zone": "../../etc/passwd"}, "time_zone"),
])
async def test_create_account_names_the_bad_field(accounts: Accounts, request_fields, field_name):
    outcome = await accounts.call(accounts.platform, "CreateAccount",
                                  P.CreateAccountRequest(**request_fields))
    assert outcome.code == "INVALID_ARGUMENT"
    assert outcome.details.startswith(f"{field_name}: "), outcome.details
    with pytest.raises(Exception, match="not found"):
        await accounts.store.get_account("ok")


async def test_list_accounts_refuses_a_bad_page(accounts: Accounts):
    for request, name in ((P.ListAccountsRequest(page_size=-1), "page_size"),
                          (P.ListAccountsRequest(page_token="garbage"), "page_token")):
        outcome = await accounts.call(accounts.platform, "ListAccounts", request)
        assert outcome.code == "INVALID_ARGUMENT" and outcome.details.startswith(f"{name}: ")


# --- keys -----------------------------------------------------------------------------


async def test_a_key_is_shown_once_and_listed_without_secret_material(accounts: Accounts):
    made = await accounts.ok(accounts.a[Role.ADMIN], "CreateKey", P.CreateKeyRequest(
        role=P.ROLE_AGENT, label="  workspace backend "))
    key, info = made.key, made.api_key
    key_id, secret = key.split("_")[1], key.split("_", 2)[2]
    assert (info.key_id, info.account_id, info.role, info.label, info.revoked) == (
        key_id, accounts.a_id, P.ROLE_AGENT, "workspace backend", False)
    assert info.HasField("create_time") and not info.HasField("revoke_time")
    principal = await accounts.store.authenticate(key)
    assert (principal.account_id, principal.role) == (accounts.a_id, Role.AGENT)

    # The message type has no place for a secret, and no answer but CreateKey's carries one.
    assert [f.name for f in P.ApiKey.DESCRIPTOR.fields] == [
        "key_id", "account_id", "role", "label", "create_time", "revoked", "revoke_time"]
    stored = await accounts.store._keys.find_one({"_id": key_id})
    listed = await accounts.ok(accounts.a[Role.ADMIN], "ListKeys", P.ListKeysRequest())
    wire = listed.SerializeToString()
    for material in (key, secret, stored["secret_sha256"]):
        assert material.encode() not in wire
        assert material.encode() not in P.ApiKey.SerializeToString(info)
    by_id = {k.key_id: k for k in listed.api_keys}
    assert by_id[key_id] == info
    assert set(by_id) == {key_id, *(_key_id(k) for k in accounts.a.values())}
    assert {k.account_id for k in listed.api_keys} == {accounts.a_id}


async def test_list_keys_pages_within_the_account(accounts: Accounts):
    admin = accounts.a[Role.ADMIN]
    for n in range(5):
        await accounts.ok(admin, "CreateKey", P.CreateKeyRequest(role=P.ROLE_INGEST,
                                                                 label=f"feed {n}"))
    seen: list[str] = []
    request = P.ListKeysRequest(page_size=3)
    while True:
        page = await accounts.ok(admin, "ListKeys", request)
        seen += [k.key_id for k in page.api_keys]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert len(seen) == 9 and seen == sorted(seen)
    # A token of A's list does not page another list.
    first = await accounts.ok(accounts.platform, "ListKeys",
                              P.ListKeysRequest(account_id=accounts.a_id, page_size=1))
    other = await accounts.call(accounts.platform, "ListKeys", P.ListKeysRequest(
        account_id=accounts.b_id, page_token=first.next_page_token))
    assert other.code == "INVALID_ARGUMENT" and other.details.startswith("page_token: ")


async def test_a_revoked_key_is_refused_by_every_service_within_the_cache_ttl(
    accounts: Accounts
):
    admin = accounts.a[Role.ADMIN]
    made = await accounts.ok(admin, "CreateKey", P.CreateKeyRequest(role=P.ROLE_ADMIN,
                                                                    label="to revoke"))
    victim = made.key
    # Both services have verified (and cached) it.
    assert (await accounts.list_goals(victim)).code == "OK"
    assert (await accounts.list_conversions(victim)).code == "OK"

    revoked_at = time.monotonic()
    first = (await accounts.ok(admin, "RevokeKey",
                               P.RevokeKeyRequest(key_id=made.api_key.key_id))).api_key
    assert first.revoked and first.HasField("revoke_time")
    again = (await accounts.ok(admin, "RevokeKey",
                               P.RevokeKeyRequest(key_id=made.api_key.key_id))).api_key
    assert again == first, "revoking twice changes nothing"

    refused: dict[str, float] = {}
    while len(refused) < 2 and time.monotonic() - revoked_at < KEY_TTL_S + 3:
        for name, probe in (("config", accounts.list_goals), ("tracker",
                                                               accounts.list_conversions)):
            if name not in refused:
                outcome = await probe(victim)
                if outcome.code == "UNAUTHENTICATED":
                    refused[name] = time.monotonic() - revoked_at
                else:
                    assert outcome.code == "OK", outcome
        await asyncio.sleep(0.05)
    assert set(refused) == {"config", "tracker"}, refused
    # Config revoked it itself (its cache entry dropped at once); the tracker's cache
    # trusts it at most KEY_TTL_S more (plus a probe round).
    assert refused["config"] < 0.5
    assert refused["tracker"] < KEY_TTL_S + 0.5
    # The other keys still work.
    assert (await accounts.list_conversions(accounts.a[Role.AGENT])).code == "OK"


async def test_an_admin_manages_its_own_account_only(accounts: Accounts):
    admin, b_agent = accounts.a[Role.ADMIN], accounts.b[Role.AGENT]
    own = (await accounts.ok(admin, "GetAccount", P.GetAccountRequest())).account
    assert own.id == accounts.a_id
    assert (await accounts.ok(admin, "GetAccount", P.GetAccountRequest(
        account_id=accounts.a_id))).account == own
    snapshot = await _keys_snapshot(accounts)

    refused = {
        "GetAccount B": await accounts.call(admin, "GetAccount",
                                            P.GetAccountRequest(account_id=accounts.b_id)),
        "CreateKey in B": await accounts.call(admin, "CreateKey", P.CreateKeyRequest(
            account_id=accounts.b_id, role=P.ROLE_ADMIN)),
        "ListKeys of B": await accounts.call(admin, "ListKeys",
                                             P.ListKeysRequest(account_id=accounts.b_id)),
        "CreateKey platform": await accounts.call(admin, "CreateKey",
                                                  P.CreateKeyRequest(role=P.ROLE_PLATFORM)),
        "CreateKey service": await accounts.call(admin, "CreateKey",
                                                 P.CreateKeyRequest(role=P.ROLE_SERVICE)),
        "CreateAccount": await accounts.call(admin, "CreateAccount",
                                             P.CreateAccountRequest(account_id="sneaky")),
        "ListAccounts": await accounts.call(admin, "ListAccounts", P.ListAccountsRequest()),
    }
    for what, outcome in refused.items():
        assert outcome.code == "PERMISSION_DENIED", (what, outcome)
    assert refused["GetAccount B"].details.startswith("account_id: ")
    assert refused["CreateKey platform"].details.startswith("role: ")
    # Another account's key, a platform key and no key at all look alike: NOT_FOUND.
    ghost = uuid.uuid4().hex[:16]
    answers = {}
    for name, key_id in (("B's key", _key_id(b_agent)), ("platform key",
                                                          _key_id(accounts.platform)),
                         ("no such key", ghost)):
        outcome = await accounts.call(admin, "RevokeKey", P.RevokeKeyRequest(key_id=key_id))
        answers[name] = (outcome.code, outcome.details.replace(key_id, "<id>"))
    assert set(answers.values()) == {("NOT_FOUND", "key_id: no key '<id>'")}, answers
    assert await _keys_snapshot(accounts) == snapshot, "a refused call changed the keys"
    assert (await accounts.list_conversions(b_agent)).code == "OK"


async def test_keys_other_than_admin_and_platform_manage_nothing(accounts: Accounts):
    snapshot = await _keys_snapshot(accounts)
    callers = {"agent": accounts.a[Role.AGENT], "ingest": accounts.a[Role.INGEST],
               "account service": accounts.a[Role.SERVICE]}
    for who, key in callers.items():
        for rpc, request in (
            ("GetAccount", P.GetAccountRequest()),
            ("CreateKey", P.CreateKeyRequest(role=P.ROLE_AGENT)),
            ("ListKeys", P.ListKeysRequest()),
            ("RevokeKey", P.RevokeKeyRequest(key_id=_key_id(accounts.a[Role.ADMIN]))),
            ("ListAccounts", P.ListAccountsRequest()),
        ):
            outcome = await accounts.call(key, rpc, request)
            assert outcome.code == "PERMISSION_DENIED", (who, rpc, outcome)
    assert await _keys_snapshot(accounts) == snapshot


async def test_a_platform_key_issues_any_key_and_lists_platform_wide_ones(accounts: Accounts):
    platform = accounts.platform
    b_admin = (await accounts.ok(platform, "CreateKey", P.CreateKeyRequest(
        account_id=accounts.b_id, role=P.ROLE_ADMIN, label="bravo ops"))).key
    assert (await accounts.ok(b_admin, "GetAccount", P.GetAccountRequest())).account.id == \
        accounts.b_id
    made = await accounts.ok(platform, "CreateKey", P.CreateKeyRequest(
        role=P.ROLE_PLATFORM, label="provisioning"))
    assert made.api_key.account_id == "" and made.api_key.role == P.ROLE_PLATFORM
    service = await accounts.ok(platform, "CreateKey", P.CreateKeyRequest(role=P.ROLE_SERVICE))
    wide = await accounts.ok(made.key, "ListKeys", P.ListKeysRequest())
    assert {k.key_id for k in wide.api_keys} >= {
        made.api_key.key_id, service.api_key.key_id, _key_id(platform)}
    assert {k.account_id for k in wide.api_keys} == {""}
    b_keys = await accounts.ok(platform, "ListKeys", P.ListKeysRequest(account_id=accounts.b_id))
    assert _key_id(b_admin) in {k.key_id for k in b_keys.api_keys}
    # A platform key revokes any key.
    revoked = await accounts.ok(platform, "RevokeKey",
                                P.RevokeKeyRequest(key_id=_key_id(b_admin)))
    assert revoked.api_key.revoked and revoked.api_key.account_id == accounts.b_id

    for request, code, name in (
        (P.CreateKeyRequest(account_id=accounts.a_id, role=P.ROLE_PLATFORM),
         "INVALID_ARGUMENT", "role"),
        (P.CreateKeyRequest(account_id=accounts.a_id, role=P.ROLE_SUPERVISOR),
         "INVALID_ARGUMENT", "role"),
        (P.CreateKeyRequest(account_id=accounts.a_id), "INVALID_ARGUMENT", "role"),
        (P.CreateKeyRequest(account_id=accounts.a_id, role=99), "INVALID_ARGUMENT", "role"),
        (P.CreateKeyRequest(role=P.ROLE_ADMIN), "INVALID_ARGUMENT", "account_id"),
        (P.CreateKeyRequest(account_id=accounts.a_id, role=P.ROLE_AGENT, label="l" * 201),
         "INVALID_ARGUMENT", "label"),
        (P.CreateKeyRequest(account_id=accounts.a_id, role=P.ROLE_AGENT,
                            label="ok\x1b[2J\x1b[32mALL KEYS REVOKED"), "INVALID_ARGUMENT",
         "label"),  # I12-A5: `keys list` printed it raw
        (P.CreateKeyRequest(account_id=accounts.a_id, role=P.ROLE_AGENT, label="a\x00b"),
         "INVALID_ARGUMENT", "label"),
        (P.CreateKeyRequest(account_id="nobody-here", role=P.ROLE_ADMIN), "NOT_FOUND", ""),
        # Not an account id at all: said so (it answered NOT_FOUND).
        (P.CreateKeyRequest(account_id="../x", role=P.ROLE_ADMIN), "INVALID_ARGUMENT",
         "account_id"),
        (P.CreateKeyRequest(account_id="A" * 70, role=P.ROLE_SERVICE), "INVALID_ARGUMENT",
         "account_id"),
    ):
        outcome = await accounts.call(platform, "CreateKey", request)
        assert outcome.code == code, (request, outcome)
        assert outcome.details.startswith(f"{name}: " if name else ""), outcome.details
    bad_id = await accounts.call(platform, "RevokeKey", P.RevokeKeyRequest(key_id="nope"))
    assert bad_id.code == "INVALID_ARGUMENT" and bad_id.details.startswith("key_id: ")
    get = await accounts.call(platform, "GetAccount", P.GetAccountRequest())
    assert get.code == "INVALID_ARGUMENT" and get.details.startswith("account_id: ")


async def _keys_snapshot(accounts: Accounts) -> list[dict]:
    return await accounts.store._keys.find({}).sort("_id", 1).to_list()


# --- tokens ---------------------------------------------------------------------------

# (caller, token role) -> expected code; the caller's own account.
MINT_CASES = [
    ("admin", P.ROLE_AGENT, "OK"), ("admin", P.ROLE_SUPERVISOR, "OK"),
    ("admin", P.ROLE_ADMIN, "OK"),
    # I12-A8: agent keys mint agent tokens only (a supervisor token reads GetReport).
    ("agent", P.ROLE_AGENT, "OK"), ("agent", P.ROLE_SUPERVISOR, "PERMISSION_DENIED"),
    ("agent", P.ROLE_ADMIN, "PERMISSION_DENIED"),
    ("platform", P.ROLE_AGENT, "OK"), ("platform", P.ROLE_SUPERVISOR, "OK"),
    ("platform", P.ROLE_ADMIN, "OK"),
    ("ingest", P.ROLE_AGENT, "PERMISSION_DENIED"),
    ("account service", P.ROLE_AGENT, "PERMISSION_DENIED"),
    ("platform service", P.ROLE_AGENT, "PERMISSION_DENIED"),
    ("admin", P.ROLE_INGEST, "INVALID_ARGUMENT"), ("admin", P.ROLE_PLATFORM, "INVALID_ARGUMENT"),
    ("admin", P.ROLE_UNSPECIFIED, "INVALID_ARGUMENT"),
]


@pytest.mark.parametrize(("caller", "role", "code"), MINT_CASES,
                         ids=[f"{c}-{P.Role.Name(r)}" for c, r, _ in MINT_CASES])
async def test_mint_token_role_rules(accounts: Accounts, caller, role, code):
    platform_service = await accounts.store.create_key(None, Role.SERVICE)
    key = {"admin": accounts.a[Role.ADMIN], "agent": accounts.a[Role.AGENT],
           "platform": accounts.platform, "ingest": accounts.a[Role.INGEST],
           "account service": accounts.a[Role.SERVICE],
           "platform service": platform_service}[caller]
    agent_id = "agent-7" if role == P.ROLE_AGENT else ""
    outcome = await accounts.call(key, "MintToken", P.MintTokenRequest(
        account_id=accounts.a_id, role=role, agent_id=agent_id))
    assert outcome.code == code, outcome
    if code != "OK":
        if code == "INVALID_ARGUMENT" or caller in ("admin", "agent"):
            assert outcome.details.startswith("role: "), outcome.details
        return
    principal = accounts.tokens.verify(outcome.response.token)
    assert principal.account_id == accounts.a_id
    assert principal.role.value == P.Role.Name(role).removeprefix("ROLE_").lower()
    assert principal.agent_id == (agent_id or None)


async def test_mint_token_lifetimes_and_bad_requests(accounts: Accounts):
    admin = accounts.a[Role.ADMIN]
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    default = await accounts.ok(admin, "MintToken", P.MintTokenRequest(role=P.ROLE_SUPERVISOR))
    short = await accounts.ok(admin, "MintToken", P.MintTokenRequest(
        role=P.ROLE_AGENT, agent_id="agent-7", ttl_seconds=60))
    longest = await accounts.ok(admin, "MintToken", P.MintTokenRequest(
        role=P.ROLE_AGENT, agent_id="agent-7", ttl_seconds=MAX_TTL_S))
    # `longest` asks for the deployment's maximum without knowing it (the web console).
    asked_longest = await accounts.ok(admin, "MintToken", P.MintTokenRequest(
        role=P.ROLE_ADMIN, longest=True))
    after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    for reply, ttl in ((default, 900), (short, 60), (longest, MAX_TTL_S),
                       (asked_longest, MAX_TTL_S)):
        expires = reply.expire_time.ToDatetime(dt.UTC)
        assert before + dt.timedelta(seconds=ttl) <= expires <= after + dt.timedelta(seconds=ttl)
        accounts.tokens.verify(reply.token)
    # Signed with the configured key, and naming the key that minted it.
    import jwt

    claims = jwt.decode(short.token, "s" * 40, algorithms=["HS256"], audience="goalflow")
    assert claims["by"] == _key_id(admin) and claims["exp"] - claims["iat"] == 60
    assert jwt.get_unverified_header(short.token)["kid"] == "k1"

    for who, request, code, name in (
        ("admin", P.MintTokenRequest(role=P.ROLE_AGENT, agent_id="a", ttl_seconds=MAX_TTL_S + 1),
         "INVALID_ARGUMENT", "ttl_seconds"),
        ("admin", P.MintTokenRequest(role=P.ROLE_AGENT, agent_id="a", ttl_seconds=-5),
         "INVALID_ARGUMENT", "ttl_seconds"),
        ("admin", P.MintTokenRequest(role=P.ROLE_AGENT), "INVALID_ARGUMENT", "agent_id"),
        ("admin", P.MintTokenRequest(role=P.ROLE_ADMIN, longest=True, ttl_seconds=60),
         "INVALID_ARGUMENT", "ttl_seconds"),
        ("admin", P.MintTokenRequest(role=P.ROLE_AGENT, agent_id="a" * 129),
         "INVALID_ARGUMENT", "agent_id"),
        ("admin", P.MintTokenRequest(role=P.ROLE_SUPERVISOR, agent_id="a"),
         "INVALID_ARGUMENT", "agent_id"),
        ("admin", P.MintTokenRequest(role=P.ROLE_AGENT, agent_id="a\x1b]0;pwned\x07"),
         "INVALID_ARGUMENT", "agent_id"),  # I12-A5
        ("platform", P.MintTokenRequest(account_id="../x", role=P.ROLE_SUPERVISOR),
         "INVALID_ARGUMENT", "account_id"),
        ("admin", P.MintTokenRequest(account_id=accounts.b_id, role=P.ROLE_SUPERVISOR),
         "PERMISSION_DENIED", "account_id"),
        ("agent", P.MintTokenRequest(account_id=accounts.b_id, role=P.ROLE_AGENT, agent_id="a"),
         "PERMISSION_DENIED", "account_id"),
        ("platform", P.MintTokenRequest(role=P.ROLE_SUPERVISOR), "INVALID_ARGUMENT",
         "account_id"),
        ("platform", P.MintTokenRequest(account_id="nobody-here", role=P.ROLE_SUPERVISOR),
         "NOT_FOUND", ""),
    ):
        key = {"admin": admin, "agent": accounts.a[Role.AGENT],
               "platform": accounts.platform}[who]
        outcome = await accounts.call(key, "MintToken", request)
        assert outcome.code == code, (who, request, outcome)
        assert outcome.details.startswith(f"{name}: " if name else ""), outcome.details


async def test_tokens_mint_no_tokens_and_issue_or_revoke_no_keys(accounts: Accounts):
    """A token only reads the key list: CreateKey, RevokeKey and MintToken take an API key.
    I12-A4: an admin token issued a permanent admin key (a stolen 15-minute browser token
    became lasting access) and revoked every key of the account."""
    minted = await accounts.ok(accounts.a[Role.ADMIN], "MintToken",
                               P.MintTokenRequest(role=P.ROLE_ADMIN))
    agent = await accounts.ok(accounts.a[Role.AGENT], "MintToken",
                              P.MintTokenRequest(role=P.ROLE_AGENT, agent_id="agent-7"))
    probe = await accounts.call(minted.token, "GetAccount", P.GetAccountRequest())
    if probe.code == "UNAUTHENTICATED" and "key" in probe.details:
        pytest.skip("this build's interceptor accepts API keys only (tokens: issue 12 item 3)")
    assert probe.code == "OK" and probe.response.account.id == accounts.a_id
    for token in (minted.token, agent.token):
        outcome = await accounts.call(token, "MintToken", P.MintTokenRequest(
            role=P.ROLE_AGENT, agent_id="agent-7"))
        assert outcome.code == "PERMISSION_DENIED", outcome
        assert outcome.details.startswith("authorization: a token cannot mint tokens")
    snapshot = await _keys_snapshot(accounts)
    for role in (P.ROLE_ADMIN, P.ROLE_INGEST):
        outcome = await accounts.call(minted.token, "CreateKey", P.CreateKeyRequest(role=role))
        assert (outcome.code, outcome.details) == (
            "PERMISSION_DENIED", "authorization: a token cannot issue keys; use an API key")
    # The account's own admin key, another account's key, and no key: all refused alike,
    # before any lookup.
    for key_id in (_key_id(accounts.a[Role.ADMIN]), _key_id(accounts.b[Role.ADMIN]),
                   uuid.uuid4().hex[:16], "not-an-id"):
        outcome = await accounts.call(minted.token, "RevokeKey",
                                      P.RevokeKeyRequest(key_id=key_id))
        assert (outcome.code, outcome.details) == (
            "PERMISSION_DENIED", "authorization: a token cannot revoke keys; use an API key")
    assert await _keys_snapshot(accounts) == snapshot, "a token changed the keys"
    listed = await accounts.ok(minted.token, "ListKeys", P.ListKeysRequest())
    assert _key_id(accounts.a[Role.ADMIN]) in {k.key_id for k in listed.api_keys}
    assert (await accounts.list_goals(accounts.a[Role.ADMIN])).code == "OK"
    assert (await accounts.call(agent.token, "ListKeys", P.ListKeysRequest())).code == \
        "PERMISSION_DENIED"


async def test_without_signing_keys_mint_token_says_so(config_settings, keys, make_tenant):
    tenant = await make_tenant()
    server, port = await create_config(config_settings.model_copy(update={
        "token_keys": SecretStr("")}))
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = accounts_pb2_grpc.AccountServiceStub(channel)
            outcome = await _outcome(stub.MintToken, P.MintTokenRequest(
                role=P.ROLE_SUPERVISOR), tenant.admin)
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="goals.v1.AccountService"), timeout=5)
    finally:
        await server.stop(0.5)
    assert outcome.code == "INVALID_ARGUMENT"
    assert outcome.details.startswith("token: this deployment has no token signing key")
    assert health.status == health_pb2.HealthCheckResponse.SERVING
