"""Who may do what with accounts, keys and tokens (config_svc.domain.accounts), without
gRPC or a database: every caller kind, keys and tokens alike."""

from __future__ import annotations

import pytest

from config_svc.domain import accounts as rules
from goalflow_common.auth import Principal, Role
from goalflow_common.errors import InvalidArgument, PermissionDenied

PLATFORM = Principal("0123456789abcdef", None, Role.PLATFORM)
PLATFORM_SERVICE = Principal("1123456789abcdef", None, Role.SERVICE)
ADMIN = Principal("2123456789abcdef", "alpha", Role.ADMIN)
AGENT = Principal("3123456789abcdef", "alpha", Role.AGENT)
INGEST = Principal("4123456789abcdef", "alpha", Role.INGEST)
ADMIN_TOKEN = Principal("token:aa", "alpha", Role.ADMIN, via_token=True)
AGENT_TOKEN = Principal("token:bb", "alpha", Role.AGENT, agent_id="agent-7", via_token=True)
SUPERVISOR_TOKEN = Principal("token:cc", "alpha", Role.SUPERVISOR, via_token=True)


def _refusal(fn, *args) -> tuple[str, str]:
    with pytest.raises((InvalidArgument, PermissionDenied)) as caught:
        fn(*args)
    return caught.value.code, caught.value.message.split(":", 1)[0]


def test_new_account_checks_each_field_and_defaults():
    assert rules.new_account("acme", "  ", "") == rules.NewAccount("acme", "acme", "UTC")
    assert rules.new_account("acme", " Acme ", "Asia/Tokyo").name == "Acme"
    assert _refusal(rules.new_account, "Acme!", "", "UTC") == ("INVALID_ARGUMENT", "account_id")
    assert _refusal(rules.new_account, "acme", "x" * 101, "UTC") == ("INVALID_ARGUMENT", "name")
    # I12-A5: the platform operator's CLI prints names raw.
    for name in ("Acme\x1b[2J", "a\x00b", "\u202eemca"):
        assert _refusal(rules.new_account, "acme", name, "UTC") == ("INVALID_ARGUMENT", "name")
    assert rules.new_account("acme", "", " UTC ").time_zone == "UTC"
    for zone in ("Mars/Base", "localtime", "/etc/localtime", "../zoneinfo/UTC"):
        assert _refusal(rules.new_account, "acme", "", zone) == ("INVALID_ARGUMENT", "time_zone")


def test_only_a_platform_key_creates_and_lists_accounts():
    rules.require_platform(PLATFORM, "CreateAccount")
    for caller in (PLATFORM_SERVICE, ADMIN, ADMIN_TOKEN, AGENT):
        assert _refusal(rules.require_platform, caller, "CreateAccount") == (
            "PERMISSION_DENIED", "CreateAccount")


def test_account_reads():
    assert rules.account_to_read(PLATFORM, "beta") == "beta"
    assert _refusal(rules.account_to_read, PLATFORM, "") == ("INVALID_ARGUMENT", "account_id")
    assert _refusal(rules.account_to_read, PLATFORM, "../x") == ("INVALID_ARGUMENT",
                                                                 "account_id")
    for caller in (ADMIN, ADMIN_TOKEN):
        assert rules.account_to_read(caller, "") == "alpha"
        assert rules.account_to_read(caller, "alpha") == "alpha"
        assert _refusal(rules.account_to_read, caller, "beta") == (
            "PERMISSION_DENIED", "account_id")


@pytest.mark.parametrize(("caller", "account", "role", "expected"), [
    (PLATFORM, "beta", Role.ADMIN, ("beta", Role.ADMIN)),
    (PLATFORM, "beta", Role.SERVICE, ("beta", Role.SERVICE)),
    (PLATFORM, "", Role.SERVICE, (None, Role.SERVICE)),
    (PLATFORM, "", Role.PLATFORM, (None, Role.PLATFORM)),
    (PLATFORM, "beta", Role.PLATFORM, ("INVALID_ARGUMENT", "role")),
    (PLATFORM, "", Role.ADMIN, ("INVALID_ARGUMENT", "account_id")),
    (PLATFORM, "beta", Role.SUPERVISOR, ("INVALID_ARGUMENT", "role")),
    (PLATFORM, "beta", None, ("INVALID_ARGUMENT", "role")),
    # Not an id at all: said so, rather than NOT_FOUND after a lookup.
    (PLATFORM, "../x", Role.ADMIN, ("INVALID_ARGUMENT", "account_id")),
    (PLATFORM, "Beta", Role.SERVICE, ("INVALID_ARGUMENT", "account_id")),
    (ADMIN, "", Role.AGENT, ("alpha", Role.AGENT)),
    (ADMIN, "alpha", Role.INGEST, ("alpha", Role.INGEST)),
    # I12-A4: a token never issues a key (a 15-minute token would become a lasting key).
    (ADMIN_TOKEN, "", Role.ADMIN, ("PERMISSION_DENIED", "authorization")),
    (ADMIN_TOKEN, "", Role.INGEST, ("PERMISSION_DENIED", "authorization")),
    (AGENT_TOKEN, "", Role.AGENT, ("PERMISSION_DENIED", "authorization")),
    (ADMIN, "beta", Role.AGENT, ("PERMISSION_DENIED", "account_id")),
    (ADMIN, "", Role.SERVICE, ("PERMISSION_DENIED", "role")),
    (ADMIN, "", Role.PLATFORM, ("PERMISSION_DENIED", "role")),
    (ADMIN_TOKEN, "", Role.PLATFORM, ("PERMISSION_DENIED", "authorization")),
])
def test_who_issues_which_key(caller, account, role, expected):
    if expected[0] in ("INVALID_ARGUMENT", "PERMISSION_DENIED"):
        assert _refusal(rules.key_owner, caller, account, role) == expected
    else:
        assert rules.key_owner(caller, account, role) == expected


