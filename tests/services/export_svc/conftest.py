"""The SMTP sink (as `make run` starts it) as a subprocess on a free loopback port, and the
export service started beside a config + tracker stack (:func:`start_export_beside`), as
the security, edge and console tests run it."""

from __future__ import annotations

import asyncio
import email
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest

from export_svc.server import create_server as create_export
from export_svc.settings import ExportSettings
from goalflow_common.clock import Clock
from goalflow_common.server import GoalflowServer
from goalflow_dev.embedded_mongo import free_port
from tests.conftest import TOKEN_KEYS
from tests.services.tracker_svc.conftest import Stack


async def start_sink(port: int, outbox: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "goalflow_dev.smtp_sink",
        "--host", "127.0.0.1", "--port", str(port), "--outbox", str(outbox),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )


async def wait_listening(port: int, timeout_s: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def stop_sink(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    port, outbox = free_port(), tmp_path / "outbox"
    proc = await start_sink(port, outbox)
    try:
        await wait_listening(port)
        yield port, outbox
    finally:
        await stop_sink(proc)


def read_outbox(outbox: Path) -> list[EmailMessage]:
    files = sorted(outbox.glob("*.eml")) if outbox.exists() else []
    return [email.message_from_bytes(f.read_bytes(), policy=default_policy) for f in files]


# The real config + tracker stack, reused from the tracker tests.
from tests.services.tracker_svc.conftest import stack  # noqa: E402, F401


async def start_export_beside(beside: Stack, *, mongo_uri: str, db_prefix: str, smtp_port: int,
                              platform_key: str, clock: Clock
                              ) -> tuple[GoalflowServer, str]:
    """The export service on loopback, started, calling the config and tracker of ``beside`` and
    mailing through the SMTP sink on ``smtp_port``: the server and its gRPC address. The
    caller stops it (``await server.stop(0.5)``)."""
    http_port = free_port()
    export, port = await create_export(ExportSettings(
        mongodb_uri=mongo_uri, auth_db_name=f"{db_prefix}_auth",
        export_db_name=f"{db_prefix}_export", grpc_port=0, http_port=http_port,
        public_base_url=f"http://127.0.0.1:{http_port}", tracker_address=beside.tracker_address,
        config_address=beside.config_address, smtp_port=smtp_port, link_secret="k" * 40,
        service_api_key=platform_key, lease_s=5.0, shutdown_grace_s=1.0,
        token_keys=TOKEN_KEYS,
    ), clock=clock, ttl_indexes=False)
    await export.start()
    return export, f"127.0.0.1:{port}"
