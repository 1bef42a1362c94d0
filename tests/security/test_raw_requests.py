"""Raw request bytes on every RPC of every service (read from the descriptors): the key is
checked before the body is parsed, a body that is not a valid request is INVALID_ARGUMENT
(never UNKNOWN or INTERNAL), and a body over its method's budget is refused unparsed,
naming the limit. Each refusal is logged as one line, without a traceback or the bytes."""

from __future__ import annotations

import json

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor

from config_svc.server import request_budgets as config_budgets
from goalflow_common.auth import METHOD_ROLES, Role
from goalflow_common.pb.goals.v1 import tracker_pb2
from goalflow_common.request_guard import RequestBudget
from tests.security.conftest import JUNE_1, World
from tests.security.rpcs import METHODS, address
from tracker_svc.server import request_budgets as tracker_budgets
from tracker_svc.settings import TrackerSettings

GARBAGE = b"\xff" * 64  # a tag whose varint never ends: no parser accepts it
SECRET_BYTES = "s3cr3t-body-marker"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def bad_utf8(message: Descriptor, depth: int = 0) -> bytes | None:
    """A ``message`` whose first reachable string field holds invalid UTF-8, or None."""
    for f in message.fields:
        if f.type == FieldDescriptor.TYPE_STRING:
            return _field(f.number, b"\xff\xfe" + SECRET_BYTES.encode())
    for f in message.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE and depth < 4:
            inner = bad_utf8(f.message_type, depth + 1)
            if inner is not None:
                return _field(f.number, inner)
    return None


def budget(settings: TrackerSettings, path: str) -> RequestBudget:
    """The budget the services give ``path`` (the tracker's from ``settings``)."""
    service, method = path.strip("/").split("/")
    budgets = {"goals.v1.TrackerService": tracker_budgets(settings),
               "goals.v1.ConfigService": config_budgets()}.get(service, {})
    return budgets.get(method, RequestBudget())


def lists_in(message: Descriptor, seen: frozenset[str] = frozenset()) -> set[str]:
    """Full names of the repeated fields a ``message`` can hold, at any depth."""
    found = set()
    for f in message.fields:
        if f.is_repeated:
            found.add(f.full_name)
        if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.full_name not in seen:
            found |= lists_in(f.message_type, seen | {message.full_name})
    return found


def test_every_list_a_request_can_hold_has_a_ceiling():
    """A list without one would be bounded only by its message's byte budget."""
    for path, method in METHODS.items():
        capped = budget(TrackerSettings(), path).max_entries
        assert lists_in(method.input_type) <= set(capped), path


async def raw_call(world: World, path: str, body: bytes, key: str | None,
                   ) -> tuple[str, str]:
    """(status code name, details) of ``path`` called with ``body`` as its request bytes."""
    method: MethodDescriptor = METHODS[path]
    channel = world.plain_channel(address(world, method))
    metadata = None if key is None else (("authorization", f"Bearer {key}"),)
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}[
        (method.client_streaming, method.server_streaming)]
    multicallable = kind(path)  # no serializers: the bytes go as they are

    async def one():
        yield body

    request = one() if method.client_streaming else body
    call = multicallable(request, metadata=metadata, timeout=20)
    try:
        if method.server_streaming:
            async for _ in call:
                pass
        else:
            await call
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


def allowed_key(world: World, path: str) -> str:
    role = min(METHOD_ROLES[path], key=lambda r: r.value)
    return world.key(role)


def _rpc(path: str) -> str:
    return path.rsplit("/", 1)[1]



