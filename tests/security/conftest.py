"""Fixtures of the security tests: a self-signed PKI made per module (trustme), and a
"world" of two accounts with real data in every service (config + tracker + export servers
on loopback, the SMTP sink, the real database)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest
import trustme
from bson import json_util
from grpc import aio
from pymongo import AsyncMongoClient

from goalflow_common.auth import KeyStore, Role
from goalflow_common.client import make_channel
from goalflow_common.pb.goals.v1 import (
    common_pb2,
    config_pb2,
    config_pb2_grpc,
    export_pb2,
    export_pb2_grpc,
    tracker_pb2,
    tracker_pb2_grpc,
)
from goalflow_common.server import GoalflowServer
from goalflow_common.tokens import TokenAuthority
from tests.conftest import Tenant
from tests.services.config_svc.helpers import url_condition
from tests.services.export_svc import conftest as export_fixtures
from tests.services.tracker_svc import conftest as tracker_fixtures
from tests.services.tracker_svc.builders import (
    agent,
    assigned,
    create_goal,
    ingest,
    message,
    opened,
    rated,
    visit,
)
from tests.services.tracker_svc.conftest import Stack

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
JUNE_1 = common_pb2.Date(year=2026, month=6, day=1)
LAST_TOUCH = config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH


# -- PKI -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate it issued for 127.0.0.1/localhost, and an unrelated CA."""

    ca_file: str
    cert_file: str
    key_file: str
    other_ca_file: str
    other_key_file: str
    """The key of a certificate from the other CA: a real key that is not ``cert_file``'s."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder: Path = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    stranger = other.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    other.cert_pem.write_to_path(str(folder / "other-ca.pem"))
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(folder / "cert.pem"), append=True)
    server.private_key_pem.write_to_path(str(folder / "key.pem"))
    stranger.private_key_pem.write_to_path(str(folder / "other-key.pem"))
    return Pki(*(str(folder / name) for name in (
        "ca.pem", "cert.pem", "key.pem", "other-ca.pem", "other-key.pem")))


# -- two accounts with data everywhere -------------------------------------------------


@dataclass(frozen=True)
class Ids:
    """The identifiers a request can name. Account A's are real; a phantom set names
    nothing that exists, so A's answers can be compared with "no such thing" answers."""

    account_id: str
    goal_id: str
    """Active goal with a recorded conversion."""
    idle_goal_id: str
    """Inactive goal."""
    second_goal_id: str
    """Active goal not converted yet (the live feed probes convert it)."""
    export_id: str
    conversation_id: str
    agent_id: str
    end_user_id: str
    key_id: str
    """The id of A's admin key."""

    def values(self) -> list[str]:
        return [getattr(self, f.name) for f in fields(self)]

    @classmethod
    def phantom(cls) -> Ids:
        tag = uuid.uuid4().hex[:8]
        return cls(f"nobody-{tag}", *(uuid.uuid4().hex for _ in range(4)),
                   f"ghost-conv-{tag}", f"ghost-agent-{tag}", f"ghost-user-{tag}",
                   uuid.uuid4().hex[:16])


A_GOAL_NAME = "Alpha secret launch"
A_AGENT = tracker_pb2.Agent(id="alpha-agent-1", name="Anna Alphason",
                            email="anna@alpha.example", group_id="alpha-sales",
                            skill="alpha-skill", user_type=tracker_pb2.USER_TYPE_HUMAN)
A_URL = "https://alpha.example/alpha-checkout?order=alpha-777"
A_RECIPIENT = "boss@alpha.example"


@dataclass
class World:
    """Account A (the victim) and account B (the other tenant), each with goals,
    conversations, a conversion and (A) a mailed export, plus stubs on every service."""

    stack: Stack
    export_server: GoalflowServer
    export_address: str
    outbox: Path
    a: Tenant
    b: Tenant
    a_ids: Ids
    b_goal: config_pb2.Goal
    a_secrets: list[str]
    """Strings only A's data contains: none may ever reach B."""
    tokens: TokenAuthority
    """Mints tokens every server of the world accepts."""
    channels: list[aio.Channel] = field(default_factory=list)
    platform_key: str = ""
    """A platform-wide key of role platform (AccountService's provisioning key)."""

    def key(self, role: Role) -> str:
        """Account A's key of ``role``; the platform key for ``Role.PLATFORM``."""
        return self.platform_key if role is Role.PLATFORM else self.a.keys[role]

    def token(self, tenant: Tenant, role: Role, agent_id: str = "") -> str:
        """A fresh token of ``tenant`` with ``role`` (an agent token for ``agent_id``)."""
        return self.tokens.mint(tenant.account_id, role, agent_id=agent_id).token

    def plain_channel(self, address: str) -> aio.Channel:
        """A channel that adds no key: each call says what it sends."""
        channel = aio.insecure_channel(address)
        self.channels.append(channel)
        return channel

    def config(self, key: str) -> config_pb2_grpc.ConfigServiceStub:
        return self.stack.config(key)

    def tracker(self, key: str) -> tracker_pb2_grpc.TrackerServiceStub:
        return self.stack.tracker(key)

    def export(self, key: str) -> export_pb2_grpc.ExportServiceStub:
        channel = make_channel(self.export_address, key)
        self.channels.append(channel)
        return export_pb2_grpc.ExportServiceStub(channel)


