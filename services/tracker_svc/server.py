"""Builds the tracker service's gRPC server."""

from __future__ import annotations

from goalflow_common.auth import KeyStore
from goalflow_common.client import make_channel
from goalflow_common.clock import Clock, SystemClock
from goalflow_common.db import connect
from goalflow_common.pb.goals.v1 import config_pb2_grpc, tracker_pb2, tracker_pb2_grpc
from goalflow_common.server import GoalflowServer, Lifecycle, Registration, build_server
from tracker_svc.feed import ConversionFeed
from tracker_svc.goals import GoalCache
from tracker_svc.ingest import Ingestor
from tracker_svc.queries import ConversionQueries
from tracker_svc.reports import Reporter
from tracker_svc.service import TrackerServicer
from tracker_svc.settings import TrackerSettings
from tracker_svc.store import TrackerStore


async def create_server(
    settings: TrackerSettings, *, clock: Clock | None = None
) -> tuple[GoalflowServer, int]:
    """Connect to MongoDB and config, and return the (not yet started) server and its port.

    The goal cache and the conversion feed start with the server's first ``start()``."""
    clock = clock or SystemClock()
    client = await connect(
        settings.mongodb_uri, app_name="goalflow-tracker", attempts=settings.mongo_connect_attempts
    )
    store = TrackerStore(client[settings.tracker_db_name])
    await store.ensure_indexes()
    keys = KeyStore(client[settings.auth_db_name], settings.key_cache_ttl_s)
    lifecycle = Lifecycle()
    config_channel = make_channel(
        settings.config_address, settings.service_api_key,
        max_reconnect_backoff_s=settings.goal_resync_max_backoff_s,
        credentials=settings.grpc_channel_credentials(),
    )
    goals = GoalCache(
        config_pb2_grpc.ConfigServiceStub(config_channel),
        max_backoff_s=settings.goal_resync_max_backoff_s,
    )
    feed = ConversionFeed(store, lifecycle, max_lag_s=settings.subscriber_max_lag_s,
                          max_queued=settings.subscriber_max_queued)
    servicer = TrackerServicer(
        Ingestor(store, goals, feed, clock, lifecycle, max_batch=settings.max_batch_events),
        feed,
        ConversionQueries(store, chunk_size=settings.stream_chunk_size),
        Reporter(store, clock),
    )
    await goals.start()
    await feed.start()

    async def close() -> None:
        await feed.stop()
        await goals.stop()
        await config_channel.close()
        await client.close()

    server, port = build_server(
        settings,
        port=settings.grpc_port,
        keys=keys,
        registrations=[
            Registration(
                tracker_pb2_grpc.add_TrackerServiceServicer_to_server,
                servicer,
                tracker_pb2.DESCRIPTOR.services_by_name["TrackerService"].full_name,
            )
        ],
        lifecycle=lifecycle,
        on_stop=[close],
    )
    server.components.update(goals=goals, feed=feed, store=store)
    return server, port
