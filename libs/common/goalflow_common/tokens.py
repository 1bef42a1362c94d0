"""Short-lived signed tokens: what a browser holds instead of an API key.

A backend that holds an API key mints a token (``AccountService.MintToken``) for one
account, one role and, for an agent, one agent id, and hands it to the browser, which sends
it as ``authorization: Bearer <token>`` exactly as a server sends its key. A token is a JWT
(RFC 7519, via PyJWT) signed with HMAC-SHA256; every service verifies it from the signature
alone, without a database round trip, so it is valid until it expires (default 15 minutes):
revoking the key that minted it does not end it sooner.

Signing keys come from the environment (``GOALFLOW_TOKEN_KEYS``: ``kid:secret`` pairs, comma
separated). The first signs; every listed key verifies, selected by the token's ``kid``
header. Rotation without downtime: add the new key second everywhere, then move it first
(new tokens use it, old ones still verify), and drop the old key once the longest token
lifetime has passed.

Roles a token can carry: ``agent`` (sees only conversions crediting its agent id),
``supervisor`` (a team lead: the whole account's conversions and reports, no writes) and
``admin`` (the web console: what an admin key may do). The contract of :meth:`verify`:
anything but a well-formed, unexpired token of a listed key, this audience and issuer,
a known role, and a lifetime (``exp - iat``) of at most the maximum this authority mints,
already valid (``nbf``, when present), raises
:class:`~goalflow_common.errors.Unauthenticated` saying why.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from goalflow_common.auth import ACCOUNT_ID_RE, Principal, Role
from goalflow_common.errors import InvalidArgument, Unauthenticated
from goalflow_common.limits import MAX_ID, check_printable

ALGORITHM = "HS256"
AUDIENCE = "goalflow"
ISSUER = "goalflow"
TOKEN_ROLES = frozenset({Role.AGENT, Role.SUPERVISOR, Role.ADMIN})
MAX_TOKEN_CHARS = 2048  # a minted token is ~400; anything longer is refused unparsed
MIN_SECRET_BYTES = 32  # HS256 keys shorter than the hash are weaker than they look
_KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    secret: bytes

    def __repr__(self) -> str:  # never print the secret
        return f"SigningKey(kid={self.kid!r})"


def parse_token_keys(spec: str) -> tuple[SigningKey, ...]:
    """``kid:secret[,kid:secret...]`` → keys, the first being the signing one.

    Raises ValueError naming what is wrong (never echoing a secret)."""
    keys: list[SigningKey] = []
    for n, part in enumerate(p.strip() for p in spec.split(",") if p.strip()):
        kid, sep, secret = part.partition(":")
        if not sep or not _KID_RE.fullmatch(kid):
            raise ValueError(
                f"token_keys: entry {n + 1} must be 'kid:secret' with a kid of 1-32 of "
                "A-Z a-z 0-9 _ -"
            )
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"token_keys: the secret of {kid!r} must be at least {MIN_SECRET_BYTES} bytes"
            )
        if any(k.kid == kid for k in keys):
            raise ValueError(f"token_keys: kid {kid!r} is listed twice")
        keys.append(SigningKey(kid, secret.encode()))
    return tuple(keys)


def looks_like_token(credential: str) -> bool:
    """Whether a bearer credential has the shape of a JWT rather than an API key."""
    return len(credential) <= MAX_TOKEN_CHARS and bool(_JWT_SHAPE.fullmatch(credential))


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: str
    expire_time: dt.datetime


class TokenAuthority:
    """Mints and verifies tokens with a fixed set of keys (see the module docstring)."""

    def __init__(
        self,
        keys: tuple[SigningKey, ...],
        *,
        default_ttl_s: int = 900,
        max_ttl_s: int = 3600,
        leeway_s: int = 5,
        now: Callable[[], float] = time.time,
    ) -> None:
        if default_ttl_s <= 0 or default_ttl_s > max_ttl_s:
            raise ValueError("token ttl: 0 < default_ttl_s <= max_ttl_s")
        self._keys = {k.kid: k for k in keys}
        self._signing = keys[0] if keys else None
        self.default_ttl_s = default_ttl_s
        self.max_ttl_s = max_ttl_s
        self._leeway = leeway_s
        self._now = now

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (without one, tokens are neither minted nor accepted)."""
        return self._signing is not None

    def mint(
        self, account_id: str, role: Role, agent_id: str = "", ttl_s: int = 0, minted_by: str = ""
    ) -> MintedToken:
        """A token for ``account_id`` with ``role`` (and ``agent_id``, required for an agent).

        ``ttl_s`` 0 means the default; more than the maximum is refused. Raises
        InvalidArgument naming the field."""
        if self._signing is None:
            raise InvalidArgument("token", "this deployment has no token signing key "
                                  "(GOALFLOW_TOKEN_KEYS)")
        if not ACCOUNT_ID_RE.fullmatch(account_id):
            raise InvalidArgument("account_id", "not a valid account id")
        if role not in TOKEN_ROLES:
            raise InvalidArgument("role", "must be agent, supervisor or admin")
        if role is Role.AGENT and not agent_id:
            raise InvalidArgument("agent_id", "required for an agent token")
        if len(agent_id) > MAX_ID:
            raise InvalidArgument("agent_id", f"at most {MAX_ID} characters")
        check_printable("agent_id", agent_id)  # logged and shown by consoles and CLIs
        ttl = ttl_s or self.default_ttl_s
        if ttl < 0 or ttl > self.max_ttl_s:
            raise InvalidArgument("ttl_seconds", f"between 1 and {self.max_ttl_s}")
        now = int(self._now())
        claims: dict[str, object] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": agent_id or f"{role.value}@{account_id}",
            "acct": account_id,
            "role": role.value,
            "iat": now,
            "exp": now + ttl,
            "jti": secrets.token_hex(8),
        }
        if agent_id:
            claims["agent"] = agent_id
        if minted_by:
            claims["by"] = minted_by
        token = jwt.encode(
            claims, self._signing.secret, algorithm=ALGORITHM,
            headers={"kid": self._signing.kid},
        )
        return MintedToken(token, dt.datetime.fromtimestamp(now + ttl, dt.UTC))

    def verify(self, token: str) -> Principal:
        """The principal a token names, or Unauthenticated saying why it is refused."""
        if not self.enabled:
            raise Unauthenticated("tokens are not accepted here (no GOALFLOW_TOKEN_KEYS)")
        if not looks_like_token(token):
            raise Unauthenticated("malformed token")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise Unauthenticated("malformed token") from exc
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthenticated("token signed with an unknown key")
        try:
            # Times are checked below against this authority's clock: PyJWT reads the wall
            # clock, which an injected ``now`` (tests, replays) must govern as it does mint.
            claims = jwt.decode(
                token, key.secret, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                options={"require": ["exp", "iat", "aud", "iss"], "verify_exp": False,
                         "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidAudienceError as exc:
            raise Unauthenticated("token is for another audience") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthenticated("token signature is invalid") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        _check_times(claims, self._now(), self._leeway, self.max_ttl_s)
        return _principal(claims)


def _int_claim(claims: dict[str, object], name: str) -> int:
    value = claims[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise Unauthenticated(f"invalid token: {name} must be an integer")
    return value


def _check_times(claims: dict[str, object], now: float, leeway: int, max_ttl: int) -> None:
    """Expired (``exp`` at or before ``now``), issued in the future, not valid yet
    (``nbf``), or living longer than ``max_ttl``, give or take ``leeway`` seconds of clock
    skew between replicas: Unauthenticated."""
    exp, iat = _int_claim(claims, "exp"), _int_claim(claims, "iat")
    if exp <= now - leeway:
        raise Unauthenticated("token expired; ask for a new one")
    if iat > now + leeway:
        raise Unauthenticated("token issued in the future")
    # Mint never signs more than max_ttl; a longer one (exp 10**30 was accepted) comes from
    # a leaked signing secret or another deployment's settings, and would never expire.
    if exp - iat > max_ttl + leeway:
        raise Unauthenticated(f"token lifetime exceeds the maximum of {max_ttl} s")
    if "nbf" in claims and _int_claim(claims, "nbf") > now + leeway:
        raise Unauthenticated("token not valid yet (nbf)")


def _principal(claims: dict[str, object]) -> Principal:
    account, role, agent = claims.get("acct"), claims.get("role"), claims.get("agent", "")
    if not isinstance(account, str) or not ACCOUNT_ID_RE.fullmatch(account):
        raise Unauthenticated("token names no valid account")
    if role not in {r.value for r in TOKEN_ROLES}:
        raise Unauthenticated("token carries no valid role")
    if not isinstance(agent, str) or len(agent) > MAX_ID or (role == "agent" and not agent):
        raise Unauthenticated("agent token names no valid agent")
    jti = claims.get("jti")
    return Principal(
        key_id=f"token:{jti}" if isinstance(jti, str) else "token",
        account_id=account,
        role=Role(role),
        agent_id=agent if role == "agent" else None,
        via_token=True,
    )
