"""Signed download links: the documented format, tamper detection, expiry and its order."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

import pytest

from export_svc.domain.links import LINK_TTL, BadSignature, LinkExpired, LinkSigner

SECRET = b"s" * 32


def _parts(url: str) -> tuple[str, str, str, str]:
    split = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(split.query, strict_parsing=True).items()}
    assert set(query) == {"account", "expires", "sig"}
    export_id = split.path.split("/")[2]
    return export_id, query["account"], query["expires"], query["sig"]


def _flip(text: str, index: int = -1) -> str:
    """``text`` with one character changed to another of the same kind."""
    ch = text[index]
    repl = {"0": "1", "a": "b"}.get(ch, "0" if ch.isdigit() else "a")
    chars = list(text)
    chars[index] = repl
    return "".join(chars)


def test_url_has_documented_format(clock):
    signer = LinkSigner(SECRET, "https://dl.example.com/", clock)
    expires_at = signer.new_expiry()
    url = signer.url("exp1", "acc-9", expires_at)
    expires = str(int(expires_at.timestamp()))
    sig = hmac.new(SECRET, f"exp1\nacc-9\n{expires}".encode(), hashlib.sha256).hexdigest()
    assert url == (
        f"https://dl.example.com/exports/exp1/download?account=acc-9&expires={expires}&sig={sig}"
    )
    assert expires_at == (clock.now() + LINK_TTL).replace(microsecond=0)
    assert dt.timedelta(days=14) == LINK_TTL


def test_fresh_link_verifies_until_its_expiry(clock):
    signer = LinkSigner(SECRET, "http://x", clock)
    export_id, account, expires, sig = _parts(signer.url("e", "a", signer.new_expiry()))
    signer.verify(export_id, account, expires, sig)
    signer.verify(export_id, account, int(expires), sig)
    clock.advance(LINK_TTL - dt.timedelta(seconds=1))
    signer.verify(export_id, account, expires, sig)
    clock.advance(dt.timedelta(seconds=1))  # now == expires: no longer valid
    with pytest.raises(LinkExpired):
        signer.verify(export_id, account, expires, sig)


@pytest.mark.parametrize("field", [0, 1, 2, 3])
def test_one_changed_character_is_bad_signature(clock, field):
    signer = LinkSigner(SECRET, "http://x", clock)
    parts = list(_parts(signer.url("export42", "account7", signer.new_expiry())))
    parts[field] = _flip(parts[field])
    with pytest.raises(BadSignature):
        signer.verify(*parts)


@pytest.mark.parametrize(
    ("expires", "sig"),
    [
        ("", None),
        ("abc", None),
        ("-1", None),
        ("+1780000000", None),
        ("01780000000", None),
        (" 1780000000", None),
        (None, ""),
        (None, "zz" * 32),
        (None, "ab" * 31),
        (None, "upper"),
    ],
)
def test_malformed_parameters_are_bad_signature(clock, expires, sig):
    signer = LinkSigner(SECRET, "http://x", clock)
    export_id, account, good_expires, good_sig = _parts(signer.url("e", "a", signer.new_expiry()))
    if sig == "upper":
        sig = good_sig.upper()
    with pytest.raises(BadSignature):
        signer.verify(
            export_id,
            account,
            good_expires if expires is None else expires,
            good_sig if sig is None else sig,
        )


def test_forged_expired_link_is_bad_signature_not_expired(clock):
    """Expiry is judged only after the signature: a forger learns nothing from the answer."""
    signer = LinkSigner(SECRET, "http://x", clock)
    export_id, account, expires, sig = _parts(signer.url("e", "a", signer.new_expiry()))
    clock.advance(LINK_TTL * 2)
    with pytest.raises(LinkExpired):
        signer.verify(export_id, account, expires, sig)
    with pytest.raises(BadSignature):
        signer.verify(export_id, account, expires, _flip(sig, 0))


def test_other_secret_is_bad_signature(clock):
    ours = LinkSigner(SECRET, "http://x", clock)
    theirs = LinkSigner(b"t" * 32, "http://x", clock)
    with pytest.raises(BadSignature):
        ours.verify(*_parts(theirs.url("e", "a", theirs.new_expiry())))


def test_refuses_weak_secret_naive_expiry_and_newlines(clock):
    with pytest.raises(ValueError):
        LinkSigner(b"short", "http://x", clock)
    signer = LinkSigner(SECRET, "http://x", clock)
    with pytest.raises(ValueError):
        signer.url("e", "a", dt.datetime(2026, 6, 2))
    with pytest.raises(ValueError):
        signer.url("e\na", "b", signer.new_expiry())
    with pytest.raises(BadSignature):
        signer.verify("e\na", "b", "1", "0" * 64)
