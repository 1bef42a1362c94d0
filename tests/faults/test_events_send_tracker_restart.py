"""``goalflow events send`` (a real subprocess) while its tracker is killed or stopped and
restarted on the same address: the command reconnects, resends, and says so in one note;
grpc.aio and asyncio print nothing of their own (before, every such run ended with "Task
was destroyed but it is pending! ... _consume_request_iterator" and "Task exception was
never retrieved ... aclose(): asynchronous generator is already running").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys

import pytest
from google.protobuf import json_format

from goalflow_common.auth import Role
from tests.faults.conftest import FaultStack, stored_event_count
from tests.services.tracker_svc.builders import opened

EVENTS = 12_000
BATCH = 250
NOISE = ("Traceback", "Task was destroyed", "never retrieved", "Exception", "aclose()")


async def _stored_at_least(stack: FaultStack, count: int, send: asyncio.subprocess.Process
                           ) -> int:
    for _ in range(600):
        stored = await stored_event_count(stack)
        if stored >= count:
            return stored
        assert send.returncode is None, "the command ended before the tracker was stopped"
        await asyncio.sleep(0.05)
    pytest.fail(f"the tracker stored {stored} events, not {count}")


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
async def test_events_send_across_a_tracker_restart_prints_no_asyncio_noise(
    fault_stack: FaultStack, tmp_path, how
):
    stack = fault_stack
    tracker = stack.tracker()
    await tracker.serve()
    now = dt.datetime.now(dt.UTC)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(
        json_format.MessageToJson(opened(f"c-restart-{n}", now, event_id=f"e-restart-{n}"),
                                  indent=None) + "\n"
        for n in range(EVENTS)
    ))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALFLOW_")}
    env.update(GOALFLOW_TRACKER_ADDRESS=tracker.address,
               GOALFLOW_KEY=stack.tenant.keys[Role.INGEST])
    send = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "goalflow_client.cli", "events", "send", str(path),
        "--no-progress", "--batch-size", str(BATCH), env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stored = await _stored_at_least(stack, 4 * BATCH, send)
        assert stored < EVENTS, "the whole file was stored before the tracker was stopped"
        if how == "sigkill":
            tracker.kill()
        else:
            tracker.signal(signal.SIGTERM)
            assert await tracker.wait_exit() == 0
        await tracker.serve()
        out, err = await asyncio.wait_for(send.communicate(), 50)
    finally:
        if send.returncode is None:
            send.kill()
            await send.wait()
    stdout, stderr = out.decode(), err.decode()
    assert send.returncode == 0, stderr
    accepted, duplicates = (int(part.split()[1]) for part in stdout.split(", ")[:2])
    assert accepted + duplicates == EVENTS, stdout
    assert not [word for word in NOISE if word in stderr], stderr
    # The note about the reconnect is all stderr says.
    [note] = stderr.strip().splitlines()
    assert note.startswith("reconnected "), stderr
    assert await stored_event_count(stack) == EVENTS
