"""ListConversions, StreamConversions and CountConversions over real gRPC, on conversion
and rating documents written straight into the tracker's database (the schema in
store/tracker_store.py)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from goalflow_common.auth import Principal, Role, set_principal
from goalflow_common.pb.goals.v1 import config_pb2, tracker_pb2
from tests.services.tracker_svc.documents import SECOND, T0, conversion_doc, rated_doc
from tracker_svc.api.queries import ConversionQueries
from tracker_svc.domain.conversions import ConversionReads
from tracker_svc.domain.model import conversion_key
from tracker_svc.store.tracker_store import TrackerStore


def ts(when: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def key(doc: dict[str, Any]) -> tuple[dt.datetime, str]:
    return doc["conversion_time"], doc["_id"]


async def list_all(stub, page_size: int = 50, **filters: Any) -> tuple[list[str], list[int]]:
    """Every page of ListConversions: the ids in order and each page's size."""
    ids: list[str] = []
    sizes: list[int] = []
    token = ""
    while True:
        reply = await stub.ListConversions(
            tracker_pb2.ListConversionsRequest(page_size=page_size, page_token=token, **filters)
        )
        ids.extend(c.id for c in reply.conversions)
        sizes.append(len(reply.conversions))
        token = reply.next_page_token
        if not token:
            return ids, sizes
        assert len(sizes) < 1000, "paging does not end"


async def stream_all(stub, **fields: Any) -> list[list[tracker_pb2.Conversion]]:
    return [
        list(chunk.conversions)
        async for chunk in stub.StreamConversions(tracker_pb2.StreamConversionsRequest(**fields))
    ]


# --- ListConversions ------------------------------------------------------------------


