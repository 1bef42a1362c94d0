"""Token tables over the real servers on loopback (native gRPC): expired and forged tokens,
wrong audience or issuer, rotation of the signing keys, a service without keys, and agent
scoping of the live feed and the listing with conversions ingested for real. Every refusal
says why and changes nothing in any database. (Every RPC with every token role: the role
matrix; tokens of account B on A's ids: the cross-account table.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc
import pytest
from grpc import aio
from pydantic import SecretStr

from config_svc.server import create_server as create_config
from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import config_pb2, export_pb2, tracker_pb2
from goalflow_common.server import GoalflowServer
from goalflow_common.tokens import TokenAuthority, parse_token_keys
from tests.security import forged
from tests.security.conftest import A_AGENT, JUNE_1, MIN, T0, World, snapshot
from tests.security.rpcs import first, invoke
from tests.services.config_svc.helpers import goal_request
from tests.services.tracker_svc.builders import agent, assigned, ingest, opened, visit
from tracker_svc.server import create_server as create_tracker
from tracker_svc.settings import TrackerSettings

C, T, E = "/goals.v1.ConfigService/", "/goals.v1.TrackerService/", "/goals.v1.ExportService/"


def _writes(world: World) -> list[tuple[str, object]]:
    """One call per service that an admin token may make and that would change data."""
    return [
        (C + "CreateGoal", goal_request(f"Forged {uuid.uuid4().hex[:6]}")),
        (C + "DeactivateGoal", config_pb2.DeactivateGoalRequest(goal_id=world.a_ids.goal_id)),
        (T + "ListConversions", tracker_pb2.ListConversionsRequest()),
        (E + "RequestExport", export_pb2.RequestExportRequest(
            goal_id=world.a_ids.goal_id, start_date=JUNE_1, end_date=JUNE_1,
            recipient_email="forger@example.test")),
    ]


async def test_expired_and_forged_tokens_are_refused_saying_why_and_change_nothing(
    world, mongo, db_prefix
):
    a = world.a
    forgeries = forged.forgeries(a.account_id, world.token(a, Role.AGENT, A_AGENT.id))
    wrong = []
    for name, (token, why) in forgeries.items():
        for path, request in _writes(world):
            before = await snapshot(mongo, db_prefix)
            outcome = await invoke(world, path, request, f"Bearer {token}")
            if outcome.code != "UNAUTHENTICATED" or why.lower() not in outcome.details.lower():
                wrong.append(f"{name} on {path}: {outcome.code} {outcome.details!r}")
            if await snapshot(mongo, db_prefix) != before:
                wrong.append(f"{name} on {path}: the refused call changed the database")
    assert not wrong, "\n".join(wrong)
    # The same calls with a real admin token of the account succeed: the refusals above
    # were the token's doing.
    for path, request in _writes(world):
        outcome = await invoke(world, path, request, f"Bearer {world.token(a, Role.ADMIN)}")
        assert outcome.code == "OK", (path, outcome)


async def test_a_refused_token_is_refused_before_its_body_is_read(world):
    """Bytes no parser accepts, sent with an expired token: UNAUTHENTICATED, not
    INVALID_ARGUMENT (the body was never parsed); with a good token: INVALID_ARGUMENT."""
    expired = forged.expired(world.a.account_id)
    good = world.token(world.a, Role.ADMIN)
    channel = world.plain_channel(world.stack.config_address)
    call = channel.unary_unary(C + "CreateGoal")  # bytes in, bytes out
    for token, code in ((expired, grpc.StatusCode.UNAUTHENTICATED),
                        (good, grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(aio.AioRpcError) as refused:
            await call(b"\xff" * 64, metadata=(("authorization", f"Bearer {token}"),),
                       timeout=5)
        assert refused.value.code() == code, refused.value


# -- rotation ----------------------------------------------------------------------------


@asynccontextmanager
async def _services(config_settings, mongo_uri, db_prefix, platform_key, clock,
                    token_keys: str) -> AsyncIterator[tuple[str, str]]:
    """Config and tracker servers verifying tokens with ``token_keys``; their addresses."""
    servers: list[GoalflowServer] = []
    try:
        config, config_port = await create_config(config_settings.model_copy(update={
            "token_keys": SecretStr(token_keys), "service_api_key": platform_key}),
            clock=clock)
        servers.append(config)
        await config.start()
        tracker, tracker_port = await create_tracker(TrackerSettings(
            mongodb_uri=mongo_uri, auth_db_name=f"{db_prefix}_auth",
            tracker_db_name=f"{db_prefix}_tracker", grpc_port=0,
            config_address=f"127.0.0.1:{config_port}", shutdown_grace_s=1.0,
            service_api_key=platform_key, token_keys=token_keys), clock=clock)
        servers.append(tracker)
        await tracker.start()
        yield f"127.0.0.1:{config_port}", f"127.0.0.1:{tracker_port}"
    finally:
        for server in reversed(servers):
            await server.stop(0.5)


async def _answers(addresses: tuple[str, str], token: str) -> list[str]:
    """The status of ListGoals on config and ListConversions on the tracker, with details."""
    config_address, tracker_address = addresses
    metadata = (("authorization", f"Bearer {token}"),)
    codes = []
    for address, path, request, reply in (
        (config_address, C + "ListGoals", config_pb2.ListGoalsRequest(),
         config_pb2.ListGoalsResponse),
        (tracker_address, T + "ListConversions", tracker_pb2.ListConversionsRequest(),
         tracker_pb2.ListConversionsResponse),
    ):
        async with aio.insecure_channel(address) as channel:
            call: Callable = channel.unary_unary(
                path, request_serializer=type(request).SerializeToString,
                response_deserializer=reply.FromString)
            try:
                await call(request, metadata=metadata, timeout=5)
                codes.append("OK")
            except aio.AioRpcError as exc:
                codes.append(f"{exc.code().name}: {exc.details()}")
    return codes


async def test_rotation_two_keys_accepted_then_the_old_one_dropped(
    config_settings, mongo_uri, db_prefix, platform_key, clock, make_tenant
):
    tenant = await make_tenant()
    old_secret, new_secret = (uuid.uuid4().hex + uuid.uuid4().hex for _ in range(2))
    old_keys, both_keys, new_keys = (f"old:{old_secret}", f"new:{new_secret},old:{old_secret}",
                                     f"new:{new_secret}")
    old_token = TokenAuthority(parse_token_keys(old_keys)).mint(
        tenant.account_id, Role.SUPERVISOR).token
    new_token = TokenAuthority(parse_token_keys(both_keys)).mint(
        tenant.account_id, Role.SUPERVISOR).token
    args = (config_settings, mongo_uri, db_prefix, platform_key, clock)
    async with _services(*args, old_keys) as addresses:  # before the rotation
        assert await _answers(addresses, old_token) == ["OK", "OK"]
    async with _services(*args, both_keys) as addresses:  # during: both verify
        assert await _answers(addresses, old_token) == ["OK", "OK"]
        assert await _answers(addresses, new_token) == ["OK", "OK"]
    async with _services(*args, new_keys) as addresses:  # after: the old key is gone
        refused = "UNAUTHENTICATED: token signed with an unknown key"
        assert await _answers(addresses, old_token) == [refused, refused]
        assert await _answers(addresses, new_token) == ["OK", "OK"]


async def test_a_service_without_token_keys_accepts_keys_and_refuses_tokens(
    config_settings, mongo_uri, db_prefix, platform_key, clock, make_tenant, tokens
):
    tenant = await make_tenant()
    args = (config_settings, mongo_uri, db_prefix, platform_key, clock)
    async with _services(*args, "") as addresses:
        refused = "UNAUTHENTICATED: tokens are not accepted here (no GOALFLOW_TOKEN_KEYS)"
        token = tokens.mint(tenant.account_id, Role.ADMIN).token
        assert await _answers(addresses, token) == [refused, refused]
        assert await _answers(addresses, tenant.admin) == ["OK", "OK"]


# -- wrong account -----------------------------------------------------------------------


async def test_a_token_of_an_account_that_does_not_exist_sees_nothing(world):
    """Tokens are verified without the database: a token minted (with the real key) for an
    account id nobody created acts on that account, which does not exist (NOT_FOUND where
    its time zone is needed, nothing found elsewhere), and never on another."""
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    token = f"Bearer {world.tokens.mint(ghost, Role.ADMIN).token}"
    goals = await invoke(world, C + "ListGoals", config_pb2.ListGoalsRequest(), token)
    assert goals.code == "NOT_FOUND" and ghost in goals.details, goals
    conversions = await invoke(world, T + "ListConversions",
                               tracker_pb2.ListConversionsRequest(), token)
    assert conversions.code == "OK" and not conversions.responses[0].conversions
    goal = await invoke(world, C + "GetGoal",
                        config_pb2.GetGoalRequest(goal_id=world.a_ids.goal_id), token)
    assert goal.code == "NOT_FOUND"
    naming_a = await invoke(world, C + "ListActiveGoals", config_pb2.ListActiveGoalsRequest(
        account_id=world.a.account_id), token)
    assert naming_a.code == "PERMISSION_DENIED", naming_a


# -- agent scope with conversions ingested for real ---------------------------------------


A_AGENT_2 = agent("alpha-agent-2", "alpha-sales")


async def _convert_for(world: World, agent_id_to_conv: dict[str, str]) -> None:
    """One batch: a conversation per agent (assigned to it), each converting A's second
    goal; conversations in the order given."""
    agents = {A_AGENT.id: A_AGENT, A_AGENT_2.id: A_AGENT_2}
    events, visits = [], []
    for agent_id, conv in agent_id_to_conv.items():
        user = f"user-{conv}"
        events += [opened(conv, T0 + MIN, user=user), assigned(conv, T0 + 2 * MIN,
                                                                agents[agent_id])]
        visits.append(visit("https://alpha.example/alpha-second", T0 + 15 * MIN, user=user))
    acks = await ingest(world.tracker(world.a.keys[Role.INGEST]), events, visits)
    assert acks[1].conversions == len(agent_id_to_conv)


async def test_an_agent_tokens_feed_and_list_show_only_its_agents_conversions(world):
    a, tag = world.a, uuid.uuid4().hex[:6]
    convs = {A_AGENT.id: f"c1-{tag}", A_AGENT_2.id: f"c2-{tag}"}
    second = f"Bearer {world.token(a, Role.AGENT, A_AGENT_2.id)}"

    async def both_agents_convert() -> None:
        await _convert_for(world, convs)  # agent 1's conversion is first in the batch

    # By agent: the second agent's token follows its agent; the first's never arrives.
    got = await invoke(world, T + "SubscribeConversions",
                       tracker_pb2.SubscribeConversionsRequest(agent_id=A_AGENT_2.id), second,
                       until=first, on_open=both_agents_convert)
    assert got.code == "OK", got
    assert [r.conversion.conversation_id for r in got.responses] == [convs[A_AGENT_2.id]]
    # By another agent: refused before the stream starts, nothing received.
    other = await invoke(world, T + "SubscribeConversions",
                         tracker_pb2.SubscribeConversionsRequest(agent_id=A_AGENT.id), second,
                         until=first)
    assert other.code == "PERMISSION_DENIED" and not other.responses, other
    assert "its own agent" in other.details
    # By the first agent's conversation: a hand-over to the second agent converts the
    # account's first goal there; the first agent's conversion before it is never sent.
    conv = convs[A_AGENT.id]

    async def hand_over_and_convert() -> None:
        await ingest(world.tracker(a.keys[Role.INGEST]), [
            assigned(conv, T0 + 20 * MIN, A_AGENT_2)],
            [visit("https://alpha.example/alpha-checkout", T0 + 25 * MIN, user=f"user-{conv}")])

    followed = await invoke(world, T + "SubscribeConversions",
                            tracker_pb2.SubscribeConversionsRequest(conversation_id=conv),
                            second, until=first, on_open=hand_over_and_convert)
    assert followed.code == "OK", followed
    [notice] = followed.responses
    assert notice.conversion.goal_id == world.a_ids.goal_id
    assert [c.agent.id for c in notice.conversion.credits] == [A_AGENT_2.id]
    # The listing: the second agent's two conversions only; the whole account for a
    # supervisor.
    listed = await invoke(world, T + "ListConversions", tracker_pb2.ListConversionsRequest(),
                          second)
    credited = [{c.agent.id for c in conversion.credits}
                for conversion in listed.responses[0].conversions]
    assert credited == [{A_AGENT_2.id}, {A_AGENT_2.id}], listed
    everything = await invoke(world, T + "ListConversions",
                              tracker_pb2.ListConversionsRequest(),
                              f"Bearer {world.token(a, Role.SUPERVISOR)}")
    agents = {c.agent.id for conversion in everything.responses[0].conversions
              for c in conversion.credits}
    assert agents == {A_AGENT.id, A_AGENT_2.id}


async def test_calls_with_an_agent_token_log_its_id_and_agent(world, json_logs):
    token = world.tokens.mint(world.a.account_id, Role.AGENT, agent_id=A_AGENT.id)
    json_logs()
    outcome = await invoke(world, T + "ListConversions", tracker_pb2.ListConversionsRequest(),
                           f"Bearer {token.token}")
    assert outcome.code == "OK"
    [line] = [line for line in json_logs()
              if line.get("event") == "rpc" and line.get("method") == T + "ListConversions"]
    assert line["key_id"].startswith("token:") and line["agent_id"] == A_AGENT.id
    assert line["account_id"] == world.a.account_id
    assert token.token not in str(line)
