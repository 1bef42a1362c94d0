"""Builds and runs the edge: the ASGI application served by hypercorn, HTTP/1.1 and h2c on
one port, and the channels to the three services.

Stopping (SIGTERM): ``/healthz`` and the health check answer NOT_SERVING for ``drain_s``
while calls are still served (a load balancer learns of it from the edge itself), then
every live-feed stream is ended cleanly (browsers reconnect, to another replica), then
hypercorn stops accepting and gives calls in flight ``shutdown_grace_s`` to finish. What
is still running :data:`FORCED_EXIT_S` after that is cancelled, and the process exits
whether or not it ends: a rolling restart never waits for a SIGKILL."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import structlog
from hypercorn.asyncio import serve
from hypercorn.config import Config

from edge_svc.adapters.upstream import Upstreams
from edge_svc.api.app import EdgeApp, connect_app
from edge_svc.api.endpoints import (
    HEALTH_CHECK,
    SubscriberLimit,
    forwarding_endpoint,
    health_endpoint,
)
from edge_svc.api.interceptors import CallerCheck
from edge_svc.api.site import Site
from edge_svc.domain.cors import CorsPolicy
from edge_svc.domain.routes import ROUTES, Upstream
from edge_svc.h2_guard import install as install_h2_guard
from edge_svc.settings import EdgeSettings
from goalflow_common.lifecycle import until_stop_signal
from goalflow_common.logs import configure_logging
from goalflow_common.server import SHUTDOWN_DRAIN_S

log = structlog.get_logger(__name__)

# hypercorn cancels the calls still running ``shutdown_grace_s`` after stopping, then waits
# for the cancellations without a limit: a connection stuck by a hypercorn bug (I12-A6: an
# HTTP/2 rapid-reset burst, see h2_guard) kept the edge running minutes past its 2 s grace
# until SIGKILL. Cancelling takes milliseconds when it works; past this much, it does not.
FORCED_EXIT_S = 2.0


class _ToStructlog(logging.Handler):
    """hypercorn's error log as JSON lines like every other log line."""

    def emit(self, record: logging.LogRecord) -> None:
        log.log(record.levelno, "hypercorn", message=record.getMessage(),
                exc_info=record.exc_info or False)


def _hypercorn_logger() -> logging.Logger:
    logger = logging.getLogger("goalflow.edge.hypercorn")
    logger.propagate = False
    logger.setLevel(logging.WARNING)  # not its "Running on ..." lines: we log "listening"
    if not logger.handlers:
        logger.addHandler(_ToStructlog())
    return logger


def build_app(settings: EdgeSettings, upstreams: Upstreams, serving: Any
              ) -> tuple[EdgeApp, SubscriberLimit]:
    """The ASGI application: one connectrpc application per route (its body limit), and
    the open health check."""
    check = CallerCheck(settings.token_authority())
    subscribers = SubscriberLimit(settings.max_subscribers,
                                  settings.max_subscribers_per_credential)
    apps = {
        route.path: connect_app(
            {route.path: forwarding_endpoint(route, upstreams,
                                             unary_timeout_s=settings.upstream_timeout_s,
                                             subscribers=subscribers)},
            read_max_bytes=settings.body_limit(route.body), caller_check=check)
        for route in ROUTES
    }
    apps[HEALTH_CHECK] = connect_app({HEALTH_CHECK: health_endpoint(serving)},
                                     read_max_bytes=settings.max_body_bytes,
                                     caller_check=None)
    cors = CorsPolicy(settings.allowed_origins, settings.cors_max_age_s)
    site = Site.load(Path(settings.console_dir)) if settings.console_dir else None
    return (EdgeApp(cors, apps, serving, body_timeout_s=settings.body_timeout_s, site=site),
            subscribers)


