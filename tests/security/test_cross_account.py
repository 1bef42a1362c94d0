"""Cross-account table: every RPC called with account B's keys and tokens (and a platform
service key acting for B) on account A's ids — goals, exports, conversations, agents, end users, the
account itself. Each answer must be a refusal (NOT_FOUND or PERMISSION_DENIED) or B's own
data only, and must be exactly the answer for ids that exist nowhere: so it tells B nothing
of A, not even that A's ids exist. No string of A's data may appear in it, and nothing of
A's changes (refused calls change nothing at all)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import accounts_pb2, config_pb2, export_pb2, tracker_pb2
from tests.security.conftest import (
    A_GOAL_NAME,
    A_URL,
    JUNE_1,
    MIN,
    T0,
    Ids,
    World,
    snapshot,
    touching,
)
from tests.security.rpcs import METHODS, Outcome, convert_again, first, invoke, snapshot_done
from tests.services.config_svc.helpers import date, goal_request, url_condition
from tests.services.tracker_svc.builders import agent, assigned, ingest, message, opened, visit

PLATFORM = "platform"  # the platform-wide service key, naming account B
# B's tokens: an agent token for B's agent, a supervisor token, an admin token.
AGENT_TOKEN, SUPERVISOR_TOKEN, ADMIN_TOKEN = "agent token", "supervisor token", "admin token"
B_AGENT = "bravo-agent-1"
REFUSED = {"NOT_FOUND", "PERMISSION_DENIED"}


def _ts(when: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


@dataclass(frozen=True)
class Probe:
    """One call by B: ``request(world, ids)`` names A's ids (or a phantom set's)."""

    path: str
    who: Role | str
    request: Callable[[World, Ids], Any]
    codes: set[str]
    """Acceptable answers: refusal codes, or {"OK"} when B gets its own (or no) data."""
    until: Callable[[list[Message]], bool] | None = None


def _events(ids: Ids) -> list[tracker_pb2.IngestEventsRequest]:
    """B's ingest naming A's account (each event refused), then events on A's
    conversation, end user and agent ids with A's goal URL (stored as B's own, and no goal
    of B matches, so no conversion anywhere)."""
    tag = ids.conversation_id
    foreign = [message(ids.conversation_id, T0, ids.agent_id, event_id=f"{tag}-f{n}",
                       account_id=ids.account_id) for n in range(2)]
    same_ids = [
        opened(ids.conversation_id, T0, user=ids.end_user_id, event_id=f"{tag}-1"),
        assigned(ids.conversation_id, T0 + MIN, agent(ids.agent_id), event_id=f"{tag}-2"),
        visit(A_URL, T0 + 5 * MIN, user=ids.end_user_id, event_id=f"{tag}-3"),
    ]
    return [tracker_pb2.IngestEventsRequest(batch_id="foreign", events=foreign),
            tracker_pb2.IngestEventsRequest(batch_id="same-ids", events=same_ids)]


def _replay(ids: Ids, account_id: str) -> tracker_pb2.ReplayGoalRequest:
    """A replay of A's goal (its id, groups and URL) over June 1, for ``account_id``."""
    start = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    return tracker_pb2.ReplayGoalRequest(
        account_id=account_id, goal=config_pb2.Goal(
            id=ids.goal_id, agent_group_ids=["alpha-sales"],
            conditions=[url_condition("/alpha-checkout")]),
        start_time=_ts(start), end_time=_ts(start + dt.timedelta(days=1)))


def _b(w: World) -> str:
    return w.b.account_id


def _name(who: Role | str) -> str:
    return who.value if isinstance(who, Role) else who


