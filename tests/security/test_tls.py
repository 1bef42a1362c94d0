"""Optional TLS, configured by settings, with a PKI generated in the test (trustme): a TLS
server is reachable only by clients trusting its CA, the services call each other over TLS
(tracker -> config goal feed, config -> tracker 7-day counts, export -> config and tracker),
and the export download server serves HTTPS."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import os
import re
import ssl
import sys
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from config_svc.server import create_server as create_config
from config_svc.settings import ConfigSettings
from export_svc.server import create_server as create_export
from export_svc.settings import ExportSettings
from goalflow_common.auth import Role
from goalflow_common.client import make_channel, tls_credentials
from goalflow_common.pb.goals.v1 import (
    common_pb2,
    config_pb2,
    config_pb2_grpc,
    export_pb2,
    export_pb2_grpc,
    tracker_pb2_grpc,
)
from goalflow_common.server import GoalflowServer
from goalflow_dev.embedded_mongo import free_port
from tests.security.conftest import Pki
from tests.services.config_svc.helpers import date, goal_request
from tests.services.export_svc.conftest import read_outbox
from tests.services.tracker_svc.builders import agent, assigned, ingest, opened, visit
from tracker_svc.server import create_server as create_tracker
from tracker_svc.settings import TrackerSettings

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
JUNE_1 = common_pb2.Date(year=2026, month=6, day=1)
UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def tls_settings(pki: Pki, *, trust: str | None = None) -> dict[str, str]:
    """Settings fields for a service serving TLS with the test certificate and trusting
    ``trust`` (the test CA by default) when it calls the others."""
    return {"tls_cert_file": pki.cert_file, "tls_key_file": pki.key_file,
            "tls_ca_file": pki.ca_file if trust is None else trust}


@dataclass
class Channels:
    opened: list[aio.Channel] = field(default_factory=list)

    def open(self, address: str, key: str, ca_file: str | None) -> aio.Channel:
        """A channel with ``key``: TLS trusting ``ca_file``, or plaintext if None."""
        credentials = None if ca_file is None else tls_credentials(ca_file)
        channel = make_channel(address, key, credentials=credentials)
        self.opened.append(channel)
        return channel


@pytest.fixture
async def channels() -> AsyncIterator[Channels]:
    made = Channels()
    try:
        yield made
    finally:
        for channel in made.opened:
            await channel.close()


@pytest.fixture
async def tls_config(config_settings, clock, pki) -> AsyncIterator[str]:
    """A config server serving TLS only (no tracker)."""
    settings = config_settings.model_copy(update=tls_settings(pki))
    server, port = await create_config(settings, clock=clock)
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0.5)


async def test_tls_server_answers_only_clients_that_trust_its_ca(tls_config, make_tenant,
                                                                 channels, pki):
    tenant = await make_tenant()
    trusted = config_pb2_grpc.ConfigServiceStub(channels.open(tls_config, tenant.admin,
                                                              pki.ca_file))
    created = (await trusted.CreateGoal(goal_request("Over TLS"))).goal
    listing = await trusted.ListGoals(config_pb2.ListGoalsRequest())
    assert [row.goal.id for row in listing.goals] == [created.id]
    health = health_pb2_grpc.HealthStub(channels.open(tls_config, "", pki.ca_file))
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

    for who, ca_file in (("plaintext client", None), ("client trusting another CA",
                                                       pki.other_ca_file)):
        stub = config_pb2_grpc.ConfigServiceStub(channels.open(tls_config, tenant.admin, ca_file))
        with pytest.raises(grpc.RpcError) as err:
            await stub.ListGoals(config_pb2.ListGoalsRequest(), timeout=5)
        assert err.value.code() in UNREACHABLE, who
        with pytest.raises(grpc.RpcError) as err:
            await stub.CreateGoal(goal_request("Never stored"), timeout=5)
        assert err.value.code() in UNREACHABLE, who
    listing = await trusted.ListGoals(config_pb2.ListGoalsRequest())
    assert [row.goal.name for row in listing.goals] == ["Over TLS"]


async def test_the_container_health_probe_speaks_tls_when_the_service_does(tls_config, pki):
    async def probe(env: dict[str, str]) -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "goalflow_common.healthcheck", tls_config,
            env={**os.environ, **env}, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await proc.wait()

    assert await probe({"GOALFLOW_TLS_CA_FILE": pki.ca_file}) == 0
    assert await probe({"GOALFLOW_TLS_CA_FILE": pki.other_ca_file}) != 0
    assert await probe({}) != 0  # plaintext against a TLS port


async def test_the_cli_connects_with_tls_when_asked(tls_config, make_tenant, pki):
    tenant = await make_tenant()

    async def goalflow(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "goalflow_client.cli", "--key", tenant.admin,
            "--config-address", tls_config, *args, "goals", "list", "--format", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        return proc.returncode, (out + err).decode()

    code, output = await goalflow("--tls-ca-file", pki.ca_file)
    assert code == 0, output
    code, output = await goalflow()  # plaintext against a TLS port: unavailable, one line
    assert code == 5 and "Traceback" not in output, output


async def test_plaintext_server_refuses_a_tls_client(config_settings, clock, make_tenant,
                                                     channels, pki):
    """TLS is all or nothing on a port: a TLS client cannot talk to a plaintext server."""
    server, port = await create_config(config_settings, clock=clock)
    await server.start()
    try:
        tenant = await make_tenant()
        stub = config_pb2_grpc.ConfigServiceStub(
            channels.open(f"127.0.0.1:{port}", tenant.admin, pki.ca_file))
        with pytest.raises(grpc.RpcError) as err:
            await stub.ListGoals(config_pb2.ListGoalsRequest(), timeout=5)
        assert err.value.code() in UNREACHABLE
    finally:
        await server.stop(0.5)


@dataclass
class TlsStack:
    config: str
    tracker: str
    export: str
    http_port: int
    tracker_server: GoalflowServer
    outbox: object


@pytest.fixture
async def tls_stack(mongo_uri, db_prefix, clock, platform_key, config_settings, sink,
                    pki) -> AsyncIterator[TlsStack]:
    """Config, tracker and export, every server on TLS and every hop between them too."""
    smtp_port, outbox = sink
    tracker_port, http_port = free_port(), free_port()
    servers: list[GoalflowServer] = []
    try:
        config, config_port = await create_config(config_settings.model_copy(update={
            "tracker_address": f"127.0.0.1:{tracker_port}", "service_api_key": platform_key,
            # The first 7-day count waits for the tracker's TLS handshake too.
            "tracker_timeout_s": 5.0, **tls_settings(pki),
        }), clock=clock)
        servers.append(config)
        await config.start()
        tracker, _ = await create_tracker(TrackerSettings(
            mongodb_uri=mongo_uri, auth_db_name=f"{db_prefix}_auth",
            tracker_db_name=f"{db_prefix}_tracker", grpc_port=tracker_port,
            config_address=f"127.0.0.1:{config_port}", shutdown_grace_s=1.0,
            service_api_key=platform_key, goal_resync_max_backoff_s=0.5, **tls_settings(pki),
        ), clock=clock)
        servers.append(tracker)
        await tracker.start()
        export, export_port = await create_export(ExportSettings(
            mongodb_uri=mongo_uri, auth_db_name=f"{db_prefix}_auth",
            export_db_name=f"{db_prefix}_export", grpc_port=0, http_port=http_port,
            public_base_url=f"https://localhost:{http_port}",
            tracker_address=f"127.0.0.1:{tracker_port}",
            config_address=f"127.0.0.1:{config_port}", smtp_port=smtp_port,
            link_secret="k" * 40, service_api_key=platform_key, lease_s=5.0,
            shutdown_grace_s=1.0, **tls_settings(pki),
        ), clock=clock, ttl_indexes=False)
        servers.append(export)
        await export.start()
        yield TlsStack(f"127.0.0.1:{config_port}", f"127.0.0.1:{tracker_port}",
                       f"127.0.0.1:{export_port}", http_port, tracker, outbox)
    finally:
        for server in reversed(servers):
            await server.stop(0.5)


async def wait_until(predicate, what: str, within_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_services_call_each_other_over_tls(tls_stack, make_tenant, channels, clock, pki):
    tenant = await make_tenant()
    config = config_pb2_grpc.ConfigServiceStub(channels.open(tls_stack.config, tenant.admin,
                                                             pki.ca_file))
    goal = (await config.CreateGoal(goal_request(
        "Checkout", active=True, start_date=date(T0.date())))).goal

    # Tracker -> config: the goal arrives through WatchGoals over TLS.
    goals = tls_stack.tracker_server.components["goals"]
    await wait_until(lambda: goals.goal(goal.id) is not None, "the tracker to see the goal")

    clock.set(T0 + 30 * MIN)
    tracker = tracker_pb2_grpc.TrackerServiceStub(
        channels.open(tls_stack.tracker, tenant.keys[Role.INGEST], pki.ca_file))
    acks = await ingest(tracker, [opened("c1", T0, user="u1"),
                                  assigned("c1", T0 + MIN, agent("A"))],
                        [visit("https://shop.x/checkout", T0 + 10 * MIN, user="u1")])
    assert acks[1].conversions == 1

    # Config -> tracker: the 7-day column comes from CountConversions over TLS.
    listing = await config.ListGoals(config_pb2.ListGoalsRequest())
    assert listing.seven_day_conversions_available
    assert [(row.goal.id, row.seven_day_conversions) for row in listing.goals] == [(goal.id, 1)]

    # Export -> config (GetGoal) and -> tracker (StreamConversions), link served over HTTPS.
    exports = export_pb2_grpc.ExportServiceStub(channels.open(tls_stack.export, tenant.admin,
                                                              pki.ca_file))
    job = (await exports.RequestExport(export_pb2.RequestExportRequest(
        goal_id=goal.id, start_date=JUNE_1, end_date=JUNE_1,
        recipient_email="admin@example.com"))).export
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while job.state not in (export_pb2.EXPORT_STATE_MAILED, export_pb2.EXPORT_STATE_FAILED):
        assert loop.time() < deadline, "the export was not mailed"
        await asyncio.sleep(0.05)
        job = (await exports.GetExport(export_pb2.GetExportRequest(export_id=job.id))).export
    assert job.state == export_pb2.EXPORT_STATE_MAILED, job.error
    assert job.row_count == 1
    [mail] = read_outbox(tls_stack.outbox)
    [link] = re.findall(r"https://localhost:\d+/exports/\S+", mail.get_body(("plain",))
                        .get_content())
    assert link == job.download_url

    trusting = ssl.create_default_context(cafile=pki.ca_file)
    async with aiohttp.ClientSession() as http:
        async with http.get(link, ssl=trusting) as response:
            assert response.status == 200
            body = await response.read()
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            [name] = archive.namelist()
            rows = list(csv.reader(io.StringIO(archive.read(name).decode("utf-8-sig"))))
        assert [(r[1], r[3], r[6]) for r in rows[1:]] == [(goal.id, "A", "c1")]
        # The download port speaks only TLS, and only to clients that trust the CA.
        with pytest.raises(aiohttp.ClientError):
            async with http.get(link.replace("https://", "http://", 1)) as response:
                await response.read()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(link, ssl=ssl.create_default_context(
                    cafile=pki.other_ca_file)) as response:
                await response.read()


async def test_a_service_that_does_not_trust_the_peer_ca_cannot_call_it(
    mongo_uri, db_prefix, clock, platform_key, config_settings, make_tenant, channels, pki
):
    """Config trusting another CA gets no 7-day counts from a TLS tracker: the hop verifies
    the peer certificate rather than accepting any."""
    tracker_port = free_port()
    config, config_port = await create_config(config_settings.model_copy(update={
        "tracker_address": f"127.0.0.1:{tracker_port}", "service_api_key": platform_key,
        **tls_settings(pki, trust=pki.other_ca_file),
    }), clock=clock)
    tracker, _ = await create_tracker(TrackerSettings(
        mongodb_uri=mongo_uri, auth_db_name=f"{db_prefix}_auth",
        tracker_db_name=f"{db_prefix}_tracker", grpc_port=tracker_port,
        config_address=f"127.0.0.1:{config_port}", shutdown_grace_s=1.0,
        service_api_key=platform_key, goal_resync_max_backoff_s=0.5, **tls_settings(pki),
    ), clock=clock)
    await config.start()
    await tracker.start()
    try:
        tenant = await make_tenant()
        stub = config_pb2_grpc.ConfigServiceStub(
            channels.open(f"127.0.0.1:{config_port}", tenant.admin, pki.ca_file))
        await stub.CreateGoal(goal_request("Checkout"))
        listing = await stub.ListGoals(config_pb2.ListGoalsRequest())
        assert [row.goal.name for row in listing.goals] == ["Checkout"]
        assert not listing.seven_day_conversions_available
        assert not listing.goals[0].HasField("seven_day_conversions")
    finally:
        await tracker.stop(0.5)
        await config.stop(0.5)


def test_settings_name_the_tls_field_that_is_wrong(pki, tmp_path):
    with pytest.raises(ValidationError, match="tls_cert_file and tls_key_file"):
        ConfigSettings(tls_cert_file=pki.cert_file)
    with pytest.raises(ValidationError, match="tls_cert_file and tls_key_file"):
        ConfigSettings(tls_key_file=pki.key_file)
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match=r"^tls_cert_file: cannot read"):
        ConfigSettings(tls_cert_file=missing, tls_key_file=pki.key_file).grpc_server_credentials()
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(ValueError, match=r"^tls_key_file: .* is not a PEM file"):
        ConfigSettings(tls_cert_file=pki.cert_file,
                       tls_key_file=str(not_pem)).grpc_server_credentials()
    with pytest.raises(ValueError, match=r"^tls_key_file: not the key of tls_cert_file"):
        ConfigSettings(tls_cert_file=pki.cert_file,
                       tls_key_file=pki.other_key_file).grpc_server_credentials()
    with pytest.raises(ValueError, match=r"^tls_ca_file: cannot read"):
        TrackerSettings(tls_ca_file=missing).grpc_channel_credentials()
    with pytest.raises(ValidationError, match="public_base_url: must start with https://"):
        ExportSettings(link_secret="k" * 40, **tls_settings(pki))
    # Unset, everything stays plaintext, as before.
    plain = ConfigSettings()
    assert not plain.tls_enabled
    assert plain.grpc_server_credentials() is None
    assert plain.grpc_channel_credentials() is None
    assert plain.http_ssl_context() is None
