"""Builds the tracker service's gRPC server."""

from __future__ import annotations

from goalflow_common.auth import KeyStore
from goalflow_common.client import make_channel
from goalflow_common.clock import Clock, SystemClock
from goalflow_common.db import connect
from goalflow_common.pb.goals.v1 import config_pb2_grpc, tracker_pb2, tracker_pb2_grpc
from goalflow_common.protoconv import MAX_ID
from goalflow_common.request_guard import RequestBudget, text_bytes
from goalflow_common.server import GoalflowServer, Lifecycle, Registration, build_server
from tracker_svc.feed import ConversionFeed
from tracker_svc.goals import GoalCache
from tracker_svc.ingest import Ingestor
from tracker_svc.queries import MAX_GOAL_IDS, ConversionQueries
from tracker_svc.reports import MAX_FILTER_ENTRIES, Reporter
from tracker_svc.service import TrackerServicer
from tracker_svc.settings import TrackerSettings
from tracker_svc.store import TrackerStore


def request_budgets(settings: TrackerSettings) -> dict[str, RequestBudget]:
    """What a request of each method may hold before it is parsed, from the documented
    limits (README "Limits"); other methods carry a few ids and get the default budget."""
    report_lists = ("skills", "group_ids", "agent_ids", "goal_ids")
    return {
        # A batch at its documented limits (1,000 events of 2,048-character URLs and
        # 256-character brand ids) can exceed the message limit: the message limit it is.
        "IngestEvents": RequestBudget(settings.max_message_bytes, {
            "goals.v1.IngestEventsRequest.events": settings.max_batch_events}),
        # Four filter lists of 100 ids of 128 characters: ~206 KB.
        "GetReport": RequestBudget(
            len(report_lists) * MAX_FILTER_ENTRIES * text_bytes(MAX_ID) + 1024,
            {f"goals.v1.GetReportRequest.{name}": MAX_FILTER_ENTRIES
             for name in report_lists}),
        # 1,000 goal ids of 128 characters: ~516 KB.
        "CountConversions": RequestBudget(MAX_GOAL_IDS * text_bytes(MAX_ID) + 1024, {
            "goals.v1.CountConversionsRequest.goal_ids": MAX_GOAL_IDS}),
    }


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
                request_budgets(settings),
            )
        ],
        lifecycle=lifecycle,
        on_stop=[close],
    )
    server.components.update(goals=goals, feed=feed, store=store)
    return server, port
