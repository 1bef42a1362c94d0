"""KeyStore and Principal: hashed keys, authentication, revocation and account scoping,
against the real database."""

from __future__ import annotations

import asyncio
import hmac
import uuid

import pytest
from pymongo import AsyncMongoClient

from goalflow_common.auth import KEY_RE, KeyStore, Principal, Role
from goalflow_common.errors import AlreadyExists, NotFound, PermissionDenied, Unauthenticated


def _split(key: str) -> tuple[str, str]:
    match = KEY_RE.fullmatch(key)
    assert match is not None, key
    return match.group(1), match.group(2)


def _other_secret(secret: str) -> str:
    """The same secret with its last character changed: a near miss."""
    return secret[:-1] + ("A" if secret[-1] != "A" else "B")


@pytest.fixture
def auth_db(mongo: AsyncMongoClient, db_prefix: str):
    return mongo[f"{db_prefix}_auth"]  # the database the ``keys`` fixture uses


@pytest.fixture
async def account(keys: KeyStore) -> str:
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    await keys.create_account(account_id)
    return account_id


async def _all_documents(db) -> list[dict]:
    docs = []
    for name in await db.list_collection_names():
        docs.extend(await db[name].find({}).to_list())
    return docs


# --- storage ----------------------------------------------------------------------------


async def test_only_a_hash_of_the_secret_is_stored(keys, auth_db, account):
    key = await keys.create_key(account, Role.ADMIN, label="ops")
    key_id, secret = _split(key)
    doc = await auth_db["api_keys"].find_one({"_id": key_id})
    assert doc["account_id"] == account and doc["role"] == "admin" and doc["label"] == "ops"
    assert doc["revoked"] is False
    # Neither the secret nor the whole key appears anywhere in the auth database.
    everything = repr(await _all_documents(auth_db))
    assert secret not in everything
    assert key not in everything
    assert len(doc["secret_sha256"]) == 64 and doc["secret_sha256"] != secret


async def test_every_key_is_different(keys, account):
    issued = [await keys.create_key(account, Role.AGENT) for _ in range(5)]
    assert len({_split(k)[0] for k in issued}) == 5
    assert len({_split(k)[1] for k in issued}) == 5


# --- authentication ---------------------------------------------------------------------


ACCOUNT_KEY_ROLES = [Role.ADMIN, Role.AGENT, Role.INGEST, Role.SERVICE]


@pytest.mark.parametrize("role", ACCOUNT_KEY_ROLES)
async def test_authenticate_returns_the_principal(keys, account, role):
    key = await keys.create_key(account, role)
    principal = await keys.authenticate(key)
    assert principal == Principal(_split(key)[0], account, role)
    # A second call (served from the cache) agrees.
    assert await keys.authenticate(key) == principal


async def test_platform_service_key_has_no_account(keys):
    key = await keys.create_key(None, Role.SERVICE, label="tracker")
    assert await keys.authenticate(key) == Principal(_split(key)[0], None, Role.SERVICE)


@pytest.mark.parametrize("role", [Role.ADMIN, Role.AGENT, Role.INGEST, Role.SUPERVISOR])
async def test_only_service_and_platform_keys_may_be_platform_wide(keys, role):
    with pytest.raises(ValueError):
        await keys.create_key(None, role)


async def test_platform_keys_are_platform_wide_and_supervisor_is_no_key_role(keys, account):
    key = await keys.create_key(None, Role.PLATFORM, label="provisioning")
    assert await keys.authenticate(key) == Principal(_split(key)[0], None, Role.PLATFORM)
    with pytest.raises(ValueError, match="platform-wide"):
        await keys.create_key(account, Role.PLATFORM)
    with pytest.raises(ValueError, match="token role"):
        await keys.create_key(account, Role.SUPERVISOR)


async def test_key_for_an_unknown_account_is_refused(keys):
    with pytest.raises(NotFound):
        await keys.create_key("no-such-account", Role.ADMIN)


async def test_wrong_secret_is_refused_before_and_after_the_key_is_cached(keys, account):
    key = await keys.create_key(account, Role.ADMIN)
    key_id, secret = _split(key)
    near_miss = f"gf_{key_id}_{_other_secret(secret)}"
    with pytest.raises(Unauthenticated) as cold:
        await keys.authenticate(near_miss)
    await keys.authenticate(key)  # now cached
    with pytest.raises(Unauthenticated) as warm:
        await keys.authenticate(near_miss)
    assert cold.value.message == warm.value.message
    assert secret not in cold.value.message


async def test_unknown_key_id_is_refused_like_a_wrong_secret(keys, account):
    key = await keys.create_key(account, Role.ADMIN)
    key_id, secret = _split(key)
    with pytest.raises(Unauthenticated) as unknown:
        await keys.authenticate(f"gf_{'0' * 16}_{secret}")
    with pytest.raises(Unauthenticated) as wrong:
        await keys.authenticate(f"gf_{key_id}_{_other_secret(secret)}")
    # The same answer, so a caller cannot learn which key ids exist.
    assert unknown.value.message == wrong.value.message