def test_key_lists_and_revocations_stay_in_the_callers_account():
    assert rules.keys_to_list(PLATFORM, "") is None  # the platform-wide keys
    assert rules.keys_to_list(PLATFORM, "beta") == "beta"
    assert rules.keys_to_list(ADMIN, "") == "alpha"
    assert rules.keys_to_list(ADMIN_TOKEN, "") == "alpha"  # reading the list is no escalation
    assert _refusal(rules.keys_to_list, PLATFORM, "../x") == ("INVALID_ARGUMENT", "account_id")
    assert _refusal(rules.keys_to_list, ADMIN_TOKEN, "beta") == ("PERMISSION_DENIED",
                                                                 "account_id")
    assert rules.revoke_scope(PLATFORM) is None
    assert rules.revoke_scope(ADMIN) == "alpha"
    # I12-A4: an admin token revoked every key of the account, its owner's included.
    for token in (ADMIN_TOKEN, AGENT_TOKEN):
        assert _refusal(rules.revoke_scope, token) == ("PERMISSION_DENIED", "authorization")
    assert rules.check_key_id("0123456789abcdef") == "0123456789abcdef"
    for bad in ("", "0123456789ABCDEF", "gf_0123456789abcdef_x", "0123"):
        assert _refusal(rules.check_key_id, bad) == ("INVALID_ARGUMENT", "key_id")
    assert _refusal(rules.check_label, "l" * 201) == ("INVALID_ARGUMENT", "label")
    assert rules.check_label("  widget backend ") == "widget backend"
    # I12-A5: `keys list` printed these raw (clear screen, a fake message, reversed text).
    for label in ("ok\x1b[2J\x1b[H\x1b[32mALL KEYS REVOKED", "a\x00b", "\u202eevil",
                  "one\u2028two"):
        assert _refusal(rules.check_label, label) == ("INVALID_ARGUMENT", "label")


@pytest.mark.parametrize(("caller", "account", "role", "agent", "expected"), [
    (ADMIN, "", Role.AGENT, "a-1", ("alpha", Role.AGENT)),
    (ADMIN, "alpha", Role.SUPERVISOR, "", ("alpha", Role.SUPERVISOR)),
    (ADMIN, "", Role.ADMIN, "", ("alpha", Role.ADMIN)),
    (AGENT, "", Role.AGENT, "a-1", ("alpha", Role.AGENT)),
    # I12-A8: a supervisor token reads GetReport, which an agent key may not: agent keys
    # mint agent tokens only.
    (AGENT, "", Role.SUPERVISOR, "", ("PERMISSION_DENIED", "role")),
    (AGENT, "", Role.ADMIN, "", ("PERMISSION_DENIED", "role")),
    (PLATFORM, "beta", Role.ADMIN, "", ("beta", Role.ADMIN)),
    (PLATFORM, "", Role.AGENT, "a-1", ("INVALID_ARGUMENT", "account_id")),
    (PLATFORM, "../x", Role.AGENT, "a-1", ("INVALID_ARGUMENT", "account_id")),
    (ADMIN, "beta", Role.AGENT, "a-1", ("PERMISSION_DENIED", "account_id")),
    (INGEST, "", Role.AGENT, "a-1", ("PERMISSION_DENIED", "role")),
    (PLATFORM_SERVICE, "beta", Role.AGENT, "a-1", ("PERMISSION_DENIED", "role")),
    (ADMIN, "", Role.INGEST, "", ("INVALID_ARGUMENT", "role")),
    (ADMIN, "", None, "", ("INVALID_ARGUMENT", "role")),
    (ADMIN, "", Role.SUPERVISOR, "a-1", ("INVALID_ARGUMENT", "agent_id")),
    # A token never mints a token, whatever it asks for.
    (ADMIN_TOKEN, "", Role.AGENT, "a-1", ("PERMISSION_DENIED", "authorization")),
    (AGENT_TOKEN, "", Role.AGENT, "agent-7", ("PERMISSION_DENIED", "authorization")),
    (SUPERVISOR_TOKEN, "", Role.SUPERVISOR, "", ("PERMISSION_DENIED", "authorization")),
])
def test_who_mints_which_token(caller, account, role, agent, expected):
    if expected[0] in ("INVALID_ARGUMENT", "PERMISSION_DENIED"):
        assert _refusal(rules.token_grant, caller, account, role, agent) == expected
    else:
        assert rules.token_grant(caller, account, role, agent) == expected


def test_tokens_are_told_apart_from_keys():
    assert rules.is_token(ADMIN_TOKEN) and rules.is_token(AGENT_TOKEN)
    assert not rules.is_token(ADMIN) and not rules.is_token(PLATFORM)
    # By how the principal was verified, not by a name a key id could never take anyway.
    assert not rules.is_token(Principal("token:aa", "alpha", Role.ADMIN))


def test_agent_keys_mint_no_more_than_they_may_read():
    """I12-A8: every token role a key mints may call only what the key itself may."""
    from goalflow_common.auth import METHOD_ROLES

    for key_role, grants in rules.TOKEN_GRANTS.items():
        if key_role is Role.PLATFORM:
            continue  # provisions accounts: it mints for the account's own backends
        for token_role in grants:
            reachable = {path for path, roles in METHOD_ROLES.items() if token_role in roles}
            allowed = {path for path, roles in METHOD_ROLES.items() if key_role in roles}
            assert reachable <= allowed, (key_role, token_role, reachable - allowed)
