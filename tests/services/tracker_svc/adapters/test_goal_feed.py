"""The tracker's goal cache: followed from a real config server over gRPC, kept through a
config outage, resynced after it; plus its revision and snapshot rules, message by
message."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from grpc import aio

from config_svc.server import create_server as create_config
from config_svc.settings import ConfigSettings
from goalflow_common.client import make_channel
from goalflow_common.clock import ManualClock
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, config_pb2_grpc
from goalflow_common.server import GoalflowServer
from tests.services.config_svc.helpers import date, goal_request, url_condition
from tracker_svc.adapters.goal_feed import GoalCache
from tracker_svc.adapters.goal_feed import goal_from_proto as convert_goal
from tracker_svc.domain import goal_table as goals_module
from tracker_svc.domain.model import Money

SHOP = "https://shop.example"
IS = config_pb2.CONDITION_OPERATOR_IS


async def eventually(check: Callable[[], bool], within: float = 1.0, what: str = "") -> float:
    """Wait until ``check()`` holds; fail after ``within`` seconds. Returns the wait."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not check():
        if loop.time() - start > within:
            pytest.fail(f"not within {within} s: {what}")
        await asyncio.sleep(0.01)
    return loop.time() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ConfigHost:
    """Config servers on the test's databases that a test can stop and start again, on the
    same port, plus GoalCaches that follow it the way the tracker's server wires one."""

    def __init__(self, mongo_uri: str, db_prefix: str, clock: ManualClock, platform_key: str):
        self._settings = {
            "mongodb_uri": mongo_uri,
            "auth_db_name": f"{db_prefix}_auth",
            "config_db_name": f"{db_prefix}_config",
            "tracker_address": "",
            "shutdown_grace_s": 0.5,
            "service_api_key": platform_key,
        }
        self._clock = clock
        self._platform_key = platform_key
        self.port = free_port()
        self.server: GoalflowServer | None = None
        self.servers: list[GoalflowServer] = []
        self.channels: list[aio.Channel] = []
        self.caches: list[GoalCache] = []

    async def launch(self, port: int) -> tuple[GoalflowServer, int]:
        """Start one more config server on ``port`` (0: any free one)."""
        server, bound = await create_config(
            ConfigSettings(grpc_port=port, **self._settings), clock=self._clock
        )
        await server.start()
        self.servers.append(server)
        return server, bound

    async def start(self) -> None:
        self.server, _ = await self.launch(self.port)

    async def stop(self) -> None:
        assert self.server is not None
        await self.server.stop(0.5)
        self.server = None

    def stub(self, key: str, port: int | None = None) -> config_pb2_grpc.ConfigServiceStub:
        channel = make_channel(f"127.0.0.1:{port or self.port}", key)
        self.channels.append(channel)
        return config_pb2_grpc.ConfigServiceStub(channel)

    async def cache(self, max_backoff_s: float = 0.2) -> GoalCache:
        cache = GoalCache(self.stub(self._platform_key), max_backoff_s=max_backoff_s)
        self.caches.append(cache)
        await cache.start()
        return cache

    async def close(self) -> None:
        for cache in self.caches:
            await cache.stop()
        for channel in self.channels:
            await channel.close()
        for server in self.servers:
            await server.stop(0.5)


@pytest.fixture
async def host(mongo_uri, db_prefix, clock, platform_key) -> AsyncIterator[ConfigHost]:
    result = ConfigHost(mongo_uri, db_prefix, clock, platform_key)
    await result.start()
    try:
        yield result
    finally:
        await result.close()


async def create(stub, name: str, *conditions: config_pb2.Condition, **fields) -> config_pb2.Goal:
    request = goal_request(name, conditions=list(conditions or [url_condition()]), **fields)
    return (await stub.CreateGoal(request)).goal


async def create_active(stub, clock, name: str, *conditions, **fields) -> config_pb2.Goal:
    return await create(
        stub, name, *conditions, active=True, start_date=date(clock.now().date()), **fields
    )


# Against a real config server.


