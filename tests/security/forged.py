"""Tokens the servers must refuse, made the ways an attacker (or a stale client) would make
them, and what the refusal must say."""

from __future__ import annotations

import base64
import json
import secrets
import time

import jwt

from goalflow_common.auth import Role
from goalflow_common.tokens import (
    ALGORITHM,
    AUDIENCE,
    ISSUER,
    MAX_TOKEN_CHARS,
    TokenAuthority,
    parse_token_keys,
)
from tests.conftest import TOKEN_KEYS

KNOWN_KID, KNOWN_SECRET = TOKEN_KEYS.split(":", 1)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims(account_id: str, role: str = "admin", agent_id: str = "",
           **changes: object) -> dict[str, object]:
    """The claims a real token of ``account_id`` carries, with ``changes`` (None removes)."""
    now = int(time.time())
    base: dict[str, object] = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": agent_id or f"{role}@{account_id}",
        "acct": account_id, "role": role, "iat": now, "exp": now + 600,
        "jti": secrets.token_hex(8),
    }
    if agent_id:
        base["agent"] = agent_id
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(payload: dict[str, object], secret: str = KNOWN_SECRET, kid: str = KNOWN_KID,
           algorithm: str = ALGORITHM) -> str:
    """``payload`` signed as the servers sign (or with another secret, kid or algorithm)."""
    return jwt.encode(payload, secret, algorithm=algorithm, headers={"kid": kid})


def expired(account_id: str, role: Role = Role.ADMIN, agent_id: str = "") -> str:
    """A real token minted an hour ago with the default 15-minute lifetime."""
    past = TokenAuthority(parse_token_keys(TOKEN_KEYS), now=lambda: time.time() - 3600)
    return past.mint(account_id, role, agent_id=agent_id).token


def tampered(token: str, **changes: object) -> str:
    """``token`` with its payload changed and its original signature kept."""
    header, payload, signature = token.split(".")
    body = json.loads(_unb64(payload))
    body.update(changes)
    return f"{header}.{_b64(json.dumps(body).encode())}.{signature}"


def forgeries(account_id: str, agent_token: str) -> dict[str, tuple[str, str]]:
    """Name → (token, what the refusal must say), each an admin's rights in
    ``account_id`` obtained without the signing key. ``agent_token`` is a real agent token
    of that account (the tampering starts from it)."""
    other_secret = secrets.token_urlsafe(32)
    admin = claims(account_id)
    return {
        "expired": (expired(account_id), "expired"),
        "tampered payload (agent made admin)": (
            tampered(agent_token, role="admin", agent=None), "signature"),
        "tampered payload (another account)": (
            tampered(agent_token, acct="someone-else"), "signature"),
        "signed with an unknown key": (signed(admin, other_secret, kid="rogue"), "unknown key"),
        "another secret under the known kid": (signed(admin, other_secret), "signature"),
        "alg none": (jwt.encode(admin, None, algorithm="none", headers={"kid": KNOWN_KID}),
                     "alg"),
        "HS512 with the known secret": (
            signed(admin, KNOWN_SECRET + KNOWN_SECRET, algorithm="HS512"), "alg"),
        "garbage in a token's shape": ("abc.def.ghi", "malformed"),
        "over-long": (signed(claims(account_id, pad="x" * MAX_TOKEN_CHARS)), "malformed"),
        "wrong audience": (signed(claims(account_id, aud="someone-else")), "audience"),
        "wrong issuer": (signed(claims(account_id, iss="someone-else")), "issuer"),
        "no expiry": (signed(claims(account_id, exp=None)), "exp"),
        "issued in the future": (
            signed(claims(account_id, iat=int(time.time()) + 3600,
                          exp=int(time.time()) + 4000)), "future"),
        "platform role": (signed(claims(account_id, role="platform")), "role"),
        "service role": (signed(claims(account_id, role="service")), "role"),
        "agent without an agent id": (signed(claims(account_id, role="agent")), "agent"),
        "no account": (signed(claims(account_id, acct=None)), "account"),
    }