TOKENS = (AGENT_TOKEN, SUPERVISOR_TOKEN, ADMIN_TOKEN)
C, T, E = "/goals.v1.ConfigService/", "/goals.v1.TrackerService/", "/goals.v1.ExportService/"
AC = "/goals.v1.AccountService/"
ADMIN, AGENT, INGEST, SERVICE = Role.ADMIN, Role.AGENT, Role.INGEST, Role.SERVICE
DAY = dt.timedelta(days=1)
PROBES: dict[str, Probe] = {
    # Config. (CreateGoal names no ids: see test_creating_a_goal_with_as_name_reveals_nothing.)
    **{f"GetGoal by {_name(r)}": Probe(
        C + "GetGoal", r, lambda w, i: config_pb2.GetGoalRequest(goal_id=i.goal_id),
        {"NOT_FOUND"}) for r in (ADMIN, AGENT, SERVICE, *TOKENS)},
    "GetGoal naming A's account": Probe(
        C + "GetGoal", SERVICE,
        lambda w, i: config_pb2.GetGoalRequest(goal_id=i.goal_id, account_id=i.account_id),
        {"PERMISSION_DENIED"}),
    "GetGoal by platform key for B": Probe(
        C + "GetGoal", PLATFORM,
        lambda w, i: config_pb2.GetGoalRequest(goal_id=i.goal_id, account_id=_b(w)),
        {"NOT_FOUND"}),
    **{f"UpdateGoal by {_name(r)}": Probe(
        C + "UpdateGoal", r, lambda w, i: config_pb2.UpdateGoalRequest(
            goal_id=i.idle_goal_id, goal=config_pb2.Goal(name="Taken", description="by B"),
            update_mask=FieldMask(paths=["name", "description"])),
        {"NOT_FOUND"}) for r in (ADMIN, ADMIN_TOKEN)},
    **{f"ListGoals by {_name(r)}": Probe(
        C + "ListGoals", r, lambda w, i: config_pb2.ListGoalsRequest(page_size=200), {"OK"})
       for r in (ADMIN, AGENT, *TOKENS)},
    **{f"ActivateGoal by {_name(r)}": Probe(
        C + "ActivateGoal", r, lambda w, i: config_pb2.ActivateGoalRequest(
            goal_id=i.idle_goal_id, start_date=date(T0.date())), {"NOT_FOUND"})
       for r in (ADMIN, ADMIN_TOKEN)},
    **{f"DeactivateGoal by {_name(r)}": Probe(
        C + "DeactivateGoal", r,
        lambda w, i: config_pb2.DeactivateGoalRequest(goal_id=i.goal_id), {"NOT_FOUND"})
       for r in (ADMIN, ADMIN_TOKEN)},
    **{f"DeleteGoal by {_name(r)}": Probe(
        C + "DeleteGoal", r,
        lambda w, i: config_pb2.DeleteGoalRequest(goal_id=i.goal_id), {"NOT_FOUND"})
       for r in (ADMIN, ADMIN_TOKEN)},
    **{f"ListActiveGoals naming A's account by {_name(r)}": Probe(
        C + "ListActiveGoals", r,
        lambda w, i: config_pb2.ListActiveGoalsRequest(account_id=i.account_id),
        {"PERMISSION_DENIED"}) for r in (ADMIN, SERVICE, ADMIN_TOKEN)},
    # A simulation of A's goal by id is refused as for a goal of nobody; a definition with
    # A's URL simulates over B's events only (none match: nothing of A's shows).
    **{f"SimulateGoal of A's goal by {_name(r)}": Probe(
        C + "SimulateGoal", r, lambda w, i: config_pb2.SimulateGoalRequest(
            goal_id=i.goal_id, start_date=JUNE_1, end_date=JUNE_1), {"NOT_FOUND"})
       for r in (ADMIN, ADMIN_TOKEN)},
    **{f"SimulateGoal of A's URL by {_name(r)}": Probe(
        C + "SimulateGoal", r, lambda w, i: config_pb2.SimulateGoalRequest(
            definition=goal_request("Spy", conditions=[url_condition("/alpha-checkout")],
                                    agent_group_ids=["alpha-sales"]),
            start_date=JUNE_1, end_date=JUNE_1), {"OK"})
       for r in (ADMIN, ADMIN_TOKEN)},
    # ReplayGoal: B's service key replays B's events only; naming A's account is refused.
    "ReplayGoal of A's goal by service key": Probe(
        T + "ReplayGoal", SERVICE, lambda w, i: _replay(i, ""), {"OK"}),
    "ReplayGoal naming A's account by service key": Probe(
        T + "ReplayGoal", SERVICE, lambda w, i: _replay(i, i.account_id),
        {"PERMISSION_DENIED"}),
    "ReplayGoal by platform key for B": Probe(
        T + "ReplayGoal", PLATFORM, lambda w, i: _replay(i, _b(w)), {"OK"}),
    "ListActiveGoals by platform key for B": Probe(
        C + "ListActiveGoals", PLATFORM,
        lambda w, i: config_pb2.ListActiveGoalsRequest(account_id=_b(w)), {"OK"}),
    **{f"WatchGoals naming A's account by {_name(r)}": Probe(
        C + "WatchGoals", r, lambda w, i: config_pb2.WatchGoalsRequest(
            account_id=i.account_id, send_snapshot=True),
        {"PERMISSION_DENIED"}, until=snapshot_done) for r in (ADMIN, SERVICE, ADMIN_TOKEN)},
    "WatchGoals by platform key for B": Probe(
        C + "WatchGoals", PLATFORM, lambda w, i: config_pb2.WatchGoalsRequest(
            account_id=_b(w), send_snapshot=True), {"OK"}, until=snapshot_done),
    # Tracker.
    "IngestEvents on A's account and ids": Probe(
        T + "IngestEvents", INGEST, lambda w, i: _events(i), {"OK"}),
    **{f"ListConversions of A's {field} by {_name(r)}": Probe(
        T + "ListConversions", r,
        lambda w, i, f=field: tracker_pb2.ListConversionsRequest(**{f: getattr(i, f)}),
        {"OK"}) for field in ("conversation_id", "agent_id", "goal_id")
       for r in (ADMIN, AGENT, SUPERVISOR_TOKEN, ADMIN_TOKEN)},
    # An agent token names an agent that is not its own (A's, or one that exists nowhere):
    # the same refusal either way.
    "ListConversions of A's agent_id by agent token": Probe(
        T + "ListConversions", AGENT_TOKEN,
        lambda w, i: tracker_pb2.ListConversionsRequest(agent_id=i.agent_id),
        {"PERMISSION_DENIED"}),
    **{f"ListConversions of A's {field} by agent token": Probe(
        T + "ListConversions", AGENT_TOKEN,
        lambda w, i, f=field: tracker_pb2.ListConversionsRequest(**{f: getattr(i, f)}),
        {"OK"}) for field in ("conversation_id", "goal_id")},
    **{f"StreamConversions of A's goal by {_name(r)}": Probe(
        T + "StreamConversions", r, lambda w, i: tracker_pb2.StreamConversionsRequest(
            goal_id=i.goal_id, start_time=_ts(T0 - DAY), end_time=_ts(T0 + DAY)), {"OK"})
       for r in (ADMIN, ADMIN_TOKEN)},
    **{f"StreamConversions naming A's account by {_name(r)}": Probe(
        T + "StreamConversions", r, lambda w, i: tracker_pb2.StreamConversionsRequest(
            account_id=i.account_id, goal_id=i.goal_id, start_time=_ts(T0 - DAY),
            end_time=_ts(T0 + DAY)), {"PERMISSION_DENIED"}) for r in (SERVICE, ADMIN_TOKEN)},
    "StreamConversions of A's goal by platform key for B": Probe(
        T + "StreamConversions", PLATFORM, lambda w, i: tracker_pb2.StreamConversionsRequest(
            account_id=_b(w), goal_id=i.goal_id, start_time=_ts(T0 - DAY),
            end_time=_ts(T0 + DAY)), {"OK"}),
    **{f"CountConversions of A's goal by {r.value}": Probe(
        T + "CountConversions", r, lambda w, i: tracker_pb2.CountConversionsRequest(
            since=_ts(T0 - DAY), goal_ids=[i.goal_id, i.second_goal_id]), {"OK"})
       for r in (ADMIN, SERVICE)},
    **{f"CountConversions naming A's account by {_name(r)}": Probe(
        T + "CountConversions", r, lambda w, i: tracker_pb2.CountConversionsRequest(
            account_id=i.account_id, since=_ts(T0 - DAY)), {"PERMISSION_DENIED"})
       for r in (SERVICE, ADMIN_TOKEN)},
    "CountConversions by platform key for B": Probe(
        T + "CountConversions", PLATFORM, lambda w, i: tracker_pb2.CountConversionsRequest(
            account_id=_b(w), since=_ts(T0 - DAY), goal_ids=[i.goal_id, w.b_goal.id]),
        {"OK"}),
    **{f"GetReport filtered on A's goal and agent by {_name(r)}": Probe(
        T + "GetReport", r, lambda w, i: tracker_pb2.GetReportRequest(
            start_date=JUNE_1, end_date=JUNE_1, group_by=tracker_pb2.REPORT_GROUPING_AGENT,
            goal_ids=[i.goal_id], agent_ids=[i.agent_id]), {"OK"})
       for r in (ADMIN, SUPERVISOR_TOKEN, ADMIN_TOKEN)},
    **{f"GetReport of everything B may see by {_name(r)}": Probe(
        T + "GetReport", r, lambda w, i: tracker_pb2.GetReportRequest(
            start_date=JUNE_1, end_date=JUNE_1, group_by=tracker_pb2.REPORT_GROUPING_GOAL),
        {"OK"}) for r in (ADMIN, SUPERVISOR_TOKEN)},
    # Export.
    **{f"RequestExport of A's goal by {_name(r)}": Probe(
        E + "RequestExport", r, lambda w, i: export_pb2.RequestExportRequest(
            goal_id=i.goal_id, start_date=JUNE_1, end_date=JUNE_1,
            recipient_email="thief@bravo.example", request_id="steal"), {"NOT_FOUND"})
       for r in (ADMIN, ADMIN_TOKEN)},
    **{f"GetExport of A's export by {_name(r)}": Probe(
        E + "GetExport", r,
        lambda w, i: export_pb2.GetExportRequest(export_id=i.export_id), {"NOT_FOUND"})
       for r in (ADMIN, ADMIN_TOKEN)},
    **{f"ListExports by {_name(r)}": Probe(
        E + "ListExports", r, lambda w, i: export_pb2.ListExportsRequest(), {"OK"})
       for r in (ADMIN, ADMIN_TOKEN)},
    # Accounts (served by config's process): B's admin acts on its own account only, and
    # A's key ids are as unknown to it as ids of no key.
    "CreateAccount with A's id": Probe(
        AC + "CreateAccount", ADMIN,
        lambda w, i: accounts_pb2.CreateAccountRequest(account_id=i.account_id),
        {"PERMISSION_DENIED"}),
    "GetAccount of A": Probe(
        AC + "GetAccount", ADMIN,
        lambda w, i: accounts_pb2.GetAccountRequest(account_id=i.account_id),
        {"PERMISSION_DENIED"}),
    "ListAccounts": Probe(
        AC + "ListAccounts", ADMIN, lambda w, i: accounts_pb2.ListAccountsRequest(),
        {"PERMISSION_DENIED"}),
    "CreateKey in A": Probe(
        AC + "CreateKey", ADMIN, lambda w, i: accounts_pb2.CreateKeyRequest(
            account_id=i.account_id, role=accounts_pb2.ROLE_ADMIN), {"PERMISSION_DENIED"}),
    "ListKeys of A": Probe(
        AC + "ListKeys", ADMIN,
        lambda w, i: accounts_pb2.ListKeysRequest(account_id=i.account_id),
        {"PERMISSION_DENIED"}),
    "RevokeKey of A's admin key by admin key": Probe(
        AC + "RevokeKey", ADMIN,
        lambda w, i: accounts_pb2.RevokeKeyRequest(key_id=i.key_id), {"NOT_FOUND"}),
    # A token revokes no key at all (I12-A4), refused before any lookup: nothing told.
    **{f"RevokeKey of A's admin key by {_name(r)}": Probe(
        AC + "RevokeKey", r,
        lambda w, i: accounts_pb2.RevokeKeyRequest(key_id=i.key_id), {"PERMISSION_DENIED"})
       for r in (ADMIN_TOKEN, AGENT_TOKEN)},
    "CreateKey in A by admin token": Probe(
        AC + "CreateKey", ADMIN_TOKEN, lambda w, i: accounts_pb2.CreateKeyRequest(
            account_id=i.account_id, role=accounts_pb2.ROLE_ADMIN), {"PERMISSION_DENIED"}),
    **{f"MintToken for A's agent by {r.value}": Probe(
        AC + "MintToken", r, lambda w, i: accounts_pb2.MintTokenRequest(
            account_id=i.account_id, role=accounts_pb2.ROLE_AGENT, agent_id=i.agent_id),
        {"PERMISSION_DENIED"}) for r in (ADMIN, AGENT)},
    "MintToken for A by platform service key": Probe(
        AC + "MintToken", PLATFORM, lambda w, i: accounts_pb2.MintTokenRequest(
            account_id=i.account_id, role=accounts_pb2.ROLE_ADMIN), {"PERMISSION_DENIED"}),
}