async def test_syncs_on_start_with_every_field_converted(host, make_tenant, clock):
    tenant = await make_tenant()
    stub = host.stub(tenant.admin)
    today = clock.now().date()
    sold = await create_active(
        stub,
        clock,
        "Sold",
        url_condition("/checkout"),
        end_date=date(today + dt.timedelta(days=9)),
        agent_group_ids=["sales", "vip"],
        attribution_model=config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES,
        attribution_period_days=14,
        transaction_value=common_pb2.Money(currency_code="USD", amount="149.99"),
        goal_type=config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE,
    )
    draft = await create(stub, "Draft", url_condition("/checkout"))

    cache = await host.cache()
    async with asyncio.timeout(5):
        await cache.wait_synced()
    assert cache.synced

    got = cache.goal(sold.id)
    assert got is not None
    assert (got.id, got.account_id, got.name) == (sold.id, tenant.account_id, "Sold")
    assert (got.model, got.goal_type, got.period_days) == (
        "ALL_TOUCHES",
        "SELL_PRODUCT_OR_SERVICE",
        14,
    )
    assert got.group_ids == frozenset({"sales", "vip"})
    assert got.value == Money("USD", "149.99")
    assert got.active and got.revision == sold.revision
    assert got.tracking_start == dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    assert got.tracking_end == dt.datetime(2026, 6, 11, tzinfo=dt.UTC)  # end of June 10

    inactive = cache.goal(draft.id)
    assert inactive is not None and not inactive.active
    assert (inactive.model, inactive.goal_type, inactive.value) == ("LAST_TOUCH", None, None)
    assert inactive.tracking_start is None and inactive.tracking_end is None

    assert cache.matching(tenant.account_id, f"{SHOP}/checkout") == [got]


async def test_matching_returns_the_accounts_active_matching_goals_only(host, make_tenant, clock):
    shop, other = await make_tenant(), await make_tenant()
    stub = host.stub(shop.admin)
    checkout = await create_active(stub, clock, "Checkout", url_condition("/CheckOut"))
    thanks = await create_active(
        stub, clock, "Thanks", url_condition(f"{SHOP}/thanks", IS), url_condition("/merci")
    )
    await create(stub, "Inactive", url_condition("/checkout"))
    theirs = await create_active(host.stub(other.admin), clock, "Theirs", url_condition("/"))

    cache = await host.cache()
    async with asyncio.timeout(5):
        await cache.wait_synced()

    def ids(account: str, url: str) -> list[str]:
        return [g.id for g in cache.matching(account, url)]

    assert ids(shop.account_id, f"{SHOP}/checkout?step=2") == [checkout.id]
    assert ids(shop.account_id, "HTTPS://SHOP.EXAMPLE/thanks/") == [thanks.id]
    assert ids(shop.account_id, f"{SHOP}/thanks?x=1") == []  # IS compares the whole URL
    assert ids(shop.account_id, f"{SHOP}/merci/checkout") == sorted([checkout.id, thanks.id])
    assert ids(shop.account_id, f"{SHOP}/cart") == []
    assert ids(other.account_id, f"{SHOP}/checkout") == [theirs.id]
    assert ids("acct-unknown", f"{SHOP}/checkout") == []