@pytest.mark.parametrize(
    "transform",
    [
        lambda k: "",
        lambda k: "gf_",
        lambda k: k[3:],  # no prefix
        lambda k: "xx" + k[2:],  # wrong prefix
        lambda k: k[:-1],  # secret one character short
        lambda k: k + "a",  # secret one character long
        lambda k: k.upper(),  # key id must be lower-case hex
        lambda k: k + "\n",  # trailing newline
        lambda k: " " + k,
        lambda k: k.replace("_", "-", 2),
        lambda k: f"Bearer {k}",
    ],
    ids=["empty", "prefix-only", "no-prefix", "wrong-prefix", "short", "long", "upper",
         "newline", "leading-space", "dashes", "with-scheme"],
)
async def test_malformed_keys_are_refused(keys, account, transform):
    key = await keys.create_key(account, Role.ADMIN)
    await keys.authenticate(key)  # the well-formed key works, even from the cache
    with pytest.raises(Unauthenticated):
        await keys.authenticate(transform(key))


async def test_revoked_key_is_refused(keys, account):
    key = await keys.create_key(account, Role.AGENT)
    other = await keys.create_key(account, Role.AGENT)
    await keys.authenticate(key)  # cached before the revocation
    await keys.revoke_key(_split(key)[0])
    with pytest.raises(Unauthenticated):
        await keys.authenticate(key)
    assert (await keys.authenticate(other)).role is Role.AGENT  # only that key


async def test_revoke_key_says_whether_the_key_exists(keys, auth_db, account):
    """goalflow-keys reports a typo from this answer instead of reading api_keys itself."""
    key_id = _split(await keys.create_key(account, Role.AGENT))[0]
    assert await keys.revoke_key("0123456789abcdef") is False
    assert await auth_db["api_keys"].count_documents({"_id": "0123456789abcdef"}) == 0
    assert await keys.revoke_key(key_id) is True
    assert await keys.revoke_key(key_id) is True  # still exists, still revoked


async def test_list_keys_shows_one_account_and_never_a_hash(keys, auth_db, account):
    other = f"acct-{uuid.uuid4().hex[:8]}"
    await keys.create_account(other)
    mine = sorted([_split(await keys.create_key(account, role))[0] for role in ACCOUNT_KEY_ROLES])
    theirs = _split(await keys.create_key(other, Role.ADMIN))[0]
    wide = _split(await keys.create_key(None, Role.PLATFORM))[0]
    listed = await keys.list_keys(account, None, 10)
    assert [k.key_id for k in listed] == mine
    assert [k.key_id for k in await keys.list_keys(account, mine[1], 2)] == mine[2:4]
    assert [k.key_id for k in await keys.list_keys(None, None, 10)] == [wide]
    assert theirs not in {k.key_id for k in listed}
    hashes = [d["secret_sha256"] async for d in auth_db["api_keys"].find({})]
    assert not any(h in repr(listed) for h in hashes)


async def test_revoke_key_within_an_account_finds_only_its_keys(keys, account):
    other = f"acct-{uuid.uuid4().hex[:8]}"
    await keys.create_account(other)
    key, info = await keys.issue_key(other, Role.ADMIN, "theirs")
    assert await keys.revoke_key_within(info.key_id, account) is None
    assert (await keys.authenticate(key)).account_id == other  # untouched
    revoked = await keys.revoke_key_within(info.key_id, other)
    assert revoked is not None and revoked.revoked and revoked.revoke_time is not None
    assert await keys.revoke_key_within(info.key_id, None) == revoked  # once, same time
    with pytest.raises(Unauthenticated):
        await keys.authenticate(key)


async def test_add_account_refuses_a_taken_id(keys, account):
    with pytest.raises(AlreadyExists, match="account_id"):
        await keys.add_account(account, "again", "UTC")
    made = await keys.add_account(f"{account}-2", "Second", "Asia/Tokyo")
    assert await keys.get_account(made.id) == made
    assert [a.id for a in await keys.list_accounts(account, 5)] == [made.id]


async def test_secrets_are_compared_with_compare_digest(keys, auth_db, account, monkeypatch):
    """Both the database path and the cache path go through the constant-time comparison,
    and its verdict is what decides."""
    key = await keys.create_key(account, Role.ADMIN)
    key_id, secret = _split(key)
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    await keys.authenticate(key)  # from the database
    await keys.authenticate(key)  # from the cache
    with pytest.raises(Unauthenticated):
        await keys.authenticate(f"gf_{key_id}_{_other_secret(secret)}")
    assert len(calls) == 3
    assert all(a == calls[0][0] for a, _ in calls)  # always against the stored digest
    assert calls[0][0] != secret and secret not in calls[0]

    # If the comparison says "different", even the right key is refused.
    fresh = KeyStore(auth_db, cache_ttl_s=0)
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: False)
    with pytest.raises(Unauthenticated):
        await fresh.authenticate(key)


