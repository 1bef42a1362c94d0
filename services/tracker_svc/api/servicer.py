"""The TrackerService servicer: a thin layer over the handlers and the domain."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import structlog
from grpc import aio

from goalflow_common.auth import current_principal
from goalflow_common.client import SUBSCRIBED_KEY
from goalflow_common.errors import InvalidArgument
from goalflow_common.limits import check_id
from goalflow_common.pb.goals.v1 import tracker_pb2, tracker_pb2_grpc
from tracker_svc.api.convert import conversion_to_proto
from tracker_svc.api.ingest import IngestHandler
from tracker_svc.api.queries import ConversionQueries
from tracker_svc.api.replay import ReplayHandler
from tracker_svc.api.reports import ReportHandler
from tracker_svc.domain.feed import ConversionFeed, SubscriberDropped
from tracker_svc.domain.model import ConversionRecord
from tracker_svc.domain.scope import scoped_agent

log = structlog.get_logger(__name__)

Feed = ConversionFeed[tracker_pb2.SubscribeConversionsResponse]
SUBSCRIBED = tracker_pb2.SubscribeConversionsResponse(subscribed=True)
HEARTBEAT = tracker_pb2.SubscribeConversionsResponse(heartbeat=True)
# Proxies commonly close a connection idle for 60 s: a browser asks for 20-30 s.
MIN_HEARTBEAT_S, MAX_HEARTBEAT_S = 1, 300


def feed_message(record: ConversionRecord) -> tracker_pb2.SubscribeConversionsResponse:
    """What a subscriber receives for ``record`` (built once, shared by its subscribers)."""
    return tracker_pb2.SubscribeConversionsResponse(conversion=conversion_to_proto(record))


class TrackerServicer(tracker_pb2_grpc.TrackerServiceServicer):
    def __init__(
        self, ingest: IngestHandler, feed: Feed, queries: ConversionQueries,
        reports: ReportHandler, replays: ReplayHandler,
    ) -> None:
        self._ingest = ingest
        self._feed = feed
        self._queries = queries
        self._reports = reports
        self._replays = replays

    async def IngestEvents(
        self, request_iterator: AsyncIterator[tracker_pb2.IngestEventsRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[tracker_pb2.IngestEventsResponse]:
        async for ack in self._ingest.stream(request_iterator):
            yield ack

    async def SubscribeConversions(
        self, request: tracker_pb2.SubscribeConversionsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[tracker_pb2.SubscribeConversionsResponse]:
        principal = current_principal()
        account_id = principal.require_account()
        which = request.WhichOneof("target")
        if which is None:
            raise InvalidArgument("target", "exactly one of conversation_id or agent_id")
        target = getattr(request, which)
        check_id(which, target)
        heartbeat_s = request.heartbeat_seconds
        if heartbeat_s and not MIN_HEARTBEAT_S <= heartbeat_s <= MAX_HEARTBEAT_S:
            raise InvalidArgument(
                "heartbeat_seconds", f"0 (none) or {MIN_HEARTBEAT_S} to {MAX_HEARTBEAT_S}")
        if which == "agent_id":
            kind, only_agent = "agent", None
            scoped_agent(principal.agent_id, target)  # an agent token: its own agent only
        else:
            kind, only_agent = "conversation", principal.agent_id
        with self._feed.subscription(kind, account_id, target, only_agent=only_agent) as sub:
            if sub is None:
                return
            # Initial metadata tells the client the subscription is live: conversions
            # recorded from now on will reach it.
            await context.send_initial_metadata(((SUBSCRIBED_KEY, "1"),))
            if request.announce:
                yield SUBSCRIBED
            while True:
                try:
                    item = await sub.get(timeout_s=heartbeat_s or None)
                except TimeoutError:
                    yield HEARTBEAT
                    continue
                except SubscriberDropped:
                    log.warning("conversion_subscriber_overflow", target=which)
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"subscriber fell more than {self._feed.max_lag_s:g} s (or "
                        f"{self._feed.max_queued} conversions) behind; resubscribe and list "
                        "what was missed with ListConversions",
                    )
                if item is None:
                    return
                yield item

    async def ListConversions(
        self, request: tracker_pb2.ListConversionsRequest, context: aio.ServicerContext
    ) -> tracker_pb2.ListConversionsResponse:
        return await self._queries.list(request)

    async def StreamConversions(
        self, request: tracker_pb2.StreamConversionsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[tracker_pb2.StreamConversionsResponse]:
        async for chunk in self._queries.stream(request):
            yield chunk

    async def CountConversions(
        self, request: tracker_pb2.CountConversionsRequest, context: aio.ServicerContext
    ) -> tracker_pb2.CountConversionsResponse:
        return await self._queries.count(request)

    async def GetReport(
        self, request: tracker_pb2.GetReportRequest, context: aio.ServicerContext
    ) -> tracker_pb2.GetReportResponse:
        return await self._reports.report(request)

    async def ReplayGoal(
        self, request: tracker_pb2.ReplayGoalRequest, context: aio.ServicerContext
    ) -> AsyncIterator[tracker_pb2.ReplayGoalResponse]:
        async for update in self._replays.replay(request):
            yield update
