"""The services as real processes on loopback, over a database server of their own.

Each fault test gets a :class:`FaultStack`: its own nx-27017 process (own data directory
and port, so stopping it never disturbs the session database other tests use, and
``MONGODB_URI`` is ignored on purpose: a shared real MongoDB cannot be stopped), an
account with a key per role, the config service, and as many tracker processes as it
starts. Every process is stopped at teardown, also when the test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpc import aio
from pymongo import AsyncMongoClient

from bench import datagen
from bench.harness import Service
from goalflow_client.producer import EventProducer
from goalflow_common.auth import KeyStore, Role
from goalflow_common.client import make_channel
from goalflow_common.pb.goals.v1 import (
    common_pb2,
    config_pb2,
    config_pb2_grpc,
    tracker_pb2,
    tracker_pb2_grpc,
)
from goalflow_dev.embedded_mongo import EmbeddedMongo, free_port
from tests.conftest import Tenant

HOST = "127.0.0.1"


class ServiceProcess(Service):
    """``python -m <module>`` on a fixed loopback port: it can be killed and restarted on
    the same address. Each start logs to a file of its own, ``<name>.<start>.log``."""

    def __init__(self, module: str, env: dict[str, str], workdir: Path, name: str,
                 port: int) -> None:
        super().__init__(module, env, workdir / f"{name}.log")
        self.name = name
        self.workdir = workdir
        self.port = port
        self.starts = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.starts += 1
        # One log per start (the harness truncates it), so a restart keeps the crash's log.
        self.log_path = self.workdir / f"{self.name}.{self.starts}.log"
        super().start()

    async def serve(self, timeout_s: float = 40.0) -> None:
        """Start the process and wait until its health check says SERVING."""
        self.start()
        await self.wait_serving(self.address, timeout_s)

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a crash or the OOM killer would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def signal(self, signum: int) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"{self.module} not running"
        self.proc.send_signal(signum)

    async def wait_exit(self, timeout_s: float = 30.0) -> int:
        """Wait for the process to exit on its own; its exit code."""
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.proc.poll() is None:
            if loop.time() > deadline:
                pytest.fail(f"{self.module} still running after {timeout_s}s:\n"
                            f"{self.log_tail()}")
            await asyncio.sleep(0.02)
        code = self.proc.returncode
        self.proc = None
        return code


@dataclass
class Outcome:
    """What the API says was recorded: every conversion (ids, credits, values...) and the
    report, read through ListConversions and GetReport."""

    conversions: list[tracker_pb2.Conversion]
    report: tracker_pb2.GetReportResponse

    def summary(self) -> str:
        return (f"{len(self.conversions)} conversions, totals "
                f"{self.report.totals.conversions} / {list(self.report.totals.transaction_values)}")


class FaultStack:
    """Database, account, config and tracker processes of one fault test."""

    def __init__(self, workdir: Path, db: EmbeddedMongo, client: AsyncMongoClient) -> None:
        self.workdir = workdir
        self.db = db
        self.client = client
        self.prefix = f"f{uuid.uuid4().hex[:10]}"
        self.tenant: Tenant
        self.platform_key = ""
        self.services: list[ServiceProcess] = []
        self.channels: list[aio.Channel] = []
        self.config_port = free_port()
        self.config: ServiceProcess

    async def setup(self) -> None:
        keys = KeyStore(self.client[f"{self.prefix}_auth"], cache_ttl_s=30)
        account = f"acct-{uuid.uuid4().hex[:8]}"
        await keys.create_account(account)
        self.tenant = Tenant(account, {
            role: await keys.create_key(account, role)
            for role in (Role.ADMIN, Role.AGENT, Role.INGEST, Role.SERVICE)
        })
        self.platform_key = await keys.create_key(None, Role.SERVICE, label="faults")
        self.config = self._service("config_svc", "config", self.config_port, {
            "GOALFLOW_CONFIG_DB_NAME": f"{self.prefix}_config",
            "GOALFLOW_TRACKER_ADDRESS": "",  # 7-day counts are not what these tests are about
        })

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("GOALFLOW_") and k != "MONGODB_URI"}
        env.update({
            "MONGODB_URI": self.db.uri,
            "GOALFLOW_AUTH_DB_NAME": f"{self.prefix}_auth",
            "GOALFLOW_SERVICE_API_KEY": self.platform_key,
            "GOALFLOW_SHUTDOWN_GRACE_S": "5",
            **extra,
        })
        return env

    def _service(self, module: str, name: str, port: int, extra: dict[str, str]
                 ) -> ServiceProcess:
        service = ServiceProcess(module, self._env({"GOALFLOW_GRPC_PORT": str(port), **extra}),
                                 self.workdir, name, port)
        self.services.append(service)
        return service

    def tracker(self, name: str = "tracker", *, db: str = "tracker", **extra: str
                ) -> ServiceProcess:
        """A tracker process (not started) on its own port, following this stack's config,
        storing into database ``<prefix>_<db>``."""
        return self._service("tracker_svc", name, free_port(), {
            "GOALFLOW_TRACKER_DB_NAME": f"{self.prefix}_{db}",
            "GOALFLOW_CONFIG_ADDRESS": self.config.address,
            "GOALFLOW_GOAL_RESYNC_MAX_BACKOFF_S": "0.5",
            **extra,
        })

    def channel(self, address: str, key: str) -> aio.Channel:
        channel = make_channel(address, key)
        self.channels.append(channel)
        return channel

    def health_channel(self, service: ServiceProcess) -> aio.Channel:
        """A channel without a key (health needs none), to use with ``async with``."""
        return aio.insecure_channel(service.address)

    def config_stub(self) -> config_pb2_grpc.ConfigServiceStub:
        return config_pb2_grpc.ConfigServiceStub(
            self.channel(self.config.address, self.tenant.admin))

    def tracker_stub(self, tracker: ServiceProcess, role: Role = Role.ADMIN
                     ) -> tracker_pb2_grpc.TrackerServiceStub:
        return tracker_pb2_grpc.TrackerServiceStub(
            self.channel(tracker.address, self.tenant.keys[role]))

    async def create_goals(self, requests: Iterable[config_pb2.CreateGoalRequest]
                           ) -> list[config_pb2.Goal]:
        stub = self.config_stub()
        return [(await stub.CreateGoal(request, timeout=30)).goal for request in requests]

    async def outcome(self, tracker: ServiceProcess) -> Outcome:
        """Every conversion (ListConversions, all pages) and the report by agent over the
        days the traffic spans (GetReport), from ``tracker``."""
        stub = self.tracker_stub(tracker)
        conversions: list[tracker_pb2.Conversion] = []
        token = ""
        while True:
            page = await stub.ListConversions(
                tracker_pb2.ListConversionsRequest(page_size=500, page_token=token), timeout=30)
            conversions.extend(page.conversions)
            token = page.next_page_token
            if not token:
                break
        today = dt.datetime.now(dt.UTC).date()
        report = await stub.GetReport(tracker_pb2.GetReportRequest(
            start_date=_date(today - dt.timedelta(days=1)),
            end_date=_date(today + dt.timedelta(days=2)),
            group_by=tracker_pb2.REPORT_GROUPING_AGENT,
        ), timeout=30)
        return Outcome(sorted(conversions, key=lambda c: c.id), report)

    def producer(self, tracker: ServiceProcess, *, batch_size: int, window: int = 4
                 ) -> EventProducer:
        """A producer with the ingest key, patient enough to outlast a tracker restart on a
        busy machine (about 20 s of reconnects without progress)."""
        return EventProducer(tracker.address, self.tenant.keys[Role.INGEST],
                             batch_size=batch_size, window=window, max_reconnects=60,
                             backoff_s=(0.05, 0.5))

    async def undisturbed(self, tracker: ServiceProcess, events: list[tracker_pb2.Event],
                          *, batch_size: int) -> Outcome:
        """The reference: ``events`` through ``tracker`` (a database of its own) with
        nothing going wrong; the tracker is stopped afterwards to free the CPU."""
        async with self.producer(tracker, batch_size=batch_size) as producer:
            summary = await producer.send(events)
        assert (summary.accepted, summary.rejected, summary.reconnects) == (len(events), [], 0)
        outcome = await self.outcome(tracker)
        await asyncio.to_thread(tracker.stop)
        # Enough conversions that a lost or doubled one is a real difference.
        assert len(outcome.conversions) >= 20, outcome.summary()
        assert outcome.report.totals.conversions == len(outcome.conversions)
        return outcome

    async def close(self) -> None:
        for channel in self.channels:
            with contextlib.suppress(Exception):
                await channel.close()
        # Stopped in parallel: each may take its grace period.
        await asyncio.gather(*(asyncio.to_thread(s.stop, 10.0) for s in self.services))


def _date(day: dt.date) -> common_pb2.Date:
    return common_pb2.Date(year=day.year, month=day.month, day=day.day)


@pytest.fixture
async def fault_stack(tmp_path: Path) -> AsyncIterator[FaultStack]:
    """A database process of this test's own, an account and keys, and the config service
    (started); trackers are started by the test. Everything is stopped afterwards."""
    db = EmbeddedMongo(tmp_path / "mongo")
    await db.astart()
    client: AsyncMongoClient = AsyncMongoClient(db.uri, tz_aware=True,
                                                serverSelectionTimeoutMS=5000)
    stack = FaultStack(tmp_path, db, client)
    try:
        await stack.setup()
        await stack.config.serve()
        yield stack
    finally:
        try:
            await stack.close()
        finally:
            await client.close()
            await asyncio.to_thread(db.stop)


# -- traffic -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Generated traffic starting now (so every event is inside the goals' tracking and the
    tracker's clock limits), and the goals it hits."""

    events: list[tracker_pb2.Event]
    goals: list[config_pb2.CreateGoalRequest]


def workload(events: int, seed: int = 7) -> Workload:
    """``events`` events of bench/datagen.py's mix (conversations with bots, transfers,
    surveys, purchases...), opened over one hour from now, and its 15 goals starting
    today. Follow-ups run a few hours further: still well inside "a day ahead"."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    traffic = datagen.generate(seed, events, now, duration=dt.timedelta(hours=1))
    return Workload(traffic.events, datagen.goal_requests(now.date()))


def chunks(events: list[tracker_pb2.Event], size: int) -> list[list[tracker_pb2.Event]]:
    return [events[i:i + size] for i in range(0, len(events), size)]


async def stored_event_count(stack: FaultStack, db: str = "tracker") -> int:
    """Raw count of stored events (besides the API reads): an event stored twice would
    need two ``_id``s, so this equals the number sent when none is lost or doubled."""
    events = stack.client[f"{stack.prefix}_{db}"]["events"]
    return await events.count_documents({"account_id": stack.tenant.account_id})
