"""Who is calling, checked from the ``authorization`` header before a body is read.

Contract of :func:`check_caller`: a missing header, another scheme than ``Bearer`` or a
credential shaped like neither an API key nor a token raises
:class:`~goalflow_common.errors.Unauthenticated`; a token is verified here (signature,
expiry, audience: the service verifies it again) and one whose role may not call the
method raises :class:`~goalflow_common.errors.PermissionDenied`. An API key is only
format-checked: it is looked up by the service it reaches (the edge holds no database).
Returns the token's principal, or None for an API key."""

from __future__ import annotations

from goalflow_common.auth import KEY_RE, Principal, roles_for
from goalflow_common.errors import PermissionDenied, Unauthenticated
from goalflow_common.tokens import TokenAuthority, looks_like_token

MISSING = "missing 'authorization: Bearer <key or token>' header"
MALFORMED = "authorization: not an API key (gf_...) nor a token"


def bearer_credential(header: str | None) -> str:
    """The credential of a ``Bearer`` header; Unauthenticated if there is none."""
    scheme, _, credential = (header or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthenticated(MISSING)
    return credential


def check_caller(header: str | None, method_path: str, tokens: TokenAuthority
                 ) -> Principal | None:
    credential = bearer_credential(header)
    if KEY_RE.fullmatch(credential):
        return None
    if not looks_like_token(credential):
        raise Unauthenticated(MALFORMED)
    principal = tokens.verify(credential)
    roles = roles_for(method_path)
    if roles is not None and principal.role not in roles:
        raise PermissionDenied(f"role {principal.role.value!r} may not call {method_path}")
    return principal