# --- cache and revocation ---------------------------------------------------------------


async def test_zero_ttl_sees_revocation_by_another_instance_at_once(auth_db, keys, account):
    key = await keys.create_key(account, Role.ADMIN)
    uncached = KeyStore(auth_db, cache_ttl_s=0)
    cached = KeyStore(auth_db, cache_ttl_s=30)
    assert (await uncached.authenticate(key)).account_id == account
    assert (await cached.authenticate(key)).account_id == account
    await keys.revoke_key(_split(key)[0])  # another replica's KeyStore
    with pytest.raises(Unauthenticated):
        await uncached.authenticate(key)
    # The documented revocation delay: a replica keeps trusting the key until its TTL ends.
    assert (await cached.authenticate(key)).account_id == account


async def test_revocation_is_seen_once_the_ttl_ends(auth_db, keys, account):
    key = await keys.create_key(account, Role.ADMIN)
    short = KeyStore(auth_db, cache_ttl_s=0.2)
    await short.authenticate(key)
    await keys.revoke_key(_split(key)[0])
    await asyncio.sleep(0.3)
    with pytest.raises(Unauthenticated):
        await short.authenticate(key)


async def test_key_deleted_from_the_database_is_refused_with_zero_ttl(auth_db, account):
    store = KeyStore(auth_db, cache_ttl_s=0)
    key = await store.create_key(account, Role.INGEST)
    await store.authenticate(key)
    await auth_db["api_keys"].delete_one({"_id": _split(key)[0]})
    with pytest.raises(Unauthenticated):
        await store.authenticate(key)


# --- accounts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "account_id", ["a", "0", "acme", "acme_eu-1", "a" * 63, "9lives"]
)
async def test_valid_account_ids(keys, account_id):
    created = await keys.create_account(account_id, time_zone="Europe/Paris")
    assert (created.id, created.name, created.time_zone) == (
        account_id, account_id, "Europe/Paris"
    )


@pytest.mark.parametrize(
    "account_id",
    ["", "Acme", "-acme", "_acme", "a" * 64, "ac me", "a/b", "a.b", "acme\n", "é"],
)
async def test_invalid_account_ids(keys, auth_db, account_id):
    with pytest.raises(ValueError, match="account id"):
        await keys.create_account(account_id)
    assert await auth_db["accounts"].count_documents({}) == 0


@pytest.mark.parametrize(
    "time_zone", ["Mars/Olympus", "", "utc", "UTC+5", "Europe", "../etc/passwd",
                  "/etc/localtime", "localtime", "Europe/Paris\n", "zone.tab"],
)
async def test_invalid_time_zones(keys, auth_db, time_zone):
    with pytest.raises(ValueError, match="time zone"):
        await keys.create_account("acme", time_zone=time_zone)
    assert await auth_db["accounts"].count_documents({}) == 0


async def test_create_account_is_idempotent_and_keeps_the_first_values(keys, auth_db):
    first = await keys.create_account("acme", name="Acme", time_zone="America/New_York")
    again = await KeyStore(auth_db, cache_ttl_s=0).create_account(
        "acme", name="Other", time_zone="Asia/Tokyo"
    )
    assert again == first
    assert (first.name, first.time_zone) == ("Acme", "America/New_York")


async def test_get_unknown_account(keys):
    with pytest.raises(NotFound):
        await keys.get_account("nobody")


# --- Principal.resolve_account ----------------------------------------------------------


def test_account_key_acts_on_its_own_account():
    principal = Principal("k", "acme", Role.ADMIN)
    assert principal.resolve_account() == "acme"
    assert principal.resolve_account("acme") == "acme"
    assert principal.require_account() == "acme"


def test_account_key_naming_another_account_is_denied():
    principal = Principal("k", "acme", Role.SERVICE)
    for requested in ("other", "ACME", "acme "):
        with pytest.raises(PermissionDenied) as err:
            principal.resolve_account(requested)
        # The refusal names neither account, so it reveals nothing about the other one.
        assert requested.strip() not in err.value.message
        assert "acme" not in err.value.message
        with pytest.raises(PermissionDenied):
            principal.require_account(requested)


def test_platform_key_acts_on_the_named_account_or_all():
    principal = Principal("k", None, Role.SERVICE)
    assert principal.resolve_account("acme") == "acme"
    assert principal.resolve_account("") is None
    assert principal.resolve_account() is None
    assert principal.require_account("acme") == "acme"
    with pytest.raises(PermissionDenied, match="account_id"):
        principal.require_account()
