"""goalflow_common.tokens on its own: key parsing, minting, verification, expiry with an
injected clock, rotation, and every forgery refused with a message saying why."""

from __future__ import annotations

import secrets

import jwt
import pytest
from pydantic import ValidationError

from goalflow_common.auth import Principal, Role
from goalflow_common.errors import InvalidArgument, Unauthenticated
from goalflow_common.settings import ServiceSettings
from goalflow_common.tokens import (
    MAX_TOKEN_CHARS,
    SigningKey,
    TokenAuthority,
    looks_like_token,
    parse_token_keys,
)
from tests.conftest import TOKEN_KEYS
from tests.security import forged

S1, S2 = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
T = 1_780_000_000.0  # an instant in 2026


class Clock:
    def __init__(self, now: float = T) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def authority(spec: str = f"k1:{S1}", clock: Clock | None = None, **kw) -> TokenAuthority:
    return TokenAuthority(parse_token_keys(spec), now=clock or Clock(), **kw)


# -- keys --------------------------------------------------------------------------------


def test_keys_parse_in_order_and_the_first_signs():
    keys = parse_token_keys(f" k2:{S2} , k1:{S1},")
    assert [k.kid for k in keys] == ["k2", "k1"]
    token = TokenAuthority(keys).mint("acct", Role.ADMIN).token
    assert jwt.get_unverified_header(token)["kid"] == "k2"
    assert parse_token_keys("") == ()


@pytest.mark.parametrize(("spec", "message"), [
    (f"k1{S1}", "entry 1 must be 'kid:secret'"),
    (f"bad kid:{S1}", "entry 1 must be 'kid:secret'"),
    (f"k1:{S1},k2:short", "the secret of 'k2' must be at least 32 bytes"),
    (f"k1:{S1},k1:{S2}", "kid 'k1' is listed twice"),
])
def test_bad_key_lists_are_refused_naming_the_entry_without_the_secret(spec, message):
    with pytest.raises(ValueError, match=r"^token_keys: ") as refused:
        parse_token_keys(spec)
    assert message in str(refused.value)
    assert S1 not in str(refused.value) and S2 not in str(refused.value)


def test_a_signing_key_never_shows_its_secret():
    assert S1 not in repr(SigningKey("k1", S1.encode()))


def test_settings_refuse_bad_token_keys_at_start_up():
    with pytest.raises(ValidationError, match="token_keys"):
        ServiceSettings(token_keys="k1:short")
    with pytest.raises(ValidationError, match="token_ttl_s"):
        ServiceSettings(token_keys=f"k1:{S1}", token_ttl_s=7200, token_max_ttl_s=3600)
    made = ServiceSettings(token_keys=f"k1:{S1}", token_ttl_s=60).token_authority()
    assert made.enabled and made.default_ttl_s == 60
    assert not ServiceSettings().token_authority().enabled


# -- shape -------------------------------------------------------------------------------


def test_a_token_looks_like_a_token_and_a_key_does_not():
    token = authority().mint("acct", Role.ADMIN).token
    assert looks_like_token(token)
    assert not looks_like_token("gf_0123456789abcdef_" + "a" * 43)
    assert not looks_like_token("a.b")
    assert not looks_like_token("a.b.c" + "c" * MAX_TOKEN_CHARS)


# -- mint and verify ---------------------------------------------------------------------


@pytest.mark.parametrize(("role", "agent_id"), [
    (Role.AGENT, "agent-7"), (Role.SUPERVISOR, ""), (Role.ADMIN, ""),
])
def test_a_minted_token_verifies_to_its_account_role_and_agent(role, agent_id):
    tokens = authority()
    minted = tokens.mint("acct-1", role, agent_id=agent_id, minted_by="key1")
    principal = tokens.verify(minted.token)
    assert principal.account_id == "acct-1" and principal.role is role
    assert principal.agent_id == (agent_id or None)
    assert principal.key_id.startswith("token:")
    assert minted.expire_time.timestamp() == T + 900


def test_only_an_agent_token_carries_an_agent_scope():
    tokens = authority()
    supervisor = tokens.verify(tokens.mint("acct", Role.SUPERVISOR, agent_id="x").token)
    assert supervisor.agent_id is None
    assert Principal("k", "acct", Role.AGENT).agent_id is None  # an agent key: no scope


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"account_id": "Bad Account"}, "account_id"),
    ({"role": Role.INGEST}, "role"),
    ({"role": Role.SERVICE}, "role"),
    ({"role": Role.PLATFORM}, "role"),
    ({"role": Role.AGENT}, "agent_id"),
    ({"role": Role.AGENT, "agent_id": "x" * 129}, "agent_id"),
    # I12-A5: an agent id is logged and printed; terminal escapes and bidi overrides are not
    # ids.
    ({"role": Role.AGENT, "agent_id": "a\x1b[2Jb"}, "agent_id"),
    ({"role": Role.AGENT, "agent_id": "a\x00b"}, "agent_id"),
    ({"role": Role.AGENT, "agent_id": "\u202eevil"}, "agent_id"),
    ({"ttl_s": 3601}, "ttl_seconds"),
    ({"ttl_s": -1}, "ttl_seconds"),
])
def test_minting_refuses_bad_requests_naming_the_field(kwargs, field):
    args = {"account_id": "acct", "role": Role.ADMIN, **kwargs}
    with pytest.raises(InvalidArgument) as refused:
        authority().mint(**args)
    assert refused.value.field == field