async def test_list_pages_newest_first_without_gaps_or_duplicates(
    stack, make_tenant, tracker_db
):
    tenant, other = await make_tenant(), await make_tenant()
    # Three conversions per second, so page boundaries fall between equal times.
    docs = [
        conversion_doc(tenant.account_id, f"goal-{k % 4}", f"conv-{k}", T0 + (k // 3) * SECOND)
        for k in range(120)
    ]
    foreign = [conversion_doc(other.account_id, "goal-0", f"conv-{k}", T0) for k in range(10)]
    await tracker_db.conversions.insert_many(docs + foreign)
    ids, sizes = await list_all(stack.tracker(tenant.keys[Role.AGENT]), page_size=50)
    assert sizes == [50, 50, 20]
    assert ids == [d["_id"] for d in sorted(docs, key=key, reverse=True)]


async def test_list_pages_through_conversions_sharing_one_millisecond(
    stack, make_tenant, tracker_db
):
    tenant = await make_tenant()
    docs = [conversion_doc(tenant.account_id, "goal", f"conv-{k:03d}", T0) for k in range(120)]
    await tracker_db.conversions.insert_many(docs)
    ids, sizes = await list_all(stack.tracker(tenant.admin), page_size=50)
    assert sizes == [50, 50, 20]
    assert ids == sorted((d["_id"] for d in docs), reverse=True)


async def test_list_pages_through_more_than_ten_thousand_conversions_at_one_instant(
    stack, make_tenant, tracker_db
):
    """A page token is the last row's (time, id): 12,000 conversions of one goal at one
    millisecond page through like any others (tokens once counted the rows sharing a time
    and were refused past 10,000 of them)."""
    tenant = await make_tenant()
    acct = tenant.account_id
    instant = T0 + dt.timedelta(milliseconds=500)
    ms = dt.timedelta(milliseconds=1)
    docs = [conversion_doc(acct, "goal", f"conv-{k:05d}", instant) for k in range(12_000)]
    # Neighbours in the same second (one millisecond either side) and in other seconds.
    for name, step, n in (("later", ms, 60), ("earlier", -ms, 60),
                          ("next", SECOND, 30), ("prev", -SECOND, 30)):
        docs += [
            conversion_doc(acct, "goal", f"{name}-{k}", instant + (k + 1) * step)
            for k in range(n)
        ]
    others = [conversion_doc(acct, "other-goal", f"conv-{k}", instant) for k in range(50)]
    await tracker_db.conversions.insert_many(docs + others)
    ids, sizes = await list_all(stack.tracker(tenant.admin), page_size=500, goal_id="goal")
    assert ids == [d["_id"] for d in sorted(docs, key=key, reverse=True)]
    assert sizes == [500] * 24 + [180]


async def test_list_filters(stack, make_tenant, tracker_db):
    tenant = await make_tenant()
    agent_sets = [("agent-a",), ("agent-b",), ("agent-a", "agent-b"), ("agent-c",)]
    # (k mod 3, k mod 20) is a different (goal, conversation) pair for every k < 60.
    docs = [
        conversion_doc(tenant.account_id, f"goal-{k % 3}", f"conv-{k % 20}",
                       T0 + k * dt.timedelta(minutes=1), agents=agent_sets[k % 4])
        for k in range(60)
    ]
    await tracker_db.conversions.insert_many(docs)
    stub = stack.tracker(tenant.admin)
    start, end = T0 + 10 * dt.timedelta(minutes=1), T0 + 40 * dt.timedelta(minutes=1)

    def expected(pred) -> list[str]:
        return [d["_id"] for d in sorted(docs, key=key, reverse=True) if pred(d)]

    cases = [
        ({"conversation_id": "conv-5"}, lambda d: d["conversation_id"] == "conv-5"),
        ({"goal_id": "goal-1"}, lambda d: d["goal_id"] == "goal-1"),
        ({"agent_id": "agent-a"}, lambda d: "agent-a" in d["credited_agent_ids"]),
        ({"start_time": ts(start)}, lambda d: d["conversion_time"] >= start),
        ({"end_time": ts(end)}, lambda d: d["conversion_time"] < end),
        (
            {"goal_id": "goal-2", "agent_id": "agent-b", "start_time": ts(start),
             "end_time": ts(end)},
            lambda d: d["goal_id"] == "goal-2" and "agent-b" in d["credited_agent_ids"]
            and start <= d["conversion_time"] < end,
        ),
        ({"conversation_id": "no-such-conversation"}, lambda d: False),
    ]
    for filters, pred in cases:
        ids, _ = await list_all(stub, page_size=7, **filters)
        assert ids == expected(pred), filters
    assert expected(cases[-2][1]), "the combined filter case must select something"


async def test_list_returns_every_recorded_field(stack, make_tenant, tracker_db):
    tenant = await make_tenant()
    when = T0 + dt.timedelta(hours=3, milliseconds=250)
    doc = conversion_doc(
        tenant.account_id, "goal-x", "conv-x", when, agents=("a1", "a2", "bot"),
        model="ALL_TOUCHES", goal_type="GENERATE_LEADS", channel="WHATSAPP",
        value=("EUR", "49.90"), event_type="LEAD",
    )
    await tracker_db.conversions.insert_one(doc)
    await tracker_db.record_ratings(tenant.account_id, [
        rated_doc(tenant.account_id, "conv-x", "bad", when),
        rated_doc(tenant.account_id, "conv-x", "4", when + SECOND),
    ])
    reply = await stack.tracker(tenant.admin).ListConversions(
        tracker_pb2.ListConversionsRequest(conversation_id="conv-x")
    )
    [got] = reply.conversions
    assert (got.id, got.account_id, got.goal_id, got.goal_name) == (
        doc["_id"], tenant.account_id, "goal-x", "Goal goal-x"
    )
    assert got.goal_type == config_pb2.GOAL_TYPE_GENERATE_LEADS
    assert got.attribution_model == config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES
    assert got.channel == tracker_pb2.CHANNEL_WHATSAPP
    assert got.event_type == tracker_pb2.TRANSACTION_EVENT_TYPE_LEAD
    assert (got.conversation_id, got.end_user_id, got.skill) == ("conv-x", "user-conv-x",
                                                                 "billing")
    assert got.conversion_time.ToDatetime(tzinfo=dt.UTC) == when
    assert got.conversation_open_time.ToDatetime(tzinfo=dt.UTC) == doc["conversation_open_time"]
    assert (got.url, got.brand_event_id, got.hit_event_id) == (
        doc["url"], "order-conv-x", "hit-goal-x-conv-x"
    )
    assert (got.transaction_value.currency_code, got.transaction_value.amount) == ("EUR",
                                                                                   "49.90")
    assert got.satisfaction_rating == "4"
    assert [c.agent.id for c in got.credits] == ["a1", "a2", "bot"]
    for credit, stored in zip(got.credits, doc["credits"], strict=True):
        assert credit.agent.name == stored["agent"]["name"]
        assert credit.agent.email == stored["agent"]["email"]
        assert credit.agent.group_id == stored["agent"]["group_id"]
        assert credit.assignment_time.ToDatetime(tzinfo=dt.UTC) == stored["assignment_time"]
        assert credit.contact_duration_to_goal.ToMilliseconds() == stored["contact_duration_ms"]
    assert [c.agent.user_type for c in got.credits] == [
        tracker_pb2.USER_TYPE_HUMAN, tracker_pb2.USER_TYPE_HUMAN, tracker_pb2.USER_TYPE_BOT
    ]
    # Opened 30 minutes before the conversion, agents assigned 1, 2, 3 minutes in.
    assert [c.contact_duration_to_goal.ToTimedelta() for c in got.credits] == [
        dt.timedelta(minutes=m) for m in (29, 28, 27)
    ]


async def test_list_without_value_or_type_leaves_them_unset(stack, make_tenant, tracker_db):
    tenant = await make_tenant()
    await tracker_db.conversions.insert_one(conversion_doc(
        tenant.account_id, "g", "c", T0, goal_type=None, value=None, event_type=None
    ))
    [got] = (await stack.tracker(tenant.admin).ListConversions(
        tracker_pb2.ListConversionsRequest()
    )).conversions
    assert not got.HasField("transaction_value")
    assert got.goal_type == config_pb2.GOAL_TYPE_UNSPECIFIED
    assert got.event_type == tracker_pb2.TRANSACTION_EVENT_TYPE_UNSPECIFIED
    assert got.brand_event_id == "" and got.satisfaction_rating == ""


async def test_list_refuses_bad_arguments(stack, make_tenant, tracker_db):
    tenant = await make_tenant()
    await tracker_db.conversions.insert_many(
        [conversion_doc(tenant.account_id, "goal-1", f"c{k}", T0 + k * SECOND) for k in range(5)]
    )
    stub = stack.tracker(tenant.admin)
    first = await stub.ListConversions(
        tracker_pb2.ListConversionsRequest(goal_id="goal-1", page_size=2)
    )
    assert first.next_page_token
    millis, doc_id, fingerprint = json.loads(base64.urlsafe_b64decode(first.next_page_token))
    old_token = base64.urlsafe_b64encode(
        json.dumps([millis, doc_id, 1, fingerprint]).encode()
    ).decode()
    bad = [
        (tracker_pb2.ListConversionsRequest(page_token="not a token!"), "page_token"),
        (tracker_pb2.ListConversionsRequest(page_token="W10="), "page_token"),  # "[]"
        # The earlier [millis, id, ties, fingerprint] form.
        (tracker_pb2.ListConversionsRequest(page_token=old_token), "page_token"),
        # A token is only good with the filters it was issued for.
        (tracker_pb2.ListConversionsRequest(goal_id="goal-2",
                                            page_token=first.next_page_token), "page_token"),
        (tracker_pb2.ListConversionsRequest(page_size=-1), "page_size"),
        (tracker_pb2.ListConversionsRequest(start_time=ts(T0), end_time=ts(T0)), "end_time"),
        (tracker_pb2.ListConversionsRequest(goal_id="g" * 129), "goal_id"),
    ]
    for request, field in bad:
        with pytest.raises(grpc.RpcError) as err:
            await stub.ListConversions(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert err.value.details().startswith(f"{field}:"), err.value.details()
    second = await stub.ListConversions(tracker_pb2.ListConversionsRequest(
        goal_id="goal-1", page_size=2, page_token=first.next_page_token
    ))
    assert [c.id for c in second.conversions] == [
        conversion_key(tenant.account_id, "goal-1", f"c{k}") for k in (2, 1)
    ]


# --- StreamConversions ----------------------------------------------------------------


async def test_stream_returns_the_range_in_order_in_chunks_with_ratings(
    stack, make_tenant, tracker_db
):
    tenant, other = await make_tenant(), await make_tenant()
    start, end = T0, T0 + dt.timedelta(hours=2)
    acct = tenant.account_id
    # 2,000 in range, two per second (equal times), the first exactly at the start.
    inside = [
        conversion_doc(acct, "goal", f"conv-{k:04d}", start + (k // 2) * SECOND)
        for k in range(2000)
    ]
    outside = [
        conversion_doc(acct, "goal", "early", start - dt.timedelta(milliseconds=1)),
        conversion_doc(acct, "goal", "at-end", end),  # end is exclusive
        conversion_doc(acct, "goal", "late", end + dt.timedelta(hours=1)),
        *(conversion_doc(acct, "other-goal", f"conv-{k:04d}", start + k * SECOND)
          for k in range(30)),
        *(conversion_doc(other.account_id, "goal", f"conv-{k:04d}", start + k * SECOND)
          for k in range(30)),
    ]
    await tracker_db.conversions.insert_many(outside + inside[::-1])
    # Rated twice: the later rating wins, whatever order the events were recorded in.
    await tracker_db.record_ratings(acct, [
        rated_doc(acct, "conv-0007", "good", start + dt.timedelta(hours=5))])
    await tracker_db.record_ratings(acct, [
        rated_doc(acct, "conv-0007", "bad", start + dt.timedelta(hours=4)),
        rated_doc(acct, "conv-1999", "5", start),
    ])
    # Another account's rating of a same-named conversation is not this one's.
    await tracker_db.record_ratings(other.account_id, [
        rated_doc(other.account_id, "conv-0008", "1", start)])
    chunk_size = stack.tracker_settings.stream_chunk_size
    chunks = await stream_all(
        stack.tracker(tenant.keys[Role.SERVICE]), goal_id="goal", start_time=ts(start),
        end_time=ts(end),
    )
    assert [len(c) for c in chunks] == [chunk_size] * (2000 // chunk_size)
    streamed = [c for chunk in chunks for c in chunk]
    assert [c.id for c in streamed] == [d["_id"] for d in sorted(inside, key=key)]
    ratings = {c.conversation_id: c.satisfaction_rating for c in streamed}
    assert ratings["conv-0007"] == "good"
    assert ratings["conv-1999"] == "5"
    assert ratings["conv-0008"] == ""
    assert sum(1 for r in ratings.values() if r) == 2


async def test_stream_keyset_crosses_fetches_of_equal_times(mongo, db_prefix, make_tenant):
    """The keyset iteration itself, with fetches smaller than a run of equal times."""
    tenant = await make_tenant()
    store = TrackerStore(mongo[f"{db_prefix}_tracker"])
    docs = [
        conversion_doc(tenant.account_id, "goal", f"c{k:03d}", T0 + (k // 25) * SECOND)
        for k in range(300)
    ]
    await mongo[f"{db_prefix}_tracker"]["conversions"].insert_many(docs[::-1])
    queries = ConversionQueries(ConversionReads(store, fetch_size=20), chunk_size=7)
    request = tracker_pb2.StreamConversionsRequest(
        goal_id="goal", start_time=ts(T0), end_time=ts(T0 + dt.timedelta(days=1))
    )

    async def collect() -> list[list[tracker_pb2.Conversion]]:
        # A task of its own: the principal stays in that task's context.
        set_principal(Principal("test-key", tenant.account_id, Role.ADMIN))
        return [list(chunk.conversions) async for chunk in queries.stream(request)]

    chunks = await asyncio.create_task(collect())
    assert all(len(chunk) <= 7 for chunk in chunks)
    assert [c.id for chunk in chunks for c in chunk] == [d["_id"] for d in sorted(docs, key=key)]


async def test_stream_refuses_bad_arguments(stack, make_tenant):
    tenant = await make_tenant()
    stub = stack.tracker(tenant.admin)
    bad = [
        ({"start_time": ts(T0), "end_time": ts(T0 + SECOND)}, "goal_id"),
        ({"goal_id": "g", "end_time": ts(T0)}, "start_time"),
        ({"goal_id": "g", "start_time": ts(T0)}, "end_time"),
        ({"goal_id": "g", "start_time": ts(T0), "end_time": ts(T0)}, "end_time"),
        ({"goal_id": "g", "start_time": ts(T0 + SECOND), "end_time": ts(T0)}, "end_time"),
    ]
    for fields, field in bad:
        with pytest.raises(grpc.RpcError) as err:
            await stream_all(stub, **fields)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert err.value.details().startswith(f"{field}:"), err.value.details()


# --- CountConversions -----------------------------------------------------------------


async def test_count_per_goal_since_a_time(stack, make_tenant, tracker_db, platform_key):
    tenant, other = await make_tenant(), await make_tenant()
    acct = tenant.account_id
    since = T0 + dt.timedelta(days=3)
    docs = [
        *(conversion_doc(acct, "g1", f"new-{k}", since + k * SECOND) for k in range(5)),
        *(conversion_doc(acct, "g1", f"old-{k}", since - (k + 1) * SECOND) for k in range(3)),
        # Three credited agents: still one conversion each.
        *(conversion_doc(acct, "g2", f"new-{k}", since + k * dt.timedelta(hours=1),
                         agents=("a", "b", "c"), model="ALL_TOUCHES") for k in range(2)),
        conversion_doc(acct, "g3", "old", since - dt.timedelta(days=1)),
        *(conversion_doc(other.account_id, "g1", f"new-{k}", since) for k in range(4)),
    ]
    await tracker_db.conversions.insert_many(docs)

    def counts(reply) -> dict[str, int]:
        return {c.goal_id: c.count for c in reply.counts}

    reply = await stack.tracker(tenant.admin).CountConversions(
        tracker_pb2.CountConversionsRequest(since=ts(since))
    )
    assert counts(reply) == {"g1": 5, "g2": 2}
    # As config asks: a platform service key naming the account, some goals only.
    reply = await stack.tracker(platform_key).CountConversions(
        tracker_pb2.CountConversionsRequest(account_id=acct, since=ts(since),
                                            goal_ids=["g2", "g3", "unknown"])
    )
    assert counts(reply) == {"g2": 2}
    reply = await stack.tracker(tenant.keys[Role.SERVICE]).CountConversions(
        tracker_pb2.CountConversionsRequest(since=ts(since - dt.timedelta(days=2)),
                                            goal_ids=["g1", "g3"])
    )
    assert counts(reply) == {"g1": 8, "g3": 1}


async def test_count_refuses_bad_arguments(stack, make_tenant, platform_key):
    tenant = await make_tenant()
    stub = stack.tracker(tenant.admin)
    for request, field in [
        (tracker_pb2.CountConversionsRequest(), "since"),
        (tracker_pb2.CountConversionsRequest(since=ts(T0), goal_ids=[""]), "goal_ids[0]"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            await stub.CountConversions(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith(f"{field}:"), err.value.details()
    # A platform key acts on the account it names; naming none is refused.
    with pytest.raises(grpc.RpcError) as err:
        await stack.tracker(platform_key).CountConversions(
            tracker_pb2.CountConversionsRequest(since=ts(T0))
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


# --- tenants and roles ----------------------------------------------------------------


async def test_another_account_never_sees_these_conversions(
    stack, make_tenant, tracker_db
):
    owner, intruder = await make_tenant(), await make_tenant()
    docs = [
        conversion_doc(owner.account_id, "goal", f"conv-{k}", T0 + k * SECOND, agents=("ag",))
        for k in range(10)
    ]
    await tracker_db.conversions.insert_many(docs)
    await tracker_db.record_ratings(
        owner.account_id, [rated_doc(owner.account_id, "conv-1", "good", T0)])
    window = {"start_time": ts(T0 - SECOND), "end_time": ts(T0 + dt.timedelta(hours=1))}
    own = stack.tracker(owner.admin)
    assert len((await list_all(own))[0]) == 10  # the data is there for its owner
    stub = stack.tracker(intruder.admin)
    for filters in ({}, {"conversation_id": "conv-1"}, {"goal_id": "goal"}, {"agent_id": "ag"}):
        assert (await list_all(stub, **filters))[0] == []
    assert await stream_all(stub, goal_id="goal", **window) == []
    count = await stub.CountConversions(tracker_pb2.CountConversionsRequest(since=ts(T0)))
    assert list(count.counts) == []
    # Naming the owner's account with the intruder's keys is refused outright.
    for key in (intruder.admin, intruder.keys[Role.SERVICE]):
        stub = stack.tracker(key)
        with pytest.raises(grpc.RpcError) as err:
            await stream_all(stub, account_id=owner.account_id, goal_id="goal", **window)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as err:
            await stub.CountConversions(tracker_pb2.CountConversionsRequest(
                account_id=owner.account_id, since=ts(T0)))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def _call(stub, rpc: str) -> None:
    window = {"start_time": ts(T0), "end_time": ts(T0 + SECOND)}
    if rpc == "ListConversions":
        await stub.ListConversions(tracker_pb2.ListConversionsRequest())
    elif rpc == "StreamConversions":
        await stream_all(stub, goal_id="goal", **window)
    elif rpc == "CountConversions":
        await stub.CountConversions(tracker_pb2.CountConversionsRequest(since=ts(T0)))
    else:
        async for _ in stub.SubscribeConversions(
            tracker_pb2.SubscribeConversionsRequest(conversation_id="c")
        ):
            break


ALLOWED = {
    "ListConversions": {Role.ADMIN, Role.AGENT},
    "SubscribeConversions": {Role.ADMIN, Role.AGENT},
    "StreamConversions": {Role.ADMIN, Role.SERVICE},
    "CountConversions": {Role.ADMIN, Role.SERVICE},
}


async def test_roles(stack, make_tenant):
    """The ingest key is refused on all four read RPCs; each other role only where allowed.
    (An account has keys of these roles; every role, tokens too: tests/security's matrix.)"""
    tenant = await make_tenant()
    for rpc, allowed in ALLOWED.items():
        for role in tenant.keys:
            stub = stack.tracker(tenant.keys[role])
            if role in allowed:
                if rpc != "SubscribeConversions":  # would wait for a conversion
                    await _call(stub, rpc)
                continue
            with pytest.raises(grpc.RpcError) as err:
                await _call(stub, rpc)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, (rpc, role)
    assert all(Role.INGEST not in allowed for allowed in ALLOWED.values())
