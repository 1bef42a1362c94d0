"""The SMTP sink (as `make run` starts it) as a subprocess on a free loopback port."""

from __future__ import annotations

import asyncio
import email
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest

from goalflow_dev.embedded_mongo import free_port


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
