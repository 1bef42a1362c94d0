"""Every RPC of every service, read from the generated descriptors, and one way to call any
of them with any credentials and get a comparable outcome."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.text_format import MessageToString
from grpc import aio

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    config_pb2,
    config_pb2_grpc,
    export_pb2,
    export_pb2_grpc,
    tracker_pb2,
    tracker_pb2_grpc,
)
from tests.security.conftest import A_AGENT, MIN, T0, World
from tests.services.tracker_svc.builders import assigned, ingest, opened, visit

_STUBS: dict[str, Callable[[aio.Channel], Any]] = {
    "goals.v1.ConfigService": config_pb2_grpc.ConfigServiceStub,
    "goals.v1.TrackerService": tracker_pb2_grpc.TrackerServiceStub,
    "goals.v1.ExportService": export_pb2_grpc.ExportServiceStub,
    "goals.v1.AccountService": accounts_pb2_grpc.AccountServiceStub,
}


def all_methods() -> dict[str, MethodDescriptor]:
    """Every RPC the protos define, by its full path (``/goals.v1.ConfigService/GetGoal``)."""
    methods = {}
    for module in (config_pb2, tracker_pb2, export_pb2, accounts_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                methods[f"/{service.full_name}/{method.name}"] = method
    return methods


METHODS = all_methods()


def address(world: World, method: MethodDescriptor) -> str:
    return {
        "goals.v1.ConfigService": world.stack.config_address,
        "goals.v1.TrackerService": world.stack.tracker_address,
        "goals.v1.ExportService": world.export_address,
        "goals.v1.AccountService": world.stack.config_address,  # served by config's process
    }[method.containing_service.full_name]


@dataclass
class Outcome:
    """How a call ended: a status code name ("TIMEOUT" if it neither answered nor failed
    in time), the error details and every response message received."""

    code: str
    details: str = ""
    responses: list[Message] = field(default_factory=list)

    def text(self) -> str:
        """Everything the caller learnt, as one string."""
        shown = "\n".join(MessageToString(m, as_one_line=True) for m in self.responses)
        return f"{self.code}|{self.details}|{shown}"


Header = str | None
"""The ``authorization`` value sent, or None to send none."""


async def invoke(
    world: World,
    path: str,
    request: Message | Sequence[Message],
    authorization: Header,
    *,
    until: Callable[[list[Message]], bool] | None = None,
    on_open: Callable[[], Awaitable[Any]] | None = None,
    timeout_s: float = 10.0,
) -> Outcome:
    """Call ``path`` on a channel that adds nothing, sending ``authorization`` as given.

    Streaming responses are read to the end, or until ``until(responses)`` holds (then the
    call is cancelled: a live stream never ends by itself). ``on_open`` runs once the
    server has sent the initial metadata of a response stream (a live subscription is
    registered then). A client-streaming RPC takes a sequence of requests."""
    method = METHODS[path]
    stub = _STUBS[method.containing_service.full_name](
        world.plain_channel(address(world, method)))
    call_fn = getattr(stub, method.name)
    metadata = None if authorization is None else (("authorization", authorization),)
    responses: list[Message] = []
    call = None
    try:
        async with asyncio.timeout(timeout_s):
            if not method.server_streaming:
                responses.append(await call_fn(request, metadata=metadata))
                return Outcome("OK", "", responses)
            if method.client_streaming:
                call = call_fn(_requests(request), metadata=metadata)
            else:
                call = call_fn(request, metadata=metadata)
            if on_open is not None:
                await call.initial_metadata()
                if not call.done():
                    await on_open()
            async for response in call:
                responses.append(response)
                if until is not None and until(responses):
                    break
    except grpc.RpcError as exc:
        return Outcome(exc.code().name, exc.details() or "", responses)
    except TimeoutError:
        return Outcome("TIMEOUT", "", responses)
    finally:
        if call is not None:
            call.cancel()
    return Outcome("OK", "", responses)


async def _requests(requests: Sequence[Message]):
    for request in requests:
        yield request


def snapshot_done(responses: list[Message]) -> bool:
    """WatchGoals: stop after the snapshot (the feed then stays open for changes)."""
    return responses[-1].type == config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT_COMPLETE


def first(responses: list[Message]) -> bool:
    return bool(responses)


async def convert_again(world: World) -> str:
    """Record one more conversion in account A, of its second goal, credited to A's agent,
    in a new conversation; returns that conversation's id."""
    conv, user = f"alpha-conv-{uuid.uuid4().hex[:6]}", f"alpha-user-{uuid.uuid4().hex[:6]}"
    acks = await ingest(world.tracker(world.a.keys[Role.INGEST]), [
        opened(conv, T0 + MIN, user=user), assigned(conv, T0 + 2 * MIN, A_AGENT),
    ], [visit("https://alpha.example/alpha-second", T0 + 15 * MIN, user=user)])
    assert acks[1].conversions == 1
    return conv
