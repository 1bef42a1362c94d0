"""The gRPC server bootstrap every service uses: health, reflection, interceptors, limits
and graceful shutdown.

Reflection is served as both ``grpc.reflection.v1`` (what current clients such as
``buf curl`` and grpcurl ask first) and ``grpc.reflection.v1alpha``, and lists every
served service, health and reflection included."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from goalflow_common.auth import KeyStore
from goalflow_common.interceptors import AuthInterceptor, ContextInterceptor
from goalflow_common.lifecycle import Lifecycle, until_stop_signal
from goalflow_common.logs import configure_logging
from goalflow_common.request_guard import RequestBudget, RequestGuard
from goalflow_common.settings import ServiceSettings
from goalflow_common.tokens import TokenAuthority

log = structlog.get_logger(__name__)

# On SIGTERM, how long health checks answer NOT_SERVING before new calls are refused, so a
# probe or load balancer polling Check learns of the shutdown from the server itself.
SHUTDOWN_DRAIN_S = 1.0


@dataclass(frozen=True)
class Registration:
    """One gRPC service to serve: the generated ``add_..._to_server``, its servicer, and the
    request budgets of its methods by method name (others get the default budget)."""

    add_to_server: Callable[[Any, aio.Server], None]
    servicer: Any
    full_name: str
    budgets: Mapping[str, RequestBudget] = field(default_factory=dict)


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
_REFLECTION_V1_FILE = "grpc/reflection/v1/reflection.proto"
_V1ALPHA, _V1 = "grpc.reflection.v1alpha", "grpc.reflection.v1"


def _reflection_v1_file() -> descriptor_pb2.FileDescriptorProto:
    """``grpc/reflection/v1/reflection.proto``, made from the v1alpha file: the same messages
    field for field, with the package, the file options and every type reference moved to
    v1. It stands alone (no imports), as the upstream file does: a copy that still pointed at
    ``.grpc.reflection.v1alpha.*`` types without importing them could not be resolved by a
    client (``buf curl --list-methods`` failed on it)."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = _REFLECTION_V1_FILE, _V1
    proto.options.Clear()
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.java_outer_classname = "ServerReflectionProto"
    proto.options.java_multiple_files = True

    def to_v1(holder: Any, *attributes: str) -> None:
        # Only set attributes are rewritten: assigning "" would mark an unset one present.
        for attribute in attributes:
            type_name = getattr(holder, attribute)
            if type_name.startswith(f".{_V1ALPHA}."):
                setattr(holder, attribute, f".{_V1}." + type_name[len(_V1ALPHA) + 2:])

    messages = list(proto.message_type)
    while messages:
        message = messages.pop()
        messages.extend(message.nested_type)
        for fld in (*message.field, *message.extension):
            to_v1(fld, "type_name", "extendee")
    for service in proto.service:
        for method in service.method:
            to_v1(method, "input_type", "output_type")
    # The default pool, which already holds v1alpha, accepted the broken copy without a
    # word; fail at start-up instead if a new grpcio-reflection adds a reference missed here.
    if _V1ALPHA in proto.SerializeToString().decode("utf-8", "replace"):
        raise RuntimeError(f"{_REFLECTION_V1_FILE} still refers to {_V1ALPHA}")
    return proto


