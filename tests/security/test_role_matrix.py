"""The role matrix: every RPC of every service (read from the generated descriptors, so a
new RPC cannot be forgotten) called with each role's key of the account, a platform key,
each role's token (agent, supervisor, admin), no key, a malformed key, a forged secret, a
revoked key, and expired or forged tokens. Each outcome must be what
``goalflow_common.auth.METHOD_ROLES`` says, and the issue's explicit rules must hold in that
table. A refused call answers UNAUTHENTICATED or PERMISSION_DENIED and changes nothing in any
database; an allowed call succeeds."""

from __future__ import annotations

import datetime as dt
import inspect
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from config_svc.domain.accounts import TOKEN_GRANTS
from goalflow_common.auth import METHOD_ROLES, Role, roles_for
from goalflow_common.pb.goals.v1 import accounts_pb2, config_pb2, export_pb2, tracker_pb2
from tests.security import forged
from tests.security.conftest import A_AGENT, JUNE_1, T0, World, revoked_key, snapshot
from tests.security.rpcs import METHODS, Outcome, convert_again, first, invoke, snapshot_done
from tests.services.config_svc.helpers import date, goal_request, url_condition
from tests.services.tracker_svc.builders import message

DAY, HOUR = dt.timedelta(days=1), dt.timedelta(hours=1)


def _ts(when) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


@dataclass(frozen=True)
class Case:
    """How to call one RPC on account A's own data, and what a success must show."""

    request: Callable[[World], Any]
    check: Callable[[World, Outcome], bool]
    until: Callable[[list[Message]], bool] | None = None
    opens_live_stream: bool = False
    """A live subscription: it is fed a new conversion once open, and must deliver it."""
    fresh: Callable[[World], Awaitable[Any]] | None = None
    """For a call that succeeds once per target (deleting a goal): the request of each
    allowed caller, on a target made for it."""
    key_only: bool = False
    """Takes an API key, never a token, whatever its role (AccountService: issuing keys or
    tokens, revoking keys): refused PERMISSION_DENIED."""
    refused_keys: frozenset[Role] = frozenset()
    """Key roles METHOD_ROLES lets in that this request's own rule then refuses."""


def _one(outcome: Outcome) -> Any:
    [response] = outcome.responses
    return response


