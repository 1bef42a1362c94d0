"""Builds the tracker service's gRPC server."""

from __future__ import annotations

from goalflow_common.auth import KeyStore
from goalflow_common.client import make_channel
from goalflow_common.clock import Clock, SystemClock
from goalflow_common.db import connect
from goalflow_common.lifecycle import Lifecycle
from goalflow_common.pb.goals.v1 import config_pb2_grpc, tracker_pb2, tracker_pb2_grpc
from goalflow_common.protoconv import MAX_ID
from goalflow_common.request_guard import KIB, RequestBudget, text_bytes
from goalflow_common.server import GoalflowServer, Registration, build_server
from tracker_svc.adapters.goal_feed import GoalCache
from tracker_svc.api.ingest import IngestHandler
from tracker_svc.api.queries import MAX_GOAL_IDS, ConversionQueries
from tracker_svc.api.replay import ReplayHandler
from tracker_svc.api.reports import MAX_FILTER_ENTRIES, ReportHandler
from tracker_svc.api.servicer import TrackerServicer, feed_message
from tracker_svc.domain.conversions import ConversionReads
from tracker_svc.domain.feed import ConversionFeed
from tracker_svc.domain.ingest import Ingestor
from tracker_svc.domain.replay import Replayer
from tracker_svc.domain.reports import Reporter
from tracker_svc.settings import TrackerSettings
from tracker_svc.store.tracker_store import TrackerStore

# Conversions read per StreamConversions query (a time window holds about this many).
STREAM_FETCH_SIZE = 5000


# A goal's conditions and agent groups: at most 100 each (config's rules), and the bytes
# of one goal message: name 100 and description 1,000 characters, 100 groups of 128, 100
# conditions of 2,048 (+ category and operator), 8 KiB for the rest (ReplayGoal's budget).
MAX_GOAL_LIST = 100
GOAL_BYTES = (text_bytes(100) + text_bytes(1000) + MAX_GOAL_LIST * text_bytes(MAX_ID)
              + MAX_GOAL_LIST * (text_bytes(2048) + 16) + 8 * KIB)


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
        # One goal as config sends it, at config's documented limits: ~885 KB.
        "ReplayGoal": RequestBudget(GOAL_BYTES, {
            "goals.v1.Goal.conditions": MAX_GOAL_LIST,
            "goals.v1.Goal.agent_group_ids": MAX_GOAL_LIST}),
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
    db = client[settings.tracker_db_name]
    store = TrackerStore(db)
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
    feed = ConversionFeed(store.watch_conversions(), lifecycle, feed_message,
                          max_lag_s=settings.subscriber_max_lag_s,
                          max_queued=settings.subscriber_max_queued)
    chunk_size = max(1, settings.stream_chunk_size)
    servicer = TrackerServicer(
        IngestHandler(Ingestor(store, goals, feed, clock), goals, clock, lifecycle,
                      max_batch=settings.max_batch_events),
        feed,
        ConversionQueries(ConversionReads(store, fetch_size=max(chunk_size, STREAM_FETCH_SIZE)),
                          chunk_size=chunk_size),
        ReportHandler(Reporter(store, clock)),
        ReplayHandler(Replayer(store), settings.simulation_max_days),
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
    # ``db`` is for tests that read or write the tracker's collections directly.
    server.components.update(goals=goals, feed=feed, store=store, db=db)
    return server, port
