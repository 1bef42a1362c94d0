"""The role matrix and the cross-account table, through the edge, over each browser
protocol (Connect JSON and binary, gRPC-Web, and gRPC over h2c): the edge grants nothing the
native services refuse and hides nothing they allow.

For every exposed RPC, each key and token of account A and every bad credential of the role matrix
gets, through the edge, the code ``METHOD_ROLES`` gives natively, and a refused call changes
nothing in any database; account B's probes on A's ids answer through the edge exactly as
they answer for ids that exist nowhere, with none of A's strings in them.

``credentials`` is the table (keys and tokens of every role, bad and forged credentials):
each entry names a header and the role it stands for."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from goalflow_common.auth import METHOD_ROLES, Role
from goalflow_common.pb.goals.v1 import accounts_pb2
from tests.security import forged
from tests.security.conftest import A_AGENT, Ids, World, revoked_key, snapshot, touching
from tests.security.edge_rpcs import EXPOSED, PROTOCOLS, EdgeWorld, invoke_edge, start_edge
from tests.security.rpcs import Outcome, convert_again
from tests.security.test_cross_account import PROBES, _a_markers, _comparable, _key, _leaks
from tests.security.test_role_matrix import BAD_HEADERS, CASES, MATRIX_FORGERIES, TOKEN_ROLES


@pytest.fixture
async def edge_world(world: World) -> AsyncIterator[EdgeWorld]:
    server = await start_edge(world)
    try:
        yield EdgeWorld(world, server)
    finally:
        await server.stop()


HTTP2 = {"grpc-h2c"}


@dataclass(frozen=True)
class Credential:
    """An ``authorization`` header and the role it carries (None: refused by anyone)."""

    name: str
    header: Callable[[World], str | None]
    role: Role | None
    refusal: str = "UNAUTHENTICATED"


def credentials(world: World) -> list[Credential]:
    """Account A's keys, one per role it has, A's tokens of every token role, then every bad
    header of the role matrix and its forged or expired tokens."""
    table = [Credential(f"{role.value} key", lambda w, k=key: f"Bearer {k}", role)
             for role, key in world.a.keys.items()]
    table += [Credential(f"{role.value} token", lambda w, r=role: _token(w, r), role)
              for role in TOKEN_ROLES]
    bad_tokens = forged.forgeries(world.a.account_id,
                                  world.token(world.a, Role.AGENT, A_AGENT.id))
    table += [Credential(f"token: {name}", lambda w, t=bad_tokens[name][0]: f"Bearer {t}", None)
              for name in MATRIX_FORGERIES]
    table += [Credential(name, lambda w, h=header: h, None)
              for name, header in BAD_HEADERS.items()]
    forged_key = f"gf_{world.a.admin.split('_')[1]}_" + "b" * 43
    table.append(Credential("admin key id with a forged secret",
                            lambda w: f"Bearer {forged_key}", None))
    return table


def _token(world: World, role: Role) -> str:
    return f"Bearer {world.token(world.a, role, A_AGENT.id if role is Role.AGENT else '')}"


def expected(credential: Credential, path: str, protocol: str = "") -> str:
    if credential.role is None:
        if protocol in HTTP2 and credential.name == "empty bearer":
            # "Bearer " ends in a space: a malformed HTTP/2 header (RFC 9113 §8.2.1), which
            # the server's HTTP/2 layer refuses by closing the connection, unread.
            return "UNAVAILABLE"
        return credential.refusal
    case, token = CASES[path], credential.name.endswith(" token")
    allowed = (credential.role in METHOD_ROLES[path]
               and not (case.key_only and token)
               and not (credential.role in case.refused_keys and not token))
    return "OK" if allowed else "PERMISSION_DENIED"


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize("path", EXPOSED, ids=lambda p: p.rsplit("/", 1)[1])
async def test_role_matrix_through_the_edge(path, protocol, edge_world, keys, mongo,
                                            db_prefix):
    world, case = edge_world.world, CASES[path]
    table = credentials(world)
    revoked = await revoked_key(keys, world.a.account_id, min(METHOD_ROLES[path]))
    table.append(Credential("revoked key", lambda w: f"Bearer {revoked}", None))
    mismatches = []
    for credential in (c for c in table if expected(c, path) != "OK"):
        before = await snapshot(mongo, db_prefix)
        outcome = await invoke_edge(edge_world, protocol, path, case.request(world),
                                    credential.header(world), until=case.until,
                                    timeout_s=5.0)
        wanted = expected(credential, path, protocol)
        if outcome.code != wanted or outcome.responses:
            mismatches.append(f"{credential.name}: {outcome.code} {outcome.details!r}, "
                              f"wanted {wanted}")
        if await snapshot(mongo, db_prefix) != before:
            mismatches.append(f"{credential.name}: the refused call changed the database")
    # Allowed calls last: some change data the refused ones are checked against.
    for credential in (c for c in table if expected(c, path) == "OK"):
        request = case.request(world) if case.fresh is None else case.fresh(world)
        if inspect.isawaitable(request):
            request = await request
        outcome = await invoke_edge(
            edge_world, protocol, path, request, credential.header(world),
            until=case.until,
            on_open=(lambda: convert_again(world)) if case.opens_live_stream else None)
        if outcome.code != "OK":
            mismatches.append(f"{credential.name}: {outcome.code} {outcome.details!r}")
        elif not case.check(world, outcome):
            mismatches.append(f"{credential.name}: OK but {outcome.text()[:300]}")
    assert not mismatches, "\n".join(mismatches)


CROSS = sorted(name for name, probe in PROBES.items() if probe.path in EXPOSED)


@pytest.mark.parametrize("protocol", ["connect-json", "grpc-web"])
async def test_cross_account_probes_through_the_edge(protocol, edge_world, platform_key, mongo,
                                                     db_prefix):
    world = edge_world.world
    assert len(CROSS) >= 15, CROSS
    for name in CROSS:
        probe = PROBES[name]
        key = f"Bearer {_key(world, probe.who, platform_key)}"
        phantom = Ids.phantom()
        outcomes: list[Outcome] = []
        for label, ids in (("A's ids", world.a_ids), ("ids of nothing", phantom)):
            where = f"{name}, {label}"
            before = await snapshot(mongo, db_prefix)
            outcome = await invoke_edge(edge_world, protocol, probe.path,
                                        probe.request(world, ids), key, until=probe.until)
            after = await snapshot(mongo, db_prefix)
            assert outcome.code in probe.codes, (where, outcome)
            if outcome.code != "OK":
                assert after == before, f"{where}: a refused call changed the database"
            markers = _a_markers(world)
            assert touching(after, markers) == touching(before, markers), where
            assert not _leaks(world, outcome, ids), (where, outcome)
            outcomes.append(outcome)
        assert _comparable(outcomes[0], world.a_ids, phantom) == _comparable(outcomes[1]), name


@pytest.mark.parametrize("protocol", ["connect-json", "grpc-web"])
async def test_a_platform_key_mints_no_token_through_the_edge(protocol, edge_world, keys):
    """Natively a platform key mints a token for any account (test_role_matrix); through
    the edge, where a browser would have to hold it, it mints none, for any account."""
    world = edge_world.world
    platform = await keys.create_key(None, Role.PLATFORM, label="edge")
    for account_id in (world.a.account_id, ""):
        outcome = await invoke_edge(
            edge_world, protocol, "/goals.v1.AccountService/MintToken",
            accounts_pb2.MintTokenRequest(account_id=account_id, role=accounts_pb2.ROLE_ADMIN),
            f"Bearer {platform}")
        assert (outcome.code, outcome.responses) == ("PERMISSION_DENIED", []), outcome
        assert "through the edge" in outcome.details