CASES: dict[str, Case] = {
    "/goals.v1.ConfigService/CreateGoal": Case(
        lambda w: goal_request(f"Made by the matrix {uuid.uuid4().hex[:6]}"),
        lambda w, o: _one(o).goal.account_id == w.a.account_id),
    "/goals.v1.ConfigService/GetGoal": Case(
        lambda w: config_pb2.GetGoalRequest(goal_id=w.a_ids.goal_id),
        lambda w, o: _one(o).goal.id == w.a_ids.goal_id),
    "/goals.v1.ConfigService/UpdateGoal": Case(
        lambda w: config_pb2.UpdateGoalRequest(
            goal_id=w.a_ids.idle_goal_id, goal=config_pb2.Goal(description="changed"),
            update_mask=FieldMask(paths=["description"])),
        lambda w, o: _one(o).goal.description == "changed"),
    "/goals.v1.ConfigService/ListGoals": Case(
        lambda w: config_pb2.ListGoalsRequest(),
        lambda w, o: len(_one(o).goals) == 3),
    "/goals.v1.ConfigService/ActivateGoal": Case(
        lambda w: config_pb2.ActivateGoalRequest(goal_id=w.a_ids.idle_goal_id,
                                                 start_date=date(T0.date())),
        lambda w, o: _one(o).goal.active),
    "/goals.v1.ConfigService/DeactivateGoal": Case(
        lambda w: config_pb2.DeactivateGoalRequest(goal_id=w.a_ids.goal_id),
        lambda w, o: not _one(o).goal.active),
    "/goals.v1.ConfigService/DeleteGoal": Case(
        lambda w: config_pb2.DeleteGoalRequest(goal_id=w.a_ids.idle_goal_id),
        lambda w, o: len(o.responses) == 1, fresh=lambda w: _idle_goal_to_delete(w)),
    "/goals.v1.ConfigService/ListActiveGoals": Case(
        lambda w: config_pb2.ListActiveGoalsRequest(),
        lambda w, o: len(_one(o).goals) == 2),
    "/goals.v1.ConfigService/WatchGoals": Case(
        lambda w: config_pb2.WatchGoalsRequest(send_snapshot=True),
        lambda w, o: {r.goal.account_id for r in o.responses[:-1]} == {w.a.account_id}
        and len(o.responses) == 4, until=snapshot_done),
    # The what-if of A's goal over June 1: its one recorded conversion (last touch).
    "/goals.v1.ConfigService/SimulateGoal": Case(
        lambda w: config_pb2.SimulateGoalRequest(goal_id=w.a_ids.goal_id, start_date=JUNE_1,
                                                 end_date=JUNE_1),
        lambda w, o: o.responses[-1].result.models[1].conversions == 1
        and all(r.HasField("progress") for r in o.responses[:-1])),
    "/goals.v1.TrackerService/ReplayGoal": Case(
        lambda w: tracker_pb2.ReplayGoalRequest(
            goal=config_pb2.Goal(id=w.a_ids.goal_id, agent_group_ids=["alpha-sales"],
                                 conditions=[url_condition("/alpha-checkout")]),
            start_time=_ts(T0 - T0.hour * HOUR), end_time=_ts(T0 + DAY)),
        lambda w, o: o.responses[-1].result.models[1].conversions == 1),
    "/goals.v1.TrackerService/IngestEvents": Case(
        lambda w: [tracker_pb2.IngestEventsRequest(batch_id="matrix", events=[
            message(w.a_ids.conversation_id, T0, w.a_ids.agent_id)])],
        lambda w, o: _one(o).accepted == 1),
    "/goals.v1.TrackerService/SubscribeConversions": Case(
        lambda w: tracker_pb2.SubscribeConversionsRequest(agent_id=w.a_ids.agent_id),
        lambda w, o: _one(o).conversion.goal_id == w.a_ids.second_goal_id,
        until=first, opens_live_stream=True),
    "/goals.v1.TrackerService/ListConversions": Case(
        lambda w: tracker_pb2.ListConversionsRequest(conversation_id=w.a_ids.conversation_id),
        lambda w, o: [c.goal_id for c in _one(o).conversions] == [w.a_ids.goal_id]),
    "/goals.v1.TrackerService/StreamConversions": Case(
        lambda w: tracker_pb2.StreamConversionsRequest(
            goal_id=w.a_ids.goal_id, start_time=_ts(T0), end_time=_ts(T0 + DAY)),
        lambda w, o: [c.conversation_id for r in o.responses for c in r.conversions]
        == [w.a_ids.conversation_id]),
    "/goals.v1.TrackerService/CountConversions": Case(
        lambda w: tracker_pb2.CountConversionsRequest(since=_ts(T0)),
        lambda w, o: {(c.goal_id, c.count) for c in _one(o).counts}
        >= {(w.a_ids.goal_id, 1)}),
    "/goals.v1.TrackerService/GetReport": Case(
        lambda w: tracker_pb2.GetReportRequest(start_date=JUNE_1, end_date=JUNE_1,
                                               group_by=tracker_pb2.REPORT_GROUPING_GOAL),
        lambda w, o: _one(o).totals.conversions == 1),
    "/goals.v1.ExportService/RequestExport": Case(
        lambda w: export_pb2.RequestExportRequest(
            goal_id=w.a_ids.goal_id, start_date=JUNE_1, end_date=JUNE_1,
            recipient_email="matrix@alpha.example"),
        lambda w, o: _one(o).export.account_id == w.a.account_id),
    "/goals.v1.ExportService/GetExport": Case(
        lambda w: export_pb2.GetExportRequest(export_id=w.a_ids.export_id),
        lambda w, o: _one(o).export.state == export_pb2.EXPORT_STATE_MAILED),
    "/goals.v1.ExportService/ListExports": Case(
        lambda w: export_pb2.ListExportsRequest(),
        lambda w, o: [e.id for e in _one(o).exports] == [w.a_ids.export_id]),
    # AccountService (config's process). Each request names account A, so a platform key
    # and A's admin key are both given A; a refused one changes nothing.
    "/goals.v1.AccountService/CreateAccount": Case(
        lambda w: accounts_pb2.CreateAccountRequest(
            account_id=f"matrix-{uuid.uuid4().hex[:8]}", time_zone="Asia/Tokyo"),
        lambda w, o: _one(o).account.time_zone == "Asia/Tokyo"),
    "/goals.v1.AccountService/GetAccount": Case(
        lambda w: accounts_pb2.GetAccountRequest(account_id=w.a.account_id),
        lambda w, o: _one(o).account.id == w.a.account_id),
    "/goals.v1.AccountService/ListAccounts": Case(
        lambda w: accounts_pb2.ListAccountsRequest(page_size=200),
        lambda w, o: w.a.account_id in {a.id for a in _one(o).accounts}),
    # I12-A4: an admin token issued permanent keys and revoked every key of the account.
    "/goals.v1.AccountService/CreateKey": Case(
        lambda w: accounts_pb2.CreateKeyRequest(account_id=w.a.account_id,
                                                role=accounts_pb2.ROLE_AGENT),
        lambda w, o: _one(o).api_key.account_id == w.a.account_id
        and _one(o).key.startswith(f"gf_{_one(o).api_key.key_id}_"), key_only=True),
    "/goals.v1.AccountService/ListKeys": Case(
        lambda w: accounts_pb2.ListKeysRequest(account_id=w.a.account_id, page_size=200),
        lambda w, o: w.a_ids.key_id in {k.key_id for k in _one(o).api_keys}),
    "/goals.v1.AccountService/RevokeKey": Case(
        lambda w: accounts_pb2.RevokeKeyRequest(key_id=w.a.keys[Role.INGEST].split("_")[1]),
        lambda w, o: _one(o).api_key.revoked, key_only=True),
    # A supervisor token: I12-A8, an agent key minted one and so read GetReport, which the
    # agent key itself may not; agent keys mint agent tokens only.
    "/goals.v1.AccountService/MintToken": Case(
        lambda w: accounts_pb2.MintTokenRequest(account_id=w.a.account_id,
                                                role=accounts_pb2.ROLE_SUPERVISOR),
        lambda w, o: _one(o).token.count(".") == 2 and _one(o).HasField("expire_time"),
        key_only=True, refused_keys=frozenset({Role.AGENT})),
}

