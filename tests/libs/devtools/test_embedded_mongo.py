"""The embedded database launcher: a real nx-27017 process per test, in a temporary folder."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient, MongoClient

from goalflow_dev.embedded_mongo import EmbeddedMongo, free_port


def _client(server: EmbeddedMongo) -> MongoClient:
    return MongoClient(server.uri, serverSelectionTimeoutMS=3000, tz_aware=True)


def _pid(server: EmbeddedMongo) -> int:
    pid = server.pid
    assert pid is not None
    return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any process is left in the server's process group (its session)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _assert_gone(server: EmbeddedMongo, pid: int) -> None:
    assert not server.running
    assert server.pid is None
    assert not _alive(pid)  # reaped too: not even a zombie is left
    assert not _group_alive(pid)  # nor anything it started
    assert not _listening(server.port)


def test_starts_on_a_free_port(tmp_path: Path):
    with EmbeddedMongo(tmp_path / "a") as first, EmbeddedMongo(tmp_path / "b") as second:
        assert first.port != second.port
        assert first.uri == f"mongodb://127.0.0.1:{first.port}"
        with _client(first) as one, _client(second) as two:
            assert one.admin.command("ping")["ok"] == 1
            one.db.items.insert_one({"_id": "only-in-first"})
            # Separate data folders are separate databases.
            assert two.db.items.find_one({"_id": "only-in-first"}) is None
            assert one.db.items.find_one({"_id": "only-in-first"}) == {"_id": "only-in-first"}


def test_explicit_port_is_used(tmp_path: Path):
    port = free_port()
    with EmbeddedMongo(tmp_path, port=port) as server, _client(server) as client:
        assert server.port == port
        assert client.admin.command("ping")["ok"] == 1


def test_start_fails_when_the_port_is_taken(tmp_path: Path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = EmbeddedMongo(tmp_path, port=port)
        # Another listener answering on the port must not pass for a started server.
        with pytest.raises(OSError):
            server.start()
        assert not server.running


def test_data_persists_across_stop_and_start(tmp_path: Path):
    server = EmbeddedMongo(tmp_path)
    server.start()
    try:
        with _client(server) as client:
            client.db.items.insert_many([{"_id": k, "n": k * k} for k in range(5)])
    finally:
        server.stop()
    again = EmbeddedMongo(tmp_path)  # same folder, possibly another port
    with again, _client(again) as client:
        assert list(client.db.items.find({}).sort("_id", 1)) == [
            {"_id": k, "n": k * k} for k in range(5)
        ]


def test_stop_leaves_no_process(tmp_path: Path):
    server = EmbeddedMongo(tmp_path)
    server.start()
    pid = _pid(server)
    assert server.running and _alive(pid) and _listening(server.port)
    server.stop()
    _assert_gone(server, pid)
    server.stop()  # stopping twice is harmless
    assert not server.running


def test_kill_ends_the_process_and_keeps_acknowledged_writes(tmp_path: Path):
    server = EmbeddedMongo(tmp_path)
    server.start()
    pid = _pid(server)
    with _client(server) as client:
        client.db.items.insert_one({"_id": "acked"})
    server.kill()
    _assert_gone(server, pid)
    server.kill()  # killing a stopped server is harmless
    # A crash loses nothing that was acknowledged, and the folder can be reused.
    with EmbeddedMongo(tmp_path) as again, _client(again) as client:
        assert client.db.items.find_one({"_id": "acked"}) == {"_id": "acked"}


def test_stop_after_the_process_died_on_its_own(tmp_path: Path):
    server = EmbeddedMongo(tmp_path)
    server.start()
    pid = _pid(server)
    os.kill(pid, signal.SIGKILL)
    server.stop()
    _assert_gone(server, pid)


async def test_async_start_and_stop(tmp_path: Path):
    server = EmbeddedMongo(tmp_path)
    await server.astart()
    try:
        client: AsyncMongoClient = AsyncMongoClient(server.uri, serverSelectionTimeoutMS=3000)
        try:
            assert (await client.admin.command("ping"))["ok"] == 1
        finally:
            await client.close()
    finally:
        pid = _pid(server)
        await server.astop()
    _assert_gone(server, pid)
