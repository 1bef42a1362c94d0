"""Server reflection as a standard third-party client uses it: ``buf curl`` (installed with
buf by ``make lint-protos``) finds each service's schema by reflection, over
``grpc.reflection.v1`` (its default) and ``grpc.reflection.v1alpha``, and calls a unary
RPC on every service; reflection lists every served service, health included."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
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
    # Config's process serves the AccountService too.
    for address, own in ((world.stack.config_address, {"goals.v1.ConfigService",
                                                        "goals.v1.AccountService"}),
                         (world.stack.tracker_address, {"goals.v1.TrackerService"}),
                         (world.export_address, {"goals.v1.ExportService"})):
        listed = await buf_curl(address, world.a.keys[Role.AGENT], "", {}, protocol,
                                "--list-services")
        assert set(listed.split()) == {*own, *served}, address


SERVICES = (
    ("config_address", "goals.v1.ConfigService", {"ListGoals", "GetGoal"}),
    ("config_address", "goals.v1.AccountService", {"CreateKey", "MintToken"}),
    ("tracker_address", "goals.v1.TrackerService", {"CountConversions"}),
    ("export_address", "goals.v1.ExportService", {"ListExports"}),
)


def _address(world: World, attribute: str) -> str:
    return getattr(world, attribute, None) or getattr(world.stack, attribute)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_buf_curl_lists_the_methods_of_every_service(world: World, protocol: str):
    """``--list-methods`` resolves every listed service's schema by reflection, offline
    (no Buf registry), the reflection services included."""
    for attribute, own, some_methods in SERVICES:
        listed = await buf_curl(_address(world, attribute), world.a.keys[Role.AGENT], "", {},
                                protocol, "--list-methods")
        methods = set(listed.split())
        assert {f"{own}/{m}" for m in some_methods} <= methods, attribute
        assert {"grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch",
                f"{REFLECTION_V1}/ServerReflectionInfo",
                "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"} <= methods


async def _reflect_files(channel, service: str, **request: str) -> list[bytes]:
    """The serialized files a raw ``ServerReflectionInfo`` call on ``service`` answers for
    one request (``file_containing_symbol=`` or ``file_by_filename=``); the v1 and v1alpha
    messages are the same on the wire."""
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )(iter([reflection_pb2.ServerReflectionRequest(**request)]))
    [reply] = [r async for r in call]
    assert not reply.HasField("error_response"), (request, reply.error_response)
    return list(reply.file_descriptor_response.file_descriptor_proto)


def _pool_of(
    files: dict[str, descriptor_pb2.FileDescriptorProto],
) -> descriptor_pool.DescriptorPool:
    """A fresh pool holding ``files``, each added after the files it imports; adding a file
    fails on a type reference that no file added before it defines."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str) -> None:
        if name not in added:
            for dependency in files[name].dependency:
                add(dependency)
            pool.Add(files[name])
            added.add(name)

    for name in files:
        add(name)
    return pool


@pytest.mark.parametrize("service", (REFLECTION_V1, "grpc.reflection.v1alpha.ServerReflection"))
async def test_reflection_describes_every_service_completely(world: World, service: str):
    """Each served service's files, with the files they depend on fetched by name as a client
    does, build a fresh descriptor pool in which the service and every type it uses resolve
    (a v1 file pointing at v1alpha types without importing them made buf fail)."""
    channel = make_channel(world.stack.config_address, world.a.admin)
    world.channels.append(channel)
    for symbol in ("goals.v1.ConfigService", "goals.v1.AccountService", "grpc.health.v1.Health",
                   REFLECTION_V1,
                   "grpc.reflection.v1alpha.ServerReflection"):
        files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        pending = await _reflect_files(channel, service, file_containing_symbol=symbol)
        while pending:
            proto = descriptor_pb2.FileDescriptorProto.FromString(pending.pop())
            files.setdefault(proto.name, proto)
            for dependency in proto.dependency:
                if dependency not in files:
                    pending += await _reflect_files(channel, service,
                                                   file_by_filename=dependency)
        pool = _pool_of(files)
        described = pool.FindServiceByName(symbol)
        for method in described.methods:  # building the pool resolved them; check anyway
            for message in (method.input_type, method.output_type):
                assert pool.FindMessageTypeByName(message.full_name) is message, method.full_name
        if symbol == REFLECTION_V1:
            assert described.file.name == "grpc/reflection/v1/reflection.proto"
            request = described.methods_by_name["ServerReflectionInfo"].input_type
            assert request.full_name == "grpc.reflection.v1.ServerReflectionRequest"
            assert not [f for f in files if "v1alpha" in f]

