"""The caller check the edge makes before reading a body."""

from __future__ import annotations

import time

import pytest

from edge_svc.domain.caller import MALFORMED, MISSING, check_caller
from goalflow_common.auth import Role
from goalflow_common.errors import PermissionDenied, Unauthenticated
from goalflow_common.tokens import TokenAuthority, parse_token_keys

KEYS = parse_token_keys("k1:" + "a" * 40 + ",k0:" + "b" * 40)
AUTHORITY = TokenAuthority(KEYS)
KEY = "gf_0123456789abcdef_" + "A" * 43
CREATE = "/goals.v1.ConfigService/CreateGoal"
SUBSCRIBE = "/goals.v1.TrackerService/SubscribeConversions"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", KEY])
def test_missing_or_other_scheme(header):
    with pytest.raises(Unauthenticated, match="missing 'authorization"):
        check_caller(header, CREATE, AUTHORITY)
    assert MISSING


@pytest.mark.parametrize("credential", ["gf_short", "x" * 3000, "a.b", "not a key"])
def test_neither_key_nor_token(credential):
    with pytest.raises(Unauthenticated, match="not an API key"):
        check_caller(f"Bearer {credential}", CREATE, AUTHORITY)
    assert MALFORMED


def test_an_api_key_is_only_format_checked():
    assert check_caller(f"Bearer {KEY}", CREATE, AUTHORITY) is None
    assert check_caller(f"bearer  {KEY} ", CREATE, AUTHORITY) is None


def test_tokens_are_verified_and_their_role_checked():
    agent = AUTHORITY.mint("acct", Role.AGENT, agent_id="agent-7").token
    principal = check_caller(f"Bearer {agent}", SUBSCRIBE, AUTHORITY)
    assert principal is not None and principal.agent_id == "agent-7"
    with pytest.raises(PermissionDenied, match="role 'agent' may not call"):
        check_caller(f"Bearer {agent}", CREATE, AUTHORITY)
    admin = AUTHORITY.mint("acct", Role.ADMIN).token
    assert check_caller(f"Bearer {admin}", CREATE, AUTHORITY).role is Role.ADMIN


def test_expired_forged_and_unknown_key_tokens():
    past = TokenAuthority(KEYS, now=lambda: time.time() - 7200)
    expired = past.mint("acct", Role.ADMIN).token
    with pytest.raises(Unauthenticated, match="expired"):
        check_caller(f"Bearer {expired}", CREATE, AUTHORITY)
    other = TokenAuthority(parse_token_keys("k1:" + "c" * 40)).mint("acct", Role.ADMIN).token
    with pytest.raises(Unauthenticated, match="signature"):
        check_caller(f"Bearer {other}", CREATE, AUTHORITY)
    stranger = TokenAuthority(parse_token_keys("k9:" + "c" * 40)).mint("acct", Role.ADMIN)
    with pytest.raises(Unauthenticated, match="unknown key"):
        check_caller(f"Bearer {stranger.token}", CREATE, AUTHORITY)
    with pytest.raises(Unauthenticated, match="not accepted here"):
        check_caller(f"Bearer {stranger.token}", CREATE, TokenAuthority(()))


def test_rotation_old_key_still_verifies():
    old = TokenAuthority(parse_token_keys("k0:" + "b" * 40)).mint("acct", Role.ADMIN).token
    assert check_caller(f"Bearer {old}", CREATE, AUTHORITY) is not None


def test_wrong_audience_and_unknown_role_tokens():
    import jwt

    now = int(time.time())
    claims = {"iss": "goalflow", "aud": "another-app", "acct": "acct", "role": "admin",
              "iat": now, "exp": now + 60}
    other_audience = jwt.encode(claims, "a" * 40, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(Unauthenticated, match="another audience"):
        check_caller(f"Bearer {other_audience}", CREATE, AUTHORITY)
    platform = jwt.encode({**claims, "aud": "goalflow", "role": "platform"}, "a" * 40,
                          algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(Unauthenticated, match="no valid role"):
        check_caller(f"Bearer {platform}", CREATE, AUTHORITY)