def test_every_rpc_has_a_cross_account_probe():
    # CreateGoal and SubscribeConversions have tests of their own below.
    covered = {probe.path for probe in PROBES.values()}
    assert covered | {C + "CreateGoal", T + "SubscribeConversions"} == set(METHODS)


def _key(world: World, who: Role | str, platform_key: str, agent_id: str = B_AGENT) -> str:
    """B's credential: a key of a role, the platform key, or one of B's tokens."""
    if who == PLATFORM:
        return platform_key
    if isinstance(who, Role):
        return world.b.keys[who]
    role = {AGENT_TOKEN: Role.AGENT, SUPERVISOR_TOKEN: Role.SUPERVISOR,
            ADMIN_TOKEN: Role.ADMIN}[who]
    return world.token(world.b, role, agent_id if role is Role.AGENT else "")


_CHANGE_TIME = re.compile(r"change_time \{[^}]*\}")


def _comparable(outcome: Outcome, real: Ids | None = None, phantom: Ids | None = None) -> str:
    """The outcome's text with ``real`` ids written as ``phantom`` ones, without the
    wall-clock time at which WatchGoals sent each message."""
    text = _CHANGE_TIME.sub("change_time {}", outcome.text())
    if real is not None and phantom is not None:
        for f in fields(Ids):
            text = text.replace(getattr(real, f.name), getattr(phantom, f.name))
    return text


