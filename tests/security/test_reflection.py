"""Server reflection as a standard third-party client uses it: ``buf curl`` (installed with
buf by ``make lint-protos``) finds each service's schema by reflection, over
``grpc.reflection.v1`` (its default) and ``grpc.reflection.v1alpha``, and calls a unary
RPC on every service; reflection lists every served service, health included."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from grpc_reflection.v1alpha import reflection_pb2

from goalflow_common.auth import Role
from goalflow_common.client import make_channel
from goalflow_common.server import REFLECTION_V1
from tests.security.conftest import World

BUF = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "buf"
PROTOCOLS = ("default", "grpc-v1", "grpc-v1alpha")


async def buf_curl(address: str, key: str, path: str, body: dict, protocol: str,
                   *extra: str) -> dict | str:
    """The JSON answer of ``buf curl`` calling ``path`` with ``body`` (or its stdout as text
    when that is not JSON), failing the test with its stderr if it fails."""
    assert BUF.exists(), f"{BUF} is missing: `make lint-protos` installs it"
    args = [str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge",
            "--reflect-header", f"authorization: Bearer {key}",
            "-H", f"authorization: Bearer {key}", "--data", json.dumps(body), *extra]
    if protocol != "default":
        args += ["--reflect-protocol", protocol]
    process = await asyncio.create_subprocess_exec(
        *args, f"http://{address}{path}", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return out.decode()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_buf_curl_calls_every_service_by_reflection(world: World, protocol: str):
    admin = world.a.admin
    goals = await buf_curl(world.stack.config_address, admin,
                           "/goals.v1.ConfigService/ListGoals", {}, protocol)
    assert len(goals["goals"]) == 3
    counts = await buf_curl(world.stack.tracker_address, admin,
                            "/goals.v1.TrackerService/CountConversions",
                            {"since": "2026-06-01T00:00:00Z"}, protocol)
    assert counts["counts"] == [{"goalId": world.a_ids.goal_id, "count": "1"}]
    exports = await buf_curl(world.export_address, admin,
                             "/goals.v1.ExportService/ListExports", {}, protocol)
    assert [job["id"] for job in exports["exports"]] == [world.a_ids.export_id]
    health = await buf_curl(world.export_address, admin, "/grpc.health.v1.Health/Check",
                            {"service": "goals.v1.ExportService"}, protocol)
    assert health == {"status": "SERVING"}


@pytest.mark.parametrize("protocol", ("grpc-v1", "grpc-v1alpha"))
async def test_reflection_lists_every_served_service(world: World, protocol: str):
    served = {"grpc.health.v1.Health", REFLECTION_V1, "grpc.reflection.v1alpha.ServerReflection"}
    for address, own in ((world.stack.config_address, "goals.v1.ConfigService"),
                         (world.stack.tracker_address, "goals.v1.TrackerService"),
                         (world.export_address, "goals.v1.ExportService")):
        listed = await buf_curl(address, world.a.keys[Role.AGENT], "", {}, protocol,
                                "--list-services")
        assert set(listed.split()) == {own, *served}, address


async def test_reflection_v1_describes_itself(world: World):
    """The v1 service is described by reflection too, so a client can resolve it."""
    channel = make_channel(world.stack.config_address, world.a.admin)
    world.channels.append(channel)
    call = channel.stream_stream(
        f"/{REFLECTION_V1}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )(iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=REFLECTION_V1)]))
    [reply] = [r async for r in call]
    assert reply.file_descriptor_response.file_descriptor_proto