async def wait_mailed(stub: export_pb2_grpc.ExportServiceStub,
                      export_id: str) -> export_pb2.Export:
    """The export job once it is mailed (failing the test if it fails or takes too long)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        job = (await stub.GetExport(export_pb2.GetExportRequest(export_id=export_id))).export
        if job.state in (export_pb2.EXPORT_STATE_MAILED, export_pb2.EXPORT_STATE_FAILED):
            assert job.state == export_pb2.EXPORT_STATE_MAILED, job.error
            return job
        assert loop.time() < deadline, "the export was not mailed"
        await asyncio.sleep(0.05)


@pytest.fixture
async def world(stack, sink, mongo_uri, db_prefix, clock, platform_key, keys,
                make_tenant, tokens) -> AsyncIterator[World]:
    smtp_port, outbox = sink
    export, export_address = await export_fixtures.start_export_beside(
        stack, mongo_uri=mongo_uri, db_prefix=db_prefix, smtp_port=smtp_port,
        platform_key=platform_key, clock=clock)
    try:
        a = await make_tenant(f"alpha-{uuid.uuid4().hex[:8]}")
        b = await make_tenant(f"bravo-{uuid.uuid4().hex[:8]}")
        a_goal = await create_goal(stack, a, A_GOAL_NAME, model=LAST_TOUCH,
                                   groups=("alpha-sales",),
                                   conditions=[url_condition("/alpha-checkout")])
        a_second = await create_goal(stack, a, "Alpha second wave", model=LAST_TOUCH,
                                     groups=("alpha-sales",),
                                     conditions=[url_condition("/alpha-second")])
        a_idle = (await stack.config(a.admin).CreateGoal(config_pb2.CreateGoalRequest(
            name="Alpha hidden draft", agent_group_ids=["alpha-sales"],
            attribution_model=LAST_TOUCH, attribution_period_days=7,
            conditions=[url_condition("/alpha-draft")]))).goal
        b_goal = await create_goal(stack, b, "Bravo goal", model=LAST_TOUCH,
                                   conditions=[url_condition("/checkout")])
        clock.set(T0 + 30 * MIN)
        acks = await ingest(stack.tracker(a.keys[Role.INGEST]), [
            opened("alpha-conv-1", T0, user="alpha-user-1", skill="alpha-skill"),
            assigned("alpha-conv-1", T0 + MIN, A_AGENT),
            message("alpha-conv-1", T0 + 2 * MIN, A_AGENT.id),
            rated("alpha-conv-1", T0 + 3 * MIN, "5"),
        ], [visit(A_URL, T0 + 10 * MIN, user="alpha-user-1", amount="777.00")])
        assert acks[1].conversions == 1
        acks = await ingest(stack.tracker(b.keys[Role.INGEST]), [
            opened("bravo-conv-1", T0, user="bravo-user-1"),
            assigned("bravo-conv-1", T0 + MIN, agent("bravo-agent-1")),
        ], [visit("https://bravo.example/checkout", T0 + 10 * MIN, user="bravo-user-1")])
        assert acks[1].conversions == 1
        async with make_channel(export_address, a.admin) as channel:
            stub = export_pb2_grpc.ExportServiceStub(channel)
            requested = (await stub.RequestExport(export_pb2.RequestExportRequest(
                goal_id=a_goal.id, start_date=JUNE_1, end_date=JUNE_1,
                recipient_email=A_RECIPIENT))).export
            job = await wait_mailed(stub, requested.id)
        ids = Ids(a.account_id, a_goal.id, a_idle.id, a_second.id, job.id, "alpha-conv-1",
                  A_AGENT.id, "alpha-user-1", a.admin.split("_")[1])
        secrets = [*ids.values(), A_GOAL_NAME, "Alpha second wave", "Alpha hidden draft",
                   A_AGENT.name, A_AGENT.email, A_URL, "alpha-777", "777.00", "alpha-skill",
                   A_RECIPIENT, "Alpha", "alpha"]
        world = World(stack, export, export_address, outbox, a, b, ids, b_goal, secrets,
                      tokens,
                      platform_key=await keys.create_key(None, Role.PLATFORM, label="world"))
        try:
            yield world
        finally:
            for channel in world.channels:
                await channel.close()
    finally:
        await export.stop(0.5)


# -- database snapshots ----------------------------------------------------------------


async def snapshot(mongo: AsyncMongoClient, db_prefix: str) -> dict[str, list[str]]:
    """Every document of the test's databases (auth, config, tracker, export), by
    ``db.collection``, each as extended JSON with sorted keys, in sorted order."""
    result: dict[str, list[str]] = {}
    for db_name in sorted(await mongo.list_database_names()):
        if not db_name.startswith(f"{db_prefix}_"):
            continue
        db = mongo[db_name]
        for name in sorted(await db.list_collection_names()):
            docs = [json_util.dumps(doc, sort_keys=True) async for doc in db[name].find()]
            result[f"{db_name}.{name}"] = sorted(docs)
    return result


def touching(state: dict[str, list[str]], markers: list[str]) -> dict[str, list[str]]:
    """The documents that mention any of ``markers`` (an account's ids)."""
    return {name: [d for d in docs if any(m in d for m in markers)]
            for name, docs in state.items()}


async def revoked_key(keys: KeyStore, account_id: str, role: Role) -> str:
    """A key of ``role`` that was revoked before it was ever used (of ``account_id``, or
    platform-wide for a platform key)."""
    owner = None if role is Role.PLATFORM else account_id
    key = await keys.create_key(owner, role, label="revoked")
    await keys.revoke_key(key.split("_")[1])
    return key

# Fixtures reused as they are: the SMTP sink of the export tests and the config + tracker
# stack of the tracker tests.
sink = export_fixtures.sink
stack = tracker_fixtures.stack