async def _idle_goal_to_delete(world: World) -> config_pb2.DeleteGoalRequest:
    created = await world.config(world.a.admin).CreateGoal(
        goal_request(f"Doomed {uuid.uuid4().hex[:6]}"))
    return config_pb2.DeleteGoalRequest(goal_id=created.goal.id)


FORGED = "gf_0123456789abcdef_" + "a" * 43
BAD_HEADERS: dict[str, str | None] = {
    "no key": None,
    "malformed key": "Bearer not-a-goalflow-key",
    "unknown key": f"Bearer {FORGED}",
    "wrong scheme": f"Basic {FORGED}",
    "empty bearer": "Bearer ",
}
KEY_ROLES = (Role.ADMIN, Role.AGENT, Role.INGEST, Role.SERVICE)  # an account's keys
TOKEN_ROLES = (Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
# Forged tokens tried on every RPC (all of them are tried on a few in test_tokens.py).
MATRIX_FORGERIES = ("expired", "tampered payload (agent made admin)",
                    "signed with an unknown key", "another secret under the known kid",
                    "alg none")
READS_OF_A_SUPERVISOR = {"/goals.v1.ConfigService/GetGoal", "/goals.v1.ConfigService/ListGoals",
                         "/goals.v1.TrackerService/SubscribeConversions",
                         "/goals.v1.TrackerService/ListConversions",
                         "/goals.v1.TrackerService/GetReport"}
READS_OF_AN_AGENT = READS_OF_A_SUPERVISOR - {"/goals.v1.TrackerService/GetReport"}


def test_every_rpc_of_every_service_is_in_the_policy_and_the_matrix():
    assert len(METHODS) == 27  # a sanity floor: the descriptors really were read
    assert set(METHODS) == set(METHOD_ROLES), "an RPC without roles is closed to everyone"
    assert set(METHODS) == set(CASES), "every RPC needs a case in this matrix"
    for path in METHODS:
        assert roles_for(path), f"{path} must need a key"


def test_the_policy_keeps_the_issues_explicit_rules():
    """Agent keys create no goals and request no exports; ingest keys read nothing; no RPC
    but health is open; the platform-to-platform RPCs do not take agent or ingest keys.
    Tokens: an agent calls no config write, report or export (its goal reads and its
    conversions only); a supervisor reads goals, conversions and reports and writes
    nothing; a platform key calls none of these services' RPCs."""
    accounts = "/goals.v1.AccountService/"
    for path, roles in METHOD_ROLES.items():
        if path.startswith(accounts):
            continue  # provisioning: its own rules below
        if path.endswith(("/CreateGoal", "/UpdateGoal", "/ActivateGoal", "/DeactivateGoal",
                          "/DeleteGoal", "/RequestExport")):
            assert Role.AGENT not in roles, path
        if not path.endswith("/IngestEvents"):
            assert Role.INGEST not in roles, path
        assert (Role.AGENT in roles) == (path in READS_OF_AN_AGENT), path
        assert (Role.SUPERVISOR in roles) == (path in READS_OF_A_SUPERVISOR), path
        assert Role.PLATFORM not in roles, path
    assert METHOD_ROLES["/goals.v1.TrackerService/IngestEvents"] == {Role.INGEST}
    assert METHOD_ROLES["/goals.v1.TrackerService/GetReport"] == {Role.ADMIN, Role.SUPERVISOR}
    for path in ("/goals.v1.ExportService/RequestExport", "/goals.v1.ExportService/GetExport",
                 "/goals.v1.ExportService/ListExports"):
        assert METHOD_ROLES[path] == {Role.ADMIN}
    # Accounts: only a platform key creates or lists them; admins manage their own keys;
    # agents only mint tokens; platform keys do nothing but provisioning.
    assert METHOD_ROLES[accounts + "CreateAccount"] == {Role.PLATFORM}
    assert METHOD_ROLES[accounts + "ListAccounts"] == {Role.PLATFORM}
    for name in ("GetAccount", "CreateKey", "ListKeys", "RevokeKey"):
        assert METHOD_ROLES[accounts + name] == {Role.PLATFORM, Role.ADMIN}, name
    assert METHOD_ROLES[accounts + "MintToken"] == {Role.PLATFORM, Role.ADMIN, Role.AGENT}
    # Past the table: no token issues keys or tokens or revokes keys, and an agent key
    # mints agent tokens only (config_svc.domain.accounts; the cases' key_only/refused_keys).
    assert {p.rsplit("/", 1)[1] for p, c in CASES.items() if c.key_only} == {
        "CreateKey", "RevokeKey", "MintToken"}
    assert TOKEN_GRANTS[Role.AGENT] == {Role.AGENT}
    for path, roles in METHOD_ROLES.items():
        assert (Role.PLATFORM in roles) == path.startswith(accounts), path
        if path.startswith(accounts):
            assert not roles & {Role.SERVICE, Role.SUPERVISOR, Role.INGEST}, path
    assert roles_for("/grpc.health.v1.Health/Check") is None
    assert roles_for("/grpc.health.v1.Health/Watch") is None
    assert roles_for("/goals.v1.ConfigService/NoSuchRpc") == frozenset()


def _client_stream_race(path: str, outcome: Outcome) -> bool:
    """A refused client-streaming call (IngestEvents) the client saw end INTERNAL "Internal
    error from Core": the service refuses before reading the stream, and gRPC core's client,
    still writing, now and then reports the reset stream instead of the status (2 calls in
    two loaded full runs: a tampered token, "Bearer "). Still refused; the database
    snapshot check holds for it as for any refusal."""
    return (METHODS[path].client_streaming and outcome.code == "INTERNAL"
            and outcome.details == "Internal error from Core" and not outcome.responses)


async def _callers(world: World, keys, allowed: frozenset[Role], case: Case
                   ) -> list[tuple[str, str | None, set[str]]]:
    """(who, authorization header, acceptable codes) of every caller the matrix tries:
    every role, as a key and as a token where it can be one, and the bad credentials;
    ``case`` may refuse every token (``key_only``) and some key roles (``refused_keys``)."""
    a = world.a
    platform = await keys.create_key(None, Role.PLATFORM, label="matrix")
    good = [(f"{role.value} key", a.keys[role], role) for role in KEY_ROLES]
    good.append(("platform key", platform, Role.PLATFORM))
    good += [(f"{role.value} token",
              world.token(a, role, A_AGENT.id if role is Role.AGENT else ""), role)
             for role in TOKEN_ROLES]
    assert {role for _, _, role in good} == set(Role), "a role the matrix does not try"
    callers: list[tuple[str, str | None, set[str]]] = [
        (who, f"Bearer {credential}",
         {"OK"} if role in allowed and not (case.key_only and who.endswith(" token"))
         and not (role in case.refused_keys and who.endswith(" key"))
         else {"PERMISSION_DENIED"})
        for who, credential, role in good
    ]
    callers += [(name, header, {"UNAUTHENTICATED"}) for name, header in BAD_HEADERS.items()]
    # A revoked key of a role the RPC admits: revocation must beat the role.
    revoked = await revoked_key(keys, a.account_id, min(allowed))
    forged_secret = f"gf_{a.admin.split('_')[1]}_" + "b" * 43
    callers += [("admin key id with a forged secret", f"Bearer {forged_secret}",
                 {"UNAUTHENTICATED"}),
                (f"revoked {min(allowed).value} key", f"Bearer {revoked}", {"UNAUTHENTICATED"})]
    tokens = forged.forgeries(a.account_id, world.token(a, Role.AGENT, A_AGENT.id))
    callers += [(f"token: {name}", f"Bearer {tokens[name][0]}", {"UNAUTHENTICATED"})
                for name in MATRIX_FORGERIES]
    return callers


@pytest.mark.parametrize("path", sorted(METHODS), ids=lambda p: p.rsplit("/", 1)[1])
async def test_role_matrix(path, world, keys, mongo, db_prefix):
    case, allowed = CASES[path], METHOD_ROLES[path]
    expected = await _callers(world, keys, allowed, case)

    mismatches = []
    refused = [e for e in expected if e[2] != {"OK"}]
    for who, header, codes in refused:
        request = case.request(world)
        before = await snapshot(mongo, db_prefix)
        outcome = await invoke(world, path, request, header, until=case.until)
        if outcome.code not in codes and not _client_stream_race(path, outcome):
            mismatches.append(f"{who}: {outcome.code} {outcome.details!r}, wanted {codes}")
        elif outcome.responses:
            mismatches.append(f"{who}: refused, but after {len(outcome.responses)} responses")
        if await snapshot(mongo, db_prefix) != before:
            mismatches.append(f"{who}: the refused call changed the database")
    # Allowed calls last: some change data the refused ones are checked against.
    for who, header, _ in (e for e in expected if e[2] == {"OK"}):
        request = case.request(world) if case.fresh is None else case.fresh(world)
        if inspect.isawaitable(request):
            request = await request
        outcome = await invoke(
            world, path, request, header, until=case.until,
            on_open=(lambda: convert_again(world)) if case.opens_live_stream else None)
        if outcome.code != "OK":
            mismatches.append(f"{who}: {outcome.code} {outcome.details!r}, wanted OK")
        elif not case.check(world, outcome):
            mismatches.append(f"{who}: OK but unexpected answer {outcome.text()[:300]}")
    assert not mismatches, "\n".join(mismatches)


async def test_health_needs_no_key_on_every_service(world):
    for address, service in ((world.stack.config_address, "goals.v1.ConfigService"),
                             (world.stack.tracker_address, "goals.v1.TrackerService"),
                             (world.export_address, "goals.v1.ExportService")):
        health = health_pb2_grpc.HealthStub(world.plain_channel(address))
        for name in ("", service):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, (address, name)