async def test_changes_through_config_show_within_a_second(host, make_tenant, clock):
    tenant = await make_tenant()
    stub = host.stub(tenant.admin)
    cache = await host.cache()
    async with asyncio.timeout(5):
        await cache.wait_synced()
    account, old_url, new_url = tenant.account_id, f"{SHOP}/checkout", f"{SHOP}/paid"

    def hits(url: str) -> list[str]:
        return [g.id for g in cache.matching(account, url)]

    goal = await create(stub, "Checkout", url_condition("/checkout"))
    await eventually(lambda: cache.goal(goal.id) is not None, what="created")
    assert hits(old_url) == []  # known, but inactive

    goal = (
        await stub.ActivateGoal(
            config_pb2.ActivateGoalRequest(goal_id=goal.id, start_date=date(clock.now().date()))
        )
    ).goal
    await eventually(lambda: hits(old_url) == [goal.id], what="activated")
    assert cache.goal(goal.id).revision == goal.revision

    update = config_pb2.Goal(
        conditions=[url_condition("/paid")],
        attribution_model=config_pb2.ATTRIBUTION_MODEL_FIRST_TOUCH,
    )
    goal = (
        await stub.UpdateGoal(
            config_pb2.UpdateGoalRequest(
                goal_id=goal.id,
                goal=update,
                update_mask=FieldMask(paths=["conditions", "attribution_model"]),
            )
        )
    ).goal
    await eventually(lambda: hits(new_url) == [goal.id], what="conditions updated")
    assert hits(old_url) == []
    assert cache.goal(goal.id).model == "FIRST_TOUCH"

    await stub.DeactivateGoal(config_pb2.DeactivateGoalRequest(goal_id=goal.id))
    await eventually(lambda: not cache.goal(goal.id).active, what="deactivated")
    assert hits(new_url) == []

    await stub.DeleteGoal(config_pb2.DeleteGoalRequest(goal_id=goal.id))
    await eventually(lambda: cache.goal(goal.id) is None, what="deleted")


async def test_config_outage_keeps_goals_and_restart_resyncs(host, make_tenant, clock):
    tenant = await make_tenant()
    account = tenant.account_id
    stub = host.stub(tenant.admin)
    keep = await create_active(stub, clock, "Keep", url_condition("/keep"))
    doomed = await create_active(stub, clock, "Doomed", url_condition("/doomed"))
    edited = await create_active(stub, clock, "Edited", url_condition("/old"))
    cache = await host.cache()
    async with asyncio.timeout(5):
        await cache.wait_synced()

    def hits(path: str) -> list[str]:
        return [g.id for g in cache.matching(account, f"{SHOP}{path}")]

    await host.stop()
    await asyncio.sleep(1.0)  # the follower sees the stream end and fails to reconnect
    assert cache.synced
    assert hits("/keep") == [keep.id] and hits("/doomed") == [doomed.id]
    assert hits("/old") == [edited.id]

    # While the tracker cannot reach config, another config instance (same databases,
    # another port) deletes one goal, edits another and creates a third.
    side, side_port = await host.launch(0)
    side_stub = host.stub(tenant.admin, port=side_port)
    await side_stub.DeleteGoal(config_pb2.DeleteGoalRequest(goal_id=doomed.id))
    edited = (
        await side_stub.UpdateGoal(
            config_pb2.UpdateGoalRequest(
                goal_id=edited.id,
                goal=config_pb2.Goal(conditions=[url_condition("/new")]),
                update_mask=FieldMask(paths=["conditions"]),
            )
        )
    ).goal
    created = await create_active(side_stub, clock, "Created", url_condition("/created"))
    await side.stop(0.5)
    assert hits("/doomed") == [doomed.id]  # nothing seen yet: still the last known goals

    await host.start()  # config is back on the same port
    waited = await eventually(
        lambda: cache.goal(doomed.id) is None and hits("/created") == [created.id],
        within=20,
        what="resync after restart",
    )
    assert hits("/old") == [] and hits("/new") == [edited.id]
    assert cache.goal(edited.id).revision == edited.revision
    assert hits("/keep") == [keep.id]
    assert waited < 20

    # And it follows live changes again.
    await stub.DeactivateGoal(config_pb2.DeactivateGoalRequest(goal_id=keep.id))
    await eventually(lambda: hits("/keep") == [], what="live change after resync")


async def test_start_does_not_need_config(host, make_tenant, clock):
    await host.stop()
    loop = asyncio.get_running_loop()
    began = loop.time()
    cache = await host.cache()
    assert loop.time() - began < 0.5
    assert not cache.synced
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await cache.wait_synced()
    assert cache.matching("acct-any", f"{SHOP}/checkout") == []

    await host.start()
    tenant = await make_tenant()
    # Same target and options as the cache's channel, so gRPC may share its subchannel,
    # still backing off after the refused connections: wait for it rather than fail fast.
    goal = (
        await host.stub(tenant.admin).CreateGoal(
            goal_request(
                "Late",
                conditions=[url_condition("/late")],
                active=True,
                start_date=date(clock.now().date()),
            ),
            wait_for_ready=True,
        )
    ).goal
    async with asyncio.timeout(20):
        await cache.wait_synced()
    await eventually(
        lambda: [g.id for g in cache.matching(tenant.account_id, f"{SHOP}/late")] == [goal.id],
        what="goal created once config is up",
    )