def _add_reflection_v1(server: aio.Server, servicer: Any) -> None:
    """Serve ``servicer`` (v1alpha) as ``grpc.reflection.v1`` too.

    grpcio-reflection 1.85 ships only v1alpha (no v1 module or .proto in grpcio-reflection,
    grpcio-tools or protobuf). The v1 messages are the v1alpha ones under another package,
    field for field, so the same handler answers both; the v1 file is added to the
    descriptor pool so that reflection can describe itself under either name."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_REFLECTION_V1_FILE)
    except KeyError:
        pool.Add(_reflection_v1_file())
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": handler}),)
    )


class HealthServicer(health.aio.HealthServicer):
    """The standard health service, except that ``Watch`` streams end at ``close()``.

    The library's ``Watch`` runs until the call is cancelled, so one open watcher (gRPC
    client-side health checking keeps one per connection) would hold a stopping server for
    its whole grace period. ``close()`` comes after NOT_SERVING has been announced; each
    watcher gets NOT_SERVING as its last message and the stream ends with OK."""

    def __init__(self) -> None:
        super().__init__()
        self._closing = Lifecycle()

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        closed, _ = await self._closing.wait_or(super().Watch(request, context))
        if closed:
            # It may have been sent already; a repeat is harmless, a missing one is not.
            await context.write(
                health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)
            )

    def close(self) -> None:
        self._closing.stopping.set()


class GoalflowServer:
    """A started-or-not gRPC server with its health service and clean-up hooks."""

    def __init__(
        self,
        server: aio.Server,
        health_servicer: HealthServicer,
        service_names: Sequence[str],
        lifecycle: Lifecycle,
        grace_s: float,
        on_stop: Sequence[Callable[[], Awaitable[None]]],
    ) -> None:
        self.grpc_server = server
        self.lifecycle = lifecycle
        self._health = health_servicer
        self._names = service_names
        self._grace = grace_s
        self._on_stop = list(on_stop)
        self._stopped = False
        # The service's parts by name, for tests and diagnostics (never for request paths).
        self.components: dict[str, Any] = {}

    def add_cleanup(self, fn: Callable[[], Awaitable[None]]) -> None:
        self._on_stop.append(fn)

    async def start(self) -> None:
        await self.grpc_server.start()
        for name in ("", *self._names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float | None = None, drain_s: float = 0.0) -> None:
        """Graceful stop: NOT_SERVING first, then end streams, let RPCs finish, clean up.

        For ``drain_s`` seconds after health turns NOT_SERVING the server still answers
        calls: health checks see NOT_SERVING instead of a refused call (``grpc_server.stop``
        refuses every new call at once, health checks too), while streams end as
        ``lifecycle.stopping`` tells them to."""
        if self._stopped:
            return
        self._stopped = True
        await self._health.enter_graceful_shutdown()
        self.lifecycle.stopping.set()
        if drain_s > 0:
            await asyncio.sleep(drain_s)
        self._health.close()
        await self.grpc_server.stop(self._grace if grace_s is None else grace_s)
        for fn in reversed(self._on_stop):
            await fn()

    async def serve_until_signal(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully."""
        await until_stop_signal()
        log.info("shutdown_started")
        await self.stop(drain_s=SHUTDOWN_DRAIN_S)
        log.info("shutdown_complete")


def build_server(
    settings: ServiceSettings,
    *,
    port: int,
    keys: KeyStore,
    registrations: Sequence[Registration],
    lifecycle: Lifecycle | None = None,
    on_stop: Sequence[Callable[[], Awaitable[None]]] = (),
    tokens: TokenAuthority | None = None,
) -> tuple[GoalflowServer, int]:
    """Create (not start) a server with every registration, health and reflection, bound to
    ``settings.grpc_host:port`` (0 picks a free port), serving TLS only when the settings
    name a certificate. Returns it and the bound port.

    Calls are authenticated with ``keys`` and with ``tokens``, the verifier of browser
    tokens (a service that also mints them passes its own; by default the one the settings
    describe, built once here)."""
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    budgets = {
        f"/{reg.full_name}/{method}": budget
        for reg in registrations for method, budget in reg.budgets.items()
    }
    guard = RequestGuard(budgets)
    tokens = tokens if tokens is not None else settings.token_authority()
    server = aio.server(
        interceptors=[ContextInterceptor(), AuthInterceptor(keys, guard, tokens)],
        options=options,
    )
    for reg in registrations:
        reg.add_to_server(reg.servicer, server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [reg.full_name for reg in registrations]
    reflection_servicer = reflection.aio.ReflectionServicer([
        *names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        REFLECTION_V1, reflection.SERVICE_NAME,
    ])
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection_servicer, server)
    _add_reflection_v1(server, reflection_servicer)
    address = f"{settings.grpc_host}:{port}"
    credentials = settings.grpc_server_credentials()
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    if bound == 0:
        raise OSError(f"could not bind {address}")
    wrapped = GoalflowServer(
        server,
        health_servicer,
        names,
        lifecycle or Lifecycle(),
        settings.shutdown_grace_s,
        on_stop,
    )
    return wrapped, bound


def run_service(
    name: str,
    settings: ServiceSettings,
    create_server: Callable[[Any], Awaitable[tuple[GoalflowServer, int]]],
) -> None:
    """The body of every ``python -m <service>``: JSON logs, build, serve until SIGTERM."""
    configure_logging(settings.log_level)

    async def serve() -> None:
        server, port = await create_server(settings)
        await server.start()
        log.info("listening", service=name, address=f"{settings.grpc_host}:{port}",
                 tls=settings.tls_enabled)
        await server.serve_until_signal()

    asyncio.run(serve())