def _leaks(world: World, outcome: Outcome, sent: Ids) -> list[str]:
    """A's strings in what B learnt, once the ids B itself sent are taken out."""
    text = outcome.text()
    for value in sorted(sent.values(), key=len, reverse=True):
        text = text.replace(value, "<sent>")
    return [secret for secret in world.a_secrets if secret in text]


def _a_markers(world: World) -> list[str]:
    # Documents of A: they carry A's account id, or (file chunks) A's export id.
    return [world.a.account_id, world.a_ids.export_id]


PATHS = sorted({probe.path for probe in PROBES.values()})


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.rsplit("/", 1)[1])
async def test_cross_account_probes(path, world, platform_key, mongo, db_prefix):
    for name, probe in PROBES.items():
        if probe.path == path:
            await _check_probe(name, probe, world, platform_key, mongo, db_prefix)


async def _check_probe(name: str, probe: Probe, world: World, platform_key: str, mongo,
                       db_prefix: str) -> None:
    key = f"Bearer {_key(world, probe.who, platform_key)}"
    phantom = Ids.phantom()
    outcomes: list[Outcome] = []
    for label, ids in (("A's ids", world.a_ids), ("ids of nothing", phantom)):
        where = f"{name}, {label}"
        before = await snapshot(mongo, db_prefix)
        outcome = await invoke(world, probe.path, probe.request(world, ids), key,
                               until=probe.until)
        after = await snapshot(mongo, db_prefix)
        assert outcome.code in probe.codes, (where, outcome)
        if outcome.code != "OK":
            assert after == before, f"{where}: a refused call changed the database"
            assert not outcome.responses, where
        markers = _a_markers(world)
        assert touching(after, markers) == touching(before, markers), (
            f"{where}: account A's data changed")
        assert not _leaks(world, outcome, ids), (where, _leaks(world, outcome, ids), outcome)
        outcomes.append(outcome)
    # B cannot tell A's ids from ids that name nothing.
    assert _comparable(outcomes[0], world.a_ids, phantom) == _comparable(outcomes[1]), name