# The apply rules, message by message (no server: these are the cache's own decisions).


def goal_msg(
    goal_id: str,
    revision: int,
    *,
    account: str = "acct-a",
    active: bool = True,
    paths: tuple[str, ...] = ("/a",),
    name: str = "",
) -> config_pb2.Goal:
    return config_pb2.Goal(
        id=goal_id,
        account_id=account,
        name=name or goal_id,
        active=active,
        agent_group_ids=["sales"],
        attribution_model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH,
        attribution_period_days=7,
        conditions=[url_condition(p) for p in paths],
        revision=revision,
    )


def change(kind: str, goal: config_pb2.Goal | None = None) -> config_pb2.WatchGoalsResponse:
    msg = config_pb2.WatchGoalsResponse(
        type=config_pb2.GoalChangeType.Value(f"GOAL_CHANGE_TYPE_{kind}")
    )
    if goal is not None:
        msg.goal.CopyFrom(goal)
    return msg


def offline_cache() -> GoalCache:
    return GoalCache(None, max_backoff_s=1.0)  # type: ignore[arg-type]  # never started


def hit_ids(cache: GoalCache, url: str, account: str = "acct-a") -> list[str]:
    return [g.id for g in cache.matching(account, url)]


def test_conversion_of_unspecified_and_unknown_enums() -> None:
    msg = goal_msg("g", 1)
    msg.attribution_model = config_pb2.ATTRIBUTION_MODEL_UNSPECIFIED
    msg.goal_type = 99  # a value a newer config might send
    msg.conditions.add(category=config_pb2.CONDITION_CATEGORY_URL, operator=7, value="/x")
    known = convert_goal(msg)
    assert known.goal.model is None and known.goal.goal_type is None
    assert [c.value for c in known.conditions] == ["/a"]  # the unknown operator is skipped
    cache = offline_cache()
    cache.apply(change("SNAPSHOT", msg))
    cache.apply(change("SNAPSHOT_COMPLETE"))
    assert cache.goal("g") is not None
    assert hit_ids(cache, "/a") == []  # a goal without a known model is never hit


def test_changes_apply_only_with_a_higher_revision() -> None:
    cache = offline_cache()
    cache.apply(change("SNAPSHOT_COMPLETE"))  # nothing exists yet
    assert cache.synced
    cache.apply(change("UPSERTED", goal_msg("g", 2, name="two")))
    cache.apply(change("UPSERTED", goal_msg("g", 1, name="one")))
    cache.apply(change("UPSERTED", goal_msg("g", 2, name="two again", paths=("/b",))))
    assert cache.goal("g").name == "two" and hit_ids(cache, "/a") == ["g"]
    cache.apply(change("UPSERTED", goal_msg("g", 3, paths=("/b",))))
    assert cache.goal("g").revision == 3
    assert hit_ids(cache, "/a") == [] and hit_ids(cache, "/b") == ["g"]

    cache.apply(change("DELETED", goal_msg("g", 2)))  # stale deletion: ignored
    assert cache.goal("g") is not None
    cache.apply(change("DELETED", config_pb2.Goal(id="g", account_id="acct-a", revision=4)))
    assert cache.goal("g") is None and hit_ids(cache, "/b") == []
    # Late copies of older states cannot bring the deleted goal back.
    cache.apply(change("UPSERTED", goal_msg("g", 3)))
    cache.apply(change("UPSERTED", goal_msg("g", 4)))
    assert cache.goal("g") is None


