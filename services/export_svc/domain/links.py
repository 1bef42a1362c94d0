"""Signed download links (docs/rules.md §6: "the link is signed: a changed, foreign or expired link
gets a clear refusal and no bytes").

Link format::

    {base_url}/exports/{export_id}/download?account={account_id}&expires={E}&sig={S}

``E`` is the expiry as whole Unix seconds (UTC) in canonical decimal (no sign, no leading
zeros) and ``S`` is the lowercase hex HMAC-SHA256 under the link secret of the UTF-8 bytes
of ``f"{export_id}\\n{account_id}\\n{E}"``. The signature covers the exact text that appears
in the URL, so changing any character of the export id, the account or the expiry
invalidates it. A link is valid while ``now < E``; links are issued for ``LINK_TTL``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from urllib.parse import quote, urlencode

from goalflow_common.clock import Clock

LINK_TTL = dt.timedelta(days=14)
"""How long a download link is valid (docs/rules.md §6)."""

MIN_SECRET_BYTES = 32

# Canonical forms only: a second spelling of the same value ("0123", "+123", upper-case hex)
# would be a second valid URL for one signature.
_EXPIRES_RE = re.compile(r"(?:0|[1-9][0-9]{0,15})")
_SIG_RE = re.compile(r"[0-9a-f]{64}")


class LinkError(Exception):
    """A download link that must be refused."""


class BadSignature(LinkError):
    """The link is malformed or its signature does not match (tampered or forged)."""


class LinkExpired(LinkError):
    """The link is authentic but past its expiry."""


class LinkSigner:
    """Makes and checks signed download links."""

    def __init__(self, secret: bytes, base_url: str, clock: Clock) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"link secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._base_url = base_url.rstrip("/")
        self._clock = clock

    def new_expiry(self) -> dt.datetime:
        """Expiry for a link issued now: now + LINK_TTL, to the whole second (the link
        carries whole seconds, so the stored expiry matches the link exactly)."""
        return (self._clock.now() + LINK_TTL).replace(microsecond=0)

    def url(self, export_id: str, account_id: str, expires_at: dt.datetime) -> str:
        """The signed download URL for ``export_id`` owned by ``account_id``."""
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        _check_field(export_id, "export_id")
        _check_field(account_id, "account_id")
        expires = str(int(expires_at.timestamp()))
        sig = self._sign(export_id, account_id, expires)
        query = urlencode({"account": account_id, "expires": expires, "sig": sig})
        return f"{self._base_url}/exports/{quote(export_id, safe='')}/download?{query}"

    def verify(self, export_id: str, account: str, expires: str | int, sig: str) -> None:
        """Accept the link or raise ``BadSignature`` / ``LinkExpired``.

        Expiry is judged only after the signature is valid, so a forged link learns
        nothing (it is always ``BadSignature``)."""
        expires_text = str(expires)
        if (
            not export_id
            or not account
            or "\n" in export_id
            or "\n" in account
            or not _EXPIRES_RE.fullmatch(expires_text)
            or not _SIG_RE.fullmatch(sig)
        ):
            raise BadSignature("malformed link")
        expected = self._sign(export_id, account, expires_text)
        if not hmac.compare_digest(expected, sig):
            raise BadSignature("signature mismatch")
        if self._clock.now().timestamp() >= int(expires_text):
            raise LinkExpired("link expired")

    def _sign(self, export_id: str, account_id: str, expires: str) -> str:
        message = f"{export_id}\n{account_id}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def _check_field(value: str, name: str) -> None:
    # A newline would let two different (export, account) pairs share one signed message.
    if not value or "\n" in value:
        raise ValueError(f"{name} must be non-empty and contain no newline")