async def test_creating_a_goal_with_as_name_reveals_nothing(world, mongo, db_prefix):
    """Names are unique per account only: B may use A's goal name and learns nothing."""
    before = touching(await snapshot(mongo, db_prefix), _a_markers(world))
    outcome = await invoke(world, C + "CreateGoal", goal_request(A_GOAL_NAME),
                           f"Bearer {world.b.admin}")
    assert outcome.code == "OK", outcome
    assert outcome.responses[0].goal.account_id == world.b.account_id
    assert touching(await snapshot(mongo, db_prefix), _a_markers(world)) == before


@pytest.mark.parametrize("role", [ADMIN, AGENT, AGENT_TOKEN, SUPERVISOR_TOKEN],
                         ids=lambda r: _name(r).replace(" ", "-"))
@pytest.mark.parametrize("target", ["conversation_id", "agent_id"])
async def test_live_feed_on_as_ids_delivers_only_bs_conversions(target, role, world,
                                                                platform_key):
    """B follows A's conversation (or agent) id. A then converts on exactly that target,
    and B on a target of its own with the same id: the first thing B receives must be its
    own conversion (A's, published first, would have come first)."""
    ids = world.a_ids
    b_conv = ids.conversation_id if target == "conversation_id" else "bravo-conv-live"
    b_agent = ids.agent_id if target == "agent_id" else "bravo-agent-live"

    async def a_then_b() -> None:
        if target == "conversation_id":  # A's second goal converts in A's conversation
            acks = await ingest(world.tracker(world.a.keys[INGEST]), [visit(
                "https://alpha.example/alpha-second", T0 + 20 * MIN, user=ids.end_user_id)])
            assert acks[0].conversions == 1
        else:
            await convert_again(world)
        acks = await ingest(world.tracker(world.b.keys[INGEST]), [
            opened(b_conv, T0, user="bravo-user-live"),
            assigned(b_conv, T0 + MIN, agent(b_agent)),
        ], [visit("https://bravo.example/checkout", T0 + 20 * MIN, user="bravo-user-live")])
        assert acks[1].conversions == 1

    outcome = await invoke(
        world, T + "SubscribeConversions",
        tracker_pb2.SubscribeConversionsRequest(**{target: getattr(ids, target)}),
        f"Bearer {_key(world, role, platform_key, agent_id=b_agent)}", until=first,
        on_open=a_then_b)
    assert outcome.code == "OK", outcome
    [received] = outcome.responses
    assert received.conversion.account_id == world.b.account_id
    assert received.conversion.goal_id == world.b_goal.id
    assert not _leaks(world, outcome, ids), outcome