def test_snapshot_is_collected_aside_and_swapped_in_at_its_end() -> None:
    cache = offline_cache()
    for msg in (goal_msg("g1", 1), goal_msg("g2", 5, paths=("/two",)), goal_msg("g4", 3)):
        cache.apply(change("SNAPSHOT", msg))
    cache.apply(change("SNAPSHOT_COMPLETE"))
    cache.apply(change("DELETED", config_pb2.Goal(id="g4", account_id="acct-a", revision=4)))

    cache.begin_stream()  # reconnected
    cache.apply(change("SNAPSHOT", goal_msg("g1", 2, paths=("/b",))))
    cache.apply(change("SNAPSHOT", goal_msg("g4", 3)))  # older than g4's deletion
    cache.apply(change("UPSERTED", goal_msg("g3", 1, paths=("/three",))))  # before the end
    # Mid-snapshot the previous goals are still served, unchanged.
    assert hit_ids(cache, "/a") == ["g1"] and hit_ids(cache, "/two") == ["g2"]
    assert cache.goal("g3") is None

    cache.apply(change("SNAPSHOT_COMPLETE"))
    assert hit_ids(cache, "/b") == ["g1"] and hit_ids(cache, "/a") == []
    assert cache.goal("g2") is None  # absent from the snapshot: deleted meanwhile
    assert cache.goal("g4") is None  # its tombstone outranks the snapshot's copy
    assert hit_ids(cache, "/three") == ["g3"]  # held back, then applied after the swap
    cache.apply(change("UPSERTED", goal_msg("g2", 5, paths=("/two",))))  # stale
    assert cache.goal("g2") is None

    # A snapshot older than what is known does not roll a goal back.
    cache.begin_stream()
    for msg in (goal_msg("g1", 1), goal_msg("g3", 1, paths=("/three",))):
        cache.apply(change("SNAPSHOT", msg))
    cache.apply(change("SNAPSHOT_COMPLETE"))
    assert cache.goal("g1").revision == 2 and hit_ids(cache, "/b") == ["g1"]

    # A snapshot cut off by a dropped stream is thrown away, never swapped in.
    cache.begin_stream()
    cache.apply(change("SNAPSHOT", goal_msg("g1", 9, paths=("/partial",))))
    cache.begin_stream()
    cache.apply(change("SNAPSHOT_COMPLETE"))  # config now holds no goals at all
    assert cache.goal("g1") is None and cache.goal("g3") is None


def test_matchers_are_rebuilt_only_for_the_changed_account(monkeypatch) -> None:
    built: list[list[str]] = []

    class CountingMatcher(goals_module.UrlMatcher):
        def __init__(self, goals) -> None:
            goals = list(goals)
            built.append([goal_id for goal_id, _ in goals])
            super().__init__(goals)

    monkeypatch.setattr(goals_module, "UrlMatcher", CountingMatcher)
    cache = offline_cache()
    for msg in (
        goal_msg("a1", 1),
        goal_msg("a2", 1, active=False),
        goal_msg("b1", 1, account="acct-b"),
    ):
        cache.apply(change("SNAPSHOT", msg))
    cache.apply(change("SNAPSHOT_COMPLETE"))
    assert built == []  # compiled lazily, on first use

    for _ in range(3):
        assert hit_ids(cache, "/a") == ["a1"]
        assert hit_ids(cache, "/a", "acct-b") == ["b1"]
    assert built == [["a1"], ["b1"]]  # inactive a2 is not compiled in

    cache.apply(change("UPSERTED", goal_msg("a2", 2)))  # activated
    assert hit_ids(cache, "/a") == ["a1", "a2"]
    assert hit_ids(cache, "/a", "acct-b") == ["b1"]
    assert built == [["a1"], ["b1"], ["a1", "a2"]]

    cache.apply(change("UPSERTED", goal_msg("a2", 1)))  # stale: nothing to rebuild
    cache.begin_stream()
    for msg in (
        goal_msg("a1", 1),
        goal_msg("a2", 2),
        goal_msg("b1", 2, account="acct-b", paths=("/b",)),
    ):
        cache.apply(change("SNAPSHOT", msg))
    cache.apply(change("SNAPSHOT_COMPLETE"))  # only acct-b's goal changed
    assert hit_ids(cache, "/a") == ["a1", "a2"] and hit_ids(cache, "/b", "acct-b") == ["b1"]
    assert built == [["a1"], ["b1"], ["a1", "a2"], ["b1"]]