def test_without_keys_tokens_are_neither_minted_nor_accepted():
    off = TokenAuthority(())
    assert not off.enabled
    with pytest.raises(InvalidArgument, match="GOALFLOW_TOKEN_KEYS"):
        off.mint("acct", Role.ADMIN)
    with pytest.raises(Unauthenticated, match="not accepted here"):
        off.verify(authority().mint("acct", Role.ADMIN).token)


def test_lifetimes_must_be_positive_and_within_the_maximum():
    with pytest.raises(ValueError, match="ttl"):
        authority(default_ttl_s=0)
    with pytest.raises(ValueError, match="ttl"):
        authority(default_ttl_s=600, max_ttl_s=300)


# -- expiry ------------------------------------------------------------------------------


def test_a_token_expires_after_its_lifetime_plus_the_leeway():
    clock = Clock()
    tokens = authority(clock=clock, leeway_s=5)
    token = tokens.mint("acct", Role.AGENT, agent_id="a1", ttl_s=60).token
    clock.now = T + 60 + 4  # within the leeway for clock skew between replicas
    assert tokens.verify(token).agent_id == "a1"
    clock.now = T + 60 + 6
    with pytest.raises(Unauthenticated, match=r"^token expired; ask for a new one$"):
        tokens.verify(token)


def test_a_token_minted_expired_is_refused():
    past = authority(clock=Clock(T - 3600))
    with pytest.raises(Unauthenticated, match="expired"):
        authority().verify(past.mint("acct", Role.ADMIN).token)


def test_a_token_from_the_future_is_refused():
    future = authority(clock=Clock(T + 3600))
    with pytest.raises(Unauthenticated):
        authority().verify(future.mint("acct", Role.ADMIN).token)


def _signed(claims: dict[str, object]) -> str:
    """A token signed with the authority's real key, carrying exactly ``claims``."""
    base = {"iss": "goalflow", "aud": "goalflow", "acct": "acct", "role": "admin",
            "iat": int(T), "exp": int(T) + 60, "jti": "j"}
    return jwt.encode({**base, **claims}, S1, algorithm="HS256", headers={"kid": "k1"})


@pytest.mark.parametrize("exp", [10**30, int(T) + 3600 + 6, int(T) + 10 * 365 * 86400])
def test_a_token_living_longer_than_the_maximum_is_refused(exp):
    """I12-A10: a token the real key signed with exp 10**30 was accepted (for ever). Mint
    never signs more than max_ttl_s; verify holds every token to it (plus the leeway)."""
    with pytest.raises(Unauthenticated, match=r"lifetime exceeds the maximum of 3600 s"):
        authority(max_ttl_s=3600, leeway_s=5).verify(_signed({"exp": exp}))


def test_the_longest_lifetime_mint_allows_still_verifies():
    tokens = authority(max_ttl_s=3600, leeway_s=5)
    assert tokens.verify(tokens.mint("acct", Role.ADMIN, ttl_s=3600).token).role is Role.ADMIN
    assert tokens.verify(_signed({"exp": int(T) + 3605})).role is Role.ADMIN  # leeway


def test_a_token_not_valid_yet_is_refused():
    """I12-A10: ``nbf`` is honoured when present (mint sets none), with the same leeway."""
    clock = Clock()
    tokens = authority(clock=clock, leeway_s=5)
    early = _signed({"nbf": int(T) + 30})
    with pytest.raises(Unauthenticated, match=r"not valid yet"):
        tokens.verify(early)
    clock.now = T + 26  # within the leeway
    assert tokens.verify(early).account_id == "acct"
    with pytest.raises(Unauthenticated, match="nbf must be an integer"):
        tokens.verify(_signed({"nbf": "soon"}))


def test_a_tokens_principal_says_it_came_from_a_token():
    tokens = authority()
    assert tokens.verify(tokens.mint("acct", Role.ADMIN).token).via_token
    assert not Principal("0123456789abcdef", "acct", Role.ADMIN).via_token


# -- rotation ----------------------------------------------------------------------------


def test_rotation_accepts_both_keys_then_only_the_new_one():
    old_only = authority(f"old:{S1}")
    both = authority(f"new:{S2},old:{S1}")  # the new key signs, the old still verifies
    new_only = authority(f"new:{S2}")
    old_token = old_only.mint("acct", Role.ADMIN).token
    new_token = both.mint("acct", Role.ADMIN).token
    assert jwt.get_unverified_header(new_token)["kid"] == "new"
    for token in (old_token, new_token):
        assert both.verify(token).account_id == "acct"
    assert new_only.verify(new_token).account_id == "acct"
    with pytest.raises(Unauthenticated, match="unknown key"):
        new_only.verify(old_token)


# -- forgery -----------------------------------------------------------------------------


TEST_KEYS = TokenAuthority(parse_token_keys(TOKEN_KEYS))
FORGERIES = forged.forgeries("acct", TEST_KEYS.mint("acct", Role.AGENT, agent_id="a1").token)


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_every_forgery_is_refused_saying_why(name):
    tokens = TokenAuthority(parse_token_keys(TOKEN_KEYS))
    token, why = FORGERIES[name]
    with pytest.raises(Unauthenticated) as refused:
        tokens.verify(token)
    assert why.lower() in refused.value.message.lower()
