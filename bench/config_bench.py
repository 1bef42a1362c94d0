"""Config service benchmark: CreateGoal, GetGoal and ListGoals at N concurrent clients.

Starts the embedded database (unless ``MONGODB_URI`` is set) and the real config service as
its own process, so the load generator never shares the server's event loop. Then runs a
health-check baseline and the three phases, each a warm-up followed by a fixed number of
measured calls spread over the clients (closed loop unless --rate is given). Prints
``name value`` lines on stdout; progress and errors go to stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pymongo.errors import PyMongoError

from bench.harness import BenchError, Service, date, percentile, run_main, workspace
from goalflow_common.auth import KeyStore, Role
from goalflow_common.client import make_channel
from goalflow_common.db import connect
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, config_pb2_grpc
from goalflow_dev.embedded_mongo import free_port

PREFIX = "config"
HOST = "127.0.0.1"
ACTIVE_IN_LIST_ACCOUNT = 10  # some active goals, under the 15 limit, for realistic statuses
DEFAULT_PAGE = 50  # ListGoals page size when the request leaves it unset


def _log(message: str) -> None:
    print(f"[config_bench] {message}", file=sys.stderr, flush=True)


# -- processes -----------------------------------------------------------------------------


# -- load ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseResult:
    latencies_s: list[float]
    wall_s: float

    def percentile_ms(self, pct: float) -> float:
        return percentile(self.latencies_s, pct) * 1000

    @property
    def rps(self) -> float:
        return len(self.latencies_s) / self.wall_s


Call = Callable[[int, int], Awaitable[object]]  # (client number, call number) -> RPC


async def run_calls(
    name: str, calls: int, clients: int, call: Call, rate: float = 0.0
) -> PhaseResult:
    """``calls`` calls shared by ``clients`` concurrent tasks; the first failure stops all.

    With ``rate`` 0 each client sends its next call as soon as the previous one returns
    (closed loop). With a rate, call i is due at ``i / rate`` seconds (open loop, at most
    ``clients`` in flight) and its latency counts from when it was due, so a server that
    falls behind is charged for the wait rather than hidden by it.
    """
    counter: Iterator[int] = itertools.count()
    latencies = [0.0] * calls

    async def client(number: int) -> None:
        while (i := next(counter)) < calls:
            if rate:
                due = start + i / rate
                if due > time.perf_counter():
                    await asyncio.sleep(due - time.perf_counter())
                sent = due
            else:
                sent = time.perf_counter()
            try:
                await call(number, i)
            except grpc.RpcError as exc:
                raise BenchError(f"{name} call {i} failed: {exc.code()}: {exc.details()}") from exc
            latencies[i] = time.perf_counter() - sent

    start = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for number in range(clients):
                group.create_task(client(number))
    except* BenchError as errors:
        raise errors.exceptions[0] from None
    return PhaseResult(latencies, time.perf_counter() - start)


async def phase(
    name: str, args: argparse.Namespace, call: Call, warm_call: Call | None = None
) -> PhaseResult:
    """Warm up, then measure; print this phase's figures."""
    if args.warmup:
        _log(f"{name}: warm-up, {args.warmup} calls")
        await run_calls(f"{name} warm-up", args.warmup, args.clients, warm_call or call)
    pace = f", {args.rate:g} calls/s offered" if args.rate else ""
    _log(f"{name}: {args.calls} calls at {args.clients} clients{pace}")
    result = await run_calls(name, args.calls, args.clients, call, args.rate)
    figures = {
        f"{PREFIX}_{name}_p50_ms": f"{result.percentile_ms(50):.2f}",
        f"{PREFIX}_{name}_p99_ms": f"{result.percentile_ms(99):.2f}",
        f"{PREFIX}_{name}_rps": f"{result.rps:.1f}",
    }
    for key, value in figures.items():
        print(f"{key} {value}", flush=True)
    return result


def goal_request(name: str, *, active: bool = False) -> config_pb2.CreateGoalRequest:
    """A goal shaped like a real one: a few conditions, two groups, dates and a value."""
    start = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)  # never "before today"
    return config_pb2.CreateGoalRequest(
        name=name,
        description="Visitors who reach the order confirmation after a chat",
        active=active,
        start_date=date(start),
        end_date=date(start + dt.timedelta(days=90)),
        agent_group_ids=["sales", "support"],
        attribution_model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH,
        attribution_period_days=7,
        transaction_value=common_pb2.Money(currency_code="USD", amount="49.90"),
        goal_type=config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE,
        conditions=[
            config_pb2.Condition(
                category=config_pb2.CONDITION_CATEGORY_URL,
                operator=config_pb2.CONDITION_OPERATOR_CONTAINS,
                value=f"/checkout/confirm?step={k}",
            )
            for k in range(3)
        ],
    )


async def run_load(args: argparse.Namespace, uri: str, env: dict[str, str], address: str,
                   service: Service, external_db: bool) -> None:
    try:
        client = await connect(uri, app_name="goalflow-bench", attempts=3)
    except PyMongoError as exc:
        raise BenchError(f"cannot reach MongoDB at {uri}: {exc}") from exc
    channels: list[aio.Channel] = []
    try:
        main_key, list_key = await _bench_keys(KeyStore(client[env["GOALFLOW_AUTH_DB_NAME"]]))
        await service.wait_serving(address)
        # --channels channels per account: the main account's first, then the list one's.
        for key in (main_key, list_key):
            channels.extend(make_channel(address, key) for _ in range(args.channels))
        main_channels, list_channels = channels[: args.channels], channels[args.channels :]
        main_stubs = [config_pb2_grpc.ConfigServiceStub(c) for c in main_channels]
        list_stubs = [config_pb2_grpc.ConfigServiceStub(c) for c in list_channels]

        await health_phase(args, main_channels)
        ids = await create_phase(args, main_stubs)
        await get_phase(args, main_stubs, ids)
        await list_phase(args, list_stubs)
    finally:
        for channel in channels:
            await channel.close()
        if external_db:  # leave a real MongoDB as we found it
            for name in (env["GOALFLOW_CONFIG_DB_NAME"], env["GOALFLOW_AUTH_DB_NAME"]):
                with contextlib.suppress(Exception):
                    await client.drop_database(name)
        await client.close()


