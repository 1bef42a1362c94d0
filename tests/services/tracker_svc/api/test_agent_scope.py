"""Agent scoping (docs/rules.md §7 D22): with an agent token, SubscribeConversions and
ListConversions give only the conversions crediting the token's agent; naming another agent
is refused; supervisor tokens and keys keep the whole account's view. Real config and
tracker servers on loopback, conversions written to the real database."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest
from grpc import aio

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import tracker_pb2
from tests.services.tracker_svc.documents import T0, conversion_doc
from tests.services.tracker_svc.feeds import receive

SECOND = dt.timedelta(seconds=1)
ONLY_OWN = "agent_id: an agent token sees only the conversions crediting its own agent"


async def test_an_agent_token_following_a_conversation_gets_only_what_credits_its_agent(
    stack, make_tenant, tracker_db, subs, tokens
):
    tenant = await make_tenant()
    acct = tenant.account_id
    a2 = tokens.mint(acct, Role.AGENT, agent_id="a2").token
    scoped = await subs.open(stack.tracker_address, a2, conversation_id="conv-1")
    whole = await subs.open(stack.tracker_address, tenant.keys[Role.AGENT],
                            conversation_id="conv-1")
    try:
        docs = [
            conversion_doc(acct, "goal-1", "conv-1", T0, agents=("a1",)),
            conversion_doc(acct, "goal-2", "conv-1", T0 + SECOND, agents=("a1", "a2"),
                           model="ALL_TOUCHES"),
            conversion_doc(acct, "goal-3", "conv-2", T0 + SECOND, agents=("a2",)),
            conversion_doc(acct, "goal-4", "conv-1", T0 + 2 * SECOND, agents=("a2",)),
        ]
        for doc in docs:  # one by one: the feed then delivers them in this order
            await tracker_db.conversions.insert_one(doc)
        # The first conversion credits a1 only: had it been sent, it would come first.
        assert [(await receive(scoped)).goal_id for _ in range(2)] == ["goal-2", "goal-4"]
        assert [(await receive(whole)).goal_id for _ in range(3)] == [
            "goal-1", "goal-2", "goal-4"]
        with pytest.raises(TimeoutError):
            await receive(scoped, within_s=0.3)
    finally:
        scoped.cancel()
        whole.cancel()


async def test_an_agent_token_follows_its_own_agent_and_no_other(
    stack, make_tenant, tracker_db, subs, tokens
):
    tenant = await make_tenant()
    acct = tenant.account_id
    a2 = tokens.mint(acct, Role.AGENT, agent_id="a2").token
    # Another agent: refused with a clear message, before the stream starts.
    other = await _subscribe_refusal(stack.tracker_address, a2, agent_id="a1")
    assert other.code() == grpc.StatusCode.PERMISSION_DENIED
    assert other.details() == ONLY_OWN
    own = await subs.open(stack.tracker_address, a2, agent_id="a2")
    supervisor = await subs.open(
        stack.tracker_address, tokens.mint(acct, Role.SUPERVISOR).token, agent_id="a1")
    try:
        await tracker_db.conversions.insert_one(
            conversion_doc(acct, "goal-1", "conv-1", T0, agents=("a1",)))
        await tracker_db.conversions.insert_one(
            conversion_doc(acct, "goal-1", "conv-2", T0, agents=("a2",)))
        assert (await receive(own)).conversation_id == "conv-2"
        assert (await receive(supervisor)).conversation_id == "conv-1"  # any agent's
    finally:
        own.cancel()
        supervisor.cancel()


async def _subscribe_refusal(address: str, token: str, **target: str) -> aio.AioRpcError:
    async with aio.insecure_channel(address) as channel:
        call = channel.unary_stream(
            "/goals.v1.TrackerService/SubscribeConversions",
            request_serializer=tracker_pb2.SubscribeConversionsRequest.SerializeToString,
            response_deserializer=tracker_pb2.SubscribeConversionsResponse.FromString,
        )(tracker_pb2.SubscribeConversionsRequest(**target),
          metadata=(("authorization", f"Bearer {token}"),))
        with pytest.raises(aio.AioRpcError) as refused:
            async with asyncio.timeout(5):
                async for _ in call:
                    pass
        return refused.value


async def test_list_conversions_with_an_agent_token_is_its_agents_only(
    stack, make_tenant, tracker_db, tokens
):
    tenant = await make_tenant()
    acct = tenant.account_id
    await tracker_db.conversions.insert_many([
        conversion_doc(acct, "goal-1", f"conv-{n}", T0 + n * SECOND,
                       agents=("a1",) if n % 3 == 0 else ("a2",) if n % 3 == 1 else ("a1", "a2"),
                       model="ALL_TOUCHES")
        for n in range(9)
    ])
    a2 = tokens.mint(acct, Role.AGENT, agent_id="a2").token
    as_a2 = stack.tracker(a2)
    # No agent named: forced to the token's. Paged, so the page token holds the scope too.
    seen, page_token = [], ""
    while True:
        page = await as_a2.ListConversions(tracker_pb2.ListConversionsRequest(
            page_size=2, page_token=page_token))
        seen += [c.conversation_id for c in page.conversions]
        assert all("a2" in [cr.agent.id for cr in c.credits] for c in page.conversions)
        page_token = page.next_page_token
        if not page_token:
            break
    assert seen == [f"conv-{n}" for n in (8, 7, 5, 4, 2, 1)]
    own = await as_a2.ListConversions(tracker_pb2.ListConversionsRequest(agent_id="a2"))
    assert [c.conversation_id for c in own.conversions] == seen
    # A conversation of the other agent's only: nothing (the conversation is named, not
    # refused: conversations are not the scope).
    other_conv = await as_a2.ListConversions(
        tracker_pb2.ListConversionsRequest(conversation_id="conv-3"))
    assert list(other_conv.conversions) == []
    with pytest.raises(aio.AioRpcError) as refused:
        await as_a2.ListConversions(tracker_pb2.ListConversionsRequest(agent_id="a1"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == ONLY_OWN
    # A page token of the account-wide listing does not widen an agent token's view.
    wide = await stack.tracker(tenant.admin).ListConversions(
        tracker_pb2.ListConversionsRequest(page_size=1))
    assert len(wide.conversions) == 1 and wide.next_page_token
    with pytest.raises(aio.AioRpcError) as foreign_page:
        await as_a2.ListConversions(tracker_pb2.ListConversionsRequest(
            page_size=1, page_token=wide.next_page_token))
    assert foreign_page.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Supervisor tokens and keys: the whole account.
    for credential in (tokens.mint(acct, Role.SUPERVISOR).token, tenant.keys[Role.AGENT]):
        everything = await stack.tracker(credential).ListConversions(
            tracker_pb2.ListConversionsRequest())
        assert len(everything.conversions) == 9