class EdgeServer:
    """A bound, not yet started edge. ``port`` is known once built."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.upstreams = Upstreams(
            {Upstream.CONFIG: settings.config_address,
             Upstream.TRACKER: settings.tracker_address,
             Upstream.EXPORT: settings.export_address},
            stream_channels=settings.upstream_stream_channels,
            max_message_bytes=settings.max_message_bytes,
            credentials=settings.grpc_channel_credentials(),
        )
        self.serving = False
        self.app, self.subscribers = build_app(settings, self.upstreams, lambda: self.serving)
        self._socket = socket.socket(socket.AF_INET6 if ":" in settings.grpc_host
                                     else socket.AF_INET)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((settings.grpc_host, settings.http_port))
        self.port: int = self._socket.getsockname()[1]
        self._shutdown = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def _config(self) -> Config:
        config = Config()
        config.bind = [f"fd://{self._socket.detach()}"]
        config.h2_max_concurrent_streams = self.settings.h2_max_concurrent_streams
        # hypercorn closes a connection after 1,000 requests by default, and on HTTP/2 the
        # gRPC client saw that as GOAWAY PROTOCOL_ERROR: call 1,001 of one channel failed
        # UNAVAILABLE (test_many_calls_on_one_http2_connection). Connections live on.
        config.keep_alive_max_requests = 2**62
        config.graceful_timeout = self.settings.shutdown_grace_s
        config.accesslog = None
        config.errorlog = _hypercorn_logger()
        config.backlog = 2048
        context = self.settings.http_ssl_context()
        if context is not None:
            config.certfile, config.keyfile = (self.settings.tls_cert_file,
                                               self.settings.tls_key_file)
        return config

    async def start(self) -> None:
        install_h2_guard()
        config = self._config()
        self._task = asyncio.create_task(
            serve(self.app, config, shutdown_trigger=self._shutdown.wait, mode="asgi"))  # type: ignore[arg-type]  # ASGI typed loosely
        self.serving = True
        # hypercorn listens once its first await returns: wait for the port to answer.
        host = "::1" if ":" in self.settings.grpc_host else "127.0.0.1"
        target = self.settings.grpc_host if self.settings.grpc_host not in (
            "0.0.0.0", "::") else host
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection(target, self.port)
            except OSError:
                if self._task.done():
                    self._task.result()
                await asyncio.sleep(0.01)
                continue
            writer.close()
            return
        raise OSError(f"the edge did not listen on {target}:{self.port}")

    async def stop(self, drain_s: float = 0.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.serving = False
        if drain_s > 0:
            await asyncio.sleep(drain_s)
        self.upstreams.end_streams()
        self._shutdown.set()
        if self._task is not None:
            await _bounded(self._task, self.settings.shutdown_grace_s + FORCED_EXIT_S)
        await self.upstreams.close()

    async def serve_until_signal(self) -> None:
        await until_stop_signal()
        log.info("shutdown_started")
        await self.stop(drain_s=SHUTDOWN_DRAIN_S)
        log.info("shutdown_complete")


async def _bounded(task: asyncio.Task[None], within_s: float) -> None:
    """Wait for ``task`` up to ``within_s``, then cancel it and wait
    :data:`FORCED_EXIT_S` more at most; return either way."""
    if (await asyncio.wait({task}, timeout=within_s))[0]:
        task.result()
        return
    log.warning("shutdown_forced", waited_s=within_s, tasks=len(asyncio.all_tasks()))
    task.cancel()
    await asyncio.wait({task}, timeout=FORCED_EXIT_S)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio.run's ending, bounded: it waits for every cancelled task without a limit."""
    left = asyncio.all_tasks(loop)
    for task in left:
        task.cancel()
    if left:
        loop.run_until_complete(asyncio.wait(left, timeout=FORCED_EXIT_S))


def run(settings: EdgeSettings) -> None:
    """The body of ``python -m edge_svc``: JSON logs, build, serve until SIGTERM."""
    configure_logging(settings.log_level)

    async def main() -> None:
        server = EdgeServer(settings)
        await server.start()
        log.info("listening", service="edge", address=f"{settings.grpc_host}:{server.port}",
                 tls=settings.tls_enabled, config=settings.config_address,
                 tracker=settings.tracker_address, export=settings.export_address)
        await server.serve_until_signal()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        _cancel_leftovers(loop)
        loop.close()
