"""``python -m edge_svc`` as a process: settings from the environment, JSON logs carrying
each call's request id, and SIGTERM: health turns 503 while calls are still answered, live
streams end cleanly, the process exits 0, within its grace even when a client left
connections behind mid-response (I12-A6)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time

import aiohttp
import h2.config
import h2.connection
import h2.errors

from goalflow_dev.embedded_mongo import free_port
from tests.services.edge_svc.api.test_live_feed import raw_subscription
from tests.services.edge_svc.helpers import bearer, wait_until


def _edge_env(edge, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALFLOW_")}
    env.update({
        "GOALFLOW_HTTP_PORT": str(port),
        "GOALFLOW_CONFIG_ADDRESS": edge.stack.config_address,
        "GOALFLOW_TRACKER_ADDRESS": edge.stack.tracker_address,
        "GOALFLOW_EXPORT_ADDRESS": edge.export_address,
        "GOALFLOW_SHUTDOWN_GRACE_S": "2",
    })
    return env


async def test_sigterm_drains_then_exits_with_json_logs(edge):
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_svc", env=_edge_env(edge, port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
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
    # "listening" is logged once the port is bound, which a fast first call can beat.
    assert "listening" in events and "shutdown_complete" in events, events
    assert events.index("listening") < events.index("shutdown_started"), events
    [call] = [line for line in lines if line.get("request_id") == "proc-req-1"]
    assert (call["event"], call["code"], call["method"]) == (
        "rpc", "OK", "/goals.v1.ConfigService/ListGoals")
    await wait_until(lambda: feed.subscriber_count == 0, what="upstream cancelled")


async def _healthz(port: int, within_s: float) -> bytes:
    """The status line of ``GET /healthz``, once the port accepts connections."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=within_s) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: edge\r\nconnection: close\r\n\r\n")
                return sock.makefile("rb").readline().strip()[:12]
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def _rapid_reset_burst(port: int, calls: int) -> None:
    """One h2c connection: HEADERS, DATA and RST_STREAM for ``calls`` health checks (the
    edge answers them itself: the reviewer's ListGoals with a made-up key does the same to
    the edge, and makes config look up 3,000 keys), then the client goes away. What the
    edge answers is read and dropped meanwhile, so that neither side blocks writing."""
    sock = socket.create_connection(("127.0.0.1", port))

    def drop_answers() -> None:
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass

    threading.Thread(target=drop_answers, daemon=True).start()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [(":method", "POST"), (":path", "/grpc.health.v1.Health/Check"),
               (":scheme", "http"), (":authority", "edge"), ("content-type", "application/json")]
    for n in range(calls):
        conn.send_headers(2 * n + 1, headers)
        conn.send_data(2 * n + 1, b"{}", end_stream=True)
        conn.reset_stream(2 * n + 1, h2.errors.ErrorCodes.CANCEL)
        if n % 200 == 0:
            sock.sendall(conn.data_to_send())
    sock.sendall(conn.data_to_send())
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


async def test_sigterm_exits_within_the_grace_after_a_rapid_reset_burst(edge, tmp_path):
    """3,000 reset calls on one connection left responses waiting for a flow-control window
    that a closed connection never opens; the edge then ran on for minutes after SIGTERM
    (GOALFLOW_SHUTDOWN_GRACE_S=2) until SIGKILL. Now: drain 1 s + grace 2 s + at most
    2 s to cancel what is left."""
    port = free_port()
    log_file = (tmp_path / "edge.log").open("wb")  # a pipe would fill with 3,000 call lines
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_svc", env=_edge_env(edge, port),
        stdout=asyncio.subprocess.DEVNULL, stderr=log_file)
    try:
        assert await _healthz(port, within_s=15) == b"HTTP/1.1 200"
        await asyncio.to_thread(_rapid_reset_burst, port, 3000)
        await asyncio.sleep(3)
        assert await _healthz(port, within_s=1) == b"HTTP/1.1 200"  # the edge still serves
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        assert time.monotonic() - started < 1 + 2 + 2.5
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log_file.close()
    lines = (tmp_path / "edge.log").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines if line.startswith("{")]
    assert "shutdown_complete" in events and "shutdown_forced" not in events, events[-5:]
