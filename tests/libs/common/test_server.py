"""The shared gRPC server bootstrap (goalflow_common.server) over real loopback servers: health,
request ids, JSON logs, error mapping, graceful stop and SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from config_svc.server import create_server
from config_svc.settings import ConfigSettings
from goalflow_common.auth import KeyStore, Role
from goalflow_common.client import make_channel
from goalflow_common.errors import NotFound
from goalflow_common.lifecycle import Lifecycle, cancel_and_wait
from goalflow_common.pb.goals.v1 import config_pb2, config_pb2_grpc
from goalflow_common.server import GoalflowServer, Registration, build_server
from goalflow_dev.embedded_mongo import free_port

CONFIG = config_pb2.DESCRIPTOR.services_by_name["ConfigService"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LEAK = "db-password=hunter2"  # must never reach a client


class TinyServicer(config_pb2_grpc.ConfigServiceServicer):
    """Answers ListGoals; fails GetGoal unexpectedly, DeleteGoal with a domain error and
    WatchGoals mid-stream."""

    async def ListGoals(self, request, context):
        return config_pb2.ListGoalsResponse()

    async def GetGoal(self, request, context):
        raise RuntimeError(f"unexpected: {LEAK}")

    async def DeleteGoal(self, request, context):
        raise NotFound(f"goal {request.goal_id!r} not found")

    async def WatchGoals(self, request, context):
        yield config_pb2.WatchGoalsResponse(type=config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT_COMPLETE)
        raise KeyError(LEAK)


@pytest.fixture
def settings(config_settings: ConfigSettings) -> ConfigSettings:
    return config_settings.model_copy(update={"shutdown_grace_s": 5.0})


@pytest.fixture
async def tiny(settings: ConfigSettings, keys: KeyStore) -> AsyncIterator[str]:
    server, port = build_server(
        settings,
        port=0,
        keys=keys,
        registrations=[
            Registration(config_pb2_grpc.add_ConfigServiceServicer_to_server,
                         TinyServicer(), CONFIG)
        ],
    )
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@pytest.fixture
async def config(settings: ConfigSettings, clock) -> AsyncIterator[tuple[GoalflowServer, str]]:
    """The real config service, started; tests may stop it themselves."""
    server, port = await create_server(settings, clock=clock)
    await server.start()
    try:
        yield server, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@pytest.fixture
async def channels() -> AsyncIterator[Callable[..., aio.Channel]]:
    """``open(address, key=None)``: a channel, with the bearer key if one is given."""
    opened: list[aio.Channel] = []

    def open_channel(address: str, key: str | None = None) -> aio.Channel:
        channel = make_channel(address, key) if key else aio.insecure_channel(address)
        opened.append(channel)
        return channel

    try:
        yield open_channel
    finally:
        for channel in opened:
            await channel.close()



def _auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def _trailing(metadata) -> dict[str, str]:
    return {k: v for k, v in metadata or ()}


# --- health and reflection --------------------------------------------------------------


async def test_health_is_serving_without_a_key(tiny, channels):
    health = health_pb2_grpc.HealthStub(channels(tiny))
    for service in ("", CONFIG):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == SERVING
    with pytest.raises(grpc.RpcError) as err:
        await health.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_other_rpcs_need_a_key(tiny, channels):
    stub = config_pb2_grpc.ConfigServiceStub(channels(tiny))
    with pytest.raises(grpc.RpcError) as err:
        await stub.ListGoals(config_pb2.ListGoalsRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def _list_services(channel: aio.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = []
    async for reply in call:
        names.extend(s.name for s in reply.list_services_response.service)
    return names


async def test_reflection_lists_services_to_any_key(tiny, channels, make_tenant):
    tenant = await make_tenant()
    names = await _list_services(channels(tiny, tenant.keys[Role.AGENT]))
    assert CONFIG in names and "grpc.health.v1.Health" in names
    # Without a key the call is refused before any request is read. (No request is sent:
    # a write racing the server's early status fails on the client with INTERNAL.)
    call = reflection_pb2_grpc.ServerReflectionStub(channels(tiny)).ServerReflectionInfo(
        timeout=5
    )
    assert await call.code() == grpc.StatusCode.UNAUTHENTICATED


# --- request ids and logs ---------------------------------------------------------------


async def test_request_id_is_echoed_in_trailing_metadata(tiny, channels, make_tenant):
    tenant = await make_tenant()
    stub = config_pb2_grpc.ConfigServiceStub(channels(tiny, tenant.admin))
    call = stub.ListGoals(
        config_pb2.ListGoalsRequest(), metadata=(("x-request-id", "req-42.a:b"),), timeout=5
    )
    await call
    assert _trailing(await call.trailing_metadata())["x-request-id"] == "req-42.a:b"


async def test_request_id_is_generated_when_absent_or_unusable(tiny, channels, make_tenant):
    tenant = await make_tenant()
    # A bare channel: the goalflow client would add an id of its own.
    stub = config_pb2_grpc.ConfigServiceStub(channels(tiny))
    seen = set()
    for extra in ((), (("x-request-id", "has spaces"),), (("x-request-id", "x" * 129),)):
        call = stub.ListGoals(
            config_pb2.ListGoalsRequest(), metadata=_auth(tenant.admin) + extra, timeout=5
        )
        await call
        request_id = _trailing(await call.trailing_metadata())["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
        seen.add(request_id)
    assert len(seen) == 3  # a new one each time


async def test_request_id_is_returned_on_errors_too(tiny, channels, make_tenant):
    tenant = await make_tenant()
    stub = config_pb2_grpc.ConfigServiceStub(channels(tiny, tenant.admin))
    call = stub.DeleteGoal(
        config_pb2.DeleteGoalRequest(goal_id="g1"), metadata=(("x-request-id", "req-err"),),
        timeout=5,
    )
    with pytest.raises(grpc.RpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert _trailing(err.value.trailing_metadata())["x-request-id"] == "req-err"


async def test_json_log_line_per_rpc_with_request_id_and_method(
    tiny, channels, make_tenant, json_logs
):
    tenant = await make_tenant()
    stub = config_pb2_grpc.ConfigServiceStub(channels(tiny, tenant.admin))
    json_logs()  # drop whatever came before
    await stub.ListGoals(
        config_pb2.ListGoalsRequest(), metadata=(("x-request-id", "req-log-1"),), timeout=5
    )
    with pytest.raises(grpc.RpcError):
        await stub.DeleteGoal(
            config_pb2.DeleteGoalRequest(goal_id="g1"),
            metadata=(("x-request-id", "req-log-2"),), timeout=5,
        )
    lines = {line.get("request_id"): line for line in json_logs() if line["event"] == "rpc"}
    ok, failed = lines["req-log-1"], lines["req-log-2"]
    assert ok["method"] == "/goals.v1.ConfigService/ListGoals"
    assert ok["code"] == "OK" and ok["level"] == "info"
    assert ok["account_id"] == tenant.account_id
    assert isinstance(ok["duration_ms"], float) and ok["timestamp"].endswith("Z")
    assert failed["method"] == "/goals.v1.ConfigService/DeleteGoal"
    assert failed["code"] == "NOT_FOUND"


async def test_unexpected_exception_is_internal_without_details(
    tiny, channels, make_tenant, json_logs
):
    tenant = await make_tenant()
    stub = config_pb2_grpc.ConfigServiceStub(channels(tiny, tenant.admin))
    json_logs()
    with pytest.raises(grpc.RpcError) as err:
        await stub.GetGoal(
            config_pb2.GetGoalRequest(goal_id="g1"), metadata=(("x-request-id", "req-boom"),),
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.INTERNAL
    details = err.value.details()
    assert LEAK not in details and "Traceback" not in details and "RuntimeError" not in details
    assert LEAK not in repr(err.value.trailing_metadata())
    # The server log keeps the whole story, tied to the request id.
    failures = [line for line in json_logs() if line["event"] == "rpc_failed"]
    assert len(failures) == 1
    assert failures[0]["request_id"] == "req-boom" and failures[0]["level"] == "error"
    assert LEAK in json.dumps(failures[0]["exception"])


async def test_unexpected_exception_mid_stream_is_internal_without_details(
    tiny, channels, make_tenant
):
    tenant = await make_tenant()
    stub = config_pb2_grpc.ConfigServiceStub(channels(tiny, tenant.admin))
    call = stub.WatchGoals(config_pb2.WatchGoalsRequest(), timeout=5)
    received = []
    with pytest.raises(grpc.RpcError) as err:
        async for change in call:
            received.append(change.type)
    assert received == [config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT_COMPLETE]
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert LEAK not in err.value.details() and "KeyError" not in err.value.details()


# --- graceful stop ----------------------------------------------------------------------


async def _stubborn(swallow: int, finished: list[str]) -> None:
    """Ignores its first ``swallow`` cancellations, as a task can whose cancellation races
    with asyncio.wait_for on Python 3.11 (seen with PyMongo change-stream readers)."""
    while True:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if swallow == 0:
                finished.append("cancelled")
                raise
            swallow -= 1


async def test_cancel_and_wait_outlasts_swallowed_cancellations():
    finished: list[str] = []
    stubborn = asyncio.create_task(_stubborn(2, finished))
    failing = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    stubborn.cancel()  # a single cancel does not end it
    _, pending = await asyncio.wait({stubborn}, timeout=0.2)
    assert pending == {stubborn}
    await asyncio.wait_for(cancel_and_wait(stubborn, failing, retry_s=0.05), 2)
    assert stubborn.cancelled() and finished == ["cancelled"]


async def test_cancel_and_wait_consumes_task_errors():
    async def fail():
        raise RuntimeError("reader died")

    task = asyncio.create_task(fail())
    await asyncio.sleep(0)
    await cancel_and_wait(task)  # neither raises nor leaves "never retrieved" behind
    assert isinstance(task.exception(), RuntimeError)


async def test_lifecycle_wait_or():
    lifecycle = Lifecycle()
    assert await lifecycle.wait_or(asyncio.sleep(0, result="done")) == (False, "done")
    finished: list[str] = []
    waiting = asyncio.create_task(lifecycle.wait_or(_stubborn(1, finished)))
    await asyncio.sleep(0.05)
    lifecycle.stopping.set()
    assert await asyncio.wait_for(waiting, 2) == (True, None)
    assert finished == ["cancelled"]  # the awaitable was really ended, not abandoned


async def _next_status(watch) -> int:
    return (await asyncio.wait_for(watch.read(), 5)).status


async def test_health_turns_not_serving_when_stop_begins(config, channels):
    server, address = config
    health = health_pb2_grpc.HealthStub(channels(address))
    watches = {
        name: health.Watch(health_pb2.HealthCheckRequest(service=name))
        for name in ("", CONFIG)
    }
    for watch in watches.values():
        assert await _next_status(watch) == SERVING
    stopping = asyncio.create_task(server.stop(1.0))
    try:
        for watch in watches.values():
            assert await _next_status(watch) == NOT_SERVING
    finally:
        await stopping


async def test_stop_ends_an_open_watch_stream_cleanly(config, channels, platform_key, settings):
    server, address = config
    stub = config_pb2_grpc.ConfigServiceStub(channels(address, platform_key))
    call = stub.WatchGoals(config_pb2.WatchGoalsRequest(send_snapshot=True))
    first = await asyncio.wait_for(call.read(), 5)
    assert first.type == config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT_COMPLETE

    started = time.monotonic()
    stopping = asyncio.create_task(server.stop())
    rest = []
    async for change in call:  # ends without raising: status OK, not CANCELLED/UNAVAILABLE
        rest.append(change)
    ended = time.monotonic() - started
    await asyncio.wait_for(stopping, settings.shutdown_grace_s + 2)
    assert rest == []
    assert await call.code() == grpc.StatusCode.OK
    # Well inside the grace period: the stream ended on the stop signal, not on a timeout.
    assert ended < settings.shutdown_grace_s / 2
    assert time.monotonic() - started < settings.shutdown_grace_s


async def test_stop_is_idempotent_and_refuses_new_calls(config, channels):
    server, address = config
    await server.stop(0.5)
    await server.stop(0.5)
    health = health_pb2_grpc.HealthStub(channels(address))
    with pytest.raises(grpc.RpcError) as err:
        await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


# --- the real process and SIGTERM -------------------------------------------------------


async def _wait_serving(address: str, proc: asyncio.subprocess.Process, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    async with aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert proc.returncode is None, "the service exited during start-up"
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if reply.status == SERVING:
                    return
            except grpc.RpcError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{address} not SERVING within {timeout_s}s")


async def test_sigterm_stops_the_service_cleanly(
    mongo_uri, db_prefix, platform_key, tmp_path: Path
):
    port = free_port()
    env = {
        **os.environ,
        "MONGODB_URI": mongo_uri,
        "GOALFLOW_GRPC_PORT": str(port),
        "GOALFLOW_AUTH_DB_NAME": f"{db_prefix}_auth",
        "GOALFLOW_CONFIG_DB_NAME": f"{db_prefix}_config",
        "GOALFLOW_TRACKER_ADDRESS": "",
        "GOALFLOW_SHUTDOWN_GRACE_S": "5",
    }
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "config_svc",
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    address = f"127.0.0.1:{port}"
    try:
        await _wait_serving(address, proc, timeout_s=30)
        # An open stream must end cleanly when the process is told to stop.
        async with make_channel(address, platform_key) as channel:
            call = config_pb2_grpc.ConfigServiceStub(channel).WatchGoals(
                config_pb2.WatchGoalsRequest(send_snapshot=True)
            )
            first = await asyncio.wait_for(call.read(), 5)
            assert first.type == config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT_COMPLETE
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            async for _ in call:
                pass
            assert await call.code() == grpc.StatusCode.OK
            returncode = await asyncio.wait_for(proc.wait(), 5)
            assert time.monotonic() - started < 5
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert returncode == 0
    lines = stderr_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every stderr line is JSON
    events = [r["event"] for r in records]
    assert "listening" in events
    assert events[-1] == "shutdown_complete"
    assert events.index("listening") < events.index("shutdown_started")
    watch = [r for r in records if r.get("method") == "/goals.v1.ConfigService/WatchGoals"]
    assert [r["code"] for r in watch] == ["OK"]
    assert next(r for r in records if r["event"] == "listening")["address"] == address
