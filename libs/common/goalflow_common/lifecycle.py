"""Shutdown and cancellation for long-lived tasks, with asyncio alone (no gRPC, no
database), so that domain code can follow a server's shutdown.

Contract:

- :class:`Lifecycle` is the shared shutdown signal: ``stopping`` is set when the server
  starts to stop (``GoalflowServer.stop`` in server.py); :meth:`Lifecycle.wait_or` awaits
  something unless shutdown comes first.
- :func:`cancel_and_wait` cancels tasks and returns only once every one has finished.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any


async def until_stop_signal() -> None:
    """Return once the process gets SIGTERM or SIGINT (what every server waits for before
    its graceful stop)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def cancel_and_wait(*tasks: asyncio.Future[Any], retry_s: float = 0.1) -> None:
    """Cancel ``tasks`` and return once every one has finished.

    One ``cancel()`` is not always enough: PyMongo's async network layer can swallow a
    cancellation that races with a socket operation finishing (Python 3.11's
    ``asyncio.wait_for`` does that), and the task carries on; a change-stream reader then
    loops on getMore for good. So the cancellation is repeated every ``retry_s`` until the
    task is done. Exceptions of the tasks are consumed, not raised.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_s)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # mark it retrieved: no "exception was never retrieved"


@dataclass
class Lifecycle:
    """Shared shutdown signal: long-lived streams end when ``stopping`` is set."""

    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_or(self, awaitable: Awaitable[Any]) -> tuple[bool, Any]:
        """Await ``awaitable`` unless shutdown starts first: (stopped, result)."""
        task = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task in done:
            return False, task.result()
        await cancel_and_wait(task)
        return True, None