async def _bench_keys(keys: KeyStore) -> tuple[str, str]:
    """Two fresh accounts with an admin key each: (main account's key, list account's key).
    The list account holds only the --list-goals goals ListGoals pages through."""
    suffix = uuid.uuid4().hex[:8]
    main_account, list_account = f"bench-{suffix}", f"bench-list-{suffix}"
    for account in (main_account, list_account):
        await keys.create_account(account)
    main_key = await keys.create_key(main_account, Role.ADMIN, label="bench")
    list_key = await keys.create_key(list_account, Role.ADMIN, label="bench")
    return main_key, list_key


Stubs = list[config_pb2_grpc.ConfigServiceStub]


async def health_phase(args: argparse.Namespace, channels: list[aio.Channel]) -> None:
    """Baseline: the health check goes through the same channels and gRPC server but no
    interceptor, handler or database, so it is the floor the other phases stand on."""
    health_stubs = [health_pb2_grpc.HealthStub(c) for c in channels]

    async def health_check(number: int, i: int) -> None:
        await health_stubs[number % len(health_stubs)].Check(
            health_pb2.HealthCheckRequest(), timeout=args.timeout
        )

    await phase("health", args, health_check)


async def create_phase(args: argparse.Namespace, stubs: Stubs) -> list[str]:
    """CreateGoal: inactive goals with unique names (activation has its own limit).
    Returns the ids of every goal created, warm-up ones included."""
    ids: list[str] = []

    def create(prefix: str) -> Call:
        async def call(number: int, i: int) -> None:
            stub = stubs[number % len(stubs)]
            reply = await stub.CreateGoal(goal_request(f"{prefix} {i:06d}"), timeout=args.timeout)
            ids.append(reply.goal.id)

        return call

    await phase("create", args, create("bench goal"), create("warm-up goal"))
    return ids


async def get_phase(args: argparse.Namespace, stubs: Stubs, ids: list[str]) -> None:
    """GetGoal over every goal created by the create phase."""

    async def get(number: int, i: int) -> None:
        stub = stubs[number % len(stubs)]
        await stub.GetGoal(config_pb2.GetGoalRequest(goal_id=ids[i % len(ids)]),
                           timeout=args.timeout)

    await phase("get", args, get)


async def list_phase(args: argparse.Namespace, stubs: Stubs) -> None:
    """ListGoals: the first page (default size) of an account with --list-goals goals."""
    timeout = args.timeout
    _log(f"list: seeding {args.list_goals} goals")
    for i in range(min(ACTIVE_IN_LIST_ACCOUNT, args.list_goals)):
        await stubs[0].CreateGoal(goal_request(f"list goal {i:04d}", active=True),
                                  timeout=timeout)

    async def seed(number: int, i: int) -> None:
        await stubs[number % len(stubs)].CreateGoal(
            goal_request(f"list goal {i + ACTIVE_IN_LIST_ACCOUNT:04d}"), timeout=timeout
        )

    await run_calls("list seeding", max(0, args.list_goals - ACTIVE_IN_LIST_ACCOUNT),
                    args.clients, seed)

    async def list_goals(number: int, i: int) -> None:
        stub = stubs[number % len(stubs)]
        reply = await stub.ListGoals(config_pb2.ListGoalsRequest(), timeout=timeout)
        if len(reply.goals) != min(DEFAULT_PAGE, args.list_goals):
            raise BenchError(f"ListGoals returned {len(reply.goals)} goals")

    await phase("list", args, list_goals)


# -- entry point ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.config_bench", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per phase")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up calls per phase")
    parser.add_argument("--channels", type=int, default=4, help="gRPC channels per account")
    parser.add_argument("--list-goals", type=int, default=200,
                        help="goals in the account that ListGoals reads")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline of each call (s)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offered calls/s per phase (open loop); 0: closed loop, flat out")
    args = parser.parse_args(argv)
    for name in ("calls", "clients", "channels"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0 or args.list_goals < 1 or args.rate < 0:
        parser.error("--warmup and --rate must be >= 0, --list-goals >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> None:
        with workspace() as ws:
            _log(f"database {ws.uri}")
            run_id = uuid.uuid4().hex[:8]
            port = free_port(HOST)
            env = {
                **os.environ,
                "MONGODB_URI": ws.uri,
                "GOALFLOW_GRPC_HOST": HOST,
                "GOALFLOW_GRPC_PORT": str(port),
                "GOALFLOW_TRACKER_ADDRESS": "",
                "GOALFLOW_LOG_LEVEL": "WARNING",
                "GOALFLOW_SHUTDOWN_GRACE_S": "2",
                "GOALFLOW_CONFIG_DB_NAME": f"bench_{run_id}_config",
                "GOALFLOW_AUTH_DB_NAME": f"bench_{run_id}_auth",
            }
            service = Service("config_svc", env, ws.workdir / "config_svc.log")
            ws.stack.callback(service.stop)
            service.start()
            asyncio.run(run_load(args, ws.uri, env, f"{HOST}:{port}", service, ws.external_db))

    return run_main("config_bench", body)


if __name__ == "__main__":
    sys.exit(main())