async def test_every_rpc_checks_the_key_before_parsing_and_refuses_bad_bodies(
    world: World, json_logs
):
    json_logs()
    table: dict[tuple[str, str], str] = {}
    details: dict[tuple[str, str], str] = {}
    for path in sorted(METHODS):
        limit = budget(world.stack.tracker_settings, path).max_bytes
        # Valid protobuf (one unknown field) one byte over the method's budget.
        filler = b"x" * (limit - 4)
        oversized = _field(1999, filler)
        assert len(oversized) > limit
        cases = {
            "garbage, no key": (GARBAGE, None),
            "garbage, wrong key": (GARBAGE, "gf_0123456789abcdef_" + "x" * 43),
            "oversized, no key": (oversized, None),
            "garbage, key": (GARBAGE, allowed_key(world, path)),
            "oversized, key": (oversized, allowed_key(world, path)),
        }
        utf8 = bad_utf8(METHODS[path].input_type)
        if utf8 is not None:
            cases["bad UTF-8, key"] = (utf8, allowed_key(world, path))
        for case, (body, key) in cases.items():
            code, why = await raw_call(world, path, body, key)
            table[_rpc(path), case] = code
            details[_rpc(path), case] = why

    expected = {}
    for path in METHODS:
        rpc = _rpc(path)
        expected[rpc, "garbage, no key"] = "UNAUTHENTICATED"
        expected[rpc, "garbage, wrong key"] = "UNAUTHENTICATED"
        expected[rpc, "oversized, no key"] = "UNAUTHENTICATED"
        expected[rpc, "garbage, key"] = "INVALID_ARGUMENT"
        expected[rpc, "oversized, key"] = "RESOURCE_EXHAUSTED"
        if bad_utf8(METHODS[path].input_type) is not None:
            expected[rpc, "bad UTF-8, key"] = "INVALID_ARGUMENT"
    assert table == expected
    # Every RPC has a string field somewhere: the UTF-8 case covers them all.
    assert len(table) == 6 * len(METHODS)
    for path in METHODS:
        rpc, limit = _rpc(path), budget(world.stack.tracker_settings, path).max_bytes
        assert details[rpc, "garbage, key"].startswith("request: not a valid goals.v1.")
        if limit < world.stack.tracker_settings.max_message_bytes:
            # The guard's answer names the limit (IngestEvents' budget is gRPC's own
            # message limit, refused by gRPC itself).
            assert f"at most {limit} bytes" in details[rpc, "oversized, key"]

    lines = [line for line in json_logs() if line.get("event") in ("rpc", "rpc_failed")]
    refusals = [line for line in lines if line.get("method") in METHODS]
    # One line per refused call (IngestEvents' oversized message is refused by gRPC before
    # any handler runs, so it leaves no line), none at ERROR, no traceback, no body.
    assert len(refusals) == len(table) - 1
    assert all(line["event"] == "rpc" and line["level"] != "error" for line in refusals)
    assert all("exception" not in line for line in refusals)
    assert not any(SECRET_BYTES in json.dumps(line) for line in lines)


def _repeated_strings(count: int, number: int) -> bytes:
    return _field(number, b"") * count


async def test_lists_far_over_their_limit_are_refused_unparsed(world: World):
    """A list a little over its limit gets the handler's own answer; one over twice the
    limit is refused before parsing, naming the field and the limit."""
    report = "/goals.v1.TrackerService/GetReport"
    admin = world.a.admin
    skills = METHODS[report].input_type.fields_by_name["skills"].number
    valid = tracker_pb2.GetReportRequest(
        start_date=JUNE_1, end_date=JUNE_1, group_by=tracker_pb2.REPORT_GROUPING_AGENT,
    ).SerializeToString()
    code, why = await raw_call(world, report, valid + _repeated_strings(150, skills), admin)
    assert (code, why) == ("INVALID_ARGUMENT", "skills: at most 100 entries")
    code, why = await raw_call(world, report, valid + _repeated_strings(201, skills), admin)
    assert (code, why) == ("INVALID_ARGUMENT",
                           "skills: at most 100 entries (this request has more than 200)")
    # The 8 MiB of tiny entries: over the method's byte budget, never parsed.
    code, why = await raw_call(world, report, _repeated_strings(2_800_000, skills), admin)
    assert code == "RESOURCE_EXHAUSTED" and "GetReport accepts at most" in why
    # An ingest batch of 4 million empty events fits the 8 MiB message limit, but not the
    # event ceiling: the stream fails with INVALID_ARGUMENT before the batch is parsed.
    ingest = "/goals.v1.TrackerService/IngestEvents"
    events = METHODS[ingest].input_type.fields_by_name["events"].number
    code, why = await raw_call(world, ingest, _repeated_strings(4_000_000, events),
                               world.a.keys[Role.INGEST])
    assert (code, why) == ("INVALID_ARGUMENT",
                           "events: at most 1000 entries (this request has more than 2000)")
    # Many tiny unknown fields: bounded too.
    code, why = await raw_call(world, report, _field(1999, b"") * 3000, admin)
    assert code == "INVALID_ARGUMENT" and "fields in one goals.v1.GetReportRequest" in why
