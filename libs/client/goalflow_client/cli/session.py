"""The one place channels and stubs are built from the global options, and where each
command's async body runs."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import click
import grpc
from grpc import aio

from goalflow_client.cli.errors import EXIT_AUTH, CliError, rpc_error
from goalflow_common.pb.goals.v1 import (
    accounts_pb2_grpc,
    config_pb2_grpc,
    export_pb2_grpc,
    tracker_pb2_grpc,
)


@dataclass(frozen=True)
class Options:
    """The global options (``goalflow --help``)."""

    key: str | None
    config_address: str
    tracker_address: str
    export_address: str
    timeout: float
    tls: bool = False
    tls_ca_file: str = ""


class Stub:
    """A generated stub whose unary calls carry the ``--timeout`` deadline and fail as one
    line naming the RPC and the address; streaming calls pass through unchanged."""

    def __init__(self, stub: Any, address: str, timeout: float) -> None:
        self._stub = stub
        self._address = address
        self._timeout = timeout

    def __getattr__(self, method: str) -> Any:
        call = getattr(self._stub, method)
        if not isinstance(call, aio.UnaryUnaryMultiCallable):
            return call

        async def unary(request: Any) -> Any:
            try:
                return await call(request, timeout=self._timeout)
            except grpc.RpcError as exc:
                raise rpc_error(f"{method} at {self._address}", exc) from None

        return unary


class Session:
    """Channels opened on first use with the checked key, closed by ``close``."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._channels: list[aio.Channel] = []

    @property
    def key(self) -> str:
        # goalflow_common.auth and .client pull in pymongo and pydantic (half a second):
        # imported when a command calls a service, so --help and usage errors stay quick.
        from goalflow_common.auth import KEY_RE
        from goalflow_common.tokens import looks_like_token

        key = self.options.key
        if not key:
            raise CliError("no API key: pass --key or set GOALFLOW_KEY", EXIT_AUTH)
        # A token (`goalflow token mint`) is sent exactly like a key, as every service
        # accepts either; only the shape is checked here, the services verify it.
        if not (KEY_RE.fullmatch(key) or looks_like_token(key)):
            # Caught here: some malformed keys (spaces, newlines) cannot even be sent.
            raise CliError("malformed API key (--key / GOALFLOW_KEY): expected "
                           "gf_<16 hex digits>_<43-character secret> or a token",
                           EXIT_AUTH)
        return key

    @property
    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials from ``--tls``/``--tls-ca-file``, or None for plaintext."""
        if not self.options.tls:
            return None
        from goalflow_common.client import tls_credentials  # see ``key``

        return tls_credentials(self.options.tls_ca_file)

    def _stub(self, factory: Callable[[aio.Channel], Any], address: str) -> Stub:
        from goalflow_common.client import make_channel  # see ``key``

        channel = make_channel(address, self.key, credentials=self.credentials)
        self._channels.append(channel)
        return Stub(factory(channel), address, self.options.timeout)

    def config(self) -> Any:
        return self._stub(config_pb2_grpc.ConfigServiceStub, self.options.config_address)

    def tracker(self) -> Any:
        return self._stub(tracker_pb2_grpc.TrackerServiceStub, self.options.tracker_address)

    def export(self) -> Any:
        return self._stub(export_pb2_grpc.ExportServiceStub, self.options.export_address)

    def accounts(self) -> Any:
        """The AccountService, served by the config service's process."""
        return self._stub(accounts_pb2_grpc.AccountServiceStub, self.options.config_address)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


def with_session(body: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Make an ``async def body(session, **params)`` a click callback: it runs in its own
    event loop with a Session built from the global options."""

    @functools.wraps(body)
    def command(*args: Any, **kwargs: Any) -> Any:
        options = click.get_current_context().find_object(Options)

        async def run() -> Any:
            session = Session(options)
            try:
                return await body(session, *args, **kwargs)
            finally:
                await session.close()

        return asyncio.run(run())

    return command


async def read_pages(
    call: Callable[[Any], Awaitable[Any]], request: Any, field: str, limit: int, max_page: int
) -> tuple[list[Any], str]:
    """Up to ``limit`` items (0: all) of a paged List RPC, newest first as it answers, and
    the token of the next page ("" when nothing more matches): ``call`` is the stub method,
    ``request`` its request (``page_size`` and ``page_token`` set here), ``field`` the
    response's repeated field, ``max_page`` the largest page the server gives."""
    items: list[Any] = []
    while True:
        wanted = limit - len(items) if limit else max_page
        request.page_size = min(wanted, max_page)
        page = await call(request)
        items.extend(getattr(page, field)[:wanted])
        request.page_token = page.next_page_token
        if not request.page_token or (limit and len(items) >= limit):
            return items, request.page_token
