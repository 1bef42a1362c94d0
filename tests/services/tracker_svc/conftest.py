"""A real config server and a real tracker server on loopback ports, per test."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from grpc import aio
from pymongo.asynchronous.database import AsyncDatabase

from config_svc.server import create_server as create_config
from goalflow_common.client import make_channel
from goalflow_common.pb.goals.v1 import config_pb2_grpc, tracker_pb2_grpc
from goalflow_common.server import GoalflowServer
from tests.conftest import TOKEN_KEYS
from tracker_svc.server import create_server as create_tracker
from tracker_svc.settings import TrackerSettings
from tracker_svc.store.documents import Document, event_from_document
from tracker_svc.store.tracker_store import TrackerStore


@dataclass
class Stack:
    """Running config + tracker; ``config(key)``/``tracker(key)`` give authenticated stubs."""

    config_address: str
    tracker_address: str
    tracker_settings: TrackerSettings
    servers: list[GoalflowServer] = field(default_factory=list)
    tracker_server: GoalflowServer | None = None
    channels: list[aio.Channel] = field(default_factory=list)

    def _channel(self, address: str, key: str) -> aio.Channel:
        channel = make_channel(address, key)
        self.channels.append(channel)
        return channel

    def config(self, key: str) -> config_pb2_grpc.ConfigServiceStub:
        return config_pb2_grpc.ConfigServiceStub(self._channel(self.config_address, key))

    def tracker(self, key: str) -> tracker_pb2_grpc.TrackerServiceStub:
        return tracker_pb2_grpc.TrackerServiceStub(self._channel(self.tracker_address, key))


@pytest.fixture
async def stack(mongo_uri, db_prefix, clock, platform_key, config_settings) -> AsyncIterator[Stack]:
    # Each side needs the other's address: the tracker's port is chosen first, and held
    # (bound, SO_REUSEPORT like gRPC's own sockets, not listening) until the tracker listens
    # on it: a port only found free a moment earlier was once handed to config's port-0
    # bind, and both servers shared it (gRPC binds with SO_REUSEPORT), so calls reached
    # either at random (UNIMPLEMENTED, 1 run in ~20 on a loaded machine).
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    tracker_port = holder.getsockname()[1]
    config_settings = config_settings.model_copy(update={
        "tracker_address": f"127.0.0.1:{tracker_port}", "service_api_key": platform_key,
    })
    config, config_port = await create_config(config_settings, clock=clock)
    await config.start()
    tracker_settings = TrackerSettings(
        mongodb_uri=mongo_uri, auth_db_name=f"{db_prefix}_auth",
        tracker_db_name=f"{db_prefix}_tracker", grpc_port=tracker_port,
        config_address=f"127.0.0.1:{config_port}", shutdown_grace_s=1.0,
        service_api_key=platform_key, goal_resync_max_backoff_s=0.5, token_keys=TOKEN_KEYS,
    )
    tracker, tracker_port = await create_tracker(tracker_settings, clock=clock)
    await tracker.start()
    holder.close()
    result = Stack(f"127.0.0.1:{config_port}", f"127.0.0.1:{tracker_port}", tracker_settings,
                   [tracker, config], tracker_server=tracker)
    try:
        yield result
    finally:
        for channel in result.channels:
            await channel.close()
        for server in result.servers:
            await server.stop(0.5)


class TrackerDb:
    """The tracker's database for tests: its raw collections for direct reads and writes
    (the store keeps them private), and the store's rating methods over documents."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.store = TrackerStore(db)
        self.events = db["events"]
        self.opens = db["opens"]
        self.conversions = db["conversions"]
        self.ratings = db["ratings"]

    async def record_ratings(self, account_id: str, rated: list[Document]) -> None:
        await self.store.record_ratings(account_id, [event_from_document(d) for d in rated])

    async def latest_ratings(self, account_id: str, conversation_ids: list[str]) -> dict[str, str]:
        return await self.store.latest_ratings(account_id, conversation_ids)


@pytest.fixture
def tracker_db(mongo, db_prefix) -> TrackerDb:
    """The tracker's collections in this test's database, for direct reads and writes."""
    return TrackerDb(mongo[f"{db_prefix}_tracker"])
