"""``python -m edge_svc`` as a process: settings from the environment, JSON logs carrying
each call's request id, and SIGTERM: health turns 503 while calls are still answered, live
streams end cleanly, the process exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import aiohttp

from goalflow_dev.embedded_mongo import free_port
from tests.services.edge_svc.api.test_live_feed import raw_subscription
from tests.services.edge_svc.helpers import bearer, wait_until


async def test_sigterm_drains_then_exits_with_json_logs(edge):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALFLOW_")}
    env.update({
        "GOALFLOW_HTTP_PORT": str(port),
        "GOALFLOW_CONFIG_ADDRESS": edge.stack.config_address,
        "GOALFLOW_TRACKER_ADDRESS": edge.stack.tracker_address,
        "GOALFLOW_EXPORT_ADDRESS": edge.export_address,
        "GOALFLOW_SHUTDOWN_GRACE_S": "2",
    })
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_svc", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"{url}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            async with session.post(f"{url}/goals.v1.ConfigService/ListGoals", json={},
                                    headers={**bearer(edge.tenant.admin),
                                             "x-request-id": "proc-req-1"}) as response:
                assert response.status == 200
            reader, writer = await raw_subscription(edge, port, agent_id="agent-7")
            feed = edge.stack.tracker_server.components["feed"]
            await wait_until(lambda: feed.subscriber_count == 1, what="subscription")
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            async with session.get(f"{url}/healthz") as response:
                assert response.status == 503  # draining: still answering, not serving
            rest = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert b'"error"' not in rest.split(b"\x02", 1)[-1], rest
            assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    _, err = await proc.communicate()
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    assert events[0] == "listening" and "shutdown_complete" in events, events
    [call] = [line for line in lines if line.get("request_id") == "proc-req-1"]
    assert (call["event"], call["code"], call["method"]) == (
        "rpc", "OK", "/goals.v1.ConfigService/ListGoals")
    await wait_until(lambda: feed.subscriber_count == 0, what="upstream cancelled")
